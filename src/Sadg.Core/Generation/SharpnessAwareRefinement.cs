using Sadg.Graph;
using TorchSharp;
using static TorchSharp.torch;

namespace Sadg.Generation;

/// <summary>
/// SADAG refinement. Per batch, continuing from the warm-up's latents z and generator G (Adam at
/// <see cref="GenerationOptions.RefineLatentLearningRate"/>, reduced on plateau, and
/// <see cref="GenerationOptions.RefineGeneratorLearningRate"/>, decayed after every step, as the authors' code does):
/// x = G(z); f = F(x), q = Q₀(x); a = what Q₀'s classifier head reads; e = f − q; â, ê per-sample normalized.
/// A neighbour x′ = G(z − δ) (see <see cref="NeighbourMode"/>) gives â′, ê′;
/// L_GM = 1 − mean_i (â′_i·â_i)(ê′_i·ê_i) (the cosine of the per-sample last-layer gradients at x and x′, see
/// <see cref="GradientSimilarity"/>); L_div = mean_i max_j max(|S_ij| − ζ, 0) with S_ij = (â_i·sg(â_j))(ê_i·sg(ê_j))
/// against the batch itself (self entries zeroed; the partner side detached, as the authors' code does) and a memory
/// of earlier batches' final (â, ê);
/// loss = λ_BN L_BN + λ_GM L_GM + λ_div L_div. After each batch its final (â, ê) joins the memory.
/// Q₀ stays frozen; F keeps its BatchNormalization layers.
/// </summary>
public static class SharpnessAwareRefinement
{
    /// <summary>Refines every batch of <paramref name="images"/> in place (their images are replaced).</summary>
    public static void Run(SyntheticImages images, GraphModule model, GraphModule quantized, GenerationOptions options,
        IProgress<GenerationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        options.Validate();
        var head = ClassifierHead.Find(quantized);
        using var recorder = head.Record(quantized);
        using var objective = new GenerationObjective(model, options);
        var memory = new List<(Tensor A, Tensor E)>();
        try
        {
            foreach (var batch in images.Batches)
            {
                RefineBatch(batch, model, quantized, recorder, objective, memory, options, images.Batches.Count, progress, cancellationToken);
                memory.Add(Signature(batch, model, quantized, recorder, objective));
            }
        }
        finally
        {
            foreach (var (a, e) in memory)
            {
                a.Dispose();
                e.Dispose();
            }
        }
        images.Refined = true;
    }

    static void RefineBatch(SyntheticBatch batch, GraphModule model, GraphModule quantized, FeatureRecorder recorder,
        GenerationObjective objective, List<(Tensor A, Tensor E)> memory, GenerationOptions o, int batches,
        IProgress<GenerationProgress>? progress, CancellationToken cancellationToken)
    {
        var z = batch.Latent;
        var g = batch.Generator;
        using var optZ = new HeldScalarAdam([z], o.RefineLatentLearningRate);
        using var optG = new HeldScalarAdam(g.parameters(), o.RefineGeneratorLearningRate);
        var plateau = new GenieWarmup.PlateauSchedule(o.RefineLatentLearningRate, o.LatentPlateauFactor, o.LatentPlateauPatience, o.RefineLatentMinLearningRate);
        double generatorRate = o.RefineGeneratorLearningRate;
        using var random = new torch.Generator((ulong)GenieWarmup.DeriveSeed(o.Seed, batch.Index, 4));
        Tensor? memoryA = null, memoryE = null;
        if (memory.Count > 0)
        {
            memoryA = cat(memory.Select(m => m.A).ToArray(), 0).DetachFromDisposeScope();
            memoryE = cat(memory.Select(m => m.E).ToArray(), 0).DetachFromDisposeScope();
        }
        try
        {
            for (int step = 0; step < o.RefinementSteps; step++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                using var scope = NewDisposeScope();
                optZ.zero_grad();
                optG.zero_grad();
                var terms = progress is null ? null : new Dictionary<string, Tensor>();

                var (loss, gm, div) = Gradients(g, z, batch.Targets, model, quantized, recorder, objective, memoryA, memoryE, o, random, terms);
                optZ.step();
                optG.step();
                if (!o.Ablation.HasFlag(MethodAblation.NoRefinementSchedules))
                {
                    if (plateau.Step(loss.item<float>())) GenieWarmup.SetRate(optZ, plateau.Rate);
                    GenieWarmup.SetRate(optG, generatorRate *= o.RefineGeneratorDecay);
                }

                if (terms is not null)
                {
                    terms["gm"] = gm;
                    terms["div"] = div;
                    terms["total"] = loss;
                    var reported = terms.ToDictionary(t => t.Key, t => (double)t.Value.item<float>());
                    progress!.Report(new GenerationProgress(GenerationStage.Refinement, batch.Index, batches, step + 1, o.RefinementSteps, reported));
                }
            }
        }
        finally
        {
            memoryA?.Dispose();
            memoryE?.Dispose();
        }
        batch.SetImages(GenieWarmup.Render(g, z));
    }

