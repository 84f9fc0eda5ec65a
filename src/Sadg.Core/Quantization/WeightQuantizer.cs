using TorchSharp;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;

namespace Sadg.Quantization;

/// <summary>How <see cref="WeightQuantizer"/> rounds w / s.</summary>
public enum WeightRoundingMode
{
    /// <summary>Round to nearest (half to even) with the current scale; V is not used.</summary>
    Nearest,

    /// <summary>AdaRound training: floor(w / s₀) + h(V), differentiable with respect to V and (through the rescaling) s.</summary>
    Soft,

    /// <summary>The final rounding: floor(w / s₀) + [V ≥ 0].</summary>
    Hard,
}

/// <summary>
/// The quantizer of one weight tensor (Genie-M, DESIGN §3): per output channel along <see cref="Axis"/>, asymmetric,
/// b bits, w ≈ s · (clamp(w_int + z, 0, 2^b − 1) − z) with
/// <list type="bullet">
/// <item>s, z from the clip-ratio search: for each channel, ratios r = 1.00 … 0.01 of [min(w_c, 0), max(w_c, 0)]
/// (the range always holds 0, so z fits [0, 2^b − 1]), keeping the r that minimizes mean |w − Q(w)|^2.4;
/// s = (max' − min') / (2^b − 1), z = clamp(round(−min' / s), 0, 2^b − 1);</item>
/// <item>AdaRound: w_int = floor(w / s₀) + h(V), h(V) = clamp(σ(V) · (ζ − γ) + γ, 0, 1) with ζ = 1.1, γ = −0.1,
/// V initialized so that h(V) = frac(w / s₀) exactly. s₀ is the scale at initialization: the floor is fixed once
/// (as Genie does) and the learned s only rescales, w_q = s · (clamp(w_int + z, 0, 2^b − 1) − z); recomputing
/// floor(w / s) with the learned s would make a weight jump a whole level whenever s drifts across a boundary.</item>
/// </list>
/// s ([C], a learned <see cref="Parameter"/>) and V (the weight's shape, a learned <see cref="Parameter"/>) are the
/// trainable parameters; w, floor(w / s₀) and z are buffers. Parameters are created outside any dispose scope and live as long as the
/// module; <see cref="forward"/> allocates only in the caller's scope.
/// </summary>
public sealed class WeightQuantizer : nn.Module<Tensor, Tensor>
{
    /// <summary>ζ, the upper stretch of the rectified sigmoid h(V).</summary>
    public const double Zeta = 1.1;

    /// <summary>γ, the lower stretch of the rectified sigmoid h(V).</summary>
    public const double Gamma = -0.1;

    /// <summary>β at the start of the annealing (after the warm-up).</summary>
    public const double BetaStart = 20;

    /// <summary>β at the end of the annealing.</summary>
    public const double BetaEnd = 2;

    /// <summary>Fraction of the steps at the start during which the rounding loss is off.</summary>
    public const double WarmUp = 0.2;

#pragma warning disable IDE1006 // Names mirror the paper's symbols and the registered parameter names.
    Tensor w;
    Tensor wFloor;
    Tensor z;
    Parameter s;
    Parameter V;
#pragma warning restore IDE1006

    /// <param name="weight">The float weight (copied; the quantizer keeps its own detached copy).</param>
    /// <param name="bits">b, 2–8.</param>
    /// <param name="axis">The output-channel axis of the weight as stored: 0 for Conv and Gemm with transB = 1, 1 for MatMul and Gemm with transB = 0.</param>
    public WeightQuantizer(Tensor weight, int bits, int axis = 0) : base(nameof(WeightQuantizer))
    {
        ArgumentNullException.ThrowIfNull(weight);
        QuantizerRange.CheckBits(bits);
        if (!weight.is_floating_point())
            throw new ArgumentException($"The weight must be a float tensor; it is {weight.dtype}.", nameof(weight));
        if (weight.dim() < 1 || axis < 0 || axis >= weight.dim())
            throw new ArgumentOutOfRangeException(nameof(axis), axis, $"The weight has shape [{string.Join(", ", weight.shape)}]; the channel axis must be one of its dims.");
        Bits = bits;
        Axis = axis;
        Levels = (1L << bits) - 1;

        using (NewDisposeScope())
        {
            var weight32 = weight.detach().to_type(ScalarType.Float32).clone();
            var (scale, zeroPoint) = SearchRange(weight32, Levels, axis);
            var wOverS = weight32 / Broadcast(scale, weight32.dim(), axis);
            var frac = wOverS - wOverS.floor();
            // h(V) = frac ⇔ σ(V) = (frac − γ) / (ζ − γ) ⇔ V = logit((frac − γ) / (ζ − γ)).
            var p = frac.Sub(Gamma).Div(Zeta - Gamma);
            var v = (p / p.RSub(1)).log();

            w = weight32.DetachFromDisposeScope();
            wFloor = wOverS.floor().DetachFromDisposeScope();
            z = zeroPoint.DetachFromDisposeScope();
            s = (Parameter)new Parameter(scale, requires_grad: true).DetachFromDisposeScope();
            V = (Parameter)new Parameter(v, requires_grad: true).DetachFromDisposeScope();
        }
        register_buffer("w", w);
        register_buffer("w_floor", wFloor);
        register_buffer("z", z);
        register_parameter("s", s);
        register_parameter("V", V);
    }

