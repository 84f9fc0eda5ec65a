using Onnx;
using Sadg.Graph;
using Sadg.Onnx;
using Sadg.Tests.Support;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Sadg.Tests.Graph;

/// <summary>
/// Whole small networks (ResNet-, MobileNetV2- and VGG-style, see <see cref="TestModels"/>) run through the
/// executor and through ONNX Runtime on a batch of 4: outputs agree to 1e-4 of the output's scale, and the
/// gradient with respect to the input exists, is finite and is not all zero.
/// </summary>
public class ModelParityTests(ITestOutputHelper output)
{
    const double RelativeTolerance = 1e-4;

    [Fact]
    public void ResNetMatchesOrt() => Check(TestModels.ResNet(), TestModels.Input(4));

    [Fact]
    public void MobileNetV2MatchesOrt() => Check(TestModels.MobileNetV2(), TestModels.Input(4));

    [Fact]
    public void VggMatchesOrt() => Check(TestModels.Vgg(), TestModels.Input(4));

    /// <summary>Conv, BatchNormalization, Relu, Add, MaxPool, AveragePool only; the output is a 4-D feature map.</summary>
    [Fact]
    public void ConvTrunkMatchesOrt() => Check(TestModels.ConvTrunk(), TestModels.Input(4));

    /// <summary>Gemm and MatMul on a [4, 64] input.</summary>
    [Fact]
    public void MlpMatchesOrt() => Check(TestModels.Mlp(), TestModels.Input(4, 7, 64));

    void Check(ModelProto model, Tensor input)
    {
        using var scope = NewDisposeScope();
        var (diff, magnitude) = OrtReference.CompareWithExecutor(model, input);
        output.WriteLine($"max |executor - ORT| = {diff:G4}, max |ORT| = {magnitude:G4}");
        Assert.True(magnitude > 0, "the reference output is all zero; the model is degenerate");
        Assert.True(diff <= RelativeTolerance * magnitude, $"max |executor - ORT| = {diff:G4} > {RelativeTolerance} x {magnitude:G4}");

        using var graph = new GraphModule(OnnxModel.FromProto(model));
        var x = input.detach().clone().requires_grad_(true);
        graph.forward(x).sum().backward();
        var grad = x.grad;
        Assert.NotNull(grad);
        Assert.Equal(x.shape, grad!.shape);
        Assert.True(grad.isfinite().all().item<bool>(), "the input gradient has non-finite values");
        Assert.True(grad.abs().max().item<float>() > 0, "the input gradient is all zero");
    }
}
