using System.Diagnostics;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Onnx;
using Sadg.Data;
using Sadg.Onnx;
using Sadg.Samples;
using TorchSharp;
using static TorchSharp.torch;

// Trains a sample network (ResNet-20, or a MobileNetV2-style depthwise network) on Fashion-MNIST and exports it to
// ONNX with BatchNorm kept.
//   dotnet run -c Release --project samples/SampleModel -- [--arch resnet20|mobilenetv2] [--epochs 15] [--batch 128]
//       [--lr 0.1] [--seed 1] [--data /usr/share/datasets/fashion-mnist] [--out samples/models/<arch>-fmnist.onnx] [--limit N]
// The model expects standardized input: (pixel / 255 - mean) / std with the training set's mean and std, which
// are stored in the model's metadata (sadg.input_mean, sadg.input_std).

Sadg.NativeHeap.ReexecWithReusedHeap(); // reuse freed activations instead of mapping them again every step
var options = ParseArgs(args);
int epochs = int.Parse(options.GetValueOrDefault("epochs", "15"));
int batchSize = int.Parse(options.GetValueOrDefault("batch", "128"));
double lr = double.Parse(options.GetValueOrDefault("lr", "0.1"), System.Globalization.CultureInfo.InvariantCulture);
int seed = int.Parse(options.GetValueOrDefault("seed", "1"));
string dataDir = options.GetValueOrDefault("data", "/usr/share/datasets/fashion-mnist");
string arch = options.GetValueOrDefault("arch", "resnet20");
if (arch is not ("resnet20" or "mobilenetv2")) throw new ArgumentException($"--arch must be resnet20 or mobilenetv2, not '{arch}'.");
string output = options.GetValueOrDefault("out", $"samples/models/{arch}-fmnist.onnx");
int? limit = options.TryGetValue("limit", out var l) ? int.Parse(l) : null;

torch.manual_seed(seed);
torch.set_num_threads(Environment.ProcessorCount);
using var train = LabelledImages.FromIdx(Path.Combine(dataDir, "train-images-idx3-ubyte.gz"), Path.Combine(dataDir, "train-labels-idx1-ubyte.gz"), limit);
using var test = LabelledImages.FromIdx(Path.Combine(dataDir, "t10k-images-idx3-ubyte.gz"), Path.Combine(dataDir, "t10k-labels-idx1-ubyte.gz"));
float mean = train.Images.mean().item<float>();
float std = train.Images.std().item<float>();
Console.WriteLine($"{arch}: train {train.Count} images, test {test.Count}; input mean {mean:F4}, std {std:F4}; {epochs} epochs, batch {batchSize}, lr {lr}, seed {seed}");

using nn.Module<Tensor, Tensor> model = arch == "resnet20" ? new ResNet20() : new MobileNetV2();
var decay = model.named_parameters().Where(p => p.parameter.dim() > 1).Select(p => p.parameter).ToList();
var noDecay = model.named_parameters().Where(p => p.parameter.dim() <= 1).Select(p => p.parameter).ToList();
using var optimizer = optim.SGD(new[]
{
    new TorchSharp.Modules.SGD.ParamGroup(decay, lr, momentum: 0.9, weight_decay: 5e-4, nesterov: true),
    new TorchSharp.Modules.SGD.ParamGroup(noDecay, lr, momentum: 0.9, weight_decay: 0, nesterov: true),
}, lr, momentum: 0.9, nesterov: true);

long stepsPerEpoch = (train.Count + batchSize - 1) / batchSize, totalSteps = stepsPerEpoch * epochs, step = 0;
var generator = new Generator((ulong)seed);
var watch = Stopwatch.StartNew();
for (int epoch = 1; epoch <= epochs; epoch++)
{
    model.train();
    using var order = randperm(train.Count, generator: generator);
    double lossSum = 0;
    for (long start = 0; start < train.Count; start += batchSize, step++)
    {
        using var scope = NewDisposeScope();
        var index = order.narrow(0, start, Math.Min(batchSize, train.Count - start));
        var x = Augment(train.Images.index_select(0, index), generator).sub_(mean).div_(std);
        var y = train.Labels.index_select(0, index);
        double rate = 0.5 * lr * (1 + Math.Cos(Math.PI * step / totalSteps));
        foreach (var group in optimizer.ParamGroups) group.LearningRate = rate;
        optimizer.zero_grad();
        var loss = nn.functional.cross_entropy(model.forward(x), y);
        loss.backward();
        optimizer.step();
        lossSum += loss.item<float>();
        if (step % 50 == 0)
            Console.WriteLine($"  epoch {epoch} step {step - (epoch - 1) * stepsPerEpoch}/{stepsPerEpoch} loss {loss.item<float>():F4} lr {rate:F4} ({watch.Elapsed.TotalSeconds:F0} s)");
    }
    double accuracy = Evaluate(model, test, mean, std);
    Console.WriteLine($"epoch {epoch}/{epochs}: mean loss {lossSum / stepsPerEpoch:F4}, test top-1 {accuracy:P2}, {watch.Elapsed.TotalMinutes:F1} min");
}

