using System.Diagnostics;
using System.Reflection;
using System.Runtime.InteropServices;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Sadg.Graph;
using Sadg.Onnx;
using Sadg.Tests.Support;
using static TorchSharp.torch;
using DenseTensor = Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<float>;

// Forward-only CPU inference of the ResNet-style test model (batch 64 of 3x32x32): the Sadg executor under
// no_grad against ONNX Runtime with default optimizations. Writes docs/benchmarks/executor.md.
//   dotnet run -c Release --project tests/Sadg.Benchmarks -- executor [--warmup N] [--iterations N]

// No-op build overhead of the MSBuild integration (see BuildNoop.cs). Writes docs/benchmarks/build-noop.md.
//   dotnet run -c Release --project tests/Sadg.Benchmarks -- build-noop [--iterations N]
// The paper's table on the sample model (see QuantizationBenchmark.cs). Writes docs/benchmarks.md and .json (docs/benchmarks-reduced.* with --reduced).
//   dotnet run -c Release --project tests/Sadg.Benchmarks -- quantization [--reduced] ...
Sadg.NativeHeap.ReexecWithReusedHeap(); // as the sadg tool does, so that the stage times are the tool's
if (args.Length > 0 && args[0] == "build-noop")
    return Sadg.Benchmarks.BuildNoop.Run(args, Option("--iterations", 10));
if (args.Length > 0 && args[0] == "quantization") return Sadg.Benchmarks.QuantizationBenchmark.Run(args[1..]);
// Sadg's Genie-D, SADAG and reconstruction steps against the PyTorch-eager anchors (see StepsBenchmark.cs). Writes docs/benchmarks/steps.md and .json.
//   dotnet run -c Release --project tests/Sadg.Benchmarks -- steps [--steps N] [--warmup N] [--only mobilenet|resnet20]
if (args.Length > 0 && args[0] == "steps") return Sadg.Benchmarks.StepsBenchmark.Run(args[1..]);

// Peak resident memory of the Genie-D and SADAG loops at 224² (see MemoryProbe.cs); run with SADG_NATIVE_HEAP=system.
//   dotnet run -c Release --project tests/Sadg.Benchmarks -- memory [--steps N] [--batch N] [--trace]
// The inferred input prior against real images' statistics (see PriorProbe.cs).
//   dotnet run -c Release --project tests/Sadg.Benchmarks -- prior --model M.onnx [--data FOLDER] [--scale K]
if (args.Length > 0 && args[0] == "prior") return Sadg.Benchmarks.PriorProbe.Run(args[1..]);
// What SADAG refinement does to the warm-up images (see RefineProbe.cs).
//   dotnet run -c Release --project tests/Sadg.Benchmarks -- refine --model M.onnx --data FOLDER [--steps 20,100]
if (args.Length > 0 && args[0] == "refine") return Sadg.Benchmarks.RefineProbe.Run(args[1..]);
if (args.Length > 0 && args[0] == "memory") return Sadg.Benchmarks.MemoryProbe.Run(args[1..]);
// How much of the quantized model's error a per-layer bias correction removes (see BiasProbe.cs).
//   dotnet run -c Release --project tests/Sadg.Benchmarks -- bias [--model M.onnx --data FOLDER] [--bits W8A3] [--seeds 1]
if (args.Length > 0 && args[0] == "bias") return Sadg.Benchmarks.BiasProbe.Run(args[1..]);

