using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Sadg.Generation;

/// <summary>
/// Genie-D's small generator, one per batch: Linear(latent → C0·⌈H/4⌉·⌈W/4⌉) → BN → ×2 upsample → conv3×3
/// (C0 → C0/2, as Genie's) → BN → LeakyReLU(0.2) → ×2 upsample → conv3×3 (→ the model's channels) → Tanh → BN without affine
/// (each upsampling and the convolution after it computed as one, see <see cref="UpsampledConvolution"/>). When H or W
/// is not a multiple of 4 it works at the ceiling sizes and crops the centre to H×W before the Tanh. Genie's last
/// BatchNorm leaves each channel at batch mean 0 and std 1, what a model fed standardized images expects; given the
/// model's expected input statistics (<see cref="InputPrior"/>) the generator scales and shifts its output to them, so
/// that a model fed <c>x/255</c>, <c>x/127.5 − 1</c> or 0..255 pixels is shown images in its own range. Its batch
/// norms always use batch statistics (the generator is only ever trained). Weights are drawn from a seeded
/// generator (PyTorch's default ranges), so the same seed gives the same generator on any thread.
/// </summary>
public sealed class GenieGenerator : nn.Module<Tensor, Tensor>
{
    readonly Linear l1;
    readonly BatchNorm2d bn0;
    // The convolutions are plain parameters (TorchSharp 0.107's Conv2d constructor leaks a tensor per instance,
    // and a generator is made per batch).
    readonly Parameter conv1_weight, conv1_bias, conv2_weight, conv2_bias;
    readonly BatchNorm2d bn1;
    readonly BatchNorm2d bn2;
    readonly int features, h0, w0;
    // The expected input's per-channel mean and std (null: Genie's mean 0, std 1).
    readonly float[]? outputMean, outputStd;
    // Per pass with a graph while the first Linear's gradient is deferred: the pass's input and its per-sample bias leaf.
    readonly List<(Tensor Input, Tensor Bias)> deferred = [];

    /// <param name="output">Per-channel mean and std of the images (the batch's, over its pixels); null: 0 and 1.</param>
    public GenieGenerator(int channels, int height, int width, int latentDim, int features, long seed, Device? device = null,
        InputPrior? output = null)
        : base(nameof(GenieGenerator))
    {
        if (output is not null && (output.Mean.Length != channels || output.Std.Length != channels))
            throw new ArgumentException($"The output statistics have {output.Mean.Length} means and {output.Std.Length} stds for {channels} channels.", nameof(output));
        outputMean = output?.Mean;
        outputStd = output?.Std;
        Channels = channels;
        Height = height;
        Width = width;
        LatentDim = latentDim;
        this.features = features;
        h0 = (height + 3) / 4;
        w0 = (width + 3) / 4;
        l1 = nn.Linear(latentDim, (long)features * h0 * w0);
        bn0 = nn.BatchNorm2d(features);
        long hidden = Math.Max(1, features / 2);
        conv1_weight = new Parameter(empty(hidden, features, 3, 3).DetachFromDisposeScope());
        conv1_bias = new Parameter(empty(hidden).DetachFromDisposeScope());
        bn1 = nn.BatchNorm2d(hidden);
        conv2_weight = new Parameter(empty(channels, hidden, 3, 3).DetachFromDisposeScope());
        conv2_bias = new Parameter(empty(channels).DetachFromDisposeScope());
        bn2 = nn.BatchNorm2d(channels, affine: false);
        RegisterComponents();
        Initialize(seed);
        if (device is not null && device.type != DeviceType.CPU) this.to(device);
        train();
    }

    public int Channels { get; }

    public int Height { get; }

    public int Width { get; }

    public int LatentDim { get; }

    /// <summary>
    /// When set, a pass with a graph leaves the gradient of the first Linear as its factors instead of forming it: the
    /// pass's input z [B, latent] and the gradient at the Linear's output [B, C0·⌈H/4⌉·⌈W/4⌉], collected on a
    /// per-sample copy of the bias (a leaf, so that only a backward pass fills it, never an <c>autograd.grad</c> to the
    /// latent). <see cref="FormDeferredGradients"/> forms the weight's and the bias's gradients from them. At 224² the
    /// weight's gradient is 103 MB and its factors 13 MB a pass: SADAG's refinement back-propagates two passes per step,
    /// and the first pass's weight gradient was held while the second pass's graph was alive, at the stage's peak.
    /// </summary>
    public bool DeferFirstLayerGradient { get; set; }

    /// <summary>
    /// Forms the first Linear's weight and bias gradients, Σ over the deferred passes of gᵀz and Σ g (g: the gradient at
    /// the Linear's output), adds them to any gradient they hold, and drops the factors. Passes that were never
    /// back-propagated add nothing.
    /// </summary>
    public void FormDeferredGradients()
    {
        using (NewDisposeScope())
        using (no_grad())
        {
            foreach (var (input, bias) in deferred)
            {
                var output = bias.grad;
                if (output is null) continue;
                Accumulate(l1.weight!, output.t().mm(input));
                Accumulate(l1.bias!, output.sum(0L)); // 0L: a literal 0 would bind to sum(ScalarType)
            }
        }
        DropDeferred();

        static void Accumulate(Tensor parameter, Tensor gradient)
        {
            if (parameter.grad is { } held) held.Add_(gradient);
            else parameter.grad = gradient;
        }
    }

