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
/// loss = λ_BN L_BN + λ_GM L_GM + λ_div L_div (λ_BN is 0 on the CPU profiles, see <see cref="GenerationOptions.LambdaBn"/>;
/// a model without BN statistics keeps its statistics-free data term at weight 1).
/// After each batch its final (â, ê) joins the memory.
/// Q₀ stays frozen; F keeps its BatchNormalization layers.
/// </summary>
public static class SharpnessAwareRefinement
{
    /// <summary>Refines every batch of <paramref name="images"/> in place: their images are replaced, and each batch releases its generator and latents when its refinement ends.</summary>
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
                batch.Finish(RefineBatch(batch, model, quantized, recorder, objective, memory, options, images.Batches.Count, progress, cancellationToken));
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

    /// <summary>Refines one batch's generator and latents; returns its refined images (detached, outside any dispose scope).</summary>
    static Tensor RefineBatch(SyntheticBatch batch, GraphModule model, GraphModule quantized, FeatureRecorder recorder,
        GenerationObjective objective, List<(Tensor A, Tensor E)> memory, GenerationOptions o, int batches,
        IProgress<GenerationProgress>? progress, CancellationToken cancellationToken)
    {
        var z = batch.Latent;
        var g = batch.Generator;
        g.DeferFirstLayerGradient = true;
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
                var terms = progress is null ? null : new Dictionary<string, Tensor>();

                var (loss, gm, div) = Gradients(g, z, batch.Targets, model, quantized, recorder, objective, memoryA, memoryE, o, random, terms);
                g.FormDeferredGradients(); // before z's step: the pass at z keeps z's own storage as its factor
                optZ.step();
                optG.step();
                optZ.ReleaseGradients();
                optG.ReleaseGradients();
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
        return GenieWarmup.Render(g, z);
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
    /// memory (the two graphs at 224² are several GiB, docs/benchmarks/mobilenet-224-quick.md). Within a pass, F's and
    /// Q₀'s graphs are not alive together either (<see cref="SplitPass"/>).
    /// </para>
    /// </summary>
    internal static (Tensor Loss, Tensor Gm, Tensor Div) Gradients(GenieGenerator g, Tensor z, Tensor? targets,
        GraphModule model, GraphModule quantized, FeatureRecorder recorder, GenerationObjective objective,
        Tensor? memoryA, Tensor? memoryE, GenerationOptions o, torch.Generator random, Dictionary<string, Tensor>? terms)
    {
        Tensor loss, gm, div, aValue, eValue;
        Tensor? delta = null, anValue = null, enValue = null;
        // The neighbour's (â′, ê′) without a graph, in its own scope so that the pass's intermediates go as soon as its two
        // small results are out. A random neighbour does not depend on the pass at z, so it runs first, while no graph is
        // alive; the paper's and the raw neighbour need the pass at z's graph for their direction and run after it.
        void NeighbourValues()
        {
            using var noGrad = no_grad();
            using var values = NewDisposeScope();
            (anValue, enValue) = Pass(g.forward(z - delta!), model, quantized, recorder, objective);
            values.MoveToOuter(anValue, enValue);
        }
        if (o.Neighbour == NeighbourMode.Random)
        {
            delta = RandomNeighbour(o, z, random);
            NeighbourValues();
        }

        using (var scope = NewDisposeScope())
        {
            var pass = new SplitPass(g.forward(z), quantized, recorder);
            var (f, data) = objective.Evaluate(pass.Images, targets, terms);
            var e = f - pass.Q;
            var aHat = GradientSimilarity.NormalizeRows(pass.A);
            var eHat = GradientSimilarity.NormalizeRows(e);
            if (delta is null)
            {
                delta = Neighbour(o, z, pass.A, e, aHat, eHat, random, s => pass.Gradient(s, z));
                NeighbourValues();
            }

            gm = GradientSimilarity.Paired(anValue!, enValue!, aHat, eHat).mean().RSub(1);
            div = Diversity(aHat, eHat, memoryA, memoryE, o.Zeta, detachPartner: !o.Ablation.HasFlag(MethodAblation.DiversityBothSides));
            // λ_BN weighs L_BN; a model without BN statistics keeps its statistics-free data term at weight 1, as before
            // the CPU profiles set λ_BN = 0 (that was measured on BN models only).
            loss = data.Mul(objective.HasStatistics ? o.LambdaBn : 1).Add(gm.Mul(o.LambdaGm)).Add(div.Mul(o.LambdaDiv));
            pass.Backward(loss);

            aValue = aHat.detach();
            eValue = eHat.detach();
            loss = loss.detach();
            gm = gm.detach();
            div = div.detach();
            var kept = new List<Tensor> { loss, gm, div, aValue, eValue };
            if (o.Neighbour != NeighbourMode.Random) kept.Add(delta);
            if (terms is not null)
                foreach (var key in terms.Keys.ToList()) kept.Add(terms[key] = terms[key].detach());
            scope.MoveToOuter(kept);
        }

        using (NewDisposeScope())
        {
            var pass = new SplitPass(g.forward(z - delta!), quantized, recorder);
            var anHat = GradientSimilarity.NormalizeRows(pass.A);
            var enHat = GradientSimilarity.NormalizeRows(objective.Logits(pass.Images) - pass.Q);
            pass.Backward(GradientSimilarity.Paired(anHat, enHat, aValue, eValue).mean().Mul(-o.LambdaGm));
        }
        return (loss, gm, div);
    }

    /// <summary>
    /// One pass of both models on the generator's images in which F's and Q₀'s graphs are never alive together (at 224²
    /// Q₀'s is the larger, as it holds its quantizers' masks besides its activations). Q₀ runs first, without a graph,
    /// on <see cref="Images"/> (the images detached: a leaf); its logits <see cref="Q"/> and its head's input
    /// <see cref="A"/> are leaves that collect the loss's gradient, while the caller runs F with a graph on the same
    /// leaf. <see cref="Backward"/> back-propagates the loss through F, runs Q₀ again, now with a graph, to carry Q's
    /// and A's gradients to the images, and then back-propagates the images' gradient through the generator. The
    /// gradient is the same as that of one backward pass through everything; the price is one more pass of Q₀
    /// without a graph.
    /// </summary>
    sealed class SplitPass
    {
        readonly Tensor generated;
        readonly GraphModule quantized;
        readonly FeatureRecorder recorder;

        public SplitPass(Tensor generated, GraphModule quantized, FeatureRecorder recorder)
        {
            this.generated = generated;
            this.quantized = quantized;
            this.recorder = recorder;
            Images = generated.detach().requires_grad_();
            using (no_grad())
            {
                Q = quantized.forward(Images).flatten(1).detach().requires_grad_();
                A = recorder.Features.detach().requires_grad_();
                recorder.Clear();
            }
        }

        /// <summary>The generator's images, detached from it: F runs on these.</summary>
        public Tensor Images { get; }

        /// <summary>Q₀'s logits [B, classes], a leaf.</summary>
        public Tensor Q { get; }

        /// <summary>The input of Q₀'s classifier head [B, features], a leaf.</summary>
        public Tensor A { get; }

        /// <summary>The gradient of <paramref name="s"/> with respect to <paramref name="latent"/>, accumulating nothing (every graph is kept).</summary>
        public Tensor Gradient(Tensor s, Tensor latent)
        {
            var grads = autograd.grad([s], [Images, Q, A], retain_graph: true, allow_unused: true);
            var images = ThroughQuantized(grads[0], grads[1], grads[2]);
            return autograd.grad([generated], [latent], [images], retain_graph: true)[0];
        }

        /// <summary>Back-propagates <paramref name="loss"/> into the generator's parameters and its latent; frees every graph.</summary>
        public void Backward(Tensor loss)
        {
            loss.backward();
            var images = ThroughQuantized(Images.grad, Q.grad, A.grad);
            if (images is not null) generated.backward([images]);
        }

        /// <summary>
        /// The images' gradient: <paramref name="images"/> (through F) plus Q₀'s vector-Jacobian product with the
        /// gradients of its outputs, from a pass of Q₀ with a graph. Null when the loss reached none of them.
        /// </summary>
        Tensor? ThroughQuantized(Tensor? images, Tensor? q, Tensor? a)
        {
            if (q is null && a is null) return images;
            using var scope = NewDisposeScope();
            var x = Images.detach().requires_grad_();
            var outputs = new List<Tensor>();
            var grads = new List<Tensor>();
            var logits = quantized.forward(x).flatten(1);
            if (q is not null) { outputs.Add(logits); grads.Add(q); }
            if (a is not null) { outputs.Add(recorder.Features); grads.Add(a); }
            recorder.Clear();
            var through = autograd.grad(outputs, [x], grads)[0];
            return (images is null ? through : through.Add_(images)).MoveToOuterDisposeScope();
        }
    }

    /// <summary>Both models on images <paramref name="x"/>, without a graph: the normalized (â, ê).</summary>
    static (Tensor AHat, Tensor EHat) Pass(Tensor x, GraphModule model, GraphModule quantized, FeatureRecorder recorder,
        GenerationObjective objective)
    {
        var f = objective.Logits(x);
        var q = quantized.forward(x).flatten(1);
        var aHat = GradientSimilarity.NormalizeRows(recorder.Features);
        recorder.Clear();
        return (aHat, GradientSimilarity.NormalizeRows(f - q));
    }

    /// <summary>
    /// The neighbour step δ [B, LatentDim] (no gradient flows through it). <paramref name="gradientToLatent"/> gives
    /// ∂s/∂z for the <c>paper</c> and <c>raw</c> directions (default: through the graph from z to s).
    /// </summary>
    internal static Tensor Neighbour(GenerationOptions o, Tensor z, Tensor a, Tensor e, Tensor aHat, Tensor eHat, torch.Generator random,
        Func<Tensor, Tensor>? gradientToLatent = null)
    {
        Tensor direction;
        switch (o.Neighbour)
        {
            case NeighbourMode.Random:
                return RandomNeighbour(o, z, random);
            case NeighbourMode.Paper:
            case NeighbourMode.Raw:
                var (u, v) = o.Neighbour == NeighbourMode.Paper ? (aHat, eHat) : (a, e);
                var s = ((u * u.detach()).sum(1) * (v * v.detach()).sum(1)).mean();
                direction = gradientToLatent is null ? autograd.grad([s], [z], retain_graph: true)[0] : gradientToLatent(s);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(o), o.Neighbour, "Unknown neighbour mode.");
        }
        return GradientSimilarity.NormalizeRows(direction).Mul(o.Rho).detach();
    }

    /// <summary>The <c>random</c> neighbour step: a seeded random direction per sample, of length ρ.</summary>
    static Tensor RandomNeighbour(GenerationOptions o, Tensor z, torch.Generator random) =>
        GradientSimilarity.NormalizeRows(randn(z.shape, generator: random).to(z.device)).Mul(o.Rho).detach();

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
