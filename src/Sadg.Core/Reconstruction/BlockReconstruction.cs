using Sadg.Graph;
using Sadg.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Sadg.Reconstruction;

/// <summary>Where block reconstruction is: block k of n, step s of S, and the current losses.</summary>
public sealed record ReconstructionProgress(int Block, int Blocks, int Step, int Steps, double ReconstructionLoss, double RoundingLoss);

/// <summary>
/// How one block's reconstruction ended: the last step's losses, the share of rounding offsets h(V) within 0.01 of
/// 0 or 1 (1: AdaRound converged, the weights optimized are the ones written), and how many of its operators' biases
/// were corrected afterwards (a block with a depthwise convolution: <see cref="BlockReconstruction"/>).
/// </summary>
public sealed record BlockOutcome(int Block, string Output, int Steps, double ReconstructionLoss, double RoundingLoss, double BinarizedShare,
    int CorrectedBiases = 0);

/// <summary>
/// Genie-M / BRECQ block reconstruction with QDrop (DESIGN §3). Blocks are reconstructed in order; for each:
/// its activation quantizers are calibrated on the quantized path's inputs, then its weight rounding (AdaRound),
/// weight scales and activation scales (LSQ) are learned to minimize
/// Σ_channels (y_q − y)² averaged over the batch and the spatial positions (<see cref="ReconstructionLoss"/>, BRECQ's
/// <c>(y_q − y).pow(2).sum(1).mean()</c>) + λ Σ(1 − |2h − 1|^β), where the block input mixes the full-precision
/// path's and the quantized path's inputs elementwise (QDrop) and y is the full-precision block output. Both scale
/// groups decay with a cosine schedule; scale learning rates are relative to each scale's initial value unless
/// <see cref="QuantizationOptions.ScaleSteps"/> says otherwise; the rounding variables' rate follows the step budget
/// (<see cref="QuantizationOptions.EffectiveRoundingLearningRate"/>). A block with a depthwise convolution then has its
/// biases corrected (<see cref="CorrectBiases"/>).
/// </summary>
public static class BlockReconstruction
{
    /// <summary>The smallest scale a learned quantization step may take.</summary>
    internal const double MinScale = 1e-8;

    /// <summary>
    /// Quantizes <paramref name="q"/> in place: calibrates every activation quantizer and, when
    /// <see cref="QuantizationOptions.Iterations"/> &gt; 0, reconstructs every block; weights end in their final
    /// rounding (hard AdaRound, or round-to-nearest without reconstruction).
    /// </summary>
    /// <param name="fp">The full-precision model the blocks are matched to (the same BN-folded graph, no hooks).</param>
    /// <param name="images">Calibration images, [N, C, H, W], on the models' device.</param>
    /// <returns>How each reconstructed block ended (empty without reconstruction).</returns>
    public static IReadOnlyList<BlockOutcome> Run(QuantizedGraph q, GraphModule fp, Tensor images, IProgress<ReconstructionProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        var options = q.Options;
        var blocks = BlockPartition.Partition(q.Graph, n => q.QuantizedNodes.Contains(n),
            depthwiseAlone: options.Ablation.HasFlag(Sadg.MethodAblation.DepthwiseAlone));
        var generator = new Generator((ulong)options.Seed, images.device);
        foreach (var a in q.ActivationQuantizers.Values) a.Generator = generator;

        var outcomes = new List<BlockOutcome>();
        using var outer = NewDisposeScope();
        Tensor xFp = images.detach(), xQ = images.detach();
        foreach (var block in blocks)
        {
            cancellationToken.ThrowIfCancellationRequested();
            CalibrateActivations(q, block, xQ, options.ActivationCalibrationSamples);
            var yFp = Forward(fp, block, xFp);
            if (options.Iterations > 0)
            {
                var outcome = Optimize(q, block, blocks.Count, xFp, xQ, yFp, generator, progress, cancellationToken);
                if (options.BiasCorrection == BiasCorrectionMode.Depthwise)
                    outcome = outcome with { CorrectedBiases = CorrectBiases(q, fp, block, xFp, xQ) };
                outcomes.Add(outcome);
            }
            else
                progress?.Report(new ReconstructionProgress(block.Index + 1, blocks.Count, 0, 0, 0, 0));

            var nextQ = Forward(q.Graph, block, xQ);
            xQ.Dispose();
            xFp.Dispose();
            xQ = nextQ;
            xFp = yFp;
        }
        return outcomes;
    }

