using Sadg.Graph;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Sadg.Generation;

/// <summary>
/// Genie-D warm-up: per batch, a fresh <see cref="GenieGenerator"/> and latents z ~ N(0, 1) trained together on
/// L_BN (Adam; z at <see cref="GenerationOptions.LatentLearningRate"/>, reduced on plateau; the generator at
/// <see cref="GenerationOptions.GeneratorLearningRate"/>, decayed stepwise), with swing convolution on the FP
/// model's strided convolutions. Models without BatchNormalization use the statistics-free objective instead.
/// </summary>
public static class GenieWarmup
{
    public static SyntheticImages Run(GraphModule model, GenerationOptions options,
        IProgress<GenerationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        options.Validate();
        var input = model.Model.GetChannelsFirstImageInput();
        var batches = new List<SyntheticBatch>();
        using var objective = new GenerationObjective(model, options);
        string? warning = objective.HasStatistics ? null : StatisticsFreeLoss.NoBatchNormWarning;
        if (warning is not null)
            progress?.Report(new GenerationProgress(GenerationStage.Warmup, 0, options.Batches, 0, options.WarmupSteps,
                new Dictionary<string, double>(), new SadgWarning(SadgErrorCode.NoBatchNormStatistics, warning)));
        try
        {
            for (int b = 0; b < options.Batches; b++)
            {
                int size = Math.Min(options.BatchSize, options.Images - b * options.BatchSize);
                batches.Add(RunBatch(model, input, objective, options, b, size, progress, cancellationToken));
            }
        }
        catch
        {
            foreach (var batch in batches) batch.Dispose();
            throw;
        }
        return new SyntheticImages(batches, objective.HasStatistics, warning);
    }

    /// <summary>A seed for one use (<paramref name="salt"/>) in one batch, derived from the run's seed.</summary>
    internal static long DeriveSeed(long seed, int batch, int salt) =>
        unchecked((seed * 1_000_003L) ^ ((long)batch * 7_919L + salt * 104_729L) ^ 0x5AD6) & long.MaxValue;

    static SyntheticBatch RunBatch(GraphModule model, Onnx.ImageInput input, GenerationObjective objective,
        GenerationOptions o, int b, int size, IProgress<GenerationProgress>? progress, CancellationToken cancellationToken)
    {
        var device = model.Device;
        var generator = new GenieGenerator(input.Channels, input.Height, input.Width, o.LatentDim, o.GeneratorChannels,
            DeriveSeed(o.Seed, b, 1), device, o.Ablation.HasFlag(MethodAblation.StandardizedGeneratorOutput) ? null : o.InputPrior);
        Parameter latent;
        Tensor? targets = null;
        using (var random = new torch.Generator((ulong)DeriveSeed(o.Seed, b, 2)))
        {
            latent = new Parameter(OnDevice(randn([size, o.LatentDim], generator: random), device).DetachFromDisposeScope());
            if (!objective.HasStatistics)
            {
                int classes = CountClasses(model, input);
                targets = OnDevice(randint(classes, [size], generator: random, dtype: ScalarType.Int64), device).DetachFromDisposeScope();
            }
        }

        try
        {
            using var optZ = new HeldScalarAdam([latent], o.LatentLearningRate);
            using var optG = new HeldScalarAdam(generator.parameters(), o.GeneratorLearningRate);
            var plateau = new PlateauSchedule(o.LatentLearningRate, o.LatentPlateauFactor, o.LatentPlateauPatience, o.LatentMinLearningRate);
            double generatorRate = o.GeneratorLearningRate;
            using (o.SwingConvolution ? new SwingConvolution(model, DeriveSeed(o.Seed, b, 3)) : null)
            {
                for (int step = 0; step < o.WarmupSteps; step++)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    double loss;
                    Dictionary<string, double>? reported = null;
                    using (NewDisposeScope())
                    {
                        var terms = progress is null ? null : new Dictionary<string, Tensor>();
                        var (_, total) = objective.Evaluate(generator.forward(latent), targets, terms);
                        total.backward();
                        optZ.step();
                        optG.step();
                        optZ.ReleaseGradients();
                        optG.ReleaseGradients();
                        loss = total.item<float>();
                        if (terms is not null)
                        {
                            reported = terms.ToDictionary(t => t.Key, t => (double)t.Value.item<float>());
                            reported["total"] = loss;
                        }
                    }
                    if (plateau.Step(loss)) SetRate(optZ, plateau.Rate);
                    if ((step + 1) % o.GeneratorDecayEvery == 0) SetRate(optG, generatorRate *= o.GeneratorDecay);
                    if (reported is not null)
                        progress!.Report(new GenerationProgress(GenerationStage.Warmup, b, o.Batches, step + 1, o.WarmupSteps, reported));
                }
            }
            return new SyntheticBatch(b, generator, latent, Render(generator, latent), targets);
        }
        catch
        {
            generator.Dispose();
            latent.Dispose();
            targets?.Dispose();
            throw;
        }
    }

    /// <summary>The generator's images for its latents, detached and outside any dispose scope.</summary>
    internal static Tensor Render(GenieGenerator generator, Tensor latent)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        return generator.forward(latent).detach().contiguous().MoveToOuterDisposeScope().DetachFromDisposeScope();
    }

    /// <summary>The tensor on <paramref name="device"/>; a moved-from copy is disposed.</summary>
    internal static Tensor OnDevice(Tensor t, Device device)
    {
        if (t.device == device) return t;
        var moved = t.to(device);
        t.Dispose();
        return moved;
    }

    static int CountClasses(GraphModule model, Onnx.ImageInput input)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var logits = model.forward(zeros([1, input.Channels, input.Height, input.Width], device: model.Device));
        return (int)logits.flatten(1).shape[1];
    }

    internal static void SetRate(optim.Optimizer optimizer, double rate)
    {
        foreach (var group in optimizer.ParamGroups) group.LearningRate = rate;
    }

    /// <summary>PyTorch's ReduceLROnPlateau (mode min, relative threshold 1e-4, no cooldown).</summary>
    internal sealed class PlateauSchedule(double rate, double factor, int patience, double floor)
    {
        double best = double.PositiveInfinity;
        int bad;

        public double Rate { get; private set; } = rate;

        /// <summary>Records a loss; true when the rate changed.</summary>
        public bool Step(double loss)
        {
            if (loss < best * (1 - 1e-4))
            {
                best = loss;
                bad = 0;
                return false;
            }
            if (++bad <= patience) return false;
            bad = 0;
            double next = Math.Max(Rate * factor, floor);
            if (Rate - next <= 1e-8) return false;
            Rate = next;
            return true;
        }
    }
}