    void DropDeferred()
    {
        foreach (var (input, bias) in deferred)
        {
            input.Dispose();
            bias.Dispose();
        }
        deferred.Clear();
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) DropDeferred();
        base.Dispose(disposing);
    }

    /// <summary>An independent generator with this one's weights and batch-norm buffers, on the same device.</summary>
    public GenieGenerator Copy()
    {
        var copy = new GenieGenerator(Channels, Height, Width, LatentDim, features, 0, l1.weight!.device,
            outputMean is null ? null : new InputPrior(outputMean, outputStd!, ""));
        using var noGrad = no_grad();
        var source = state_dict();
        foreach (var (name, tensor) in copy.state_dict()) tensor.copy_(source[name]);
        copy.train(training);
        return copy;
    }

    /// <summary>Images [B, C, H, W] from latents [B, LatentDim].</summary>
    public override Tensor forward(Tensor z)
    {
        // Intermediates go when the pass ends, not when the caller's scope does: without a graph nothing else holds them.
        using var scope = NewDisposeScope();
        var x = FirstLayer(z).view(z.shape[0], features, h0, w0);
        x = bn0.forward(x);
        x = bn1.forward(UpsampledConvolution(x, conv1_weight, conv1_bias)).LeakyRelu(0.2);
        x = UpsampledConvolution(x, conv2_weight, conv2_bias);
        if (x.shape[2] != Height || x.shape[3] != Width)
        {
            long top = (x.shape[2] - Height) / 2, left = (x.shape[3] - Width) / 2;
            x = x[.., .., TensorIndex.Slice(top, top + Height), TensorIndex.Slice(left, left + Width)];
        }
        x = bn2.forward(x.tanh());
        if (outputMean is not null)
            x = x.mul(tensor(outputStd!, device: x.device).view(1, -1, 1, 1)).Add(tensor(outputMean, device: x.device).view(1, -1, 1, 1));
        return x.MoveToOuterDisposeScope();
    }

    Tensor FirstLayer(Tensor z)
    {
        if (!DeferFirstLayerGradient || !is_grad_enabled() || !l1.weight!.requires_grad) return l1.forward(z);
        var bias = l1.bias!.detach().expand(z.shape[0], -1).contiguous().requires_grad_().DetachFromDisposeScope();
        deferred.Add((z.detach().DetachFromDisposeScope(), bias));
        return addmm(bias, z, l1.weight.detach().t(), 1, 1);
    }

    /// <summary>
    /// A ×2 nearest upsampling followed by a 3×3 convolution with padding 1, computed at the input's resolution:
    /// each of the four output phases (row parity a, column parity b) is a 3×3 convolution of the input whose taps
    /// are sums of the kernel's (rows: phase 0 takes w₀ at offset −1 and w₁ + w₂ at 0; phase 1 takes w₀ + w₁ at 0
    /// and w₂ at +1; columns likewise), and a pixel shuffle interleaves the phases. The result is the same function
    /// of x, weight and bias, but neither the upsampled tensor (four times the input) nor its gradient is ever
    /// made, which at 224² is the generator's largest tensor.
    /// </summary>
    internal static Tensor UpsampledConvolution(Tensor x, Tensor weight, Tensor? bias)
    {
        using var scope = NewDisposeScope();
        // phases[a, new tap, old tap]: which of the kernel's taps land on each tap of phase a.
        var phases = tensor(new float[] { 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 1 }, [2, 3, 3])
            .to(weight.dtype).to(weight.device);
        // [O, I, 3, 3] → [O, a, b, I, 3, 3] → [4·O, I, 3, 3], channel o·4 + a·2 + b as pixel_shuffle reads it.
        var phased = einsum("aik,oukl,bjl->oabuij", phases, weight, phases).reshape(weight.shape[0] * 4, weight.shape[1], 3, 3);
        var phasedBias = bias?.repeat_interleave(4L);
        var y = nn.functional.conv2d(x, phased, phasedBias, padding: [1, 1]);
        return nn.functional.pixel_shuffle(y, 2).MoveToOuterDisposeScope();
    }

    void Initialize(long seed)
    {
        using var generator = new torch.Generator((ulong)seed);
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        foreach (var (weight, bias) in new[] { (l1.weight!, l1.bias!), (conv1_weight, conv1_bias), (conv2_weight, conv2_bias) })
        {
            double bound = 1.0 / Math.Sqrt(weight.shape.Skip(1).Aggregate(1L, (a, b) => a * b));
            foreach (var p in new[] { weight, bias })
                p.copy_(rand(p.shape, generator: generator).Mul(2 * bound).Sub(bound));
        }
    }
}