    /// <summary>
    /// Σ over channels (axis 1) of (y_q − y)², averaged over every other axis (the batch and the spatial positions):
    /// the squared error per output position, so the rounding regularizer's weight means the same at every
    /// resolution.
    /// </summary>
    public static Tensor ReconstructionLoss(Tensor output, Tensor target)
    {
        var squared = (output - target).Square();
        return squared.dim() >= 2 ? squared.sum(1).mean() : squared.mean();
    }

    /// <summary>
    /// The operators whose biases <see cref="CorrectBiases"/> corrects in a block, in execution order: none unless the
    /// block holds a depthwise convolution; then its depthwise convolutions and its last quantized operator (which
    /// writes the block's output), each if it has a bias that can be corrected.
    /// </summary>
    static IEnumerable<GraphNode> CorrectedInBlock(QuantizedGraph q, Block block)
    {
        if (!block.QuantizedNodes.Any(n => BlockPartition.IsDepthwise(q.Graph, n))) return [];
        return block.QuantizedNodes
            .Where(n => (BlockPartition.IsDepthwise(q.Graph, n) || n == block.QuantizedNodes[^1]) && q.CorrectableBias(n) is not null);
    }

    /// <summary>
    /// Empirical bias correction (data-free quantization's, Nagel et al. 2019) after the reconstruction of a block
    /// with a depthwise convolution: each operator <see cref="CorrectedInBlock"/> names, in execution order, adds to its
    /// bias the mean over the calibration images and positions of (FP output − quantized output) per output channel,
    /// the FP path fed the FP block input and the quantized path the quantized one, so the next block is reconstructed
    /// on inputs whose channel means are right. A depthwise kernel has a handful of weights per channel, too few for
    /// the rounding to cancel the channel's mean error; the block's last operator is corrected after it, having been
    /// reconstructed against the uncorrected output. Other operators (a block's expansion or squeeze-excitation
    /// layers, every layer of blocks without a depthwise convolution) are left alone: correcting them cost accuracy
    /// where measured (docs/method.md).
    /// </summary>
    /// <returns>How many biases were corrected.</returns>
    static int CorrectBiases(QuantizedGraph q, GraphModule fp, Block block, Tensor xFp, Tensor xQ)
    {
        var nodes = CorrectedInBlock(q, block).ToList();
        foreach (var node in nodes)
        {
            using var scope = NewDisposeScope();
            q.CorrectBias(node, MeanError(fp, q.Graph, block, node.Outputs[0], xFp, xQ));
        }
        return nodes.Count;
    }

    /// <summary>
    /// The mean over every image and position of <paramref name="fp"/>'s <paramref name="value"/> fed
    /// <paramref name="xFp"/> minus <paramref name="q"/>'s fed <paramref name="xQ"/>, per channel (axis 1), in chunks;
    /// the value as its producer writes it, before any hook (an activation quantizer) changes it.
    /// </summary>
    static Tensor MeanError(GraphModule fp, GraphModule q, Block block, string value, Tensor xFp, Tensor xQ, int chunk = 128)
    {
        using var noGrad = no_grad();
        var sums = new List<Tensor>();
        long count = 0;
        for (long start = 0; start < xFp.shape[0]; start += chunk)
        {
            using var scope = NewDisposeScope();
            long n = Math.Min(chunk, xFp.shape[0] - start);
            Tensor Run(GraphModule graph, Tensor x)
            {
                Tensor? produced = null;
                using (graph.AddHook(value, t => produced = t, first: true))
                    graph.Run(new Dictionary<string, Tensor> { [block.Input] = x.narrow(0, start, n) }, [value], block.StartNode, block.EndNode);
                return produced!;
            }
            // A Conv's or Gemm's output: [N, C, …].
            var error = (Run(fp, xFp) - Run(q, xQ)).to_type(ScalarType.Float64).movedim([1], [0]).flatten(1);
            count += error.shape[1];
            sums.Add(error.sum([1]).MoveToOuterDisposeScope());
        }
        return stack(sums).sum([0]).Div(count);
    }

