using Google.Protobuf;
using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;
using Sadg.Cli.Data;
using Sadg.Cli.Pipeline;
using Sadg.Export;
using Sadg.Onnx;
using Sadg.Pipeline;
using Sadg.Tests.Support;
using static TorchSharp.torch;

namespace Sadg.Cli.Tests;

/// <summary>
/// Models as real exports have them: a 1x1 Conv head, a feature extractor without classifier, an ArgMax output, a
/// free input width, a batch fixed to 1. Tiny budgets; results compared with ONNX Runtime.
/// </summary>
public class ModelKindTests
{
    static readonly string[] Tiny = ["--device", "cpu", "--profile", "quick", "--samples", "8", "--generation-steps", "4", "--reconstruction-steps", "4"];

    static PipelineOptions TinyOptions(CalibrationMethod method) => new()
    {
        Method = method, Profile = StepProfile.Quick, Samples = 8, GenerationSteps = 4, ReconstructionSteps = 4, Device = CPU, Seed = 3,
        Runtime = OrtCheck.Outputs,
    };

    /// <summary>
    /// At 224² the check runs a few images at a time (its batch is bounded by input values, not fixed at 64) and still
    /// gives every image the output a run of that image alone gives.
    /// </summary>
    [Fact]
    public void The_runtime_check_runs_large_images_a_few_at_a_time_and_covers_every_image()
    {
        Assert.Equal(6, OrtCheck.Batch([3, 224, 224]));
        Assert.Equal(64, OrtCheck.Batch([3, 32, 32]));
        Assert.Equal(1, OrtCheck.Batch([3, 1024, 1024]));
        var model = TestModels.MobileNetV1(classes: 10).ToByteArray();
        long[] shape = [7, 3, 224, 224];
        using var images = randn(shape, generator: new Generator(5));
        var data = images.data<float>().ToArray();
        var batched = OrtCheck.Outputs(model, data, shape, CancellationToken.None);
        var single = OrtOutputs(model, data, shape);
        Assert.Equal(7 * 10, batched.Length);
        for (int i = 0; i < 7; i++)
            for (int k = 0; k < 10; k++)
                Assert.Equal(single[i][k], batched[i * 10 + k], 4);
    }

    /// <summary>The first output of the model at <paramref name="model"/> for each image, by ONNX Runtime one image at a time.</summary>
    static float[][] OrtOutputs(byte[] model, float[] images, long[] shape)
    {
        using var session = new InferenceSession(model);
        int per = (int)(shape[1] * shape[2] * shape[3]);
        var rows = new float[shape[0]][];
        for (int i = 0; i < rows.Length; i++)
        {
            using var value = OrtValue.CreateTensorValueFromMemory(images.AsSpan(i * per, per).ToArray(), [1, shape[1], shape[2], shape[3]]);
            using var outputs = session.Run(new RunOptions(), [session.InputNames[0]], [value], [session.OutputNames[0]]);
            rows[i] = outputs[0].GetTensorDataAsSpan<float>().ToArray();
        }
        return rows;
    }

    static double Cosine(float[] f, float[] q) =>
        f.Zip(q, (a, b) => (double)a * b).Sum() / Math.Sqrt(f.Sum(a => (double)a * a) * q.Sum(b => (double)b * b));

    static int ArgMax(float[] row) => Array.IndexOf(row, row.Max());