    /// <summary>
    /// One step's loss, accumulating its gradients into z's and the generator's <c>.grad</c>; returns the loss and its
    /// L_GM and L_div terms as values, and adds the data terms to <paramref name="terms"/> when given.
    /// <para>
    /// The gradient is that of the loss over both passes (at z and at the neighbour), computed one pass at a time so
    /// that only one pass's graph is alive: the neighbour's (â′, ê′) are first computed without a graph; the loss, with
    /// them as constants, is back-propagated through the pass at z, whose graph is then freed; the pass at the
    /// neighbour is run again with a graph and λ_GM·L_GM, with the pass at z's (â, ê) as constants, is
    /// back-propagated through it. Both loss terms are sums of a part of each pass, so the two backward passes add up
    /// to the gradient of the whole loss; the price is one more forward pass without a graph, the gain half the
    /// memory (the two graphs at 224² are several GiB, docs/benchmarks/mobilenet-224-quick.md).
    /// </para>
    /// </summary>
    internal static (Tensor Loss, Tensor Gm, Tensor Div) Gradients(GenieGenerator g, Tensor z, Tensor? targets,
        GraphModule model, GraphModule quantized, FeatureRecorder recorder, GenerationObjective objective,
        Tensor? memoryA, Tensor? memoryE, GenerationOptions o, torch.Generator random, Dictionary<string, Tensor>? terms)
    {
        Tensor loss, gm, div, delta, aValue, eValue;
        using (var pass = NewDisposeScope())
        {
            var x = g.forward(z);
            var (f, data) = objective.Evaluate(x, targets, terms);
            var q = quantized.forward(x).flatten(1);
            var a = recorder.Features;
            recorder.Clear();
            var e = f - q;
            var aHat = GradientSimilarity.NormalizeRows(a);
            var eHat = GradientSimilarity.NormalizeRows(e);
            delta = Neighbour(o, z, a, e, aHat, eHat, random);

            Tensor anValue, enValue;
            using (no_grad())
            using (var values = NewDisposeScope())
            {
                // Its own scope: the pass's intermediates go as soon as its two small results are out.
                (anValue, enValue) = Pass(g.forward(z - delta), model, quantized, recorder, objective);
                values.MoveToOuter(anValue, enValue);
            }

            gm = GradientSimilarity.Paired(anValue, enValue, aHat, eHat).mean().RSub(1);
            div = Diversity(aHat, eHat, memoryA, memoryE, o.Zeta, detachPartner: !o.Ablation.HasFlag(MethodAblation.DiversityBothSides));
            loss = data.Mul(o.LambdaBn).Add(gm.Mul(o.LambdaGm)).Add(div.Mul(o.LambdaDiv));
            loss.backward();

            aValue = aHat.detach();
            eValue = eHat.detach();
            loss = loss.detach();
            gm = gm.detach();
            div = div.detach();
            var kept = new List<Tensor> { loss, gm, div, delta, aValue, eValue };
            if (terms is not null)
                foreach (var key in terms.Keys.ToList()) kept.Add(terms[key] = terms[key].detach());
            pass.MoveToOuter(kept);
        }

        using (NewDisposeScope())
        {
            var (anHat, enHat) = Pass(g.forward(z - delta), model, quantized, recorder, objective);
            GradientSimilarity.Paired(anHat, enHat, aValue, eValue).mean().Mul(-o.LambdaGm).backward();
        }
        return (loss, gm, div);
    }

