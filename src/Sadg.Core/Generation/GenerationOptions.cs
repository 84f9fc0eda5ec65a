namespace Sadg.Generation;

/// <summary>
/// Every hyper-parameter of data generation (Genie-D warm-up and SADAG refinement), in one place. Each is
/// documented once with the paper's value and the CPU default of <see cref="Default"/> side by side.
/// Use <see cref="Quick"/> for builds and CI, <see cref="Default"/> on a 2-core machine, <see cref="Paper"/> on a GPU.
/// </summary>
public sealed record GenerationOptions
{
    /// <summary>Images to synthesize in all. Paper: 1024. CPU default: 256.</summary>
    public int Images { get; init; } = 256;

    /// <summary>Images per batch; each batch gets its own latents and generator. Paper: 128. CPU default: 64.</summary>
    public int BatchSize { get; init; } = 64;

    /// <summary>Seed of every random choice (latents, generator weights, swing offsets, neighbours, targets).</summary>
    public long Seed { get; init; } = 0;

    // ---- Genie-D warm-up ----

    /// <summary>Warm-up steps per batch (generator and latents trained on L_BN). Paper: 4000. CPU default: 400.</summary>
    public int WarmupSteps { get; init; } = 400;

    /// <summary>Dimension of the latent z. Paper (Genie): 256. CPU default: 256.</summary>
    public int LatentDim { get; init; } = 256;

    /// <summary>Channels C0 of the generator's first feature map (Linear → C0·(H/4)·(W/4)). Paper (Genie): 128. CPU default: 64.</summary>
    public int GeneratorChannels { get; init; } = 64;

    /// <summary>Adam learning rate of the latents during warm-up. Paper: 0.1. CPU default: 0.1.</summary>
    public double LatentLearningRate { get; init; } = 0.1;

    /// <summary>Steps without improvement of L_BN before the latents' learning rate is reduced (PyTorch ReduceLROnPlateau). Paper: 100. CPU default: 100.</summary>
    public int LatentPlateauPatience { get; init; } = 100;

    /// <summary>Factor the latents' learning rate is multiplied by on a plateau. Paper: 0.1 (PyTorch's default). CPU default: 0.1.</summary>
    public double LatentPlateauFactor { get; init; } = 0.1;

    /// <summary>Floor of the latents' learning rate. Paper: 1e-4. CPU default: 1e-4.</summary>
    public double LatentMinLearningRate { get; init; } = 1e-4;

    /// <summary>Adam learning rate of the generator during warm-up. Paper: 0.01. CPU default: 0.01.</summary>
    public double GeneratorLearningRate { get; init; } = 0.01;

    /// <summary>The generator's learning rate is multiplied by this every <see cref="GeneratorDecayEvery"/> steps. Paper: 0.95. CPU default: 0.95.</summary>
    public double GeneratorDecay { get; init; } = 0.95;

    /// <summary>Steps between generator learning-rate decays. Paper: 100. CPU default: 100.</summary>
    public int GeneratorDecayEvery { get; init; } = 100;

    /// <summary>Shift every strided convolution's input by a random offset in [−1, 1] pixels while warming up ("swing convolution"). Paper: on. CPU default: on.</summary>
    public bool SwingConvolution { get; init; } = true;

    /// <summary>
    /// What the model expects of its input: per-channel targets of the per-image mean and std that the input prior
    /// term of L_BN pulls the images towards; null: no input prior. Paper: not stated (Genie assumes standardized
    /// inputs). CPU default: null here; the pipeline resolves it from the user, the model's metadata or its first
    /// BatchNormalization node (<see cref="Generation.InputPrior"/>).
    /// </summary>
    public InputPrior? InputPrior { get; init; }

    /// <summary>Weight of the input prior term inside L_BN. Paper: not stated. CPU default: 1.</summary>
    public double InputPriorWeight { get; init; } = 1;

    // ---- SADAG refinement ----

    /// <summary>Refinement steps per batch. Paper: 500. CPU default: 60.</summary>
    public int RefinementSteps { get; init; } = 60;

    /// <summary>Adam learning rate of the latents during refinement. Paper: 1e-5. CPU default: 1e-5.</summary>
    public double RefineLatentLearningRate { get; init; } = 1e-5;

    /// <summary>Adam learning rate of the generator during refinement. Paper: 1e-4. CPU default: 1e-4.</summary>
    public double RefineGeneratorLearningRate { get; init; } = 1e-4;

    /// <summary>The refinement generator's learning rate is multiplied by this after every step. Paper (the authors' code): 0.95. CPU default: 0.95.</summary>
    public double RefineGeneratorDecay { get; init; } = 0.95;

    /// <summary>
    /// Floor of the latents' refinement learning rate, reduced on plateau (patience <see cref="LatentPlateauPatience"/>,
    /// factor <see cref="LatentPlateauFactor"/>). Paper (the authors' code): 1e-6. CPU default: 1e-6.
    /// </summary>
    public double RefineLatentMinLearningRate { get; init; } = 1e-6;