    /// <summary>b.</summary>
    public int Bits { get; }

    /// <summary>The output-channel axis of the weight.</summary>
    public int Axis { get; }

    /// <summary>2^b − 1, the largest integer.</summary>
    public long Levels { get; }

    public WeightRoundingMode Mode { get; set; } = WeightRoundingMode.Soft;

    /// <summary>
    /// True (the default, as Genie): AdaRound rounds up from floor(w / s₀). False: from floor(w / s) with the current
    /// learned s (the ablation <see cref="MethodAblation.FloorFollowsScale"/>).
    /// </summary>
    public bool FixedFloor { get; set; } = true;

    Tensor FloorOf(Tensor weight) => FixedFloor ? wFloor : (weight / Broadcast(s, weight.dim(), Axis)).floor();

    /// <summary>s, [C], learned.</summary>
    public Parameter Scale => s;

    /// <summary>V, the weight's shape, learned.</summary>
    public Parameter RoundingVariable => V;

    /// <summary>z, [C], float (integer-valued), fixed.</summary>
    public Tensor ZeroPoint => z;

    /// <summary>The float weight being quantized.</summary>
    public Tensor Weight => w;

    /// <summary>floor(w / s₀), fixed at initialization: the integer part AdaRound rounds up from.</summary>
    public Tensor Floor => wFloor;

    /// <summary>h(V) = clamp(σ(V) · (ζ − γ) + γ, 0, 1), the soft rounding offset in [0, 1].</summary>
    public Tensor SoftOffset() => V.sigmoid().Mul(Zeta - Gamma).Add(Gamma).Clamp(0, 1);

    /// <summary>
    /// The fake-quantized weight in the current <see cref="Mode"/>. The graph hook passes the weight it holds, which
    /// is this quantizer's own weight; Soft and Hard modes round from the stored floor(w / s₀).
    /// </summary>
    public override Tensor forward(Tensor weight) => Quantize(weight);

    /// <summary>The fake-quantized weight of this quantizer's own weight, in the current <see cref="Mode"/>.</summary>
    public Tensor forward() => Quantize(w);

    Tensor Quantize(Tensor weight)
    {
        var scale = Broadcast(s, weight.dim(), Axis);
        var zero = Broadcast(z, weight.dim(), Axis);
        var wInt = Mode switch
        {
            WeightRoundingMode.Nearest => (weight / scale).round(),
            WeightRoundingMode.Soft => FloorOf(weight).Add(SoftOffset()),
            _ => FloorOf(weight).Add(V.Ge(0).to_type(weight.dtype)),
        };
        return scale * (wInt.Add(zero).Clamp(0, Levels) - zero);
    }

    /// <summary>The hard AdaRound integers before the zero point: floor(w / s₀) + [V ≥ 0].</summary>
    Tensor Integers() => FloorOf(w).Add(V.Ge(0).to_type(wFloor.dtype));