    [Theory]
    [InlineData(Models.Kind.ConvHead, OutputComparison.Top1Agreement)]
    [InlineData(Models.Kind.PooledConvHead, OutputComparison.Top1Agreement)]
    [InlineData(Models.Kind.Features, OutputComparison.CosineSimilarity)]
    [InlineData(Models.Kind.Opset26, OutputComparison.Top1Agreement)]
    [InlineData(Models.Kind.Segmenter, OutputComparison.CosineSimilarity)]
    [InlineData(Models.Kind.Scaled, OutputComparison.Top1Agreement)]
    public void Sadag_runs_end_to_end_and_its_check_matches_onnx_runtime(Models.Kind kind, string metric)
    {
        using var folder = new TempFolder();
        string path = Models.Save(Models.Of(kind), folder, "m.onnx");
        using var result = QuantizationPipeline.Quantize(OnnxModel.Load(path), TinyOptions(CalibrationMethod.Sadag));

        Assert.Contains(result.Report.Losses, l => l.Stage == "refinement (SADAG)" && l.Last.ContainsKey("gm") && l.Last.ContainsKey("div"));
        var check = result.Report.Check!;
        Assert.Equal(metric, check.Metric);

        // The same numbers, computed here from both models run by ONNX Runtime on the calibration images.
        var data = result.Images.ImageData();
        long[] shape = result.Images.Images.shape;
        var fp = OrtOutputs(File.ReadAllBytes(path), data, shape);
        var q = OrtOutputs(result.ModelBytes, data, shape);
        Assert.Equal(fp[0].Length, q[0].Length);
        double cosine = fp.Zip(q, Cosine).Average();
        Assert.Equal(cosine, check.CosineSimilarity!.Value, 5);
        Assert.True(cosine > 0.5, $"cosine similarity {cosine}");
        var metadata = result.Model.MetadataProps.ToDictionary(p => p.Key, p => p.Value);
        // Every model is written at opset 21, also one of a newer opset; the metadata keeps the source's.
        Assert.Equal(21, OnnxModel.OpsetOf(result.Model));
        Assert.Equal(OnnxModel.OpsetOf(Models.Of(kind)).ToString(System.Globalization.CultureInfo.InvariantCulture), metadata[SadgMetadata.SourceOpset]);
        // Every quantized layer reads its weight through a DequantizeLinear: the segmenter's ConvTranspose too, per
        // channel along its output-channel axis 1, with the BatchNormalization after it folded in.
        var producers = result.Model.Graph.Node.SelectMany(n => n.Output.Select(o => (o, n))).ToDictionary(p => p.o, p => p.n);
        foreach (var layer in result.Model.Graph.Node.Where(n => n.OpType is "Conv" or "ConvTranspose" or "Gemm"))
            Assert.Equal("DequantizeLinear", producers[layer.Input[1]].OpType);
        if (kind == Models.Kind.Segmenter)
        {
            var up = result.Model.Graph.Node.Single(n => n.OpType == "ConvTranspose");
            Assert.Equal(1, producers[up.Input[1]].Attribute.Single(a => a.Name == "axis").I);
            Assert.DoesNotContain(result.Model.Graph.Node, n => n.OpType == "BatchNormalization");
        }
        if (metric == OutputComparison.Top1Agreement)
        {
            Assert.Equal(fp.Zip(q, (a, b) => ArgMax(a) == ArgMax(b) ? 1.0 : 0.0).Average(), check.Top1Agreement!.Value, 9);
            Assert.True(metadata.ContainsKey(SadgMetadata.Top1Agreement));
        }
        else
        {
            Assert.Null(check.Top1Agreement);
            Assert.Equal(kind == Models.Kind.Segmenter ? 3 * 16 * 16 : 8, fp[0].Length);
            Assert.Equal(cosine.ToString("0.0000", System.Globalization.CultureInfo.InvariantCulture), metadata[SadgMetadata.OutputCosine]);
            Assert.False(metadata.ContainsKey(SadgMetadata.Top1Agreement));
        }
    }

    /// <summary>
    /// A model fed uint8 pixels [N, H, W, C] that it casts to float itself (as TensorFlow serving signatures declare
    /// them): Sadg generates float images in byte units (0 … 255, the range the type states), calibrates on a copy with a
    /// float input, and writes the model with its uint8 input. The check feeds ONNX Runtime the images rounded to bytes:
    /// its agreement is the one computed here from both models run on those bytes.
    /// </summary>
    [Fact]
    public void A_uint8_pixel_input_is_calibrated_in_byte_units_and_written_with_its_uint8_input()
    {
        using var folder = new TempFolder();
        var proto = Models.WithBytePixels(Models.Of(Models.Kind.ChannelsLast));
        var graph = proto.Graph;
        // Pixels 0 … 255 to [0, 1] after the Cast, as the channels-last model's Sub and Div expect.
        foreach (var node in graph.Node.Skip(1)) for (int i = 0; i < node.Input.Count; i++) if (node.Input[i] == "image_float") node.Input[i] = "unit";
        graph.Initializer.Add(OnnxTensors.FromTorch("byte_scale", tensor(255f)));
        graph.Node.Insert(1, new global::Onnx.NodeProto { OpType = "Div", Name = "to_unit", Input = { "image_float", "byte_scale" }, Output = { "unit" } });
        string path = Models.Save(proto, folder, "bytes.onnx");

        var input = OnnxModel.Load(path).GetImageInput();
        Assert.True(input.BytePixels && input.ChannelsLast, $"{input}");
        using var result = QuantizationPipeline.Quantize(OnnxModel.Load(path), TinyOptions(CalibrationMethod.Genie));
        Assert.Contains("the model's uint8 input", result.Report.InputStandardization);
        var written = result.Model.Graph;
        Assert.Equal((int)global::Onnx.TensorProto.Types.DataType.Uint8, written.Input.Single(v => v.Name == "image").Type.TensorType.ElemType);
        Assert.Equal([-1L, 8, 8, 3], written.Input.Single(v => v.Name == "image").Type.TensorType.Shape.Dim.Select(d => d.DimValue > 0 ? d.DimValue : -1L));
        Assert.Contains(written.Node, n => n.OpType == "Cast" && n.Input[0] == "image");

        // The images are in byte units: the prior placed them around the middle of 0 … 255, not around 0.
        using var images = result.Images.Images.clone();
        double mean = images.mean().item<float>();
        Assert.InRange(mean, 40, 215);
        // Both models on the images as bytes, NHWC, one image at a time.
        var nhwc = images.permute(0, 2, 3, 1).contiguous().data<float>().ToArray();
        var bytes = OrtPredictions.ToBytes(nhwc);
        float[] Run(byte[] model, int i)
        {
            using var session = new InferenceSession(model);
            using var value = OrtValue.CreateTensorValueFromMemory(bytes.AsSpan(i * 192, 192).ToArray(), [1, 8, 8, 3]);
            using var outputs = session.Run(new RunOptions(), [session.InputNames[0]], [value], [session.OutputNames[0]]);
            return outputs[0].GetTensorDataAsSpan<float>().ToArray();
        }
        int n = (int)images.shape[0];
        double agreement = Enumerable.Range(0, n).Average(i => ArgMax(Run(File.ReadAllBytes(path), i)) == ArgMax(Run(result.ModelBytes, i)) ? 1.0 : 0.0);
        Assert.Equal(agreement, result.Report.Check!.Top1Agreement!.Value, 9);
    }

