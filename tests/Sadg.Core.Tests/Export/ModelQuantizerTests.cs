using Sadg.Export;
using Sadg.Onnx;
using Sadg.Quantization;
using Sadg.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;
using DataType = Onnx.TensorProto.Types.DataType;

namespace Sadg.Tests.Export;

[Collection(nameof(Sadg.Tests.Quantization.QuantizerMemoryTests))]
public class ModelQuantizerTests
{
    static OnnxModel ResNet() => OnnxModel.FromProto(TestModels.ResNet());

    /// <summary>The MobileNetV2 also runs the bias correction of its depthwise blocks.</summary>
    [Theory]
    [InlineData("resnet")]
    [InlineData("mobilenetv2")]
    public void QuantizingAWholeModelLeavesNoLiveTensors(string name)
    {
        var model = OnnxModel.FromProto(name == "resnet" ? TestModels.ResNet() : TestModels.MobileNetV2());
        using (var warm = TestModels.Input(8)) ModelQuantizer.Quantize(model, warm, new QuantizationOptions { Iterations = 2, BatchSize = 4 }).Spec.Dispose();

        long before = DisposeScopeManager.Statistics.TensorStatistics.ThreadTotalLiveCount;
        using (var images = TestModels.Input(16, seed: 9))
        {
            var outcome = ModelQuantizer.Quantize(model, images, new QuantizationOptions { Iterations = 20, BatchSize = 8 });
            Assert.NotEmpty(outcome.Spec.Weights);
            Assert.Equal(name == "mobilenetv2", outcome.Spec.Biases.Count > 0);
            outcome.Spec.Dispose();
        }
        long after = DisposeScopeManager.Statistics.TensorStatistics.ThreadTotalLiveCount;
        Assert.Equal(before, after);
    }

    [Fact]
    public void PolicyGivesFirstAndLastLayersEightBits()
    {
        using var images = TestModels.Input(8);
        var outcome = ModelQuantizer.Quantize(ResNet(), images, new QuantizationOptions { Iterations = 0 });
        var layers = outcome.Layers;
        Assert.Equal(6, outcome.FoldedBatchNorms);
        Assert.Equal(8, layers[0].WeightBits);
        Assert.Null(layers[0].InputBits);
        Assert.Equal(8, layers[1].InputBits);
        Assert.Equal((8, 8), (layers[^1].WeightBits, layers[^1].InputBits!.Value));
        Assert.All(layers.Skip(1).SkipLast(1), l => Assert.Equal(4, l.WeightBits));
        Assert.All(layers.Skip(2).SkipLast(1), l => Assert.Equal(4, l.InputBits));
        var metadata = outcome.QdqModel.MetadataProps.ToDictionary(p => p.Key, p => p.Value);
        Assert.Equal("4", metadata["sadg.weight_bits"]);

        var weightOnly = ModelQuantizer.Quantize(ResNet(), images, new QuantizationOptions { Iterations = 0, ActivationBits = null });
        Assert.Empty(weightOnly.Spec.Activations);
        Assert.All(weightOnly.Layers, l => Assert.Null(l.InputBits));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(9)]
    [InlineData(12)]
    public void BitsOutsideTwoToEightAreRefused(int bits)
    {
        using var images = TestModels.Input(4);
        var e = Assert.Throws<SadgException>(() => ModelQuantizer.Quantize(ResNet(), images, new QuantizationOptions { WeightBits = bits, Iterations = 0 }));
        Assert.Equal(SadgErrorCode.InvalidBits, e.Code);
        Assert.Contains(bits.ToString(), e.Message);
        e = Assert.Throws<SadgException>(() => ModelQuantizer.Quantize(ResNet(), images, new QuantizationOptions { ActivationBits = bits, Iterations = 0 }));
        Assert.Equal(SadgErrorCode.InvalidBits, e.Code);
    }

    [Fact]
    public void CalibrationDataOfTheWrongShapeIsRefused()
    {
        using var images = randn(4, 1, 32, 32);
        var e = Assert.Throws<SadgException>(() => ModelQuantizer.Quantize(ResNet(), images, new QuantizationOptions { Iterations = 0 }));
        Assert.Equal(SadgErrorCode.CalibrationDataInvalid, e.Code);
        Assert.Contains("[4, 1, 32, 32]", e.Message);
        Assert.Contains("[N, 3, 32, 32]", e.Message);
    }

    [Fact]
    public void AModelWithNothingQuantizableIsRefused()
    {
        var g = new OnnxGraphBuilder();
        g.AddInput("image", DataType.Float, -1, 3, 8, 8);
        g.AddNode("Relu", ["image"], ["y"]);
        g.AddOutput("y", DataType.Float, -1, 3, 8, 8);
        using var images = randn(2, 3, 8, 8);
        var e = Assert.Throws<SadgException>(() => ModelQuantizer.Quantize(OnnxModel.FromProto(g.Build()), images, new QuantizationOptions()));
        Assert.Equal(SadgErrorCode.NothingToQuantize, e.Code);
    }
}
