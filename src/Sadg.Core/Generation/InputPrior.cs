using System.Globalization;
using Sadg.Graph;
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

    /// <summary>
    /// Infers the expectation from the model itself: the per-channel mean m and the std s (one for all channels: the
    /// channels of natural images are too correlated for one std each to be identifiable) of images x = m + s·u (u a
    /// fixed field with natural images' 1/f spectrum and correlated channels, per image and channel mean 0 and std 1)
    /// are fitted so that the input of the first BatchNormalization node has that node's running mean and variance.
    /// Whatever preprocessing nodes (Sub, Div, Mul …) and convolution lie before it take part, as the model runs
    /// them. Null when the model has no BatchNormalization node with constant statistics.
    /// </summary>
    public static InputPrior? FitToFirstBatchNorm(GraphModule model, int channels, int height, int width, long seed,
        int steps = 300, int batch = 8)
    {
        using var bn = new BnStatisticsLoss(model, prior: null, firstOnly: true);
        if (bn.Layers == 0) return null;
        using var scope = NewDisposeScope();
        var device = model.Device;
        var u = NaturalField(batch, channels, height, width, seed).to(device);
        Tensor Loss(Tensor x)
        {
            model.Run(new Dictionary<string, Tensor> { [model.InputNames[0]] = x }, [bn.FirstInput!], 0, bn.FirstNodeIndex + 1);
            var loss = bn.Statistics();
            bn.Clear();
            return loss;
        }

        // Start from the convention whose statistics fit best (the fit below moves relative to its scale, so the
        // same steps serve inputs in [0, 1] and in 0..255), then fit m and s per channel.
        var (m0, s0) = Conventions.MinBy(c =>
        {
            using var inner = NewDisposeScope();
            using var noGrad = no_grad();
            return Loss(u.Mul(c.Std).Add(c.Mean)).item<float>();
        });
        var mean = new TorchSharp.Modules.Parameter(zeros([1, channels, 1, 1], device: device), requires_grad: true);
        var logStd = new TorchSharp.Modules.Parameter(zeros([1, 1, 1, 1], device: device), requires_grad: true);
        using (var optimizer = new HeldScalarAdam([mean, logStd], 0.05))
        {
            for (int step = 0; step < steps; step++)
            {
                using var inner = NewDisposeScope();
                optimizer.zero_grad();
                var loss = Loss(mean.Mul(s0).Add(m0).Add(logStd.exp().Mul(s0) * u));
                loss.backward();
                optimizer.step();
            }
        }
        var m = mean.detach().Mul(s0).Add(m0).cpu().flatten().data<float>().ToArray();
        var s = Enumerable.Repeat((float)(s0 * logStd.detach().exp().item<float>()), channels).ToArray();
        if (m.Concat(s).Any(v => !float.IsFinite(v))) return null;
        return new InputPrior(m, s, $"fitted to the statistics of the first BatchNormalization node '{bn.FirstName}'");
    }

    /// <summary>
    /// Starting points of the fit, one per common convention: standardized; x/255 and x/127.5 − 1 (natural-image
    /// statistics); raw bytes; raw bytes minus a mean (as mean, std of the fed values).
    /// </summary>
    static readonly (double Mean, double Std)[] Conventions = [(0, 1), (0.45, 0.25), (-0.1, 0.5), (115, 60), (0, 60)];

    /// <summary>
    /// [N, C, H, W] noise with a 1/f amplitude spectrum (as natural images have), 90% of its variance shared by the
    /// channels, each image and channel scaled to mean 0 and std 1.
    /// </summary>
    static Tensor NaturalField(int n, int channels, int height, int width, long seed)
    {
        using var generator = new torch.Generator((ulong)seed);
        var fy = fft.fftfreq(height).reshape(-1, 1);
        var fx = fft.rfftfreq(width).reshape(1, -1);
        var amplitude = fy.Square().Add(fx.Square()).sqrt().ClampMin(1.0 / Math.Max(height, width)).RDiv(1);
        Tensor Field(long c) => fft.irfft2(fft.rfft2(randn([n, c, height, width], generator: generator)) * amplitude, [height, width]);
        var field = Field(1).Mul(Math.Sqrt(0.9)).Add(Field(channels).Mul(Math.Sqrt(0.1)));
        var flat = field.flatten(2);
        var standardized = (flat - flat.mean([2], keepdim: true)) / flat.std(2, keepdim: true).ClampMin(1e-6);
        return standardized.reshape(n, channels, height, width);
    }

    public override string ToString()
    {
        static string List(float[] v) => string.Join(", ", v.Select(x => x.ToString("0.###", CultureInfo.InvariantCulture)));
        return $"per-image, per-channel mean [{List(Mean)}] and std [{List(Std)}] ({Source})";
    }
}