    /// <summary>Both models on images <paramref name="x"/>: the normalized (â, ê).</summary>
    static (Tensor AHat, Tensor EHat) Pass(Tensor x, GraphModule model, GraphModule quantized, FeatureRecorder recorder,
        GenerationObjective objective)
    {
        var f = objective.Logits(x);
        var q = quantized.forward(x).flatten(1);
        var aHat = GradientSimilarity.NormalizeRows(recorder.Features);
        recorder.Clear();
        return (aHat, GradientSimilarity.NormalizeRows(f - q));
    }

    /// <summary>The neighbour step δ [B, LatentDim] (no gradient flows through it).</summary>
    internal static Tensor Neighbour(GenerationOptions o, Tensor z, Tensor a, Tensor e, Tensor aHat, Tensor eHat, torch.Generator random)
    {
        Tensor direction;
        switch (o.Neighbour)
        {
            case NeighbourMode.Random:
                direction = randn(z.shape, generator: random).to(z.device);
                break;
            case NeighbourMode.Paper:
            case NeighbourMode.Raw:
                var (u, v) = o.Neighbour == NeighbourMode.Paper ? (aHat, eHat) : (a, e);
                var s = ((u * u.detach()).sum(1) * (v * v.detach()).sum(1)).mean();
                direction = autograd.grad([s], [z], retain_graph: true)[0];
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(o), o.Neighbour, "Unknown neighbour mode.");
        }
        return GradientSimilarity.NormalizeRows(direction).Mul(o.Rho).detach();
    }

    /// <summary>
    /// L_div = mean_i max_j max(|S_ij| − ζ, 0) over the batch (self entries zeroed) and the memory of earlier batches.
    /// </summary>
    public static Tensor Diversity(Tensor aHat, Tensor eHat, Tensor? memoryA, Tensor? memoryE, double zeta, bool detachPartner = true)
    {
        var s = SelfSimilarity(aHat, eHat, detachPartner);
        if (memoryA is not null && memoryE is not null)
            s = cat([s, GradientSimilarity.Matrix(aHat, eHat, memoryA, memoryE)], 1);
        return s.abs().Sub(zeta).ClampMin(0).max(1).values.mean();
    }

    /// <summary>
    /// S_ij = (â_i·sg(â_j))(ê_i·sg(ê_j)) within one batch, with the self entries (the diagonal) zeroed: the gradient
    /// reaches each sample only through its own row, as it does for the memory's (detached) entries.
    /// </summary>
    public static Tensor SelfSimilarity(Tensor aHat, Tensor eHat, bool detachPartner = true)
    {
        var s = detachPartner ? GradientSimilarity.Matrix(aHat, eHat, aHat.detach(), eHat.detach()) : GradientSimilarity.Matrix(aHat, eHat, aHat, eHat);
        return s * eye(s.shape[0], dtype: s.dtype, device: s.device).RSub(1);
    }

    /// <summary>The batch's final (â, ê), detached and outside any dispose scope.</summary>
    static (Tensor A, Tensor E) Signature(SyntheticBatch batch, GraphModule model, GraphModule quantized, FeatureRecorder recorder,
        GenerationObjective objective)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var (aHat, eHat) = Pass(batch.Images, model, quantized, recorder, objective);
        return (aHat.detach().DetachFromDisposeScope(), eHat.detach().DetachFromDisposeScope());
    }
}
