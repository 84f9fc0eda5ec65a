using System.Diagnostics;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Sadg.Tests;

/// <summary>
/// <see cref="TorchScalars"/> and <see cref="HeldScalarAdam"/>: the same values as TorchSharp's implicit-Scalar forms
/// they replace, and the explicit-Scalar pattern surviving garbage collections started by another thread (the
/// implicit forms crash the process within a second under the same load: README, Known issues).
/// </summary>
public class TorchScalarsTests
{
    static Tensor Randn(long seed, params long[] shape) => randn(shape, generator: new Generator(0).manual_seed(seed));

    static void AssertSame(Tensor expected, Tensor actual)
    {
        Assert.Equal(expected.dtype, actual.dtype);
        Assert.Equal(expected.shape, actual.shape);
        Assert.True(expected.eq(actual).all().item<bool>(), "the values differ");
    }

    [Fact]
    public void HelpersGiveTheValuesOfTheImplicitForms()
    {
        using var scope = NewDisposeScope();
        var x = Randn(1, 4, 5) * 3;
        var y = Randn(2, 4, 5);
        AssertSame(x + y, x.Add(y));
        AssertSame(x + 0.25, x.Add(0.25));
        AssertSame(x - 0.25, x.Sub(0.25));
        AssertSame(1 - x, x.RSub(1));
        AssertSame(1.5 / x, x.RDiv(1.5));
        AssertSame(x * 0.5, x.Mul(0.5));
        AssertSame(x / 3.0, x.Div(3.0));
        AssertSame(x.abs().pow(2.4), x.abs().Pow(2.4));
        AssertSame(x.pow(3), x.Pow(3));
        AssertSame(x.square(), x.Square());
        AssertSame(x.clamp(0, 15), x.Clamp(0, 15));
        AssertSame(x.clamp(-0.5, 0.5), x.Clamp(-0.5, 0.5));
        AssertSame(x.clamp_min(0.1), x.ClampMin(0.1));
        AssertSame(x.clamp_max(0.1), x.ClampMax(0.1));
        AssertSame(x.lt(0), x.Lt(0));
        AssertSame(x.ge(0.5), x.Ge(0.5));
        AssertSame(nn.functional.leaky_relu(x, 0.2), x.LeakyRelu(0.2));
        AssertSame(nn.functional.elu(x, 1.67), x.Elu(1.67));
        AssertSame(nn.functional.softplus(x * 10), (x * 10).Softplus());
        AssertSame(full([2, 3], 2.5), TorchScalars.Full([2, 3], 2.5));
        AssertSame(arange(6, dtype: ScalarType.Int64), TorchScalars.Arange(6, dtype: ScalarType.Int64));

        // Integer tensors stay integer with integer arguments, as with the implicit forms.
        var n = arange(-5, 7, dtype: ScalarType.Int64);
        AssertSame(n * 3L, n.Mul(3L));
        AssertSame(n + 2, n.Add(2));
        AssertSame(6 - n, n.RSub(6));
        AssertSame(n.remainder(4), n.Remainder(4));
        AssertSame(n.div(4, RoundingMode.floor), n.Div(4, RoundingMode.floor));
        AssertSame(n.clamp(0, 3), n.Clamp(0, 3));
    }

    [Fact]
    public void HeldScalarAdamStepsExactlyAsTorchSharpsAdam()
    {
        using var scope = NewDisposeScope();
        var start = Randn(3, 6, 4);
        var target = Randn(4, 6, 4);
        Tensor Run(Func<Parameter, Adam> create)
        {
            var p = new Parameter(start.clone(), requires_grad: true);
            using var optimizer = create(p);
            var schedule = optim.lr_scheduler.CosineAnnealingLR(optimizer, 8, 0);
            for (int step = 0; step < 8; step++)
            {
                optimizer.zero_grad();
                using var loss = (p - target).abs().pow(3).sum();
                loss.backward();
                optimizer.step();
                schedule.step();
            }
            return p.detach().clone();
        }
        AssertSame(Run(p => optim.Adam([p], 0.05)), Run(p => new HeldScalarAdam([p], 0.05)));
        AssertSame(Run(p => optim.Adam([p], 0.05, weight_decay: 0.1, amsgrad: true)),
            Run(p => new HeldScalarAdam([p], 0.05, weight_decay: 0.1, amsgrad: true)));
    }

    /// <summary>
    /// The reproduction of the crash (README, Known issues), with Sadg's explicit Scalars: a loop of clamp(0, 15),
    /// · 0.5 and a tensor sum beside a thread that allocates and collects. The implicit forms of the same loop crash
    /// the process within about a second; here it must run for three seconds.
    /// </summary>
    [Fact]
    public void ExplicitScalarsSurviveCollectionsOnAnotherThread()
    {
        using var stop = new CancellationTokenSource();
        var allocator = new Thread(() =>
        {
            var keep = new object[64];
            for (long i = 0; !stop.IsCancellationRequested; i++)
            {
                keep[i % keep.Length] = new byte[256 + i % 4096];
                if (i % 20_000 == 0) GC.Collect();
            }
        }) { IsBackground = true };
        allocator.Start();
        long iterations = 0;
        var clock = Stopwatch.StartNew();
        try
        {
            using var t = Randn(5, 64);
            using var u = Randn(6, 64);
            while (clock.Elapsed < TimeSpan.FromSeconds(3))
            {
                using var clamped = t.Clamp(0, 15);
                using var halved = clamped.Mul(0.5);
                using var sum = halved.Add(u);
                using var shifted = sum.Add(1.0).Square();
                iterations++;
            }
        }
        finally
        {
            stop.Cancel();
            allocator.Join();
        }
        Assert.True(iterations > 1000, $"only {iterations} iterations ran");
    }
}