model.eval();
double torchAccuracy = Evaluate(model, test, mean, std);
var onnx = ((ISampleNetwork)model).ToOnnx(28, 28);
void Meta(string key, string value) => onnx.MetadataProps.Add(new StringStringEntryProto { Key = key, Value = value });
Meta("sadg.input_mean", mean.ToString("R", System.Globalization.CultureInfo.InvariantCulture));
Meta("sadg.input_std", std.ToString("R", System.Globalization.CultureInfo.InvariantCulture));
Meta("sadg.input_note", "standardized input: (pixel / 255 - sadg.input_mean) / sadg.input_std");
Meta("sadg.training", $"Fashion-MNIST train (60k), {epochs} epochs, batch {batchSize}, SGD nesterov lr {lr} cosine, wd 5e-4, crop+flip, seed {seed}");
Meta("sadg.test_top1", torchAccuracy.ToString("F4", System.Globalization.CultureInfo.InvariantCulture));
onnx.DocString = $"{(arch == "resnet20" ? "ResNet-20" : "MobileNetV2-style network")} (BatchNorm kept) trained on Fashion-MNIST by samples/SampleModel; MIT-licensed data.";
OnnxModel.Save(onnx, output);

double ortAccuracy = EvaluateWithOrt(output, test, mean, std);
Console.WriteLine($"TorchSharp test top-1 {torchAccuracy:P2}; ONNX Runtime on {output}: {ortAccuracy:P2}");
if (Math.Abs(ortAccuracy - torchAccuracy) > 0.001)
{
    Console.Error.WriteLine("The exported model disagrees with the trained one.");
    return 1;
}
return 0;

static Tensor Augment(Tensor images, Generator generator)
{
    // Random crop (4-pixel zero padding margin of 2 each side) and horizontal flip, per sample.
    long n = images.shape[0], h = images.shape[2], w = images.shape[3];
    var padded = nn.functional.pad(images, [2, 2, 2, 2]);
    var dy = randint(0, 5, [n], generator: generator).data<long>().ToArray();
    var dx = randint(0, 5, [n], generator: generator).data<long>().ToArray();
    var flip = rand([n], generator: generator).data<float>().ToArray();
    var crops = new Tensor[n];
    for (long i = 0; i < n; i++)
    {
        var crop = padded[i].narrow(1, dy[i], h).narrow(2, dx[i], w);
        crops[i] = flip[i] < 0.5f ? crop.flip(2) : crop;
    }
    return stack(crops);
}

static double Evaluate(nn.Module<Tensor, Tensor> model, LabelledImages data, float mean, float std)
{
    model.eval();
    using var noGrad = no_grad();
    long correct = 0;
    for (long start = 0; start < data.Count; start += 1000)
    {
        using var scope = NewDisposeScope();
        long n = Math.Min(1000, data.Count - start);
        var x = data.Images.narrow(0, start, n).sub(mean).div_(std);
        correct += model.forward(x).argmax(1).eq(data.Labels.narrow(0, start, n)).sum().item<long>();
    }
    model.train();
    return (double)correct / data.Count;
}

static double EvaluateWithOrt(string path, LabelledImages data, float mean, float std)
{
    using var session = new InferenceSession(path);
    long correct = 0;
    for (long start = 0; start < data.Count; start += 1000)
    {
        using var scope = NewDisposeScope();
        long n = Math.Min(1000, data.Count - start);
        var x = data.Images.narrow(0, start, n).sub(mean).div_(std).contiguous();
        var input = new Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<float>(x.data<float>().ToArray(), [(int)n, 1, 28, 28]);
        using var results = session.Run([NamedOnnxValue.CreateFromTensor("image", input)]);
        var logits = results[0].AsTensor<float>().ToArray();
        var labels = data.Labels.narrow(0, start, n).data<long>().ToArray();
        for (int i = 0; i < n; i++)
        {
            int best = 0;
            for (int c = 1; c < 10; c++) if (logits[i * 10 + c] > logits[i * 10 + best]) best = c;
            if (best == labels[i]) correct++;
        }
    }
    return (double)correct / data.Count;
}

static Dictionary<string, string> ParseArgs(string[] args)
{
    var result = new Dictionary<string, string>();
    for (int i = 0; i + 1 < args.Length; i += 2)
    {
        if (!args[i].StartsWith("--")) throw new ArgumentException($"Expected --option value, got '{args[i]}'.");
        result[args[i][2..]] = args[i + 1];
    }
    return result;
}
