using TorchSharp;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;

namespace Sadg.Quantization;

/// <summary>
/// The quantizer of one activation tensor (Genie-M, DESIGN §3): per tensor, symmetric (zero point 0), b bits,
/// signed [−2^(b−1), 2^(b−1) − 1] when the calibration data has negatives, else unsigned [0, 2^b − 1]:
/// x_q = s · clamp(round(x / s), lo, hi).
/// <list type="bullet">
/// <item><see cref="Calibrate"/> decides the signedness and searches s over clip ratios r = 1.00 … 0.01 of max|x|
/// (s = r · max|x| / hi), keeping the r that minimizes mean |x − Q(x)|^2.4.</item>
/// <item>LSQ: s is a learned <see cref="Parameter"/>; rounding is straight-through (∂round(u)/∂u = 1), so the gradient
/// reaches both s and x; the clamp passes no gradient to x outside [lo, hi].</item>
/// <item>QDrop: in training mode each element keeps its quantized value with probability 1 − p
/// (p = <see cref="DropProbability"/>, 0.5 in reconstruction), else its float value; the draw uses
/// <see cref="Generator"/> when set. In evaluation mode every element is quantized, exactly as
/// <see cref="ActivationQuantization.Apply"/> computes it (rounding half to even).</item>
/// </list>
/// The module starts in evaluation mode; set <see cref="Training"/> (or call train()) for reconstruction.
/// </summary>
public sealed class ActivationQuantizer : nn.Module<Tensor, Tensor>
{
    /// <summary>p, the QDrop probability of an element keeping its float value during reconstruction.</summary>
    public const double QDropProbability = 0.5;

#pragma warning disable IDE1006 // Names mirror the paper's symbol and the registered parameter name.
    Parameter s;
#pragma warning restore IDE1006

    /// <param name="bits">b, 2–8.</param>
    /// <param name="signed">Initial signedness; <see cref="Calibrate"/> decides it from data.</param>
    public ActivationQuantizer(int bits, bool signed = false) : base(nameof(ActivationQuantizer))
    {
        QuantizerRange.CheckBits(bits);
        Bits = bits;
        Signed = signed;
        using (NewDisposeScope())
            s = (Parameter)new Parameter(ones(1), requires_grad: true).DetachFromDisposeScope();
        register_parameter("s", s);
        eval();
    }

    public int Bits { get; }

    /// <summary>Whether the grid is signed; set by <see cref="Calibrate"/>.</summary>
    public bool Signed { get; private set; }

    /// <summary>True once <see cref="Calibrate"/> has run.</summary>
    public bool Calibrated { get; private set; }

    /// <summary>lo: −2^(b−1) when signed, else 0.</summary>
    public long Min => Signed ? -(1L << (Bits - 1)) : 0;

    /// <summary>hi: 2^(b−1) − 1 when signed, else 2^b − 1.</summary>
    public long Max => Signed ? (1L << (Bits - 1)) - 1 : (1L << Bits) - 1;

    /// <summary>s, shape [1], learned (LSQ).</summary>
    public Parameter Scale => s;

    /// <summary>p: in training mode, the probability that an element keeps its float value (QDrop).</summary>
    public double DropProbability
    {
        get => dropProbability;
        set
        {
            if (value is < 0 or > 1 || double.IsNaN(value))
                throw new ArgumentOutOfRangeException(nameof(value), value, "The drop probability must lie in [0, 1].");
            dropProbability = value;
        }
    }

    double dropProbability = QDropProbability;

    /// <summary>The random source of the QDrop draws (on the activations' device); the global one when null.</summary>
    public Generator? Generator { get; set; }

    /// <summary>Training mode (QDrop on) or evaluation mode (always quantized); the same as train()/eval().</summary>
    public bool Training
    {
        get => training;
        set => train(value);
    }

    /// <summary>
    /// Decides the signedness (signed when any sample is negative) and sets s by the clip-ratio search over
    /// max|x|. All-zero samples give s = 1 / hi.
    /// </summary>
    public void Calibrate(Tensor samples)
    {
        ArgumentNullException.ThrowIfNull(samples);
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var x = samples.detach().to_type(ScalarType.Float32).flatten();
        if (x.numel() == 0) throw new ArgumentException("There are no calibration samples.", nameof(samples));
        Signed = x.min().item<float>() < 0;
        double maxAbs = x.abs().max().item<float>();
        double best = maxAbs > 0 ? maxAbs / Max : 1.0 / Max;
        if (maxAbs > 0)
        {
            double bestError = double.PositiveInfinity;
            for (int i = 0; i < QuantizerRange.RatioCount; i++)
            {
                using var step = NewDisposeScope();
                float scale = (float)(QuantizerRange.Ratio(i) * maxAbs / Max);
                if (scale <= 0) continue;
                double error = QuantizerRange.Error(x, Apply(x, scale, Min, Max)).item<float>();
                if (error < bestError)
                {
                    bestError = error;
                    best = scale;
                }
            }
        }
        s.Fill_((float)best);
        Calibrated = true;
    }

    /// <summary>Sets s directly (e.g. from a previous run).</summary>
    public void SetScale(float scale)
    {
        if (!(scale > 0) || float.IsInfinity(scale))
            throw new ArgumentOutOfRangeException(nameof(scale), scale, "The scale must be positive and finite.");
        using var noGrad = no_grad();
        s.Fill_(scale);
    }

    /// <summary>
    /// Training: QDrop mix of the LSQ fake-quantized value and x. Evaluation: the fake-quantized value.
    /// </summary>
    public override Tensor forward(Tensor x)
    {
        var quantized = FakeQuantize(x);
        return training && dropProbability > 0 ? DropMix(quantized, x, dropProbability, Generator) : quantized;
    }

    /// <summary>LSQ fake quantization: s · clamp(round_STE(x / s), lo, hi), differentiable with respect to x and s.</summary>
    public Tensor FakeQuantize(Tensor x)
    {
        var u = x / s;
        var rounded = u.Add((u.round() - u).detach());
        return rounded.Clamp(Min, Max) * s;
    }

    /// <summary>
    /// QDrop's elementwise mix: each element is <paramref name="float"/>'s with probability <paramref name="p"/>, else
    /// <paramref name="quantized"/>'s. Also used to mix a block's FP and quantized inputs.
    /// </summary>
    public static Tensor DropMix(Tensor quantized, Tensor @float, double p, Generator? generator = null)
    {
        var keepFloat = rand(quantized.shape, generator: generator, device: quantized.device).Lt(p);
        return where(keepFloat, @float, quantized);
    }

    /// <summary>The final form for the QDQ writer.</summary>
    /// <param name="value">Name of the quantized tensor.</param>
    public ActivationQuantization Export(string value)
    {
        using var scope = NewDisposeScope();
        return new(value, s.detach().cpu().item<float>(), Bits, Signed);
    }

    static Tensor Apply(Tensor x, float scale, long min, long max) => x.Div(scale).round().Clamp(min, max).Mul(scale);
}