// Writes the ResNet-20-shaped test model (random weights, BN kept, 1x28x28) for timing `sadg quantize`:
//   dotnet run -c Release --project tests/Sadg.Benchmarks -- resnet20 <out.onnx>
if (args.Length == 2 && args[0] == "resnet20")
{
    OnnxModel.Save(TestModels.ResNet20(), args[1]);
    Console.WriteLine($"wrote {args[1]}");
    return 0;
}
// Writes the MobileNetV1 α=0.25 test model (random weights, BN kept, 3x224x224, 1000 classes), the steps benchmark's:
//   dotnet run -c Release --project tests/Sadg.Benchmarks -- mobilenetv1 <out.onnx>
if (args.Length == 2 && args[0] == "mobilenetv1")
{
    OnnxModel.Save(TestModels.MobileNetV1(), args[1]);
    Console.WriteLine($"wrote {args[1]}");
    return 0;
}
// Writes <in.onnx> with its NCHW image input declared channels-last, [N, H, W, C], and a Transpose (perm 0,3,1,2) in
// front of the graph, as tf2onnx writes Keras models: the same model in the other input convention.
//   dotnet run -c Release --project tests/Sadg.Benchmarks -- channels-last <in.onnx> <out.onnx>
if (args.Length == 3 && args[0] == "channels-last")
{
    var (proto, input, nchw) = InputWithNodeInFront(args[1], "_nchw");
    var transpose = new Onnx.NodeProto { OpType = "Transpose", Name = "to_nchw", Input = { input.Name }, Output = { nchw } };
    transpose.Attribute.Add(OnnxGraphBuilder.Attribute("perm", new long[] { 0, 3, 1, 2 }));
    proto.Graph.Node.Insert(0, transpose);
    var dims = proto.Graph.Input.First(v => v.Name == input.Name).Type.TensorType.Shape.Dim;
    var declared = dims.ToArray();
    (dims[1], dims[2], dims[3]) = (declared[2], declared[3], declared[1]);
    OnnxModel.Save(proto, args[2]);
    Console.WriteLine($"wrote {args[2]}");
    return 0;
}
// Writes <in.onnx> taking its input k times larger, with a Mul by 1/k in front of the graph: the same model for pixels
// in [0, 255] (k = 255) where it was fed [0, 1], as Caffe- and CNTK-style models are fed raw bytes.
//   dotnet run -c Release --project tests/Sadg.Benchmarks -- scale-input <in.onnx> <out.onnx> <k>
if (args.Length == 4 && args[0] == "scale-input")
{
    var (proto, input, scaled) = InputWithNodeInFront(args[1], "_scaled");
    float k = float.Parse(args[3], System.Globalization.CultureInfo.InvariantCulture);
    proto.Graph.Initializer.Add(new Onnx.TensorProto { Name = "input_scale", DataType = (int)Onnx.TensorProto.Types.DataType.Float, FloatData = { 1 / k } });
    proto.Graph.Node.Insert(0, new Onnx.NodeProto { OpType = "Mul", Name = "input_scale_mul", Input = { input.Name, "input_scale" }, Output = { scaled } });
    OnnxModel.Save(proto, args[2]);
    Console.WriteLine($"wrote {args[2]} (fed {k} times larger)");
    return 0;
}
// Writes <in.onnx> with every BatchNormalization folded into the Conv before it, as PyTorch's default export
// (TrainingMode.EVAL) writes models: the same model without BN statistics.
//   dotnet run -c Release --project tests/Sadg.Benchmarks -- fold-bn <in.onnx> <out.onnx>
if (args.Length == 3 && args[0] == "fold-bn")
{
    var folded = Sadg.Quantization.BatchNormFolding.FoldWithReport(OnnxModel.Load(args[1]));
    OnnxModel.Save(folded.Model.Proto, args[2]);
    Console.WriteLine($"wrote {args[2]} ({folded.Folded} BatchNormalization nodes folded, {folded.Kept} kept)");
    return 0;
}
// Prints each activation's quantization scale (the y_scale of its QuantizeLinear) in several QDQ models written from
// the same source, one column a model: where calibrations put the activation grids.
//   dotnet run -c Release --project tests/Sadg.Benchmarks -- activation-scales <a.onnx> <b.onnx> ...
if (args.Length >= 2 && args[0] == "activation-scales")
{
    var models = args[1..].Select(OnnxModel.Load).ToList();
    Console.WriteLine("activation | " + string.Join(" | ", args[1..].Select(Path.GetFileName)));
    foreach (var node in models[0].Graph.Node.Where(n => n.OpType == "QuantizeLinear"))
    {
        var scales = models.Select(m =>
        {
            var q = m.Graph.Node.FirstOrDefault(x => x.OpType == "QuantizeLinear" && x.Input[0] == node.Input[0]);
            var scale = q is null ? null : m.Graph.Initializer.FirstOrDefault(i => i.Name == q.Input[1]);
            if (scale is null) return "-";
            using var value = OnnxTensors.ToTorch(scale);
            return value.flatten()[0].item<float>().ToString("0.0000", System.Globalization.CultureInfo.InvariantCulture);
        });
        Console.WriteLine($"{node.Input[0]} | {string.Join(" | ", scales)}");
    }
    return 0;
}
if (args.Length == 0 || args[0] != "executor")
{
    Console.Error.WriteLine("usage: Sadg.Benchmarks executor [--warmup N] [--iterations N]");
    Console.Error.WriteLine("       Sadg.Benchmarks build-noop [--iterations N]");
    Console.Error.WriteLine("       Sadg.Benchmarks steps [--steps N] [--warmup N] [--only mobilenet|resnet20] [--python path] [--anchors folder] [--no-write]");
    Console.Error.WriteLine("       Sadg.Benchmarks memory [--steps N] [--batch N]");
    Console.Error.WriteLine("       Sadg.Benchmarks prior --model M.onnx [--data FOLDER] [--scale K]");
    Console.Error.WriteLine("       Sadg.Benchmarks bias [--model M.onnx --data FOLDER] [--bits W8A3] [--seeds N] [--steps N]");
    Console.Error.WriteLine("       Sadg.Benchmarks fold-bn <in.onnx> <out.onnx> | activation-scales <a.onnx> <b.onnx> ...");
    Console.Error.WriteLine("       Sadg.Benchmarks quantization [--reduced] [--profile quick|default|paper] [--seeds N] [--bits W8A8,W4A4,W3A3] [--methods gaussian,genie,sadag,real]");
    return 2;
}
int warmup = Option("--warmup", 5);
int iterations = Option("--iterations", 30);
const int Batch = 64;
int cores = Environment.ProcessorCount;

