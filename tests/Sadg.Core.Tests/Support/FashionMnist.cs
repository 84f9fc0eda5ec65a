using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Onnx;
using Sadg.Data;
using Sadg.Onnx;
using TorchSharp;
using static TorchSharp.torch;
using DataType = Onnx.TensorProto.Types.DataType;

namespace Sadg.Tests.Support;

/// <summary>
/// Real data for accuracy tests: Fashion-MNIST from Debian's dataset-fashion-mnist package, and a small BN CNN
/// trained on part of it in seconds (once per test run).
/// </summary>
public static class FashionMnist
{
    public static string Folder => Environment.GetEnvironmentVariable("SADG_FASHION_MNIST") ?? "/usr/share/datasets/fashion-mnist";

    static readonly Lazy<TrainedModel> Trained = new(() => TrainSmallCnn(trainImages: 6000, epochs: 2, seed: 1));

    /// <summary>The shared small CNN (trained on the first 8000 training images).</summary>
    public static TrainedModel SmallCnn => Trained.Value;

    public static LabelledImages Load(bool train, int? limit = null)
    {
        string prefix = train ? "train" : "t10k";
        string images = Path.Combine(Folder, $"{prefix}-images-idx3-ubyte.gz");
        Assert.True(File.Exists(images), $"Fashion-MNIST not found at {Folder}. Install it with 'apt-get install -y dataset-fashion-mnist' (.ci/run does).");
        return LabelledImages.FromIdx(images, Path.Combine(Folder, $"{prefix}-labels-idx1-ubyte.gz"), limit);
    }

    /// <summary>A trained model and the standardization its input expects.</summary>
    public sealed record TrainedModel(ModelProto Model, float Mean, float Std)
    {
        public Tensor Standardize(Tensor images) => (images - Mean) / Std;
    }

    /// <summary>
    /// Conv(1→16)-BN-ReLU-MaxPool, Conv(16→32)-BN-ReLU-MaxPool, Conv(32→32)-BN-ReLU, Flatten, Linear: a BN CNN
    /// that reaches about 85% on Fashion-MNIST after a few seconds of training.
    /// </summary>
    public static TrainedModel TrainSmallCnn(int trainImages, int epochs, int seed)
    {
        manual_seed(seed);
        using var data = Load(train: true, trainImages);
        float mean = data.Images.mean().item<float>(), std = data.Images.std().item<float>();
        var layers = new nn.Module<Tensor, Tensor>[]
        {
            nn.Conv2d(1, 16, 3, padding: 1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding: 1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3, padding: 1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Flatten(), nn.Linear(32 * 7 * 7, 10),
        };
        using var net = nn.Sequential(layers);
        using var optimizer = optim.Adam(net.parameters(), 3e-3);
        var generator = new Generator((ulong)seed);
        for (int epoch = 0; epoch < epochs; epoch++)
        {
            using var order = randperm(data.Count, generator: generator);
            for (long start = 0; start < data.Count; start += 64)
            {
                using var scope = NewDisposeScope();
                var index = order.narrow(0, start, Math.Min(64, data.Count - start));
                var x = (data.Images.index_select(0, index) - mean) / std;
                optimizer.zero_grad();
                nn.functional.cross_entropy(net.forward(x), data.Labels.index_select(0, index)).backward();
                optimizer.step();
            }
        }
        net.eval();
        var g = new OnnxGraphBuilder("small_cnn");
        g.AddInput("image", DataType.Float, -1, 1, 28, 28);
        string output = ModuleExport.Sequential(g, "layer", layers, "image");
        g.AddOutput(output, DataType.Float, -1, 10);
        var model = g.Build(opset: 13);

        // The exported graph computes what the trained network computes.
        using (var scope = NewDisposeScope())
        using (var graph = new Sadg.Graph.GraphModule(OnnxModel.FromProto(model)))
        using (no_grad())
        {
            var x = (data.Images.narrow(0, 0, 64) - mean) / std;
            var expected = net.forward(x);
            Assert.True(graph.forward(x).allclose(expected, 1e-4, 1e-4), "the exported small CNN differs from the trained one");
        }
        return new TrainedModel(model, mean, std);
    }

    /// <summary>Top-1 accuracy of a model file run by ONNX Runtime (CPU) on standardized images.</summary>
    public static double Accuracy(ModelProto model, LabelledImages data, TrainedModel standardization)
    {
        using var session = new InferenceSession(model.ToByteArray());
        string input = session.InputMetadata.Keys.Single();
        long correct = 0;
        for (long start = 0; start < data.Count; start += 500)
        {
            using var scope = NewDisposeScope();
            long n = Math.Min(500, data.Count - start);
            var x = standardization.Standardize(data.Images.narrow(0, start, n)).contiguous();
            var dense = new Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<float>(x.data<float>().ToArray(), x.shape.Select(d => (int)d).ToArray());
            using var results = session.Run([NamedOnnxValue.CreateFromTensor(input, dense)]);
            var logits = results[0].AsTensor<float>();
            var labels = data.Labels.narrow(0, start, n).data<long>().ToArray();
            int classes = logits.Dimensions[1];
            for (int i = 0; i < n; i++)
            {
                int best = 0;
                for (int c = 1; c < classes; c++) if (logits[i, c] > logits[i, best]) best = c;
                if (best == labels[i]) correct++;
            }
        }
        return (double)correct / data.Count;
    }
}
