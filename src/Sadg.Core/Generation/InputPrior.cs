using System.Globalization;
using Sadg.Graph;
using Sadg.Onnx;
using TorchSharp;
using static TorchSharp.torch;

namespace Sadg.Generation;

/// <summary>
/// What the model expects of its input, as per-channel targets for the per-image mean and std of the generated images
/// (in the units the model is fed), and where that expectation came from. Real models are fed very different things:
/// standardized images (mean 0, std 1), <c>x/255</c> in [0, 1], <c>x/127.5 − 1</c> in [−1, 1], 0..255 minus a mean.
/// A prior fixed at (0, 1) pulls the images of an <c>x/255</c> model away from what it was trained on.
/// </summary>
public sealed record InputPrior(float[] Mean, float[] Std, string Source)
{
    /// <summary>Per-channel mean of natural RGB images in [0, 1] (ImageNet's, the usual reference).</summary>
    static readonly float[] NaturalMean = [0.485f, 0.456f, 0.406f];

    /// <summary>Per-channel std of natural RGB images in [0, 1] (ImageNet's).</summary>
    static readonly float[] NaturalStd = [0.229f, 0.224f, 0.225f];

    /// <summary>
    /// A model fed (p − mean) / std with normalization constants taken from its training data: in fed units its
    /// input has mean 0 and std 1.
    /// </summary>
    public static InputPrior Standardized(int channels, string source) =>
        new(Enumerable.Repeat(0f, channels).ToArray(), Enumerable.Repeat(1f, channels).ToArray(), source);

    /// <summary>
    /// A model fed pixels p ∈ [0, 1] mapped linearly onto [lo, hi] (x/255: [0, 1]; x/127.5 − 1: [−1, 1]; raw bytes:
    /// [0, 255]): natural-image statistics (ImageNet's per-channel mean and std for 3 channels, their average
    /// otherwise) carried onto that range.
    /// </summary>
    public static InputPrior FromRange(double lo, double hi, int channels, string source)
    {
        double span = hi - lo;
        float Pick(float[] v, int c) => channels == v.Length ? v[c] : v.Average();
        var mean = Enumerable.Range(0, channels).Select(c => (float)(lo + span * Pick(NaturalMean, c))).ToArray();
        var std = Enumerable.Range(0, channels).Select(c => (float)(Math.Abs(span) * Pick(NaturalStd, c))).ToArray();
        return new InputPrior(mean, std, source);
    }

    /// <summary>The pixel ranges a model that normalizes its own input may be fed: [0, 1] and [0, 255].</summary>
    static readonly double[] PixelRanges = [1, 255];

    /// <summary>
    /// What a model without BatchNormalization is fed when its graph normalizes its own input (Keras' Rescaling,
    /// <c>(x − mean) / std</c> or <c>x/127.5 − 1</c> inside the graph, Caffe's mean subtraction): the nodes from the input
    /// up to the first other one, each the input's only reader and a Transpose, Cast, Identity, or a Sub, Add, Mul or
    /// Div by a constant, are run on images of 0 and of 1 to read their output y = a·x + b per channel. A normalizing
    /// model is fed pixels in [0, 1] or in [0, 255]; of the two, the one that gives y a width near 2 and a middle near
    /// 0 is taken (score |ln(width / 2)| + |middle| / width, averaged over channels: x/255 and x/127.5 − 1 give
    /// [0, 255], ImageNet's constants and 2x − 1 [0, 1], Caffe's mean subtraction without a scale [0, 255]), and
    /// natural-image statistics are carried onto it, as <see cref="FromRange"/>. Null when no such node with a
    /// constant reads the input first or the nodes leave it as it is.
    /// </summary>
    public static InputPrior? FromInputNormalization(GraphModule model, int channels, int height, int width)
    {
        string value = model.InputNames[0];
        bool arithmetic = false;
        int last = -1;
        while (model.Consumers(value) is [var node] && node.Outputs.Count == 1 && IsNormalizationStep(model, node, value, ref arithmetic))
        {
            value = node.Outputs[0];
            last = node.Index;
        }
        if (!arithmetic) return null;
        using var scope = NewDisposeScope();
        Tensor At(float pixel) => model.Run(new Dictionary<string, Tensor> { [model.InputNames[0]] = zeros([1, channels, height, width], device: model.Device).Add(pixel) },
            [value], 0, last + 1)[value];
        var y0 = At(0);
        var y1 = At(1);
        if (!y0.shape.SequenceEqual([1L, channels, height, width])) return null;
        double[] b = y0.mean([0, 2, 3]).cpu().to_type(ScalarType.Float64).data<double>().ToArray();
        double[] a = (y1 - y0).mean([0, 2, 3]).cpu().to_type(ScalarType.Float64).data<double>().ToArray();
        if (a.Any(v => !double.IsFinite(v) || v == 0) || b.Any(v => !double.IsFinite(v))) return null;
        if (a.All(v => Math.Abs(v - 1) < 1e-6) && b.All(v => Math.Abs(v) < 1e-6)) return null;
        double Score(double range) => Enumerable.Range(0, channels).Average(c =>
        {
            double w = Math.Abs(a[c]) * range, middle = b[c] + a[c] * range / 2;
            return Math.Abs(Math.Log(w / 2)) + Math.Abs(middle) / w;
        });
        double pixels = PixelRanges.MinBy(Score);
        string Numbers(double[] v) => string.Join(", ", v.Select(x => x.ToString("G4", CultureInfo.InvariantCulture)));
        return FromRange(0, pixels, channels,
            $"inferred from the graph's input normalization (y = a·x + b, a = [{Numbers(a)}], b = [{Numbers(b)}]): pixels in [0, {pixels.ToString(CultureInfo.InvariantCulture)}]");
    }

