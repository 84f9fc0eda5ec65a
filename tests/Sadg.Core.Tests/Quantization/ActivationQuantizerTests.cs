using Sadg.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Sadg.Tests.Quantization;

/// <summary>
/// The per-tensor activation quantizer: its grid from data (unsigned, asymmetric, or Genie's symmetric), the clip-ratio search against a reference, evaluation
/// output equal to <see cref="ActivationQuantization.Apply"/>, LSQ gradients against their formula, and QDrop.
/// </summary>
public class ActivationQuantizerTests
{
    static Tensor Randn(long seed, params long[] shape) => randn(shape, generator: new Generator(0).manual_seed(seed));

    static bool SameValues(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    [Fact]
    public void SignednessIsDecidedFromTheCalibrationData()
    {
        using var scope = NewDisposeScope();
        using var unsigned = new ActivationQuantizer(4);
        unsigned.Calibrate(Randn(1, 4, 8, 6, 6).relu());
        Assert.False(unsigned.Signed);
        Assert.Equal((0L, 15L), (unsigned.Min, unsigned.Max));
        Assert.False(unsigned.Export("relu_out").Signed);

        using var signed = new ActivationQuantizer(4) { Symmetric = true };
        signed.Calibrate(Randn(2, 4, 8, 6, 6));
        Assert.True(signed.Signed);
        Assert.Equal(0L, signed.ZeroPoint);
        Assert.Equal((-8L, 7L), (signed.Min, signed.Max));
        var exported = signed.Export("conv_out");
        Assert.True(exported.Signed);
        Assert.Equal("conv_out", exported.Value);
        Assert.Equal(4, exported.Bits);
    }

    /// <summary>
    /// Data with a few small negatives (as after SiLU: min −0.28) gets the asymmetric grid, whose zero point sits near
    /// the bottom: nearly every level covers the positive side, where the symmetric grid has half of them.
    /// </summary>
    [Fact]
    public void Data_with_small_negatives_gets_an_asymmetric_grid_with_its_zero_point_near_the_bottom()
    {
        using var scope = NewDisposeScope();
        var x = Randn(4, 4, 8, 6, 6) * 2f;
        x = x * sigmoid(x); // SiLU
        using var asymmetric = new ActivationQuantizer(4);
        asymmetric.Calibrate(x);
        Assert.False(asymmetric.Signed);
        double min = x.min().item<float>(), max = x.max().item<float>();
        long expectedZero = (long)Math.Round(-min * 15 / (max - min), MidpointRounding.ToEven);
        Assert.Equal(expectedZero, asymmetric.ZeroPoint);
        Assert.InRange(asymmetric.ZeroPoint, 1, 3);
        Assert.Equal((-asymmetric.ZeroPoint, 15 - asymmetric.ZeroPoint), (asymmetric.Min, asymmetric.Max));
        var exported = asymmetric.Export("silu_out");
        Assert.False(exported.Signed);
        Assert.Equal(asymmetric.ZeroPoint, exported.ZeroPoint);
        Assert.True(SameValues(asymmetric.forward(x).detach(), exported.Apply(x)), "evaluation output equals the exported grid's");

        using var symmetric = new ActivationQuantizer(4) { Symmetric = true };
        symmetric.Calibrate(x);
        double Error(Tensor q) => (x - q).abs().pow(2.4).mean().item<float>();
        Assert.True(Error(exported.Apply(x)) < Error(symmetric.Export("silu_out").Apply(x)),
            "the asymmetric grid should quantize SiLU outputs more finely than the symmetric one");
    }

    /// <summary>The chosen scale is the best of the 100 ratios by the reference criterion, computed here in double.</summary>
    [Theory]
    [InlineData(4, true, true)]
    [InlineData(4, true, false)]
    [InlineData(4, false, false)]
    [InlineData(8, true, true)]
    [InlineData(8, true, false)]
    public void CalibrationPicksTheBestClipRatio(int bits, bool withNegatives, bool symmetric)
    {
        using var scope = NewDisposeScope();
        var x = Randn(3, 2000);
        x[0] = 12f; // an outlier
        if (!withNegatives) x = x.abs();
        using var q = new ActivationQuantizer(bits) { Symmetric = symmetric };
        q.Calibrate(x);
        var values = x.data<float>().ToArray();
        long lo = q.Min, hi = q.Max;
        // The range the ratios shrink: max|x| on the unsigned and signed grids, max − min on the asymmetric one.
        double range = q.ZeroPoint > 0 ? values.Max() - values.Min() : values.Max(Math.Abs);
        long levels = q.ZeroPoint > 0 ? (1L << bits) - 1 : hi;
        Assert.Equal(withNegatives && !symmetric && bits < 8, q.ZeroPoint > 0);
        double Error(double s) => values.Average(v => Math.Pow(Math.Abs(v - s * Math.Clamp(Math.Round(v / s, MidpointRounding.ToEven), lo, hi)), 2.4));
        var errors = Enumerable.Range(0, 100).Select(i => Error((100 - i) / 100.0 * range / levels)).ToArray();
        double chosen = q.Scale.detach().item<float>();
        Assert.True(Error(chosen) <= errors.Min() * (1 + 1e-3), $"error {Error(chosen)} > reference best {errors.Min()}");
        if (bits == 4) Assert.True(chosen < 0.99 * range / levels, "the outlier should be clipped");
    }

    [Theory]
    [InlineData(4, true)]
    [InlineData(4, false)]
    [InlineData(8, true)]
    [InlineData(2, false)]
    public void EvaluationOutputEqualsTheExportedQuantization(int bits, bool withNegatives)
    {
        using var scope = NewDisposeScope();
        var calibration = Randn(4, 16, 8, 5, 5);
        if (!withNegatives) calibration = calibration.relu();
        using var q = new ActivationQuantizer(bits);
        q.Calibrate(calibration);
        Assert.False(q.Training);
        var x = Randn(5, 16, 8, 5, 5) * 1.5f;
        // Exact ties x/s = k + 0.5 must round half to even in both.
        float s = q.Scale.detach().item<float>();
        x[0, 0, 0, 0] = 2.5f * s;
        x[0, 0, 0, 1] = 3.5f * s;
        var exported = q.Export("value");
        Assert.True(SameValues(q.forward(x).detach(), exported.Apply(x)), "eval output differs from ActivationQuantization.Apply");
        // With training mode but p = 0 the output is the same.
        q.Training = true;
        q.DropProbability = 0;
        Assert.True(SameValues(q.forward(x).detach(), exported.Apply(x)));
    }

    /// <summary>
    /// For L = Σ Q(x): ∂L/∂x = 1 where x/s lies inside [lo, hi] and 0 outside (clamped, then straight-through rounding);
    /// ∂L/∂s = Σ_in (round(x/s) − x/s) + Σ_out clamp bound (LSQ).
    /// </summary>
    [Fact]
    public void LsqGradientsFollowTheStraightThroughFormula()
    {
        using var scope = NewDisposeScope();
        using var q = new ActivationQuantizer(4);
        q.Calibrate(Randn(6, 1000));
        var x = (Randn(7, 1000) * 1.5f).requires_grad_(true);
        q.forward(x).sum().backward();

        float s = q.Scale.detach().item<float>();
        var u = x.detach() / s;
        var inRange = u.ge(q.Min).logical_and(u.le(q.Max));
        Assert.True(inRange.logical_not().any().item<bool>(), "the test needs clamped elements");
        Assert.True(SameValues(x.grad!, inRange.to_type(ScalarType.Float32)), "∂L/∂x is not the in-range mask");

        var expected = where(inRange, u.round() - u, u.round().clamp(q.Min, q.Max)).to_type(ScalarType.Float64).sum().item<double>();
        double actual = q.Scale.grad!.item<float>();
        Assert.Equal(expected, actual, Math.Max(1e-3, Math.Abs(expected) * 1e-4));
    }

    /// <summary>
    /// An element within half a step beyond the upper bound rounds to the bound but is clipped (LSQ clips x/s before
    /// rounding): no gradient reaches it, and it pulls s with the bound's weight, in both fused functions. Rounding
    /// first and testing the rounded value against the range gave it ∂/∂x = 1 and ∂/∂s = hi − x/s ∈ (−½, 0].
    /// </summary>
    [Fact]
    public void An_element_just_beyond_the_range_is_clipped_for_both_gradients()
    {
        using var scope = NewDisposeScope();
        using var q = new ActivationQuantizer(3);
        q.SetScale(0.5f);
        // x/s = 7.3 (rounds to 7, the bound), 6.6 (inside), 9 (beyond), for an unsigned 3-bit quantizer [0, 7].
        var values = new[] { 3.65f, 3.3f, 4.5f };
        foreach (bool drop in new[] { false, true })
        {
            var x = tensor(values).requires_grad_(true);
            var y = drop ? q.FakeQuantizeDrop(x, zeros(3)) : q.FakeQuantize(x);
            Assert.Equal(new[] { 3.5f, 3.5f, 3.5f }, y.detach().data<float>().ToArray());
            y.sum().backward();
            Assert.Equal(new[] { 0f, 1f, 0f }, x.grad!.data<float>().ToArray());
            // ∂/∂s = 7 (clipped) + (7 − 6.6) (inside) + 7 (clipped).
            Assert.Equal(14.4, q.Scale.grad!.item<float>(), 4);
            q.Scale.grad!.zero_();
        }
    }

    [Fact]
    public void QDropKeepsAboutHalfTheElementsFloatAndIsSeeded()
    {
        using var scope = NewDisposeScope();
        using var q = new ActivationQuantizer(4) { Training = true, DropProbability = 0.5 };
        q.Calibrate(Randn(8, 4000));
        q.Training = true;
        var x = Randn(9, 10000);
        var quantized = q.Export("v").Apply(x);
        Assert.True(quantized.ne(x).all().item<bool>(), "every element must differ from its quantized value");

        q.Generator = new Generator(0).manual_seed(123);
        var y = q.forward(x).detach();
        var isFloat = y.eq(x);
        var isQuantized = y.eq(quantized);
        Assert.True(isFloat.logical_xor(isQuantized).all().item<bool>(), "each element is either its float or its quantized value");
        long floats = isFloat.sum().item<long>();
        Assert.InRange(floats, 4800, 5200);

        q.Generator = new Generator(0).manual_seed(123);
        Assert.True(SameValues(q.forward(x).detach(), y), "the same seed gives a different mix");
        q.Generator = new Generator(0).manual_seed(124);
        Assert.False(SameValues(q.forward(x).detach(), y), "another seed gives the same mix");

        q.Training = false;
        Assert.True(SameValues(q.forward(x).detach(), quantized), "in evaluation mode every element is quantized");
    }

    /// <summary>
    /// The fused LSQ + QDrop function against the composition it replaces (fake quantization, then an elementwise
    /// mix, differentiated by autograd): the same output, the same ∂/∂x and ∂/∂s, on a signed grid with clamped elements.
    /// </summary>
    [Fact]
    public void FusedQDropMatchesTheComposition()
    {
        using var scope = NewDisposeScope();
        using var q = new ActivationQuantizer(4) { Symmetric = true };
        q.Calibrate(Randn(10, 4, 8, 6, 6));
        Assert.True(q.Signed);
        var x0 = Randn(11, 4, 8, 6, 6) * 2f;
        var keepFloat = rand([4, 8, 6, 6], generator: new Generator(0).manual_seed(12)).Lt(0.5).to_type(ScalarType.Float32);
        var upstream = Randn(13, 4, 8, 6, 6);

        var x1 = x0.clone().requires_grad_(true);
        var composed = where(keepFloat.to_type(ScalarType.Bool), x1, Composed(x1, q));
        (composed * upstream).sum().backward();
        var (gradX1, gradS1) = (x1.grad!.clone(), q.Scale.grad!.clone());
        q.Scale.grad!.zero_();

        var x2 = x0.clone().requires_grad_(true);
        var fused = q.FakeQuantizeDrop(x2, keepFloat);
        (fused * upstream).sum().backward();
        Assert.True(SameValues(fused.detach(), composed.detach()), "the fused output differs");
        Assert.True(x2.grad!.allclose(gradX1, rtol: 0, atol: 1e-6), "∂/∂x differs");
        Assert.Equal(gradS1.item<float>(), q.Scale.grad!.item<float>(), Math.Max(1e-4, Math.Abs(gradS1.item<float>()) * 1e-5));
        var u = x0 / q.Scale.detach();
        Assert.True(u.round().lt(q.Min).logical_or(u.round().gt(q.Max)).any().item<bool>(), "the test needs clamped elements");
    }

    /// <summary>LSQ as the composition of differentiable operators: s · clamp(u + sg(round(u) − u), lo, hi), u = x / s.</summary>
    static Tensor Composed(Tensor x, ActivationQuantizer q)
    {
        var scale = q.Scale.reshape([]);
        var c = (x / scale).clamp(q.Min, q.Max);
        return (c + (c.round() - c).detach()) * scale;
    }

    /// <summary>
    /// The fused <see cref="ActivationQuantizer.FakeQuantize"/> has the composition's values and gradients: with s learning,
    /// with s frozen (only ∂/∂x), and without a graph.
    /// </summary>
    [Fact]
    public void FusedFakeQuantizeMatchesTheComposition()
    {
        using var scope = NewDisposeScope();
        using var q = new ActivationQuantizer(4);
        q.Calibrate(Randn(20, 4, 8, 6, 6));
        var x0 = Randn(21, 4, 8, 6, 6) * 2f;
        var upstream = Randn(22, 4, 8, 6, 6);
        var u0 = x0 / q.Scale.detach();
        Assert.True(u0.round().lt(q.Min).logical_or(u0.round().gt(q.Max)).any().item<bool>(), "the test needs clamped elements");

        foreach (bool learnScale in new[] { true, false })
        {
            q.Scale.requires_grad_(learnScale);
            var x1 = x0.clone().requires_grad_(true);
            var composed = Composed(x1, q);
            (composed * upstream).sum().backward();
            var gradX1 = x1.grad!.clone();
            var gradS1 = learnScale ? q.Scale.grad!.clone() : null;
            if (learnScale) q.Scale.grad!.zero_();

            var x2 = x0.clone().requires_grad_(true);
            var fused = q.FakeQuantize(x2);
            (fused * upstream).sum().backward();
            Assert.True(SameValues(fused.detach(), composed.detach()), "the fused output differs");
            Assert.True(x2.grad!.allclose(gradX1, rtol: 0, atol: 1e-6), "∂/∂x differs");
            if (learnScale)
            {
                Assert.Equal(gradS1!.item<float>(), q.Scale.grad!.item<float>(), Math.Max(1e-4, Math.Abs(gradS1.item<float>()) * 1e-5));
                q.Scale.grad!.zero_();
            }
            using (no_grad()) Assert.True(SameValues(q.FakeQuantize(x0), composed.detach()), "the value path differs");
        }
        q.Scale.requires_grad_(true);
    }

    /// <summary>At p = ½ each element is one bit of a random word: every bit position is a fair coin, and the mask is seeded.</summary>
    [Fact]
    public void TheHalfMaskIsFairAtEveryBitPosition()
    {
        using var scope = NewDisposeScope();
        long[] shape = [100, 32, 10];
        var mask = QDrop.KeepFloatMask(shape, 0.5, new Generator(0).manual_seed(3), CPU);
        Assert.Equal(shape, mask.shape);
        Assert.True(mask.eq(0).logical_or(mask.eq(1)).all().item<bool>());
        // Position k of each 32 is bit k of one word: 1,000 words, so each position's share is 0.5 ± 0.05 (3 σ).
        var perBit = mask.reshape(-1, 32).mean([0]);
        Assert.True(perBit.ge(0.45).logical_and(perBit.le(0.55)).all().item<bool>(), string.Join(", ", perBit.data<float>()));
        Assert.True(SameValues(mask, QDrop.KeepFloatMask(shape, 0.5, new Generator(0).manual_seed(3), CPU)));
        Assert.False(SameValues(mask, QDrop.KeepFloatMask(shape, 0.5, new Generator(0).manual_seed(4), CPU)));
        // A count that is not a multiple of 32, and another p.
        Assert.Equal([7L, 5], QDrop.KeepFloatMask([7, 5], 0.5, null, CPU).shape);
        Assert.InRange(QDrop.KeepFloatMask([20000], 0.25, new Generator(0).manual_seed(5), CPU).mean().item<float>(), 0.23, 0.27);
    }

    [Fact]
    public void DropMixFollowsTheProbability()
    {
        using var scope = NewDisposeScope();
        var a = zeros(20000);
        var b = ones(20000);
        var generator = new Generator(0).manual_seed(5);
        Tensor DropMix(double p) => QDrop.Mix(a, b, QDrop.KeepFloatMask(a.shape, p, generator, a.device));
        double fraction = DropMix(0.25).mean().item<float>();
        Assert.InRange(fraction, 0.23, 0.27);
        Assert.True(SameValues(DropMix(0), a));
        Assert.True(SameValues(DropMix(1), b));
    }

    [Fact]
    public void InvalidSettingsAreRejected()
    {
        using var q = new ActivationQuantizer(4);
        Assert.Throws<ArgumentOutOfRangeException>(() => q.DropProbability = 1.5);
        Assert.Throws<ArgumentOutOfRangeException>(() => q.SetScale(0));
        Assert.Throws<ArgumentException>(() => q.Calibrate(zeros(0)));
        q.Calibrate(zeros(10));
        Assert.Equal(1f / 15, q.Scale.detach().item<float>(), 6);
    }
}
