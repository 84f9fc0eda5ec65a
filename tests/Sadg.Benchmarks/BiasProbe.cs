using System.Globalization;
using Sadg.Data;
using Sadg.Generation;
using Sadg.Graph;
using Sadg.Onnx;
using Sadg.Options;
using Sadg.Pipeline;
using Sadg.Quantization;
using Sadg.Reconstruction;
using static TorchSharp.torch;

namespace Sadg.Benchmarks;

/// <summary>
/// How much of a quantized model's error is a per-channel mean shift of its layers' outputs: quantizes a model on its
/// real calibration images (block reconstruction at the default budget), scores the quantized graph in TorchSharp on
/// the test images, then corrects each quantized layer's bias, in execution order, by the mean over the calibration
/// images of (FP output − quantized output) per output channel (empirical bias correction), and scores it again.
///   dotnet run -c Release --project tests/Sadg.Benchmarks -- bias [--model M.onnx --data FOLDER] [--bits W8A3] [--seeds 1] [--steps 500]
/// With <c>--calibration genie --profile P</c> the calibration images are the profile's Genie-D images (zero-shot; the
/// reconstruction and its budget the profile's) and the correction is measured on them; with <c>--resize N --crop center
/// --mean m --std s</c> the whole image folder is the test set, read as <c>sadg evaluate</c> reads it with those options
/// (for a folder with fewer than 100 images per class, such as one ImageNet image per class).
/// Other forms of the correction, each scored against the same quantized graph:
/// <c>--correction analytic-weights</c> (data-free, from the BN statistics: conv(E[x], W_q − W)), <c>analytic</c> (the same
/// with E[Q(x)] for the quantized input), <c>active</c> (the mean over the positions where the activation that follows
/// passes its input on);
/// <c>--shift-band lo:hi,…</c> corrects only the channels whose |shift| is in [lo, hi) times the channel's FP standard
/// deviation; <c>--correct-on real</c> measures the correction on real images (the held-out calibration images, or the
/// first 200 test images with <c>--resize</c>) instead of the calibration images.
/// </summary>
static class BiasProbe
{
    public static int Run(string[] args)
    {
        string modelPath = QuantizationBenchmark.ModelPath(QuantizationBenchmark.RepoRoot(), args, Directory.GetCurrentDirectory());
        string folder = QuantizationBenchmark.DataFolder(args);
        string bits = StepsBenchmark.Arg(args, "--bits", "W8A3");
        int seeds = int.Parse(StepsBenchmark.Arg(args, "--seeds", "1"), CultureInfo.InvariantCulture);
        int steps = int.Parse(StepsBenchmark.Arg(args, "--steps", "500"), CultureInfo.InvariantCulture);
        set_num_threads(Environment.ProcessorCount);
        bool genie = StepsBenchmark.Arg(args, "--calibration", "real") == "genie";
        string correction = StepsBenchmark.Arg(args, "--correction", "empirical");
        if (correction is not ("empirical" or "analytic" or "analytic-weights" or "active"))
            throw new ArgumentException($"--correction {correction}: give empirical, analytic, analytic-weights or active.");
        bool analytic = correction is "analytic" or "analytic-weights", activeOnly = correction == "active";
        string correctOnText = StepsBenchmark.Arg(args, "--correct-on", "calibration");
        if (correctOnText is not ("calibration" or "real"))
            throw new ArgumentException($"--correct-on {correctOnText}: give calibration or real.");
        bool onReal = correctOnText == "real";
        // [lo, hi) bands of |shift| / std, e.g. 0:inf,0.5:inf.
        var bands = StepsBenchmark.Arg(args, "--shift-band", "0:inf").Split(',')
            .Select(text => text.Split(':').Select(t => t == "inf" ? double.PositiveInfinity : double.Parse(t, CultureInfo.InvariantCulture)).ToArray())
            .ToList();
        if (bands.Any(b => b.Length != 2 || b[0] >= b[1]))
            throw new ArgumentException("--shift-band: give lo:hi pairs with lo < hi, separated by commas (hi may be inf).");
        var profile = Enum.Parse<StepProfile>(StepsBenchmark.Arg(args, "--profile", "default"), ignoreCase: true);
        var model = OnnxModel.Load(modelPath);
        bool wholeFolder = StepsBenchmark.Arg(args, "--resize", "") is not "";
        if (wholeFolder && !genie)
            throw new ArgumentException("--resize scores the whole folder and leaves no real calibration images: add --calibration genie.");
        var (test, real, description) = wholeFolder ? WholeFolder(model, folder, args) : QuantizationBenchmark.LoadData(model, folder, null);
        using var testSet = test;
        using var realSet = real;
        var fed = Standardization(model, args);
        using var outer = NewDisposeScope();
        var testImages = fed.Standardize(test.Images);
        var (w, a) = QuantizationBenchmark.Bits(bits);
        Console.WriteLine($"{modelPath}, {bits}, {(genie ? $"Genie-D images and reconstruction of the {profile} profile" : $"{steps} steps per block")}; {description}");
        for (int seed = 1; seed <= seeds; seed++)
        {
            using var scope = NewDisposeScope();
            var options = new QuantizationOptions { WeightBits = w, ActivationBits = a, Iterations = steps, Seed = seed };
            var pipeline = new PipelineOptions { WeightBits = w, ActivationBits = a, Profile = profile, Seed = seed, Method = CalibrationMethod.Genie };
            using var generated = genie ? GenieImages(model, pipeline) : null;
            if (generated is not null) options = pipeline.Quantization();
            var calibration = generated ?? fed.Standardize(real!.Images);
            using var calibrated = ModelCalibration.Calibrate(model, calibration, options);
            var q = calibrated.Quantized;
            using var fp = new GraphModule(calibrated.Fold.Model);
            double fpTop1 = Top1(fp, testImages, test.Labels), before = Top1(q.Graph, testImages, test.Labels);
            var firstTest = testImages.narrow(0, 0, Math.Min(200, testImages.shape[0]));
            var saved = q.QuantizedNodes.Where(n => n.Inputs.Count > 2 && n.Inputs[2].Length > 0).Select(n => n.Inputs[2]).Distinct()
                .ToDictionary(b => b, b => q.Graph.Weights[b].clone());
            void Restore() { foreach (var (name, value) in saved) q.Graph.Weights[name].copy_(value); }
            if (analytic)
            {
                int layers = AnalyticCorrection(model, q, fp, withActivations: correction == "analytic");
                double afterAnalytic = Top1(q.Graph, testImages, test.Labels);
                Console.WriteLine($"seed {seed}: FP32 {fpTop1:0.00}, quantized {before:0.00}, BN-statistics bias correction {afterAnalytic:0.00} ({afterAnalytic - before:+0.00;-0.00}); {layers} layers");
                Console.WriteLine($"  share of a layer's squared error on the first {firstTest.shape[0]} test images that its per-channel mean explains: " +
                    $"{ShiftShare(q, fp, firstTest):0.0} % after the correction");
                Restore();
                Console.WriteLine($"  … and {ShiftShare(q, fp, firstTest):0.0} % before it");
            }
            var correctOn = !onReal ? calibration
                : real is not null ? fed.Standardize(real.Images) : firstTest;
            foreach (var band in bands)
            {
                Restore();
                var (layers, share, channels, total) = EmpiricalCorrection(q, fp, correctOn, band[0], band[1], activeOnly);
                double after = Top1(q.Graph, testImages, test.Labels);
                Console.WriteLine($"seed {seed}: FP32 {fpTop1:0.00}, quantized {before:0.00}, bias-corrected {after:0.00} ({after - before:+0.00;-0.00}); " +
                    $"{band[0]} <= |shift| / std < {band[1]}: {channels} of {total} channels in {layers} layers; the mean shift was {share:0.0} % of a layer's squared error on average");
            }
        }
        return 0;
    }

