using Onnx;
using Sadg.Export;
using Sadg.Graph;
using Sadg.Onnx;
using Sadg.Pipeline;
using Sadg.Quantization;
using Sadg.Reconstruction;
using Sadg.Tests.Support;
using static TorchSharp.torch;

namespace Sadg.Tests.Reconstruction;

/// <summary>
/// The bias correction after the reconstruction of a block with a depthwise convolution: which operators it
/// corrects, that their channel means end right on the calibration images, and that the written model computes with
/// the corrected biases.
/// </summary>
[Collection(nameof(Sadg.Tests.Quantization.QuantizerMemoryTests))]
public class BiasCorrectionTests
{
    static QuantizationOptions W4A4() => new() { WeightBits = 4, ActivationBits = 4, Iterations = 20, BatchSize = 8, Seed = 1 };

    /// <summary>In the blocks that hold a depthwise convolution, the depthwise convolutions and the block's last quantized operator.</summary>
    static HashSet<string> DepthwiseAndLastInDepthwiseBlocks(QuantizedGraph q) =>
        BlockPartition.Partition(q.Graph, n => q.QuantizedNodes.Contains(n))
            .Where(b => b.QuantizedNodes.Any(n => BlockPartition.IsDepthwise(q.Graph, n)))
            .SelectMany(b => b.QuantizedNodes.Where(n => BlockPartition.IsDepthwise(q.Graph, n) || n == b.QuantizedNodes[^1]))
            .Select(n => n.Name).ToHashSet();