    /// <summary>
    /// Weights also listed as graph inputs (older exporters; PyTorch's keep_initializers_as_inputs): ONNX Runtime warns
    /// once per weight when it loads such a model, which flooded the console during the check. The tool's sessions
    /// log errors only, and the written model lists its image input alone.
    /// </summary>
    [Fact]
    public void Weights_listed_as_graph_inputs_quantize_without_onnx_runtime_warnings()
    {
        using var folder = new TempFolder();
        var proto = Models.Of(Models.Kind.Rgb);
        foreach (var t in proto.Graph.Initializer)
        {
            var input = new global::Onnx.ValueInfoProto { Name = t.Name, Type = new global::Onnx.TypeProto { TensorType = new() { ElemType = t.DataType, Shape = new() } } };
            foreach (long d in t.Dims) input.Type.TensorType.Shape.Dim.Add(new global::Onnx.TensorShapeProto.Types.Dimension { DimValue = d });
            proto.Graph.Input.Add(input);
        }
        string model = Models.Save(proto, folder, "listed.onnx");
        var r = CliRunner.RunProcess(["quantize", model, "-o", folder.File("out.onnx"), "--no-cache", .. Tiny]);
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.DoesNotContain("appears in graph inputs", r.Err + r.Out);
        Assert.Single(OnnxModel.Load(folder.File("out.onnx")).Graph.Input);
    }

    /// <summary>
    /// A model without BatchNormalization whose graph standardizes its input with ImageNet's constants (Sub, Div): the
    /// run reads that it is fed pixels in [0, 1] and says so, instead of warning SADG2002 and assuming a standardized input.
    /// </summary>
    [Fact]
    public async Task A_bn_free_model_that_normalizes_its_input_says_the_pixel_range_it_read()
    {
        using var folder = new TempFolder();
        string model = Models.Save(Models.WithoutBatchNorm(Models.Of(Models.Kind.Rgb)), folder, "normalizing.onnx");
        var r = await CliRunner.RunAsync(["quantize", model, "-o", folder.File("out.onnx"), "--no-cache", "--report", folder.File("report"), .. Tiny]);
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.Contains("Input prior inferred from the graph's input normalization", r.Err);
        Assert.DoesNotContain("SADG2002", r.Err);
        var report = QuantizationReport.FromJson(File.ReadAllText(folder.File("report/report.json")));
        Assert.Contains("pixels in [0, 1]", report.InputPrior);
    }

    /// <summary>
    /// The same for an ImageScaler in front of the graph (older converters' form, opset 8) on pixels 0 … 255: it is read
    /// as the input's normalization, and the written model (opset 21, which has no ImageScaler) runs in ONNX Runtime.
    /// </summary>
    [Fact]
    public async Task A_bn_free_model_behind_an_image_scaler_says_the_pixel_range_it_read_and_is_written_without_it()
    {
        using var folder = new TempFolder();
        string model = Models.Save(Models.WithoutBatchNorm(Models.Of(Models.Kind.Scaled)), folder, "scaled.onnx");
        var r = await CliRunner.RunAsync(["quantize", model, "-o", folder.File("out.onnx"), "--no-cache", "--report", folder.File("report"), .. Tiny]);
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.Contains("Input prior inferred from the graph's input normalization", r.Err);
        var report = QuantizationReport.FromJson(File.ReadAllText(folder.File("report/report.json")));
        Assert.Contains("pixels in [0, 255]", report.InputPrior);
        var written = global::Onnx.ModelProto.Parser.ParseFrom(File.ReadAllBytes(folder.File("out.onnx")));
        Assert.DoesNotContain(written.Graph.Node, n => n.OpType == "ImageScaler");
        using var session = new InferenceSession(folder.File("out.onnx"));
        Assert.Single(session.OutputMetadata);
    }

