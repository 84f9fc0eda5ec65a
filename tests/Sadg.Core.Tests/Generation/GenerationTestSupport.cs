using Sadg.Generation;
using Sadg.Graph;
using Sadg.Onnx;
using Sadg.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace Sadg.Tests.Generation;

/// <summary>Models, a stand-in Q₀ and a synchronous progress recorder for the generation tests.</summary>
static class GenerationTestSupport
{
    /// <summary>
    /// A small ResNet whose BN running statistics are those of smooth random images and whose head is centred on
    /// them (a random network's own statistics are mutually inconsistent and it predicts one class for everything;
    /// a trained one is neither).
    /// </summary>
    public static GraphModule ResNet(int channels = 1, int size = 28, bool batchNorm = true, long seed = 1)
    {
        var fp = new GraphModule(OnnxModel.FromProto(TestModels.ResNet(seed, width: 8, channels: channels, size: size, batchNorm: batchNorm)));
        Calibrate(fp, SmoothImages(64, channels, size, seed));
        return fp;
    }

    /// <summary>Standardized low-frequency noise images: N(0, 1) at a quarter of the size, upsampled bilinearly.</summary>
    public static Tensor SmoothImages(int count, int channels, int size, long seed)
    {
        using var random = new torch.Generator((ulong)seed + 99);
        using var scope = NewDisposeScope();
        var small = randn([count, channels, (size + 3) / 4, (size + 3) / 4], generator: random);
        var x = nn.functional.interpolate(small, size: [size, size], mode: InterpolationMode.Bilinear, align_corners: false);
        x = (x - x.mean([2, 3], keepdim: true)) / x.std([2, 3], keepdim: true);
        return x.MoveToOuterDisposeScope();
    }

    static void Calibrate(GraphModule fp, Tensor images)
    {
        using var noGrad = no_grad();
        foreach (var bn in fp.Nodes.Where(n => n.OpType == "BatchNormalization").ToList())
        {
            using var scope = NewDisposeScope();
            using var capture = fp.Capture([bn.Inputs[0]]);
            fp.forward(images);
            var x = capture[bn.Inputs[0]].transpose(0, 1).flatten(1);
            fp.SetWeight(bn.Inputs[3], x.mean([1]));
            fp.SetWeight(bn.Inputs[4], x.var(1, unbiased: false));
        }
        var head = ClassifierHead.Find(fp);
        using (NewDisposeScope())
        {
            var bias = head.Node.Inputs[2];
            var logits = fp.forward(images);
            fp.SetWeight(bias, fp.GetConstant(bias)! - logits.mean([0]));
        }
        images.Dispose();
    }

    /// <summary>
    /// A stand-in for the warm-up quantized model: the same graph whose Conv/Gemm weights are rounded to a 4-bit
    /// per-output-channel min-max grid on every read (so its logits differ from the FP model's).
    /// </summary>
    public static GraphModule FourBitWeights(GraphModule fp)
    {
        var q = new GraphModule(fp.Model);
        foreach (var (name, value) in fp.Weights) q.SetWeight(name, value);
        foreach (var node in q.Nodes.Where(n => n.OpType is "Conv" or "Gemm"))
            q.AddHook(node.Inputs[1], RoundToGrid);
        return q;
    }

    static Tensor RoundToGrid(Tensor w)
    {
        var flat = w.flatten(1);
        var low = flat.amin([1], keepdim: true);
        var high = flat.amax([1], keepdim: true);
        var scale = ((high - low) / 15).clamp_min(1e-8);
        return (((flat - low) / scale).round() * scale + low).reshape(w.shape);
    }

    public static GenerationOptions Tiny(long seed = 0) => GenerationOptions.Quick with
    {
        Images = 8,
        BatchSize = 4,
        WarmupSteps = 6,
        RefinementSteps = 3,
        GeneratorChannels = 8,
        Seed = seed,
    };
}

/// <summary>Records every report synchronously (Progress&lt;T&gt; would post them to the thread pool).</summary>
sealed class ProgressLog : IProgress<GenerationProgress>
{
    public List<GenerationProgress> Reports { get; } = [];

    public void Report(GenerationProgress value) => Reports.Add(value);

    public double[] Series(GenerationStage stage, int batch, string term) =>
        Reports.Where(r => r.Stage == stage && r.Batch == batch && r.Losses.ContainsKey(term)).Select(r => r.Losses[term]).ToArray();
}