    static bool IsNormalizationStep(GraphModule model, GraphNode node, string value, ref bool arithmetic)
    {
        switch (node.OpType)
        {
            case "Transpose" or "Identity":
                return true;
            case "Cast":
                return node.Proto.IsCastToFloat();
            case "Sub" or "Add" or "Mul" or "Div" when node.Inputs.Count == 2:
                int at = node.Inputs[0] == value ? 0 : node.Inputs[1] == value ? 1 : -1;
                if (at < 0 || node.OpType == "Div" && at != 0 || !model.IsConstant(node.Inputs[1 - at])) return false;
                arithmetic = true;
                return true;
            default:
                return false;
        }
    }

    /// <summary>
    /// Infers the expectation from the model itself. Images x = m + s·u_α are fitted so that the input of the first
    /// BatchNormalization node has that node's running mean and variance: m the per-channel mean, s the std (one for
    /// all channels: the channels of natural images are too correlated for one each to be identifiable), u_α a fixed
    /// noise field with a 1/f^α amplitude spectrum and 90% of its variance shared by the channels, per image and
    /// channel mean 0 and std 1. The spectral slope α is fitted with them: a first convolution weighs high
    /// frequencies strongly, and a field with more of them than the model's training images had is matched by too
    /// small an s (with α fixed at 1 the bench ResNet-8's fit gave s ≈ 0.18 where its images have 0.25; docs/method.md).
    /// A spread of the per-image means, fitted as well, came out near 0 and left s as it was: the first BN cannot
    /// tell it from s, so the field has none. The fitted s is thus the std of the training images over a batch; the
    /// prior's std, a target for each image's own std, is <see cref="PerImageShare"/> of it. Whatever preprocessing
    /// nodes (Sub, Div, Mul …) and convolution lie before the BN take part, as the model runs them. Null when the model
    /// has no BatchNormalization node with constant statistics.
    /// </summary>
    public static InputPrior? FitToFirstBatchNorm(GraphModule model, int channels, int height, int width, long seed,
        int steps = 300, int pixels = 32 * 32 * 32)
    {
        using var bn = new BnStatisticsLoss(model, prior: null, firstOnly: true);
        if (bn.Layers == 0) return null;
        using var scope = NewDisposeScope();
        var device = model.Device;
        // As many images as make `pixels` pixels (at least 2): 32 at 32×32, 2 at 224×224, where 32 took minutes.
        int batch = Math.Max(2, (int)Math.Ceiling(pixels / ((double)height * width)));
        var field = new NaturalField(batch, channels, height, width, seed, device);
        Tensor Loss(Tensor x)
        {
            model.Run(new Dictionary<string, Tensor> { [model.InputNames[0]] = x }, [bn.FirstInput!], 0, bn.FirstNodeIndex + 1);
            var loss = bn.Statistics();
            bn.Clear();
            return loss;
        }

        // Start from the convention whose statistics fit best (the fit below moves relative to its scale, so the
        // same steps serve inputs in [0, 1] and in 0..255), then fit m per channel, s and α.
        var u0 = field.At(tensor(1.0f, device: device));
        var (m0, s0) = Conventions.MinBy(c =>
        {
            using var inner = NewDisposeScope();
            using var noGrad = no_grad();
            return Loss(u0.Mul(c.Std).Add(c.Mean)).item<float>();
        });
        var mean = new TorchSharp.Modules.Parameter(zeros([1, channels, 1, 1], device: device), requires_grad: true);
        var logStd = new TorchSharp.Modules.Parameter(zeros([], device: device), requires_grad: true);
        var slope = new TorchSharp.Modules.Parameter(ones([], device: device), requires_grad: true);
        using (var optimizer = new HeldScalarAdam([mean, logStd, slope], 0.05))
        {
            for (int step = 0; step < steps; step++)
            {
                using var inner = NewDisposeScope();
                optimizer.zero_grad();
                var x = mean.Mul(s0).Add(m0).Add(field.At(slope).mul(logStd.exp().Mul(s0)));
                var loss = Loss(x);
                loss.backward();
                optimizer.step();
            }
        }
        var m = mean.detach().Mul(s0).Add(m0).cpu().flatten().data<float>().ToArray();
        double s = s0 * logStd.detach().exp().item<float>();
        var std = Enumerable.Repeat((float)(s * PerImageShare), channels).ToArray();
        if (m.Concat(std).Any(v => !float.IsFinite(v))) return null;
        return new InputPrior(m, std, string.Create(CultureInfo.InvariantCulture,
            $"fitted to the statistics of the first BatchNormalization node '{bn.FirstName}': std {s:0.###} over a batch with a 1/f^{slope.detach().item<float>():0.##} spectrum, {PerImageShare} of it per image"));
    }