    [Fact]
    public async Task A_model_without_a_usable_output_fails_within_seconds_with_every_method()
    {
        using var folder = new TempFolder();
        string model = Models.Save(Models.Of(Models.Kind.ArgMax), folder, "argmax.onnx");

        // The default profile: 256 images, 400 warm-up steps per batch, then Q0: minutes of work if it started.
        foreach (var method in new[] { "sadag", "genie", "gaussian" })
        {
            var clock = Stopwatch.StartNew();
            var r = await CliRunner.RunAsync("quantize", model, "-o", folder.File("out.onnx"), "--method", method, "--device", "cpu", "--no-cache");
            clock.Stop();
            Assert.Equal(1, r.ExitCode);
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"the refusal took {clock.Elapsed}");
            Assert.Contains("argmax.onnx(0,0): error SADG1404", r.Err);
            Assert.Contains("Int64 of rank 1", r.Err);
            Assert.Contains("without its final ArgMax", r.Err);
            Assert.DoesNotContain("generating", r.Err);
            Assert.False(File.Exists(folder.File("out.onnx")));
        }
    }

    [Fact]
    public async Task Sadag_on_a_model_without_statistics_or_class_scores_fails_within_seconds_naming_the_fix()
    {
        using var folder = new TempFolder();
        // Fold nothing, just drop the BatchNormalization nodes: a BN-free backbone.
        string model = Models.Save(Models.WithoutBatchNorm(Models.Of(Models.Kind.Features)), folder, "backbone.onnx");
        var clock = Stopwatch.StartNew();
        var r = await CliRunner.RunAsync("quantize", model, "-o", folder.File("out.onnx"), "--method", "sadag", "--device", "cpu", "--no-cache");
        Assert.Equal(1, r.ExitCode);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"the refusal took {clock.Elapsed}");
        Assert.Contains("backbone.onnx(0,0): error SADG1404", r.Err);
        Assert.Contains("Use Method real with CalibrationData (`--calibration-data` / `CalibrationData` metadata)", r.Err);
        Assert.DoesNotContain("generating", r.Err);
    }

    [Fact]
    public void A_model_without_statistics_whose_1x1_conv_scores_are_pooled_is_a_classifier_and_quantizes_with_sadag()
    {
        // SqueezeNet's classifier (1x1 Conv over the map, Relu, GlobalAveragePool) with no BatchNormalization: its
        // output is class scores, so the statistics-free objective applies; it was refused as "not class scores".
        using var folder = new TempFolder();
        string path = Models.Save(Models.WithoutBatchNorm(Models.Of(Models.Kind.PooledConvHead)), folder, "squeeze.onnx");
        using var result = QuantizationPipeline.Quantize(OnnxModel.Load(path), TinyOptions(CalibrationMethod.Sadag));

        Assert.Equal(OutputComparison.Top1Agreement, result.Report.Check!.Metric);
        Assert.Contains(result.Report.Losses, l => l.Stage == "refinement (SADAG)" && l.Last.ContainsKey("ce"));
        var data = result.Images.ImageData();
        long[] shape = result.Images.Images.shape;
        var fp = OrtOutputs(File.ReadAllBytes(path), data, shape);
        var q = OrtOutputs(result.ModelBytes, data, shape);
        Assert.Equal(10, fp[0].Length);
        Assert.Equal(fp.Zip(q, (a, b) => ArgMax(a) == ArgMax(b) ? 1.0 : 0.0).Average(), result.Report.Check.Top1Agreement!.Value, 9);
    }

    [Fact]
    public async Task A_free_width_needs_input_shape_and_the_written_model_keeps_it_free()
    {
        using var folder = new TempFolder();
        string model = Models.Save(Models.Of(Models.Kind.FreeWidth), folder, "ocr.onnx");
        string cache = folder.File("cache");

        var clock = Stopwatch.StartNew();
        var missing = await CliRunner.RunAsync(["quantize", model, "-o", folder.File("out.onnx"), "--cache-dir", cache, .. Tiny]);
        Assert.Equal(1, missing.ExitCode);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"the refusal took {clock.Elapsed}");
        Assert.Contains("error SADG1107", missing.Err);
        Assert.Contains("W ('W', dimension 3)", missing.Err);
        Assert.Contains("--input-shape 1,8,W", missing.Err);

        var run = await CliRunner.RunAsync(["quantize", model, "-o", folder.File("out.onnx"), "--input-shape", "1,8,12", "--cache-dir", cache, .. Tiny]);
        Assert.True(run.ExitCode == 0, run.Err);
        var written = OnnxModel.Load(folder.File("out.onnx"));
        var dims = written.RuntimeInputs[0].Type.TensorType.Shape.Dim;
        Assert.Equal("W", dims[3].DimParam);
        Assert.Equal(8, dims[2].DimValue);
        using var session = new InferenceSession(folder.File("out.onnx"));
        foreach (int width in new[] { 12, 20 })
        {
            using var value = OrtValue.CreateTensorValueFromMemory(new float[2 * 8 * width], [2, 1, 8, width]);
            using var outputs = session.Run(new RunOptions(), [session.InputNames[0]], [value], [session.OutputNames[0]]);
            Assert.Equal(20, outputs[0].GetTensorDataAsSpan<float>().Length);
        }

        // The shape is part of the cache key: another width is a miss, the same one a hit.
        var other = await CliRunner.RunAsync(["quantize", model, "-o", folder.File("b.onnx"), "--input-shape", "1,8,16", "--cache-dir", cache, .. Tiny]);
        Assert.True(other.ExitCode == 0, other.Err);
        Assert.DoesNotContain("cache hit", other.Out);
        var again = await CliRunner.RunAsync(["quantize", model, "-o", folder.File("c.onnx"), "--input-shape", "1,8,16", "--cache-dir", cache, .. Tiny]);
        Assert.Contains("cache hit", again.Out);

        // generate writes images of the given size (it resolved the model's input convention on the unsized model).
        var generated = await CliRunner.RunAsync(["generate", model, "-o", folder.File("images"), "--input-shape", "1,8,12", .. Tiny]);
        Assert.True(generated.ExitCode == 0, generated.Err);
        Assert.Equal([8, 1, 8, 12], ImageSet.Load(folder.File("images")).Shape);
    }

    [Fact]
    public async Task An_input_shape_that_contradicts_a_fixed_dimension_is_refused()
    {
        using var folder = new TempFolder();
        string model = Models.Save(Models.Of(Models.Kind.FreeWidth), folder, "ocr.onnx");
        var r = await CliRunner.RunAsync(["quantize", model, "--input-shape", "1,9,12", .. Tiny]);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("error SADG1502", r.Err);
        Assert.Contains("H fixed at 8", r.Err);
        var malformed = await CliRunner.RunAsync(["quantize", model, "--input-shape", "1,8", .. Tiny]);
        Assert.Contains("error SADG1502", malformed.Err);
    }

    [Fact]
    public void The_input_shape_is_part_of_the_canonical_options()
    {
        var plain = new PipelineOptions();
        Assert.Contains("input_shape=model", plain.Canonical());
        Assert.Contains("input_shape=3,48,320", (plain with { InputShape = [3, 48, 320] }).Canonical());
        Assert.NotEqual((plain with { InputShape = [3, 48, 320] }).OptionsHash(), (plain with { InputShape = [3, 48, 160] }).OptionsHash());
    }

    [Theory]
    [InlineData("sadag")]
    [InlineData("genie")]
    public async Task A_model_with_its_batch_fixed_to_1_quantizes_and_runs_in_onnx_runtime(string method)
    {
        using var folder = new TempFolder();
        string model = Models.Save(Models.Of(Models.Kind.BatchOne), folder, "cntk.onnx");
        var r = await CliRunner.RunAsync(["quantize", model, "-o", folder.File("out.onnx"), "--method", method, "--no-cache",
            "--report", folder.File("report"), .. Tiny]);
        Assert.True(r.ExitCode == 0, r.Err);
        var report = QuantizationReport.FromJson(File.ReadAllText(folder.File("report/report.json")));
        Assert.Equal(8, report.Check!.Images);
        Assert.Equal(OutputComparison.Top1Agreement, report.Check.Metric);

        var written = OnnxModel.Load(folder.File("out.onnx"));
        Assert.Equal(1, written.RuntimeInputs[0].Type.TensorType.Shape.Dim[0].DimValue);
        var random = new Random(5);
        var images = Enumerable.Range(0, 3 * 64).Select(_ => (float)random.NextDouble() * 2 - 1).ToArray();
        var reference = OrtOutputs(File.ReadAllBytes(model), images, [3, 1, 8, 8]);
        var quantized = OrtOutputs(File.ReadAllBytes(folder.File("out.onnx")), images, [3, 1, 8, 8]);
        Assert.All(quantized, row => Assert.Equal(10, row.Length));
        Assert.True(reference.Zip(quantized, Cosine).Average() > 0.5);
    }
    /// <summary>[N, C, H, W] images, one after another, as [N, H, W, C] (torch's permute, not <see cref="InputLayout.ToChannelsLast"/>).</summary>
    static float[] Permuted(float[] images, long[] shape)
    {
        using var t = tensor(images).reshape(shape).permute(0, 2, 3, 1).contiguous();
        return t.data<float>().ToArray();
    }

    /// <summary>
    /// A channels-last input ([N, 8, 8, 3], standardized by NHWC constants, then a Transpose, as tf2onnx writes Keras
    /// models) is read as 3x8x8 images, quantized channels-first, checked by feeding ONNX Runtime NHWC images, and
    /// written with the input and the nodes the source has. Quantizing its channels-first twin (same weights) gives the
    /// same outputs: the layout changes nothing but the order the images are fed in.
    /// </summary>
    [Fact]
    public void A_channels_last_input_is_quantized_as_its_channels_first_twin_and_keeps_its_layout()
    {
        using var folder = new TempFolder();
        string nhwc = Models.Save(Models.Of(Models.Kind.ChannelsLast), folder, "nhwc.onnx");
        string nchw = Models.Save(Models.Of(Models.Kind.Rgb), folder, "nchw.onnx");
        var source = OnnxModel.Load(nhwc);
        Assert.Equal(new ImageInput("image", 3, 8, 8, 0, ChannelsLast: true), source.GetImageInput());
        Assert.False(OnnxModel.Load(nchw).GetImageInput().ChannelsLast);

        using var last = QuantizationPipeline.Quantize(source, TinyOptions(CalibrationMethod.Sadag));
        using var first = QuantizationPipeline.Quantize(OnnxModel.Load(nchw), TinyOptions(CalibrationMethod.Sadag));

        // Written as declared: the source's input type and its op types, no Transpose of Sadg's left.
        var written = last.Model;
        Assert.Equal(source.Graph.Input[0].Type, written.Graph.Input.Single(i => i.Name == "image").Type);
        Assert.DoesNotContain(written.Graph.Node, n => n.Name == InputLayout.ViewNode);
        Assert.Equal(1, written.Graph.Node.Count(n => n.OpType == "Transpose"));
        Assert.Equal(first.Model.Graph.Node.Count + 1, written.Graph.Node.Count);

        // The check fed NHWC images: its numbers are those of ONNX Runtime on the permuted calibration images.
        var data = last.Images.ImageData();
        long[] shape = last.Images.Images.shape;
        long[] nhwcShape = [shape[0], shape[2], shape[3], shape[1]];
        var fp = OrtOutputs(File.ReadAllBytes(nhwc), Permuted(data, shape), nhwcShape);
        var q = OrtOutputs(last.ModelBytes, Permuted(data, shape), nhwcShape);
        Assert.Equal(fp.Zip(q, (a, b) => ArgMax(a) == ArgMax(b) ? 1.0 : 0.0).Average(), last.Report.Check!.Top1Agreement!.Value, 9);
        Assert.Equal(fp.Zip(q, Cosine).Average(), last.Report.Check.CosineSimilarity!.Value, 5);

        // The twin: the same calibration images and, run by ONNX Runtime, the same outputs.
        Assert.Equal(first.Images.ImageData(), data);
        var twin = OrtOutputs(first.ModelBytes, data, shape);
        for (int i = 0; i < q.Length; i++)
            for (int k = 0; k < q[i].Length; k++)
                Assert.Equal(twin[i][k], q[i][k], 4);
    }

    /// <summary><c>sadg evaluate</c>'s feeding: a channels-last model given NCHW images predicts what its twin does.</summary>
    [Fact]
    public void Predictions_feed_a_channels_last_model_nhwc_images()
    {
        using var folder = new TempFolder();
        string nhwc = Models.Save(Models.Of(Models.Kind.ChannelsLast), folder, "nhwc.onnx");
        string nchw = Models.Save(Models.Of(Models.Kind.Rgb), folder, "nchw.onnx");
        // Per image and channel, its own brightness and contrast, so that the pooled features (and classes) vary.
        var generator = new Generator(4);
        using var images = randn([37, 3, 8, 8], generator: generator) * (rand([37, 3, 1, 1], generator: generator) * 4) + randn([37, 3, 1, 1], generator: generator) * 3;
        var data = images.data<float>().ToArray();
        int[] Top1(string path, bool channelsLast)
        {
            using var session = new InferenceSession(path);
            return OrtPredictions.Top1(session, "image", session.OutputNames[0], data, 37, [3, 8, 8], 16, false, null, null, path,
                CancellationToken.None, channelsLast);
        }
        var expected = Top1(nchw, channelsLast: false);
        Assert.True(expected.Distinct().Count() > 1, "the twin predicts one class for every image");
        Assert.Equal(expected, Top1(nhwc, channelsLast: true));
    }

    /// <summary>A channels-last input with free H and W: SADG1107 names them where they are declared, and --input-shape C,H,W works.</summary>
    [Fact]
    public async Task A_channels_last_input_with_a_free_size_names_its_free_dimensions_and_keeps_them_free()
    {
        using var folder = new TempFolder();
        var proto = Models.Of(Models.Kind.ChannelsLast);
        var dims = proto.Graph.Input[0].Type.TensorType.Shape.Dim;
        dims[1] = new global::Onnx.TensorShapeProto.Types.Dimension { DimParam = "height" };
        dims[2] = new global::Onnx.TensorShapeProto.Types.Dimension { DimParam = "width" };
        string model = Models.Save(proto, folder, "free.onnx");

        var missing = await CliRunner.RunAsync(["quantize", model, "-o", folder.File("out.onnx"), "--no-cache", .. Tiny]);
        Assert.Equal(1, missing.ExitCode);
        Assert.Contains("error SADG1107", missing.Err);
        Assert.Contains("H ('height', dimension 1), W ('width', dimension 2) are free", missing.Err);
        Assert.Contains("--input-shape 3,H,W", missing.Err);

        var run = await CliRunner.RunAsync(["quantize", model, "-o", folder.File("out.onnx"), "--input-shape", "3,8,8", "--no-cache", .. Tiny]);
        Assert.True(run.ExitCode == 0, run.Err);
        var written = OnnxModel.Load(folder.File("out.onnx")).RuntimeInputs[0].Type.TensorType.Shape.Dim;
        Assert.Equal(["height", "width"], new[] { written[1].DimParam, written[2].DimParam });
        Assert.Equal(3, written[3].DimValue);
        using var session = new InferenceSession(folder.File("out.onnx"));
        using var value = OrtValue.CreateTensorValueFromMemory(new float[2 * 12 * 16 * 3], [2, 12, 16, 3]);
        using var outputs = session.Run(new RunOptions(), ["image"], [value], [session.OutputNames[0]]);
        Assert.Equal(20, outputs[0].GetTensorDataAsSpan<float>().Length);
    }
    /// <summary>A quantized model given again (Sadg's own output) is refused at once as already quantized, naming the fix.</summary>
    [Fact]
    public async Task A_quantized_model_is_refused_as_already_quantized()
    {
        using var folder = new TempFolder();
        string model = Models.Save(Models.Tiny(1), folder, "m.onnx");
        var first = await CliRunner.RunAsync(["quantize", model, "-o", folder.File("m.q4.onnx"), "--no-cache", .. Tiny]);
        Assert.True(first.ExitCode == 0, first.Err);
        var again = await CliRunner.RunAsync(["quantize", folder.File("m.q4.onnx"), "-o", folder.File("twice.onnx"), "--no-cache", .. Tiny]);
        Assert.Equal(1, again.ExitCode);
        Assert.Contains("error SADG1101: The model is already quantized: it has DequantizeLinear", again.Err);
        Assert.Contains("give the float model this one was made from (its sadg.* metadata says Sadg wrote this file)", again.Err);
        Assert.DoesNotContain("Re-export", again.Err);
        Assert.False(File.Exists(folder.File("twice.onnx")));
    }
    /// <summary>A float16 model (weights and input) fails within seconds with what to do, before any generation.</summary>
    [Fact]
    public async Task A_float16_model_fails_fast_naming_the_conversion()
    {
        using var folder = new TempFolder();
        var proto = Models.Tiny(1);
        for (int i = 0; i < proto.Graph.Initializer.Count; i++)
        {
            var t = proto.Graph.Initializer[i];
            using var half = OnnxTensors.ToTorch(t).to_type(ScalarType.Float16);
            proto.Graph.Initializer[i] = OnnxTensors.FromTorch(t.Name, half);
        }
        foreach (var v in proto.Graph.Input.Concat(proto.Graph.Output)) v.Type.TensorType.ElemType = (int)global::Onnx.TensorProto.Types.DataType.Float16;
        string model = Models.Save(proto, folder, "half.onnx");
        var clock = Stopwatch.StartNew();
        var r = await CliRunner.RunAsync(["quantize", model, "-o", folder.File("out.onnx"), "--no-cache", "--device", "cpu"]);
        Assert.Equal(1, r.ExitCode);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"the refusal took {clock.Elapsed}");
        Assert.DoesNotContain("generating", r.Err);
        Assert.Contains("half.onnx(0,0): error SADG1102: The model's input 'image' is Float16: Sadg quantizes float32 models.", r.Err);
        var inspect = await CliRunner.RunAsync("inspect", model);
        Assert.Contains("error SADG1102", inspect.Err);
    }
    /// <summary>
    /// A model whose nodes have no names (as some exporters write them), channels-first or channels-last, quantizes
    /// (the spec, the report and the options name layers by node), inspect lists the names the report gives, and an
    /// --exclude taken from inspect leaves that layer in float.
    /// </summary>
    [Theory]
    [InlineData(Models.Kind.ChannelsLast)]
    [InlineData(Models.Kind.Rgb)]
    public async Task Unnamed_nodes_are_named_as_inspect_lists_them_and_quantize(Models.Kind kind)
    {
        using var folder = new TempFolder();
        var proto = Models.Of(kind);
        foreach (var node in proto.Graph.Node) node.Name = "";
        string model = Models.Save(proto, folder, "unnamed.onnx");
        var inspect = await CliRunner.RunAsync("inspect", model, "--json");
        Assert.True(inspect.ExitCode == 0, inspect.Err);
        var listed = System.Text.Json.JsonDocument.Parse(inspect.Out).RootElement.GetProperty("quantizableLayers")
            .EnumerateArray().Select(l => l.GetProperty("name").GetString()!).ToList();
        Assert.Equal(3, listed.Count);
        Assert.StartsWith("Conv_", listed[0]);

        var run = await CliRunner.RunAsync(["quantize", model, "-o", folder.File("out.onnx"), "--no-cache", "--report", folder.File("report"), .. Tiny]);
        Assert.True(run.ExitCode == 0, run.Err);
        var report = QuantizationReport.FromJson(File.ReadAllText(folder.File("report/report.json")));
        Assert.Equal(listed, report.Layers.Select(l => l.Node));
        using (var session = new InferenceSession(folder.File("out.onnx"))) Assert.Single(session.InputNames);

        var excluded = await CliRunner.RunAsync(["quantize", model, "-o", folder.File("ex.onnx"), "--exclude", listed[1], "--no-cache",
            "--report", folder.File("report2"), .. Tiny]);
        Assert.True(excluded.ExitCode == 0, excluded.Err);
        Assert.Equal([listed[1]], QuantizationReport.FromJson(File.ReadAllText(folder.File("report2/report.json"))).FloatLayers);
    }
    /// <summary>
    /// Weights held in Constant nodes instead of initializers, or read through an Identity (as some exporters write
    /// them), are quantized too, and the written model holds them as 4-bit initializers.
    /// </summary>
    [Theory]
    [InlineData("constant")]
    [InlineData("identity")]
    public async Task Weights_in_constant_nodes_or_behind_an_identity_are_quantized(string form)
    {
        using var folder = new TempFolder();
        var proto = Models.Of(Models.Kind.Rgb);
        if (form == "identity")
            foreach (var conv in proto.Graph.Node.Where(n => n.OpType is "Conv" or "Gemm").ToList())
            {
                string weight = conv.Input[1];
                proto.Graph.Node.Insert(0, new global::Onnx.NodeProto { OpType = "Identity", Name = weight + "_identity", Input = { weight }, Output = { weight + "_shared" } });
                conv.Input[1] = weight + "_shared";
            }
        else foreach (var t in proto.Graph.Initializer.ToList())
        {
            var constant = new global::Onnx.NodeProto { OpType = "Constant", Name = t.Name + "_constant", Output = { t.Name } };
            constant.Attribute.Add(new global::Onnx.AttributeProto { Name = "value", Type = global::Onnx.AttributeProto.Types.AttributeType.Tensor, T = t.Clone() });
            proto.Graph.Node.Insert(0, constant);
            proto.Graph.Initializer.Remove(t);
        }
        string model = Models.Save(proto, folder, "constants.onnx");
        var run = await CliRunner.RunAsync(["quantize", model, "-o", folder.File("out.onnx"), "--no-cache", "--report", folder.File("report"), .. Tiny]);
        Assert.True(run.ExitCode == 0, run.Err);
        var report = QuantizationReport.FromJson(File.ReadAllText(folder.File("report/report.json")));
        Assert.Equal(3, report.Layers.Count);
        Assert.True(report.OutputBytes < new FileInfo(model).Length, $"{report.OutputBytes} bytes written for a {new FileInfo(model).Length}-byte model");
    }

    /// <summary>
    /// A MatMul quantizes a [K, N] weight per column; one whose weight is a vector (a score per image, added to the
    /// logits) stays float instead of stopping the run with an internal error.
    /// </summary>
    [Fact]
    public async Task A_matmul_with_a_vector_weight_stays_float_and_the_matrix_one_is_quantized()
    {
        using var folder = new TempFolder();
        var generator = new Generator(0).manual_seed(5);
        var b = new OnnxGraphBuilder("matmul-vector");
        var x = b.AddInput("image", global::Onnx.TensorProto.Types.DataType.Float, -1, 1, 8, 8);
        x = b.AddNode("Conv", [x, b.AddInitializer("conv_w", randn([4, 1, 3, 3], generator: generator))], attributes: new Dictionary<string, object>
        {
            ["kernel_shape"] = new long[] { 3, 3 },
            ["pads"] = new long[] { 1, 1, 1, 1 },
        });
        x = b.AddNode("Relu", [x]);
        var flat = b.AddNode("Flatten", [x], attributes: new Dictionary<string, object> { ["axis"] = 1L });
        var logits = b.AddNode("MatMul", [flat, b.AddInitializer("fc_w", randn([256, 10], generator: generator) * 0.1f)]);
        var score = b.AddNode("MatMul", [flat, b.AddInitializer("score_v", randn([256], generator: generator) * 0.1f)]);
        var column = b.AddNode("Unsqueeze", [score, b.AddInitializer("axes", tensor(new long[] { 1 }))]);
        b.AddOutput(b.AddNode("Add", [logits, column]));
        string model = Models.Save(b.Build(13, irVersion: 8), folder, "m.onnx");

        var inspect = await CliRunner.RunAsync("inspect", model, "--json");
        Assert.True(inspect.ExitCode == 0, inspect.Err);
        using (var json = System.Text.Json.JsonDocument.Parse(inspect.Out))
            Assert.Equal([[256, 10]], json.RootElement.GetProperty("quantizableLayers").EnumerateArray()
                .Where(l => l.GetProperty("op").GetString() == "MatMul")
                .Select(l => l.GetProperty("weightShape").EnumerateArray().Select(d => d.GetInt64()).ToArray()));

        var run = await CliRunner.RunAsync(["quantize", model, "-o", folder.File("q.onnx"), "--no-cache", "--method", "gaussian", .. Tiny]);
        Assert.True(run.ExitCode == 0, run.Err);
        var written = global::Onnx.ModelProto.Parser.ParseFrom(File.ReadAllBytes(folder.File("q.onnx")));
        Assert.Contains(written.Graph.Initializer, t => t.Name == "score_v" && t.DataType == (int)global::Onnx.TensorProto.Types.DataType.Float);
        Assert.DoesNotContain(written.Graph.Initializer, t => t.Name == "fc_w" && t.DataType == (int)global::Onnx.TensorProto.Types.DataType.Float);
    }
}