    /// <summary>The block's output for every image, in chunks, without gradients.</summary>
    static Tensor Forward(GraphModule graph, Block block, Tensor input) =>
        Forward(graph, block.Input, block.Output, input, block.StartNode, block.EndNode);

    /// <summary>
    /// <paramref name="output"/> computed from <paramref name="input"/> fed as <paramref name="inputName"/> (nodes
    /// [<paramref name="fromNode"/>, <paramref name="toNode"/>)), for every image, in chunks, without gradients.
    /// </summary>
    internal static Tensor Forward(GraphModule graph, string inputName, string output, Tensor input, int fromNode = 0, int toNode = int.MaxValue,
        int chunk = 128)
    {
        using var noGrad = no_grad();
        var parts = new List<Tensor>();
        for (long start = 0; start < input.shape[0]; start += chunk)
        {
            using var scope = NewDisposeScope();
            var x = input.narrow(0, start, Math.Min(chunk, input.shape[0] - start));
            parts.Add(graph.Run(new Dictionary<string, Tensor> { [inputName] = x }, [output], fromNode, toNode)[output]
                .detach().MoveToOuterDisposeScope());
        }
        return cat(parts, 0);
    }

    /// <summary>The activation quantizers whose values the block's quantized operators read.</summary>
    static List<(string Value, ActivationQuantizer Quantizer)> BlockActivations(QuantizedGraph q, Block block) =>
        block.QuantizedNodes.Select(n => n.Inputs[0]).Distinct()
            .Where(q.ActivationQuantizers.ContainsKey).Select(v => (v, q.ActivationQuantizers[v])).ToList();

    /// <summary>
    /// Sets each quantizer's initial scale from the values it sees on the quantized path, in execution order, so
    /// a quantizer is calibrated on inputs that earlier quantizers of the block have already quantized.
    /// </summary>
    static void CalibrateActivations(QuantizedGraph q, Block block, Tensor xQ, int samples)
    {
        var x = xQ.narrow(0, 0, Math.Min(samples, xQ.shape[0]));
        foreach (var (value, quantizer) in BlockActivations(q, block))
        {
            if (quantizer.Calibrated) continue;
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            var captured = value == block.Input ? x
                : q.Graph.Run(new Dictionary<string, Tensor> { [block.Input] = x }, [value], block.StartNode, block.EndNode)[value];
            quantizer.Calibrate(captured);
        }
    }