    /// <summary>
    /// Each image's std as a share of the std over a batch of images: less than 1, as the images' means differ. Real
    /// images' calibration sets measured 0.80 (the CIFAR-10 bench images) and 0.91 (Fashion-MNIST); with the fitted
    /// batch std itself as the per-image target, Genie-D on the bench ResNet-8 lost 1.3 pt against this share (8 seeds,
    /// docs/benchmarks/input-prior.md).
    /// </summary>
    public const double PerImageShare = 0.85;

    /// <summary>
    /// Starting points of the fit, one per common convention: standardized; x/255 and x/127.5 − 1 (natural-image
    /// statistics); raw bytes; raw bytes minus a mean (as mean, std of the fed values).
    /// </summary>
    static readonly (double Mean, double Std)[] Conventions = [(0, 1), (0.45, 0.25), (-0.1, 0.5), (115, 60), (0, 60)];

    /// <summary>
    /// Fixed noise for the fit: white noise's spectra [N, 1 | C, H, W/2+1] that <see cref="At"/> shapes to a 1/f^α
    /// amplitude spectrum (as natural images have) with 90% of the variance shared by the channels.
    /// </summary>
    sealed class NaturalField
    {
        readonly Tensor shared, own, logRadius;
        readonly long height, width;

        public NaturalField(int n, int channels, int height, int width, long seed, Device device)
        {
            using var generator = new torch.Generator((ulong)seed);
            (this.height, this.width) = (height, width);
            var fy = fft.fftfreq(height).reshape(-1, 1);
            var fx = fft.rfftfreq(width).reshape(1, -1);
            logRadius = fy.Square().Add(fx.Square()).sqrt().ClampMin(1.0 / Math.Max(height, width)).log().to(device);
            shared = fft.rfft2(randn([n, 1, height, width], generator: generator)).to(device);
            own = fft.rfft2(randn([n, channels, height, width], generator: generator)).to(device);
        }

        /// <summary>The field [N, C, H, W] with amplitude ∝ 1/f^α (α a scalar tensor; differentiable in it), each image and channel at mean 0 and std 1.</summary>
        public Tensor At(Tensor slope)
        {
            var amplitude = logRadius.mul(slope.neg()).exp();
            Tensor Shaped(Tensor spectrum) => fft.irfft2(spectrum * amplitude, [height, width]);
            var field = Shaped(shared).Mul(Math.Sqrt(0.9)).Add(Shaped(own).Mul(Math.Sqrt(0.1)));
            var flat = field.flatten(2);
            var standardized = (flat - flat.mean([2], keepdim: true)) / flat.std(2, keepdim: true).ClampMin(1e-6);
            return standardized.reshape(field.shape);
        }
    }

    public override string ToString()
    {
        static string List(float[] v) => string.Join(", ", v.Select(x => x.ToString("0.###", CultureInfo.InvariantCulture)));
        return $"per-image, per-channel mean [{List(Mean)}] and std [{List(Std)}] ({Source})";
    }
}
