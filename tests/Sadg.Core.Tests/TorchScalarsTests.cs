using System.Diagnostics;
using System.Runtime;
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
    static Tensor Randn(long seed, params long[] shape)
    {
        using var generator = new Generator(0).manual_seed(seed);
        return randn(shape, generator: generator);
    }

    /// <summary>
    /// Computes a reference with TorchSharp's implicit Scalars where no garbage collection can free them mid-call (test
    /// classes run in parallel, and other threads allocate).
    /// </summary>
    static T WithoutCollections<T>(Func<T> compute)
    {
        bool started = GC.TryStartNoGCRegion(16 << 20);
        try
        {
            return compute();
        }
        finally
        {
            if (started && GCSettings.LatencyMode == GCLatencyMode.NoGCRegion) GC.EndNoGCRegion();
        }
    }

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
        var x = Randn(1, 4, 5).Mul(3L);
        var y = Randn(2, 4, 5);
        var x10 = x.Mul(10L);
        var n = arange(-5, 7, dtype: ScalarType.Int64);
        var expected = WithoutCollections(() => new[]
        {
            x + y, x + 0.25, x - 0.25, 1 - x, 1.5 / x, x * 0.5, x / 3.0, x.abs().pow(2.4), x.pow(3), x.square(),
            x.clamp(0, 15), x.clamp(-0.5, 0.5), x.clamp_min(0.1), x.clamp_max(0.1), x.lt(0), x.ge(0.5),
            nn.functional.leaky_relu(x, 0.2), nn.functional.elu(x, 1.67), nn.functional.softplus(x10),
            full([2, 3], 2.5), arange(6, dtype: ScalarType.Int64),
            // Integer tensors stay integer with integer arguments, as with the implicit forms.
            n * 3L, n + 2, 6 - n, n.remainder(4), n.div(4, RoundingMode.floor), n.clamp(0, 3),
        });
        var actual = new[]
        {
            x.Add(y), x.Add(0.25), x.Sub(0.25), x.RSub(1), x.RDiv(1.5), x.Mul(0.5), x.Div(3.0), x.abs().Pow(2.4), x.Pow(3), x.Square(),
            x.Clamp(0, 15), x.Clamp(-0.5, 0.5), x.ClampMin(0.1), x.ClampMax(0.1), x.Lt(0), x.Ge(0.5),
            x.LeakyRelu(0.2), x.Elu(1.67), x10.Softplus(),
            TorchScalars.Full([2, 3], 2.5), TorchScalars.Arange(6, dtype: ScalarType.Int64),
            n.Mul(3L), n.Add(2), n.RSub(6), n.Remainder(4), n.Div(4, RoundingMode.floor), n.Clamp(0, 3),
        };
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++) AssertSame(expected[i], actual[i]);
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
                using var loss = (p - target).abs().Pow(3).sum();
                loss.backward();
                optimizer.step();
                schedule.step();
            }
            return p.detach().clone();
        }
        AssertSame(WithoutCollections(() => Run(p => optim.Adam([p], 0.05))), Run(p => new HeldScalarAdam([p], 0.05)));
        AssertSame(WithoutCollections(() => Run(p => optim.Adam([p], 0.05, weight_decay: 0.1, amsgrad: true))),
            Run(p => new HeldScalarAdam([p], 0.05, weight_decay: 0.1, amsgrad: true)));
    }

    /// <summary>
    /// Releasing the gradients after each step (two backward passes accumulating per step, as SADAG's step does) gives
    /// exactly the parameters that zeroing them before each step gives, and leaves no gradient behind.
    /// </summary>
    [Fact]
    public void ReleasedGradientsStepExactlyAsZeroedOnes()
    {
        using var scope = NewDisposeScope();
        var start = Randn(3, 6, 4);
        var target = Randn(4, 6, 4);
        Tensor Run(bool release)
        {
            var p = new Parameter(start.clone(), requires_grad: true);
            using var optimizer = new HeldScalarAdam([p], 0.05);
            for (int step = 0; step < 8; step++)
            {
                if (!release) optimizer.zero_grad();
                using (var loss = (p - target).abs().Pow(3).sum()) loss.backward();
                using (var loss = (p * target).sin().sum()) loss.backward();
                optimizer.step();
                if (release) optimizer.ReleaseGradients();
            }
            if (release) Assert.Null(p.grad);
            else Assert.NotNull(p.grad);
            return p.detach().clone();
        }
        AssertSame(Run(release: false), Run(release: true));
    }

    /// <summary>
    /// The reproduction of the crash (README, Known issues), written as Sadg writes it: clamp(0, 15), · 0.5, a tensor
    /// sum and a square chained inside a dispose scope (which holds the intermediate tensors), beside a thread that
    /// allocates and collects. With TorchSharp's implicit Scalars the same loop crashes the process within about a
    /// second; here it must run for three seconds.
    /// </summary>
    [Fact]
    public void ExplicitScalarsSurviveCollectionsOnAnotherThread()
    {
        using var t = Randn(5, 64);
        using var u = Randn(6, 64);
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
            while (clock.Elapsed < TimeSpan.FromSeconds(3))
            {
                using var scope = NewDisposeScope();
                t.Clamp(0, 15).Mul(0.5).Add(u).Add(1.0).Square();
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