    static BlockOutcome Optimize(QuantizedGraph q, Block block, int blockCount, Tensor xFp, Tensor xQ, Tensor yFp, Generator generator,
        IProgress<ReconstructionProgress>? progress, CancellationToken cancellationToken)
    {
        var options = q.Options;
        var weights = block.QuantizedNodes.Select(n => n.Inputs[1]).Distinct().Select(w => q.WeightQuantizers[w]).ToList();
        var activations = BlockActivations(q, block).Select(a => a.Quantizer).ToList();
        foreach (var w in weights) w.Mode = WeightRoundingMode.Soft;

        using var roundingOptimizer = new HeldScalarAdam(weights.Select(w => w.RoundingVariable), options.EffectiveRoundingLearningRate);
        using var weightScaleOptimizer = new HeldScalarAdam(weights.Select(w => w.Scale), options.EffectiveWeightScaleLearningRate);
        var weightScaleSchedule = optim.lr_scheduler.CosineAnnealingLR(weightScaleOptimizer, options.Iterations, 0);
        TorchSharp.Modules.Adam? activationOptimizer = activations.Count > 0
            ? new HeldScalarAdam(activations.Select(a => a.Scale), options.EffectiveActivationScaleLearningRate) : null;
        var activationScaleSchedule = activationOptimizer is null || options.Ablation.HasFlag(Sadg.MethodAblation.NoActivationScaleDecay) ? null
            : optim.lr_scheduler.CosineAnnealingLR(activationOptimizer, options.Iterations, 0);
        double lastReconstruction = 0, lastRounding = 0;

        // Relative scale steps: each Adam update of a scale is multiplied by the scale's initial value.
        var scales = weights.Select(w => (Tensor)w.Scale).Concat(activations.Select(a => (Tensor)a.Scale)).ToList();
        using var initialScope = NewDisposeScope();
        var relative = options.ScaleSteps != ScaleSteps.Absolute ? new RelativeScaleSteps(scales) : null;

        q.SetTraining(true);
        try
        {
            long n = xFp.shape[0];
            int steps = options.Iterations;
            int reportEvery = Math.Max(1, steps / 20);
            for (int step = 0; step < steps; step++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                using var scope = NewDisposeScope();
                var index = randint(0, n, [Math.Min(options.BatchSize, n)], generator: generator, device: xFp.device);
                var fpIn = xFp.index_select(0, index);
                var qIn = xQ.index_select(0, index);
                // QDrop on the block input: each element from the quantized path with probability 1 − p.
                var input = QDrop.Mix(qIn, fpIn, QDrop.KeepFloatMask(fpIn.shape, options.DropProbability, generator, fpIn.device));
                var target = yFp.index_select(0, index);

                var output = q.Graph.Run(new Dictionary<string, Tensor> { [block.Input] = input }, [block.Output], block.StartNode, block.EndNode)[block.Output];
                var reconstruction = options.Ablation.HasFlag(Sadg.MethodAblation.LossSumsPositions)
                    ? (output - target).Square().sum().Div(output.shape[0])
                    : ReconstructionLoss(output, target);
                bool warmUp = WeightQuantizer.InWarmUp(step, steps);
                double beta = WeightQuantizer.Beta(step, steps);
                Tensor rounding = warmUp ? zeros(1, device: output.device)
                    : weights.Select(w => w.RoundingLoss(beta)).Aggregate((a, b) => a.Add(b));
                var loss = reconstruction.Add(rounding.Mul(options.RoundingLossWeight));

                roundingOptimizer.zero_grad();
                weightScaleOptimizer.zero_grad();
                activationOptimizer?.zero_grad();
                loss.backward();
                void StepAll()
                {
                    roundingOptimizer.step();
                    weightScaleOptimizer.step();
                    weightScaleSchedule.step();
                    activationOptimizer?.step();
                    activationScaleSchedule?.step();
                }
                if (relative is null) StepAll();
                else relative.Step(StepAll);
                using (no_grad())
                {
                    // A learned scale must stay a valid quantization step.
                    foreach (var w in weights) w.Scale.ClampMin_(MinScale);
                    foreach (var a in activations) a.Scale.ClampMin_(MinScale);
                }

                if (step == steps - 1 || (progress is not null && step % reportEvery == 0))
                {
                    lastReconstruction = reconstruction.item<float>();
                    lastRounding = rounding.item<float>();
                    progress?.Report(new ReconstructionProgress(block.Index + 1, blockCount, step + 1, steps, lastReconstruction, lastRounding));
                }
            }
            long count = weights.Sum(w => w.RoundingVariable.numel());
            double binarized = count == 0 ? 1 : weights.Sum(w => w.BinarizedShare() * w.RoundingVariable.numel()) / count;
            return new BlockOutcome(block.Index + 1, block.Output, steps, lastReconstruction, lastRounding, binarized);
        }
        finally
        {
            q.SetTraining(false);
            activationOptimizer?.Dispose();
            foreach (var w in weights) w.Mode = WeightRoundingMode.Hard;
        }
    }
}
