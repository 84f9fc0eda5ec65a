using Sadg.Onnx;
using Sadg.Pipeline;
using Sadg.Tests.Support;

namespace Sadg.Tests.Pipeline;

/// <summary>Every stage of a run reports its time and, on Linux, the peak resident memory during it.</summary>
public class StageMemoryTests
{
    [LinuxFact]
    public void Every_stage_reports_its_peak_resident_memory()
    {
        var model = OnnxModel.FromProto(TestModels.ResNet(seed: 3, width: 4, channels: 1, size: 8));
        var options = new PipelineOptions
        {
            Method = CalibrationMethod.Sadag, Profile = StepProfile.Quick, Seed = 7, Samples = 8, GenerationSteps = 4, ReconstructionSteps = 4,
        };
        using var result = QuantizationPipeline.Quantize(model, options);
        var stages = result.Report.Timings.Select(t => t.Stage).ToList();
        Assert.Equal(["warm-up (Genie-D)", "reconstruction (Q0)", "refinement (SADAG)", "reconstruction", "layer sensitivity"], stages);
        using var without = QuantizationPipeline.Quantize(model, options with { MeasureSensitivity = false });
        Assert.DoesNotContain(without.Report.Timings, t => t.Stage == "layer sensitivity");
        Assert.Empty(without.Report.Sensitivity);
        Assert.Equal(result.ModelBytes, without.ModelBytes);
        // A process running TorchSharp holds well over 10 MB; the peak is what it held at its largest.
        Assert.All(result.Report.Timings, t => Assert.InRange(t.PeakResidentBytes ?? 0, 10L << 20, 64L << 30));
        Assert.Contains("peak resident memory", result.Report.ToMarkdown());
    }
}
