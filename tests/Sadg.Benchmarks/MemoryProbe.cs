using Sadg.Generation;
using Sadg.Graph;
using Sadg.Pipeline;
using Sadg.Quantization;
using Sadg.Reconstruction;
using Sadg.Tests.Support;
using static TorchSharp.torch;

namespace Sadg.Benchmarks;

/// <summary>
/// Peak resident memory of the generation loops at ImageNet size: the steps benchmark's MobileNetV1 α = 0.25 at
/// 3×224×224, the quick profile's batch and generator, a few Genie-D warm-up steps and then a few SADAG refinement
/// steps against a round-to-nearest W4A4 Q₀, with the peak (VmHWM) reset before each loop. Run it with
/// SADG_NATIVE_HEAP=system so that memory freed after a loop goes back and the next loop's peak is its own.
///   dotnet run -c Release --project tests/Sadg.Benchmarks -- memory [--steps N] [--batch N] [--trace]
/// </summary>
static class MemoryProbe
{
    public static int Run(string[] args)
    {
        int steps = StepsBenchmark.Option(args, "--steps", 3);
        var quick = GenerationOptions.Quick;
        int batch = StepsBenchmark.Option(args, "--batch", quick.BatchSize);
        var generation = quick with
        {
            Images = batch, BatchSize = batch, WarmupSteps = steps, RefinementSteps = steps,
            InputPrior = InputPrior.Standardized(3, "benchmark"),
        };
        set_num_threads(Environment.ProcessorCount);
        var model = Sadg.Onnx.OnnxModel.FromProto(TestModels.MobileNetV1());
        using var fp = new GraphModule(model);
        Console.WriteLine($"heap {NativeHeap.Mode}; MobileNetV1 α=0.25 3×224×224, batch {batch}, {steps} steps per loop; after loading: {Mib(StageClock.PeakResidentBytes())}");

        StageClock.ResetPeakResident();
        using var warm = SyntheticData.WarmUp(fp, generation);
        Console.WriteLine($"warm-up (Genie-D): peak {Mib(StageClock.PeakResidentBytes())}");

        var q0Options = new QuantizationOptions { WeightBits = 4, ActivationBits = 4, BatchSize = 32, Iterations = 0 };
        QuantizedGraph q0;
        using (var images = warm.Images()) q0 = ModelCalibration.Calibrate(model, images, q0Options).Quantized;
        using (q0)
        {
            q0.Freeze();
            GC.Collect();
            Console.WriteLine($"before refinement: {Now()}");
            StageClock.ResetPeakResident();
            SyntheticData.Refine(warm, fp, q0.Graph, generation, args.Contains("--trace") ? new Trace() : null);
            Console.WriteLine($"refinement (SADAG): peak {Mib(StageClock.PeakResidentBytes())}");
        }
        return 0;
    }

    /// <summary>--trace: the resident size and the live tensors after each step.</summary>
    sealed class Trace : IProgress<GenerationProgress>
    {
        public void Report(GenerationProgress p) => Console.WriteLine($"  {p.Stage} batch {p.Batch} step {p.Step}: {Now()}, {Heap()}");
    }

    /// <summary>The resident size now and the live tensors.</summary>
    static string Now() =>
        $"{File.ReadLines("/proc/self/status").First(l => l.StartsWith("VmRSS:", StringComparison.Ordinal))}, " +
        $"live tensors {TorchSharp.DisposeScopeManager.Statistics.TensorStatistics.ThreadTotalLiveCount}";

    /// <summary>glibc's count of the heap: bytes in use (small and mmapped blocks) against bytes held free.</summary>
    static string Heap()
    {
        var m = MallInfo2();
        return $"malloc in use {(m.Uordblks + m.Hblkhd) / 1048576} MiB, free in the heap {m.Fordblks / 1048576} MiB";
    }

    [System.Runtime.InteropServices.StructLayout(System.Runtime.InteropServices.LayoutKind.Sequential)]
    struct MallInfo
    {
        public nuint Arena, Ordblks, Smblks, Hblks, Hblkhd, Usmblks, Fsmblks, Uordblks, Fordblks, Keepcost;
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "mallinfo2")]
    static extern MallInfo MallInfo2();

    static string Mib(long? bytes) => bytes is { } b ? $"{b / 1048576.0:F0} MiB" : "n/a";
}