    /// <summary>
    /// The largest |mean over images and positions of (FP − quantized)| of a node's output channel, in units of that
    /// channel's FP standard deviation, over the given nodes, both graphs run from the model input; the quantized
    /// value before any activation quantizer.
    /// </summary>
    static double WorstRelativeMeanError(CalibratedModel calibrated, Tensor images, IEnumerable<string> nodes)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        using var fp = new GraphModule(calibrated.Fold.Model);
        var q = calibrated.Quantized.Graph;
        double worst = 0;
        foreach (var name in nodes)
        {
            string value = q.Nodes.First(n => n.Name == name).Outputs[0];
            var feed = new Dictionary<string, Tensor> { [q.InputNames[0]] = images };
            var reference = fp.Run(feed, [value])[value].movedim([1], [0]).flatten(1);
            // The value as the operator writes it, before the activation quantizer that the next operator reads it through.
            Tensor? produced = null;
            using (q.AddHook(value, t => produced = t, first: true)) q.Run(feed, [value]);
            var quantized = produced!.movedim([1], [0]).flatten(1);
            var relative = (reference - quantized).mean([1]).abs() / reference.std(1).ClampMin(1e-12);
            worst = Math.Max(worst, relative.max().item<float>());
        }
        return worst;
    }

    [Fact]
    public void Depthwise_convolutions_and_their_blocks_last_operators_end_with_their_channel_means_right_and_no_other_is_corrected()
    {
        var model = OnnxModel.FromProto(TestModels.MobileNetV2());
        using var images = TestModels.Input(32, seed: 9);

        using var corrected = ModelCalibration.Calibrate(model, images, W4A4());
        using var spec = corrected.Quantized.Export();
        var expected = DepthwiseAndLastInDepthwiseBlocks(corrected.Quantized);
        Assert.NotEmpty(expected);
        Assert.Equal(expected.Order(), spec.Biases.Select(b => b.Node).Order());
        // An inverted residual's expansion layer shares the depthwise block and keeps its bias.
        var blocks = BlockPartition.Partition(corrected.Quantized.Graph, n => corrected.Quantized.QuantizedNodes.Contains(n));
        Assert.Contains(blocks, b => b.QuantizedNodes.Any(n => BlockPartition.IsDepthwise(corrected.Quantized.Graph, n))
            && b.QuantizedNodes.Any(n => !expected.Contains(n.Name) && corrected.Quantized.CorrectableBias(n) is not null));
        // The report's per-block count says the same.
        Assert.Equal(expected.Count, corrected.Blocks.Sum(b => b.CorrectedBiases));
        Assert.Contains(corrected.Blocks, b => b.CorrectedBiases == 0);
        // Other quantized operators (the stem and the classifier's blocks) are not corrected.
        Assert.Contains(corrected.Quantized.QuantizedNodes, n => !expected.Contains(n.Name) && corrected.Quantized.CorrectableBias(n) is not null);

        // The user's setting (--bias-correction off / BiasCorrection metadata) reaches the reconstruction and switches it off.
        var off = PipelineOptions.From(new QuantizeSettings { BiasCorrection = BiasCorrectionMode.Off }, channels: 1).Quantization();
        using var uncorrected = ModelCalibration.Calibrate(model, images, W4A4() with { BiasCorrection = off.BiasCorrection });
        using var uncorrectedSpec = uncorrected.Quantized.Export();
        Assert.Empty(uncorrectedSpec.Biases);
        Assert.All(uncorrected.Blocks, b => Assert.Equal(0, b.CorrectedBiases));

        double after = WorstRelativeMeanError(corrected, images, expected);
        double before = WorstRelativeMeanError(uncorrected, images, expected);
        Assert.True(after < 1e-3, $"A corrected channel's mean error is still {after:0.####} of its standard deviation.");
        Assert.True(before > 0.05, $"Without the correction the worst channel's mean error is only {before:0.####} of its standard deviation: the test shows nothing.");
    }

    [Fact]
    public void A_model_without_depthwise_convolutions_keeps_its_biases()
    {
        using var images = TestModels.Input(16, seed: 9);
        using var calibrated = ModelCalibration.Calibrate(OnnxModel.FromProto(TestModels.ResNet()), images, W4A4());
        using var spec = calibrated.Quantized.Export();
        Assert.Empty(spec.Biases);
    }

    /// <summary>
    /// The written model carries the corrected biases (read back from the file's initializers), ONNX Runtime runs it
    /// to the quantized graph's logits, and without the corrected biases it would not.
    /// </summary>
    [Fact]
    public void The_written_model_computes_with_the_corrected_biases()
    {
        var model = OnnxModel.FromProto(TestModels.MobileNetV2());
        using var images = TestModels.Input(32, seed: 9);
        using var calibrated = ModelCalibration.Calibrate(model, images, W4A4());
        var outcome = ModelQuantizer.Write(calibrated);
        using var spec = outcome.Spec;
        Assert.NotEmpty(spec.Biases);

        using var folder = new TempFolder();
        string path = folder.File("model.qdq.onnx");
        File.WriteAllBytes(path, Google.Protobuf.MessageExtensions.ToByteArray(outcome.QdqModel));
        var written = ModelProto.Parser.ParseFrom(File.ReadAllBytes(path));
        using var scope = NewDisposeScope();
        foreach (var b in spec.Biases)
        {
            var stored = OnnxTensors.ToTorch(written.Graph.Initializer.Single(t => t.Name == b.Bias));
            var folded = OnnxTensors.ToTorch(calibrated.Fold.Model.Graph.Initializer.Single(t => t.Name == b.Bias));
            Assert.True(stored.eq(b.Value).all().item<bool>(), $"The written bias '{b.Bias}' is not the corrected one.");
            Assert.False(stored.eq(folded).all().item<bool>(), $"The bias '{b.Bias}' was not changed.");
        }

        var x = TestModels.Input(64, seed: 11);
        Tensor ours;
        using (no_grad()) ours = calibrated.Quantized.Graph.forward(x).detach();
        var ort = OrtReference.Run(path, new Dictionary<string, Tensor> { [TestModels.InputName] = x })[0];
        double scale = ort.abs().max().item<float>();
        double diff = (ours - ort).abs().max().item<float>();
        Assert.True(diff <= 0.05 * scale, $"ONNX Runtime's logits differ from the quantized graph's by {diff} (max |logit| {scale}).");

        // The same model with the folded biases: the quantized graph's logits are then not what it computes.
        var stale = written.Clone();
        foreach (var b in spec.Biases)
        {
            int at = stale.Graph.Initializer.IndexOf(stale.Graph.Initializer.Single(t => t.Name == b.Bias));
            stale.Graph.Initializer[at] = calibrated.Fold.Model.Graph.Initializer.Single(t => t.Name == b.Bias).Clone();
        }
        var staleOrt = OrtReference.Run(stale, new Dictionary<string, Tensor> { [TestModels.InputName] = x })[0];
        double staleDiff = (ours - staleOrt).abs().max().item<float>();
        Assert.True(staleDiff > 4 * diff, $"With the folded biases ONNX Runtime is {staleDiff} from the quantized graph, with the corrected ones {diff}.");
    }

    [Fact]
    public void A_corrected_bias_that_does_not_fit_the_model_is_refused_naming_the_node()
    {
        var folded = OnnxModel.FromProto(TestBatchNormRemoval.Fold(TestModels.MobileNetV2()));
        using var spec = RtnSpecBuilder.Build(folded, TestModels.Input(16, seed: 7), RtnSpecBuilder.Uniform(4, 4));
        var conv = folded.Graph.Node.First(n => n.OpType == "Conv" && n.Input.Count > 2);
        long channels = folded.Graph.Initializer.Single(t => t.Name == conv.Input[2]).Dims[0];

        spec.Biases.Add(new BiasOverride(conv.Name, conv.Input[2], zeros(channels + 1)));
        var e = Assert.Throws<SadgException>(() => QdqWriter.Write(folded, spec));
        Assert.Equal(SadgErrorCode.InvalidNode, e.Code);
        Assert.Contains(conv.Name, e.Message);
        Assert.Contains("shape", e.Message, StringComparison.OrdinalIgnoreCase);

        spec.Biases[0].Value.Dispose();
        spec.Biases[0] = new BiasOverride(conv.Name, conv.Input[1], zeros(channels));
        e = Assert.Throws<SadgException>(() => QdqWriter.Write(folded, spec));
        Assert.Contains("does not read it as its bias", e.Message);
    }
}