set_num_threads(cores);
var model = TestModels.ResNet();
float[] inputData;
using (var input = TestModels.Input(Batch))
    inputData = input.contiguous().data<float>().ToArray();
long[] inputShape = [Batch, 3, 32, 32];

// (a) The executor.
double[] executor;
using (var graph = new GraphModule(OnnxModel.FromProto(model)))
{
    using var input = tensor(inputData, inputShape);
    executor = Time(warmup, iterations, () =>
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var y = graph.forward(input);
        _ = y.data<float>()[0];
    });
}

// (b) ONNX Runtime, CPU, default optimizations.
double[] ort;
using (var options = new SessionOptions { IntraOpNumThreads = cores })
using (var session = new InferenceSession(model.ToByteArray(), options))
{
    var feed = new List<NamedOnnxValue> { NamedOnnxValue.CreateFromTensor(TestModels.InputName, new DenseTensor(inputData, inputShape.Select(d => (int)d).ToArray())) };
    ort = Time(warmup, iterations, () =>
    {
        using var results = session.Run(feed);
        _ = results[0].AsTensor<float>().GetValue(0);
    });
}

var (eMedian, eP90) = (Percentile(executor, 0.5), Percentile(executor, 0.9));
var (oMedian, oP90) = (Percentile(ort, 0.5), Percentile(ort, 0.9));
string torchSharp = Informational(typeof(TorchSharp.torch).Assembly);
string ortVersion = OrtEnv.Instance().GetVersionString();
string load = File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Split(' ')[0] : "unknown";
string commit = Sadg.Benchmarks.QuantizationBenchmark.Git("rev-parse --short HEAD");
string report = $"""
    # Executor benchmark: ResNet-style model, CPU inference

    Forward-only inference of the ResNet-style test model (`TestModels.ResNet`: Conv-BN-Relu stem, two basic
    residual blocks, one with a strided 1x1 projection, GlobalAveragePool, Flatten, Gemm; BatchNormalization
    nodes kept) on a batch of {Batch} inputs of 3x32x32, float32.

    - (a) Sadg executor (`GraphModule.forward`) under `torch.no_grad()`, one dispose scope per iteration,
      `torch.set_num_threads({cores})`.
    - (b) ONNX Runtime CPU execution provider, default graph optimizations, `IntraOpNumThreads = {cores}`.

    Each: {warmup} warm-up iterations, then {iterations} timed iterations.

    ## Machine

    - CPU cores: {cores}
    - OS: {RuntimeInformation.OSDescription} ({RuntimeInformation.OSArchitecture})
    - .NET: {RuntimeInformation.FrameworkDescription}
    - TorchSharp: {torchSharp} (libtorch CPU)
    - ONNX Runtime: {ortVersion}
    - Commit: {commit}; load average (1 min) when the run ended: {load}. Other work on the machine slows both
      runners, not always equally: compare ratios from quiet runs.

    ## Command

    ```
    dotnet run -c Release --project tests/Sadg.Benchmarks -- executor{(args.Length > 1 ? " " + string.Join(' ', args.Skip(1)) : "")}
    ```

    ## Results (ms per batch of {Batch})

    | Runner | median | p90 |
    |---|---:|---:|
    | Sadg executor | {eMedian:F2} | {eP90:F2} |
    | ONNX Runtime | {oMedian:F2} | {oP90:F2} |

    Ratio executor / ONNX Runtime (median): {eMedian / oMedian:F2}x

    """;