    /// <summary>
    /// The share of rounding offsets h(V) within 0.01 of 0 or 1: 1 when AdaRound has converged (the soft weights
    /// the reconstruction optimized are the hard ones that are written).
    /// </summary>
    public double BinarizedShare()
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var h = SoftOffset();
        return h.Le(0.01).logical_or(h.Ge(0.99)).to_type(ScalarType.Float32).mean().item<float>();
    }

    /// <summary>The AdaRound regularizer Σ(1 − |2h(V) − 1|^β), which pushes every h(V) to 0 or 1.</summary>
    public Tensor RoundingLoss(double beta) => SoftOffset().Mul(2).Sub(1).abs().Pow(beta).RSub(1).sum();

    /// <summary>
    /// True during the first <see cref="WarmUp"/> (20%) of the steps, when the rounding loss is not added
    /// (its weight is 0).
    /// </summary>
    public static bool InWarmUp(int step, int totalSteps)
    {
        CheckStep(step, totalSteps);
        return step < WarmUp * totalSteps;
    }

    /// <summary>
    /// β for a step in [0, totalSteps): <see cref="BetaStart"/> (20) through the warm-up (where the rounding loss is
    /// off; see <see cref="InWarmUp"/>), then linearly down to <see cref="BetaEnd"/> (2) at the last step.
    /// </summary>
    public static double Beta(int step, int totalSteps)
    {
        CheckStep(step, totalSteps);
        double start = WarmUp * totalSteps;
        if (step < start) return BetaStart;
        double span = totalSteps - 1 - start;
        double t = span <= 0 ? 1 : Math.Clamp((step - start) / span, 0, 1);
        return BetaStart + (BetaEnd - BetaStart) * t;
    }

    static void CheckStep(int step, int totalSteps)
    {
        if (totalSteps < 1) throw new ArgumentOutOfRangeException(nameof(totalSteps), totalSteps, "There must be at least one step.");
        if (step < 0 || step >= totalSteps)
            throw new ArgumentOutOfRangeException(nameof(step), step, $"The step must lie in [0, {totalSteps}).");
    }

    /// <summary>The final integers (Hard-mode rounding, whatever the current mode) for the QDQ writer.</summary>
    /// <param name="node">Name of the Conv/Gemm/MatMul node in the BN-folded model.</param>
    /// <param name="weight">Name of the weight initializer the node reads.</param>
    public WeightQuantization Export(string node, string weight)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var zero = Broadcast(z, w.dim(), Axis);
        var integers = Integers().Add(zero).Clamp(0, Levels).to_type(ScalarType.Int64);
        return new WeightQuantization(node, weight,
            integers.cpu().MoveToOuterDisposeScope(),
            s.detach().cpu().clone().MoveToOuterDisposeScope(),
            z.round().to_type(ScalarType.Int64).cpu().MoveToOuterDisposeScope(),
            Bits, Axis);
    }

    /// <summary>
    /// The clip-ratio search (see the class summary), vectorized over channels: returns s [C] and z [C] (float,
    /// integer-valued).
    /// </summary>
    public static (Tensor Scale, Tensor ZeroPoint) SearchRange(Tensor weight, long levels, int axis)
    {
        var rows = weight.detach().to_type(ScalarType.Float32).movedim([axis], [0]).flatten(1);
        var min = rows.amin(1).ClampMax(0);
        var max = rows.amax(1).ClampMin(0);
        var bestError = TorchScalars.Full(min.shape, double.PositiveInfinity, dtype: ScalarType.Float32, device: weight.device);
        var bestMin = min.clone();
        var bestMax = max.clone();
        for (int i = 0; i < QuantizerRange.RatioCount; i++)
        {
            using var step = NewDisposeScope();
            double r = QuantizerRange.Ratio(i);
            var lo = min.Mul(r);
            var hi = max.Mul(r);
            var (scale, zero) = ScaleAndZero(lo, hi, levels);
            var sc = scale.unsqueeze(1);
            var zc = zero.unsqueeze(1);
            var q = sc * (rows / sc).round().Add(zc).Clamp(0, levels).sub(zc);
            var error = QuantizerRange.Error(rows, q, [1]);
            var better = error < bestError;
            bestError.copy_(where(better, error, bestError));
            bestMin.copy_(where(better, lo, bestMin));
            bestMax.copy_(where(better, hi, bestMax));
        }
        return ScaleAndZero(bestMin, bestMax, levels);
    }

    /// <summary>s = (max' − min') / (2^b − 1) (at least 1e-8, for all-zero channels), z = clamp(round(−min' / s), 0, 2^b − 1).</summary>
    static (Tensor Scale, Tensor ZeroPoint) ScaleAndZero(Tensor min, Tensor max, long levels)
    {
        var scale = (max - min).Div(levels).ClampMin(1e-8);
        var zero = (-min / scale).round().Clamp(0, levels);
        return (scale, zero);
    }

    static Tensor Broadcast(Tensor perChannel, long rank, int axis)
    {
        var shape = Enumerable.Repeat(1L, (int)rank).ToArray();
        shape[axis] = -1;
        return perChannel.reshape(shape);
    }
}
