using Sadg.Onnx;
using Sadg.Pipeline;
using Sadg.Tests.Support;
using TorchSharp;

namespace Sadg.Tests.Pipeline;

/// <summary>
/// A whole pipeline run — SADAG's warm-up, Q₀, refinement, reconstruction and the QDQ export — leaves TorchSharp's
/// live tensor count where it was once its result is disposed: repeated runs (a build quantizing many models, the
/// benchmark's table) do not grow native memory.
/// </summary>
[Collection(nameof(PipelineMemoryTests))]
public class PipelineMemoryTests
{
    [Fact]
    public void Repeated_pipeline_runs_leave_no_live_tensors()
    {
        var stats = DisposeScopeManager.Statistics.TensorStatistics;
        var model = OnnxModel.FromProto(TestModels.ResNet(seed: 3, width: 4, channels: 1, size: 8));
        var options = new PipelineOptions
        {
            Method = CalibrationMethod.Sadag, WeightBits = 4, ActivationBits = 4, Profile = StepProfile.Quick, Seed = 7,
            Samples = 8, GenerationSteps = 6, ReconstructionSteps = 6,
        };
        // The first run creates what lives as long as the process (TorchSharp's and the executor's caches).
        using (QuantizationPipeline.Quantize(model, options)) { }
        long before = stats.ThreadTotalLiveCount;
        for (int seed = 8; seed < 11; seed++)
            using (QuantizationPipeline.Quantize(model, options with { Seed = seed })) { }
        Assert.True(before == stats.ThreadTotalLiveCount,
            $"live tensors {before} after the first run, {stats.ThreadTotalLiveCount} after three more ({stats}).");
    }
}

/// <summary>Runs <see cref="PipelineMemoryTests"/> alone, so no other test shares its thread's statistics.</summary>
[CollectionDefinition(nameof(PipelineMemoryTests), DisableParallelization = true)]
public class PipelineMemoryCollection;