    /// <summary>How the neighbour is chosen. Paper: <see cref="NeighbourMode.Paper"/>. CPU default: <see cref="NeighbourMode.Random"/> (the same in effect; the benchmark decides).</summary>
    public NeighbourMode Neighbour { get; init; } = NeighbourMode.Random;

    /// <summary>Radius ρ of the neighbour step in latent space. Paper: 1. CPU default: 1.</summary>
    public double Rho { get; init; } = 1;

    /// <summary>Margin ζ of the diversity loss. Paper: 0. CPU default: 0.</summary>
    public double Zeta { get; init; } = 0;

    /// <summary>
    /// Weight λ_BN of L_BN in the refinement loss. Paper: 1. CPU default: 0: at the CPU budgets the warm-up has
    /// already matched the statistics, and going on matching them in the refinement cost accuracy in every comparison
    /// made (two models, two profiles, W4A4 and W3A3; docs/benchmarks/sadag-noise.md). The paper profile keeps 1.
    /// </summary>
    public double LambdaBn { get; init; } = 0;

    /// <summary>Weight λ_GM of the gradient-matching (sharpness) loss. Paper: 1. CPU default: 1.</summary>
    public double LambdaGm { get; init; } = 1;

    /// <summary>Weight λ_div of the diversity loss. Paper: 1. CPU default: 1.</summary>
    public double LambdaDiv { get; init; } = 1;

    // ---- Models without BatchNormalization (statistics-free fallback; not in the paper) ----

    /// <summary>Weight of the cross-entropy to random target classes. Paper: n/a. CPU default: 1.</summary>
    public double FallbackCrossEntropyWeight { get; init; } = 1;

    /// <summary>Weight of the total-variation image prior. Paper: n/a. CPU default: 0.05.</summary>
    public double FallbackTotalVariationWeight { get; init; } = 0.05;

    /// <summary>Weight of the L2 image prior (mean squared pixel). Paper: n/a. CPU default: 0.01.</summary>
    public double FallbackL2Weight { get; init; } = 0.01;

    /// <summary>For builds and CI: 64 images in batches of 32, 100 warm-up and 20 refinement steps, a 32-channel generator.</summary>
    public static GenerationOptions Quick { get; } = new()
    {
        Images = 64,
        BatchSize = 32,
        WarmupSteps = 100,
        RefinementSteps = 20,
        LatentPlateauPatience = 50,
        GeneratorDecayEvery = 25,
        GeneratorChannels = 32,
    };

    /// <summary>A 2-core machine: 256 images in batches of 64, 400 warm-up and 60 refinement steps.</summary>
    public static GenerationOptions Default { get; } = new();

    /// <summary>The paper's budget (a GPU): 1024 images in batches of 128, 4000 warm-up and 500 refinement steps, the paper's λ_BN = 1.</summary>
    public static GenerationOptions Paper { get; } = new()
    {
        Images = 1024,
        BatchSize = 128,
        WarmupSteps = 4000,
        GeneratorChannels = 128,
        RefinementSteps = 500,
        LambdaBn = 1,
    };

    /// <summary>The budgets of a step profile.</summary>
    public static GenerationOptions Profile(StepProfile profile) => profile switch
    {
        StepProfile.Quick => Quick,
        StepProfile.Paper => Paper,
        _ => Default,
    };

    /// <summary>The number of batches: ⌈Images / BatchSize⌉ (the last one may be smaller).</summary>
    public int Batches => (Images + BatchSize - 1) / BatchSize;

    /// <summary>For the benchmark's ablation only (<see cref="MethodAblation"/>); none by default.</summary>
    public MethodAblation Ablation { get; init; }

    /// <summary>Throws when a value cannot work, naming it.</summary>
    public void Validate()
    {
        if (Images < 1) throw new ArgumentOutOfRangeException(nameof(Images), Images, "Generate at least one image.");
        if (BatchSize < 2) throw new ArgumentOutOfRangeException(nameof(BatchSize), BatchSize, "Batches need at least two images (the generator uses batch statistics).");
        if (WarmupSteps < 0) throw new ArgumentOutOfRangeException(nameof(WarmupSteps), WarmupSteps, "Must be ≥ 0.");
        if (RefinementSteps < 0) throw new ArgumentOutOfRangeException(nameof(RefinementSteps), RefinementSteps, "Must be ≥ 0.");
        if (LatentDim < 1) throw new ArgumentOutOfRangeException(nameof(LatentDim), LatentDim, "Must be ≥ 1.");
        if (GeneratorChannels < 1) throw new ArgumentOutOfRangeException(nameof(GeneratorChannels), GeneratorChannels, "Must be ≥ 1.");
        if (InputPrior is { } p && p.Std.Any(v => !(v > 0)))
            throw new ArgumentOutOfRangeException(nameof(InputPrior), p, "The prior's std must be > 0.");
        if (GeneratorDecayEvery < 1) throw new ArgumentOutOfRangeException(nameof(GeneratorDecayEvery), GeneratorDecayEvery, "Must be ≥ 1.");
    }
}