string path = Path.Combine(Sadg.Benchmarks.QuantizationBenchmark.RepoRoot(), "docs", "benchmarks", "executor.md");
Directory.CreateDirectory(Path.GetDirectoryName(path)!);
File.WriteAllText(path, report);
Console.WriteLine(report);
Console.WriteLine($"written to {path}");
return 0;

// The model at <path> with every reader of its input re-pointed to a new tensor (the input's name + suffix), for a node
// put in front of the graph to make: the model, its input and the new tensor's name.
static (Onnx.ModelProto Proto, Onnx.ValueInfoProto Input, string Inner) InputWithNodeInFront(string path, string suffix)
{
    var proto = OnnxModel.Load(path).Proto.Clone();
    var input = OnnxModel.FromProto(proto).RuntimeInputs.Single();
    string inner = input.Name + suffix;
    foreach (var node in proto.Graph.Node)
        for (int i = 0; i < node.Input.Count; i++)
            if (node.Input[i] == input.Name) node.Input[i] = inner;
    return (proto, input, inner);
}

int Option(string name, int fallback)
{
    int i = Array.IndexOf(args, name);
    return i >= 0 && i + 1 < args.Length && int.TryParse(args[i + 1], out int v) && v > 0 ? v : fallback;
}

static double[] Time(int warmup, int iterations, Action run)
{
    for (int i = 0; i < warmup; i++) run();
    var times = new double[iterations];
    for (int i = 0; i < iterations; i++)
    {
        long start = Stopwatch.GetTimestamp();
        run();
        times[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
    }
    return times;
}

static double Percentile(double[] values, double p)
{
    var sorted = values.Order().ToArray();
    double rank = p * (sorted.Length - 1);
    int low = (int)Math.Floor(rank), high = (int)Math.Ceiling(rank);
    return sorted[low] + (sorted[high] - sorted[low]) * (rank - low);
}

static string Informational(Assembly assembly) =>
    assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0]
    ?? assembly.GetName().Version?.ToString() ?? "unknown";


