using Sadg.Onnx;
using Sadg.Pipeline;
using Sadg.Tests.Support;
using static TorchSharp.torch;

namespace Sadg.Tests.Pipeline;

/// <summary>One Genie-D warm-up shared by several quantizations gives the bytes each would give on its own.</summary>
public class SharedWarmUpTests
{
    static PipelineOptions Options(CalibrationMethod method, int bits) => new()
    {
        Method = method, WeightBits = bits, ActivationBits = bits, Profile = StepProfile.Quick, Seed = 7,
        Samples = 8, GenerationSteps = 4, ReconstructionSteps = 4,
    };

    [Fact]
    public void A_shared_warm_up_gives_the_same_models_and_is_left_unchanged()
    {
        var model = OnnxModel.FromProto(TestModels.ResNet(seed: 3, width: 4, channels: 1, size: 8));
        using var warm = QuantizationPipeline.WarmUp(model, Options(CalibrationMethod.Genie, 4));
        using var before = warm.Images();

        foreach (var (method, bits) in new[] { (CalibrationMethod.Sadag, 4), (CalibrationMethod.Sadag, 3), (CalibrationMethod.Genie, 4) })
        {
            using var alone = QuantizationPipeline.Quantize(model, Options(method, bits));
            using var shared = QuantizationPipeline.Quantize(model, Options(method, bits), warmUp: warm);
            Assert.Equal(alone.ModelBytes, shared.ModelBytes);
            Assert.DoesNotContain(shared.Report.Timings, t => t.Stage.StartsWith("warm-up", StringComparison.Ordinal));
            Assert.Contains(alone.Report.Timings, t => t.Stage.StartsWith("warm-up", StringComparison.Ordinal));
        }

        using var after = warm.Images();
        Assert.True(before.allclose(after, rtol: 0, atol: 0), "Quantizing with a shared warm-up changed the warm-up's images.");
        Assert.False(warm.Refined);
    }

    [Fact]
    public void A_warm_up_of_another_size_is_refused()
    {
        var model = OnnxModel.FromProto(TestModels.ResNet(seed: 3, width: 4, channels: 1, size: 8));
        using var warm = QuantizationPipeline.WarmUp(model, Options(CalibrationMethod.Genie, 4) with { Samples = 6 });
        var e = Assert.Throws<ArgumentException>(() => QuantizationPipeline.Quantize(model, Options(CalibrationMethod.Sadag, 4), warmUp: warm));
        Assert.Contains("8 images", e.Message);
    }
}
