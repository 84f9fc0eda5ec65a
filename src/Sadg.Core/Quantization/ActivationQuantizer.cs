using TorchSharp;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;

namespace Sadg.Quantization;

/// <summary>
/// The quantizer of one activation tensor: per tensor, b bits, x_q = s · clamp(round(x / s), lo, hi), where
/// <list type="bullet">
/// <item>data without negatives (after ReLU) gets the unsigned grid [0, 2^b − 1] (zero point 0);</item>
/// <item>data with negatives gets, below 8 bits, BRECQ's and QDrop's asymmetric grid [−z, 2^b − 1 − z] with zero
/// point z (<see cref="ZeroPoint"/>); at 8 bits, or with <see cref="Symmetric"/> (Genie's quantizer, DESIGN §3), the
/// symmetric signed grid [−2^(b−1), 2^(b−1) − 1], which leaves most negative levels unused after SiLU, Hardswish or
/// GELU (<see cref="AsymmetricGrid"/> says which).</item>
/// <item><see cref="Calibrate"/> decides the grid and searches s over clip ratios r = 1.00 … 0.01 (unsigned:
/// s = r · max x / hi; asymmetric: s = r · (max x − min x) / (2^b − 1), z = round(−r · min x / s); symmetric:
/// s = r · max|x| / hi), keeping the r that minimizes mean |x − Q(x)|^2.4. z is fixed after calibration, as in BRECQ
/// and QDrop.</item>
/// <item>LSQ: s is a learned <see cref="Parameter"/>; rounding is straight-through (∂round(u)/∂u = 1), so the gradient
/// reaches both s and x; the clamp passes no gradient to x outside [lo, hi].</item>
/// <item>QDrop: in training mode each element keeps its quantized value with probability 1 − p
/// (p = <see cref="DropProbability"/>, 0.5 in reconstruction), else its float value; the draw uses
/// <see cref="Generator"/> when set (<see cref="QDrop.KeepFloatMask"/>). In evaluation mode every element is quantized, exactly as
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

    /// <summary>Whether the grid is the symmetric signed one; set by <see cref="Calibrate"/>.</summary>
    public bool Signed { get; private set; }

    /// <summary>z of the asymmetric grid [−z, 2^b − 1 − z]; 0 for the unsigned and the signed grids. Set by <see cref="Calibrate"/>.</summary>
    public long ZeroPoint { get; private set; }

    /// <summary>Data with negatives gets the symmetric signed grid (Genie's) at every bit width.</summary>
    public bool Symmetric { get; init; }

    /// <summary>
    /// Whether data with negatives gets the asymmetric grid: below 8 bits unless <paramref name="symmetric"/>. At 8
    /// bits the symmetric grid loses little (W8A8 is within a few hundredths of FP32 either way) and keeps ONNX
    /// Runtime's fused 8-bit kernels (QLinearConv) on signed INT8 activations, which agree with the Q/DQ model more
    /// closely than on UINT8 ones with a zero point; narrower activations carry a Clip that ONNX Runtime does not fuse.
    /// </summary>
    public static bool AsymmetricGrid(int bits, bool symmetric) => bits < 8 && !symmetric;

    /// <summary>True once <see cref="Calibrate"/> has run.</summary>
    public bool Calibrated { get; private set; }

    /// <summary>lo: −2^(b−1) when signed, else −z (<see cref="ActivationQuantization.Grid"/>).</summary>
    public long Min => ActivationQuantization.Grid(Bits, Signed, ZeroPoint).Min;

    /// <summary>hi: 2^(b−1) − 1 when signed, else 2^b − 1 − z.</summary>
    public long Max => ActivationQuantization.Grid(Bits, Signed, ZeroPoint).Max;

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
    /// Decides the grid (unsigned without negative samples, else asymmetric or, with <see cref="Symmetric"/>, signed)
    /// and sets s (and z) by the clip-ratio search. All-zero samples give s = 1 / hi.
    /// </summary>
    public void Calibrate(Tensor samples)
    {
        ArgumentNullException.ThrowIfNull(samples);
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var x = samples.detach().to_type(ScalarType.Float32).flatten();
        if (x.numel() == 0) throw new ArgumentException("There are no calibration samples.", nameof(samples));
        double min = x.min().item<float>();
        bool asymmetric = min < 0 && AsymmetricGrid(Bits, Symmetric);
        Signed = min < 0 && !asymmetric;
        // The range the clip ratios shrink and the number of steps it spans: [min, max] on 2^b − 1 steps with
        // z = round(−min · (2^b − 1) / (max − min)) on the asymmetric grid, max|x| on hi steps on the others.
        double range, levels;
        if (asymmetric)
        {
            levels = (1L << Bits) - 1;
            range = x.max().item<float>() - min;
            ZeroPoint = Math.Clamp((long)Math.Round(-min * levels / range, MidpointRounding.ToEven), 0, (long)levels);
        }
        else
        {
            ZeroPoint = 0;
            range = x.abs().max().item<float>();
            levels = Max;
        }
        double best = range > 0 ? range / levels : 1.0 / levels;
        if (range > 0)
        {
            double bestError = double.PositiveInfinity;
            for (int i = 0; i < QuantizerRange.RatioCount; i++)
            {
                using var step = NewDisposeScope();
                float scale = (float)(QuantizerRange.Ratio(i) * range / levels);
                if (scale <= 0) continue;
                double error = QuantizerRange.Error(x, ActivationQuantization.Apply(x, scale, Min, Max)).item<float>();
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
    /// Training: QDrop mix of the LSQ fake-quantized value and x (<see cref="FakeQuantizeDrop"/>). Evaluation: the
    /// fake-quantized value.
    /// </summary>
    public override Tensor forward(Tensor x) =>
        training && dropProbability > 0
            ? FakeQuantizeDrop(x, QDrop.KeepFloatMask(x.shape, dropProbability, Generator, x.device))
            : FakeQuantize(x);

    /// <summary>
    /// LSQ fake quantization: s · round_STE(clamp(x / s, lo, hi)), differentiable with respect to x and s (∂/∂x: 1 where
    /// x/s lies in [lo, hi], else 0; ∂/∂s: the upstream gradient times q − x/s inside the range and q outside), as the
    /// LSQ paper and Genie's code define it.
    /// Fused: without a graph it makes one tensor, the result; with one, autograd keeps only the range mask (and,
    /// while s learns, q − x/s) instead of the five intermediates of the composition.
    /// </summary>
    public Tensor FakeQuantize(Tensor x)
    {
        var scale = s.reshape([]); // a 0-dim scale takes libtorch's scalar path: several times faster than a [1] broadcast
        if (!is_grad_enabled() || (!x.requires_grad && !s.requires_grad))
            return x.div(scale).round_().Clamp_(Min, Max).mul_(scale);
        return LsqFunction.apply(x, s, (double)Min, (double)Max);
    }

    /// <summary>
    /// LSQ's range, where the gradients pass: u = x/s in [lo, hi], clipped before it is rounded. An element within half a
    /// step beyond a bound rounds to the bound, but it is clipped: ∂/∂x is 0 and ∂/∂s the bound, as for any clipped element.
    /// </summary>
    static Tensor InRange(Tensor u, double lo, double hi) => u.Ge(lo).logical_and_(u.Le(hi));

    /// <summary>The fused LSQ fake quantization of <see cref="FakeQuantize"/>.</summary>
    sealed class LsqFunction : autograd.SingleTensorFunction<LsqFunction>
    {
        public override string Name => nameof(LsqFunction);

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            var (x, s) = ((Tensor)vars[0], (Tensor)vars[1]);
            var scale = s.reshape([]);
            double lo = (double)vars[2], hi = (double)vars[3];
            var u = x / scale;
            var q = u.round().Clamp_(lo, hi);
            var output = q * scale;
            var inside = InRange(u, lo, hi);
            if (s.requires_grad)
            {
                // ∂output/∂s per element: q − u inside the range, q outside.
                var dScale = q.sub_(u.mul_(inside));
                ctx.save_for_backward([inside, dScale]);
            }
            else
            {
                q.Dispose();
                ctx.save_for_backward([inside]);
            }
            u.Dispose();
            return output;
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad)
        {
            var saved = ctx.get_saved_variables();
            var gradScale = saved.Count > 1 ? grad.flatten().dot(saved[1].flatten()).reshape(1) : null;
            return [grad * saved[0], gradScale!, null!, null!];
        }
    }

    /// <summary>
    /// <see cref="QDrop.Mix"/> of <see cref="FakeQuantize"/>(x) and x, fused: the same values and gradients as the
    /// composition (∂/∂x: 1 where the float value is kept or x/s lies in [lo, hi], else 0; ∂/∂s: Σ over the
    /// quantized elements of the upstream gradient times q − x/s inside the range and q outside), in about a fifth of
    /// the composition's time at 112² feature maps, since autograd keeps no intermediate of its own. First-order only.
    /// </summary>
    /// <param name="keepFloat">The QDrop mask: 1 where the element keeps its float value, 0 where it is quantized.</param>
    public Tensor FakeQuantizeDrop(Tensor x, Tensor keepFloat) => LsqDropFunction.apply(x, s, keepFloat, (double)Min, (double)Max);

    /// <summary>The fused LSQ fake quantization and QDrop mix of <see cref="FakeQuantizeDrop"/>.</summary>
    sealed class LsqDropFunction : autograd.SingleTensorFunction<LsqDropFunction>
    {
        public override string Name => nameof(LsqDropFunction);

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            var (x, scale, keepFloat) = ((Tensor)vars[0], ((Tensor)vars[1]).reshape([]), (Tensor)vars[2]);
            double lo = (double)vars[3], hi = (double)vars[4];
            var u = x / scale;
            var q = u.round().Clamp_(lo, hi);
            var output = QDrop.Mix(q * scale, x, keepFloat);
            var inside = InRange(u, lo, hi).to_type(x.dtype);
            // ∂output/∂s per element: q − u inside the range, q outside; 0 where the float value is kept.
            var dScale = q.sub_(u.mul_(inside));
            dScale.sub_(dScale * keepFloat);
            ctx.save_for_backward([dScale, keepFloat.maximum(inside)]);
            return output;
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad)
        {
            var saved = ctx.get_saved_variables();
            var (dScale, passes) = (saved[0], saved[1]);
            var gradScale = grad.flatten().dot(dScale.flatten()).reshape(1);
            return [grad * passes, gradScale, null!, null!, null!];
        }
    }

    /// <summary>The final form for the QDQ writer.</summary>
    /// <param name="value">Name of the quantized tensor.</param>
    public ActivationQuantization Export(string value)
    {
        using var scope = NewDisposeScope();
        return new(value, s.detach().cpu().item<float>(), Bits, Signed) { ZeroPoint = ZeroPoint };
    }
}