    /// <summary>
    /// Data-free bias correction from the BatchNorm statistics (as in data-free quantization): the expected input of a
    /// quantized layer whose input is a folded BatchNorm's output, through Relu/Clip and mean-keeping ops, is known per
    /// channel without data (the BN output is N(β, γ²) on the data it was trained on); the layer's own weight error then
    /// shifts its output by conv(E[x], W_q − W) on average, which is subtracted from its bias; with
    /// <paramref name="withActivations"/> the shift is conv(E[Q(x)], W_q) − conv(E[x], W), E[Q(x)] from the input
    /// quantizer's grid applied to the same distribution. Returns the layers corrected.
    /// </summary>
    static int AnalyticCorrection(OnnxModel model, QuantizedGraph q, GraphModule fp, bool withActivations)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        using var original = new GraphModule(model);
        // A value's distribution per channel, where the BN statistics give it: clamp(N(μ, σ²), lo, hi).
        var normal = new Dictionary<string, (Tensor Mean, Tensor Std, double Lo, double Hi)>(StringComparer.Ordinal);
        foreach (var bn in original.Nodes.Where(n => n.OpType == "BatchNormalization"))
            normal[bn.Outputs[0]] = (original.GetConstant(bn.Inputs[2])!.to_type(ScalarType.Float32),
                original.GetConstant(bn.Inputs[1])!.abs().to_type(ScalarType.Float32), double.NegativeInfinity, double.PositiveInfinity);
        // Standard-normal quadrature points and weights for E[f(μ + σZ)].
        var z = linspace(-8, 8, 1601);
        var pz = z.Square().Mul(-0.5).exp();
        pz = pz / pz.sum();
        Tensor Samples((Tensor Mean, Tensor Std, double Lo, double Hi) d) =>
            d.Mean.unsqueeze(1).Add(d.Std.unsqueeze(1) * z.unsqueeze(0)).Clamp(d.Lo, d.Hi);
        Tensor Expect(Tensor samples) => samples.mul(pz.unsqueeze(0)).sum(1);
        var expected = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (value, d) in normal) expected[value] = Expect(Samples(d));
        foreach (var node in fp.Nodes.Where(n => n.Kind == NodeKind.Dynamic))
        {
            string input = node.Inputs.Count > 0 ? node.Inputs[0] : "", output = node.Outputs[0];
            if (!expected.ContainsKey(input)) continue;
            switch (node.OpType)
            {
                case "Relu" or "Clip" when normal.TryGetValue(input, out var d):
                    var (lo, hi) = LinearRange(fp, node);
                    normal[output] = (d.Mean, d.Std, Math.Max(lo, d.Lo), Math.Min(hi, d.Hi));
                    expected[output] = Expect(Samples(normal[output]));
                    break;
                case "Identity" or "Dropout" or "Flatten" or "GlobalAveragePool" or "AveragePool" or "Reshape":
                    expected[output] = expected[input];
                    break;
            }
        }
        var corrected = q.QuantizedNodes.Where(n => q.CorrectableBias(n) is not null && expected.ContainsKey(n.Inputs[0])).ToList();
        // Each corrected layer's input shape for one image, from one forward pass.
        var image = model.GetImageInput();
        var shapes = fp.Run(new Dictionary<string, Tensor> { [fp.InputNames[0]] = zeros(1, image.Channels, image.Height, image.Width) },
            corrected.Select(n => n.Inputs[0]).Distinct().ToList()).ToDictionary(kv => kv.Key, kv => kv.Value.shape);
        foreach (var node in corrected)
        {
            var mean = expected[node.Inputs[0]];
            using var inner = NewDisposeScope();
            string weight = node.Inputs[1], biasName = node.Inputs[2];
            var w = fp.Weights[weight].clone();
            var b = fp.Weights[biasName].clone();
            var quantizedWeight = q.WeightQuantizers[weight].forward();
            // E[Q(x)]: the activation quantizer's grid applied to the known distribution.
            var quantizedMean = mean;
            if (withActivations && normal.TryGetValue(node.Inputs[0], out var d) && q.ActivationQuantizers.TryGetValue(node.Inputs[0], out var aq) && aq.Calibrated)
            {
                var e = aq.Export(node.Inputs[0]);
                quantizedMean = Expect(e.Apply(Samples(d)));
            }
            var shape = shapes[node.Inputs[0]];
            Tensor Constant(Tensor m) => (shape.Length == 4 ? m.view(1, -1, 1, 1) : m.view(1, -1)).expand(shape).contiguous();
            fp.SetWeight(biasName, zeros_like(b));
            fp.SetWeight(weight, quantizedWeight);
            var yq = fp.Run(new Dictionary<string, Tensor> { [node.Inputs[0]] = Constant(quantizedMean) }, [node.Outputs[0]], node.Index, node.Index + 1)[node.Outputs[0]];
            fp.SetWeight(weight, w);
            var y = fp.Run(new Dictionary<string, Tensor> { [node.Inputs[0]] = Constant(mean) }, [node.Outputs[0]], node.Index, node.Index + 1)[node.Outputs[0]];
            fp.SetWeight(biasName, b);
            q.CorrectBias(node, ChannelMean(yq - y).neg());
        }
        return corrected.Count;
    }

    /// <summary>
    /// Empirical bias correction in execution order: adds to each quantized layer's bias the per-channel mean of (FP output −
    /// quantized output) over <paramref name="images"/>, for the channels where that mean is at least
    /// <paramref name="minShift"/> and below <paramref name="maxShift"/> times the FP output's standard deviation in that channel.
    /// </summary>
    static (int Layers, double Share, long Channels, long Total) EmpiricalCorrection(QuantizedGraph q, GraphModule fp, Tensor images, double minShift, double maxShift, bool activeOnly)
    {
        int corrected = 0;
        double shiftShare = 0;
        long channels = 0, total = 0;
        foreach (var node in q.QuantizedNodes)
        {
            if (q.CorrectableBias(node) is null) continue;
            using var inner = NewDisposeScope();
            using var noGrad = no_grad();
            var reference = Outputs(fp, images, node.Outputs[0]);
            var error = reference - Outputs(q.Graph, images, node.Outputs[0]);
            var shift = ChannelMean(error);
            if (activeOnly && ActiveRegion(fp, node, images) is { } active)
            {
                // The error the activation lets through: the mean over the positions where the FP value is in its linear range.
                var m = active.to_type(error.dtype);
                shift = ChannelSum(error * m) / ChannelSum(m).ClampMin(1);
            }
            shiftShare += MeanShare(error, shift);
            var std = reference.movedim([1], [0]).flatten(1).std(1);
            var keep = shift.abs().ge(std.Mul(minShift)).logical_and(shift.abs().lt(std.Mul(maxShift)));
            channels += keep.sum().item<long>();
            total += keep.numel();
            q.CorrectBias(node, shift.mul(keep.to_type(shift.dtype)));
            corrected++;
        }
        return (corrected, 100 * shiftShare / Math.Max(1, corrected), channels, total);
    }

    /// <summary>
    /// Where the elementwise activation after <paramref name="node"/> (directly, or after Adds that are the value's only
    /// reader) passes its input on unchanged, on the FP graph: Relu's x &gt; 0, Clip's lo &lt; x &lt; hi. Null when no
    /// such activation follows.
    /// </summary>
    static Tensor? ActiveRegion(GraphModule fp, GraphNode node, Tensor images)
    {
        string value = node.Outputs[0];
        while (true)
        {
            var readers = fp.Consumers(value);
            if (readers.Count != 1) return null;
            var reader = readers[0];
            if (reader.OpType == "Add") { value = reader.Outputs[0]; continue; }
            if (reader.OpType is not ("Relu" or "Clip")) return null;
            var (lo, hi) = LinearRange(fp, reader);
            var x = Outputs(fp, images, value);
            return x.Gt(lo).logical_and(x.Lt(hi));
        }
    }

    /// <summary>
    /// Where a Relu or Clip passes its input on: (0, ∞) for Relu; for Clip its bounds, from the inputs 1 and 2 (opset
    /// 11 on) or the min/max attributes.
    /// </summary>
    static (double Lo, double Hi) LinearRange(GraphModule fp, GraphNode node)
    {
        if (node.OpType == "Relu") return (0, double.PositiveInfinity);
        double Bound(int input, string attribute, float absent) =>
            node.Inputs.Count > input && node.Inputs[input].Length > 0 ? fp.GetConstant(node.Inputs[input])!.item<float>()
                : node.Proto.Attribute.FirstOrDefault(a => a.Name == attribute)?.F ?? absent;
        return (Bound(1, "min", float.NegativeInfinity), Bound(2, "max", float.PositiveInfinity));
    }

    /// <summary>Every axis of <paramref name="t"/> but the channel axis 1.</summary>
    static long[] NonChannelAxes(Tensor t) => Enumerable.Range(0, (int)t.dim()).Where(d => d != 1).Select(d => (long)d).ToArray();

    /// <summary>Per channel (axis 1), the mean over the batch and every other axis.</summary>
    static Tensor ChannelMean(Tensor t) => t.mean(NonChannelAxes(t));

    /// <summary>Per channel (axis 1), the sum over the batch and every other axis.</summary>
    static Tensor ChannelSum(Tensor t) => t.sum(NonChannelAxes(t));

    /// <summary>The share of <paramref name="error"/>'s squared sum that the per-channel constant <paramref name="shift"/> explains.</summary>
    static double MeanShare(Tensor error, Tensor shift) =>
        shift.Square().sum().Mul(error.numel() / error.shape[1]).item<float>() / Math.Max(1e-30, error.Square().sum().item<float>());

    /// <summary>The mean share of each quantized layer's squared error (on <paramref name="images"/>) that its per-channel mean explains.</summary>
    static double ShiftShare(QuantizedGraph q, GraphModule fp, Tensor images)
    {
        double share = 0;
        int layers = 0;
        foreach (var node in q.QuantizedNodes)
        {
            using var inner = NewDisposeScope();
            var error = Outputs(fp, images, node.Outputs[0]) - Outputs(q.Graph, images, node.Outputs[0]);
            share += MeanShare(error, ChannelMean(error));
            layers++;
        }
        return 100 * share / Math.Max(1, layers);
    }

    /// <summary>The Genie-D images the pipeline makes with <paramref name="pipeline"/>; the caller disposes them.</summary>
    static Tensor GenieImages(OnnxModel model, PipelineOptions pipeline)
    {
        using var warm = QuantizationPipeline.WarmUp(model, pipeline);
        return warm.Images();
    }

    /// <summary>
    /// Every image of the folder as the test set, in [0, 1], resized and cropped as <c>--resize</c> and <c>--crop</c> say
    /// (parsed as <c>sadg evaluate</c> parses them); no real calibration images.
    /// </summary>
    static (LabelledImages Test, LabelledImages? Real, string Description) WholeFolder(OnnxModel model, string folder, string[] args)
    {
        var input = model.GetImageInput();
        string resizeText = StepsBenchmark.Arg(args, "--resize", ""), cropText = StepsBenchmark.Arg(args, "--crop", "none");
        if (!ImageResize.TryParse(resizeText, out var resize)) throw new ArgumentException($"--resize {resizeText}: give N or model.");
        if (!QuantizeSchema.TryName(cropText, out CropMode crop)) throw new ArgumentException($"--crop {cropText}: give none or center.");
        var test = ImageFolder.Read(folder, input.Channels, input.Height, input.Width, resize: resize, crop: crop);
        return (test, null, $"image folder `{folder}`, all {test.Count} images, --resize {resize} --crop {cropText}");
    }

    /// <summary>What the test images are fed through: <c>--mean</c>/<c>--std</c> when given (as for <c>sadg evaluate</c>), else the model's metadata.</summary>
    internal static InputStandardization Standardization(OnnxModel model, string[] args)
    {
        string mean = StepsBenchmark.Arg(args, "--mean", ""), std = StepsBenchmark.Arg(args, "--std", "");
        if (mean is "" && std is "") return InputStandardization.FromMetadata(model);
        if (!NumberLists.TryParse(mean, out var m) || !NumberLists.TryParse(std, out var d))
            throw new ArgumentException("Give both --mean and --std, each one number or one per channel.");
        return InputStandardization.FromNormalization(m!, d!, model.GetImageInput().Channels, "--mean", "--std");
    }

    /// <summary>A graph's <paramref name="value"/> for every image, in chunks, without gradients.</summary>
    static Tensor Outputs(GraphModule graph, Tensor images, string value)
    {
        using var noGrad = no_grad();
        var parts = new List<Tensor>();
        for (long start = 0; start < images.shape[0]; start += 256)
        {
            using var scope = NewDisposeScope();
            var x = images.narrow(0, start, Math.Min(256, images.shape[0] - start));
            parts.Add(graph.Run(new Dictionary<string, Tensor> { [graph.InputNames[0]] = x }, [value])[value].detach().MoveToOuterDisposeScope());
        }
        return cat(parts, 0);
    }

    static double Top1(GraphModule graph, Tensor images, Tensor labels)
    {
        using var scope = NewDisposeScope();
        var logits = Outputs(graph, images, graph.OutputNames[0]);
        return 100.0 * logits.flatten(1).argmax(1).eq(labels).to_type(ScalarType.Float32).mean().item<float>();
    }
}
