using System.Diagnostics;
using Sadg.Generation;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Sadg.Tests.Generation;

public class GradientFactorizationTests
{
    [Fact]
    public void TheFactorizedSimilarityEqualsTheCosineOfPerSampleWeightGradients()
    {
        using var scope = NewDisposeScope();
        using var random = new torch.Generator(7);
        const int n = 5, d = 12, k = 4;
        var weight = randn([k, d], generator: random);
        var bias = randn([k], generator: random);
        var a = randn([n, d], generator: random);
        var q = randn([n, k], generator: random);

        // Explicit: gradient of ½‖W a_i + b − q_i‖² with respect to W, one sample at a time.
        var gradients = new Tensor[n];
        for (int i = 0; i < n; i++)
        {
            var w = weight.clone().requires_grad_(true);
            var f = w.matmul(a[i]) + bias;
            var loss = 0.5 * (f - q[i]).square().sum();
            gradients[i] = autograd.grad([loss], [w])[0].flatten();
        }
        var g = stack(gradients);
        var inner = g.matmul(g.t());
        var cosine = inner / g.norm(1, keepdim: true).matmul(g.norm(1, keepdim: true).t());

        // Fast: e = f − q, (a_i·a_j)(e_i·e_j) and its normalized form.
        var e = a.matmul(weight.t()) + bias - q;
        Assert.True(GradientSimilarity.Matrix(a, e, a, e).allclose(inner, rtol: 1e-4, atol: 1e-4));
        var aHat = GradientSimilarity.NormalizeRows(a);
        var eHat = GradientSimilarity.NormalizeRows(e);
        var fast = GradientSimilarity.Matrix(aHat, eHat, aHat, eHat);
        Assert.True(fast.allclose(cosine, rtol: 1e-4, atol: 1e-5), $"max diff {(fast - cosine).abs().max().item<float>()}");
        Assert.True(GradientSimilarity.Paired(aHat, eHat, aHat, eHat).allclose(ones(n), atol: 1e-5));
    }

    [Fact]
    public void TheDiversityMatrixHasZeroSelfEntries()
    {
        using var scope = NewDisposeScope();
        using var random = new torch.Generator(3);
        var aHat = GradientSimilarity.NormalizeRows(randn([6, 8], generator: random));
        var eHat = GradientSimilarity.NormalizeRows(randn([6, 3], generator: random));
        var s = SharpnessAwareRefinement.SelfSimilarity(aHat, eHat);
        Assert.Equal(0f, s.diagonal().abs().max().item<float>());
        var full = GradientSimilarity.Matrix(aHat, eHat, aHat, eHat);
        Assert.True((s - full).abs().sum().item<float>() > 0);
        Assert.True((s + diag(full.diagonal())).allclose(full));
        // With ζ = 0 every row's largest |S_ij| counts; an identical batch in memory gives the maximum, 1.
        Assert.Equal(1f, SharpnessAwareRefinement.Diversity(aHat, eHat, aHat, eHat, 0).item<float>(), 4);
    }
}

public class RefinementGradientTests
{
    /// <summary>
    /// The step back-propagates one pass at a time (to keep one graph alive); its gradients must be those of the whole
    /// loss over both passes back-propagated at once. With λ_BN = λ_div = 0 the gradient is L_GM's alone, most of it
    /// through the neighbour's pass, so a step that left that pass out would fail here. With the generator's first-layer
    /// gradient deferred (as the refinement runs it), the weight holds no gradient until it is formed from its factors,
    /// and then the same one.
    /// </summary>
    /// <summary>
    /// λ_BN (0 on the CPU profiles) weighs L_BN only: a model without BatchNormalization keeps its statistics-free data
    /// term (cross-entropy to the batch's classes and the image priors) in the refinement at weight 1.
    /// </summary>
    [Fact]
    public void Without_BN_statistics_the_data_term_stays_in_the_refinement_loss()
    {
        using var fp = GenerationTestSupport.ResNet(channels: 1, size: 28, batchNorm: false);
        using var q0 = GenerationTestSupport.FourBitWeights(fp);
        var o = GenerationOptions.Quick with { LambdaBn = 0, GeneratorChannels = 16 };
        using var head = ClassifierHead.Find(q0).Record(q0);
        using var objective = new GenerationObjective(fp, o);
        Assert.False(objective.HasStatistics);
        using var g = new GenieGenerator(1, 28, 28, o.LatentDim, o.GeneratorChannels, seed: 5);
        using var scope = NewDisposeScope();
        using var random = new torch.Generator(11);
        var z = randn([6, o.LatentDim], generator: random).requires_grad_(true);
        var targets = randint(10, [6], generator: random, dtype: ScalarType.Int64);

        Tensor loss, gm, div;
        using (var neighbours = new torch.Generator(13))
            (loss, gm, div) = SharpnessAwareRefinement.Gradients(g, z, targets, fp, q0, head, objective, null, null, o, neighbours, null);
        double data;
        using (no_grad()) data = objective.Evaluate(g.forward(z), targets, null).Loss.item<float>();

        Assert.True(data > 0.1, $"the statistics-free data term is {data}");
        Assert.Equal(data, loss.item<float>() - o.LambdaGm * gm.item<float>() - o.LambdaDiv * div.item<float>(), 3);
    }

    [Theory]
    [InlineData(1.0, 1.0, 16.0, NeighbourMode.Random, false)]
    [InlineData(0.0, 0.0, 16.0, NeighbourMode.Random, false)]
    [InlineData(0.0, 0.0, 16.0, NeighbourMode.Paper, false)]
    [InlineData(1.0, 1.0, 1.0, NeighbourMode.Paper, false)]
    [InlineData(1.0, 1.0, 16.0, NeighbourMode.Random, true)]
    [InlineData(1.0, 1.0, 1.0, NeighbourMode.Paper, true)]
    public void TheStepsGradientIsThatOfTheWholeLoss(double lambdaBn, double lambdaDiv, double rho, NeighbourMode neighbour, bool defer)
    {
        using var fp = GenerationTestSupport.ResNet(channels: 1, size: 28);
        using var q0 = GenerationTestSupport.FourBitWeights(fp);
        var o = GenerationOptions.Quick with { LambdaBn = lambdaBn, LambdaDiv = lambdaDiv, Rho = rho, Neighbour = neighbour, GeneratorChannels = 16 };
        using var head = ClassifierHead.Find(q0).Record(q0);
        using var objective = new GenerationObjective(fp, o);
        using var g = new GenieGenerator(1, 28, 28, o.LatentDim, o.GeneratorChannels, seed: 5);
        using var scope = NewDisposeScope();
        using var random = new torch.Generator(11);
        var z = randn([6, o.LatentDim], generator: random).requires_grad_(true);
        var memoryA = GradientSimilarity.NormalizeRows(randn([4, 16], generator: random));
        var memoryE = GradientSimilarity.NormalizeRows(randn([4, 10], generator: random));
        var parameters = g.parameters().Prepend(z).ToArray();

        Tensor loss, gm;
        g.DeferFirstLayerGradient = defer;
        using (var neighbours = new torch.Generator(13))
            (loss, gm, _) = SharpnessAwareRefinement.Gradients(g, z, null, fp, q0, head, objective, memoryA, memoryE, o, neighbours, null);
        if (defer)
        {
            Assert.Null(g.named_parameters().Single(p => p.name == "l1.weight").parameter.grad);
            g.FormDeferredGradients();
            g.DeferFirstLayerGradient = false;
        }
        var split = parameters.Select(p => p.grad!.clone()).ToArray();
        foreach (var p in parameters) p.grad!.zero_();

        // The whole loss, both passes' graphs alive, one backward.
        var x = g.forward(z);
        var (f, data) = objective.Evaluate(x, null, null);
        var q = q0.forward(x).flatten(1);
        var a = head.Features;
        var e = f - q;
        var aHat = GradientSimilarity.NormalizeRows(a);
        var eHat = GradientSimilarity.NormalizeRows(e);
        using var sameNeighbours = new torch.Generator(13);
        var delta = SharpnessAwareRefinement.Neighbour(o, z, a, e, aHat, eHat, sameNeighbours);
        var xn = g.forward(z - delta);
        var fn = fp.forward(xn).flatten(1);
        var qn = q0.forward(xn).flatten(1);
        var anHat = GradientSimilarity.NormalizeRows(head.Features);
        var enHat = GradientSimilarity.NormalizeRows(fn - qn);
        var wholeGm = GradientSimilarity.Paired(anHat, enHat, aHat, eHat).mean().RSub(1);
        var div = SharpnessAwareRefinement.Diversity(aHat, eHat, memoryA, memoryE, o.Zeta);
        var whole = data.Mul(o.LambdaBn).Add(wholeGm.Mul(o.LambdaGm)).Add(div.Mul(o.LambdaDiv));
        whole.backward();

        Assert.Equal(whole.item<float>(), loss.item<float>(), 5);
        Assert.Equal(wholeGm.item<float>(), gm.item<float>(), 6);
        for (int i = 0; i < parameters.Length; i++)
        {
            var reference = parameters[i].grad!;
            double scale = reference.abs().max().item<float>();
            Assert.True(scale > 0, $"parameter {i} has no gradient");
            double difference = (split[i] - reference).abs().max().item<float>();
            Assert.True(difference <= 1e-3 * scale, $"parameter {i}: max |split − whole| {difference:G3} against max |whole| {scale:G3}");
        }
    }

    /// <summary>Steps of the two-pass gradient, each in a dispose scope, leave no tensor behind (live count flat), with the first layer's gradient formed at once or deferred.</summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void RepeatedStepsDoNotGrowTheLiveTensors(bool defer)
    {
        using var fp = GenerationTestSupport.ResNet(channels: 1, size: 28);
        using var q0 = GenerationTestSupport.FourBitWeights(fp);
        var o = GenerationOptions.Quick with { GeneratorChannels = 16 };
        using var head = ClassifierHead.Find(q0).Record(q0);
        using var objective = new GenerationObjective(fp, o);
        using var g = new GenieGenerator(1, 28, 28, o.LatentDim, o.GeneratorChannels, seed: 5);
        using var random = new torch.Generator(11);
        using var z = randn([4, o.LatentDim], generator: random).requires_grad_(true);
        g.DeferFirstLayerGradient = defer;
        var stats = DisposeScopeManager.Statistics.TensorStatistics;
        long after1 = 0;
        for (int step = 0; step < 5; step++)
        {
            using (NewDisposeScope())
            {
                SharpnessAwareRefinement.Gradients(g, z, null, fp, q0, head, objective, null, null, o, random, new Dictionary<string, Tensor>());
                g.FormDeferredGradients();
            }
            if (step == 0) after1 = stats.ThreadTotalLiveCount;
        }
        Assert.Equal(after1, stats.ThreadTotalLiveCount);
    }
}

public class GenerationQualityTests(ITestOutputHelper output)
{
    [Fact]
    public void QuickProfileMatchesBnStatisticsAndRefinementLowersSharpnessAndSimilarity()
    {
        using var fp = GenerationTestSupport.ResNet(channels: 1, size: 28);
        using var q0 = GenerationTestSupport.FourBitWeights(fp);
        // The quick profile's per-batch budget (100 warm-up, 20 refinement steps) on two batches of 16 (the second one
        // refined against the memory of the first).
        var options = GenerationOptions.Quick with { Images = 32, BatchSize = 16 };
        var log = new ProgressLog();
        var clock = Stopwatch.StartNew();
        using var images = SyntheticData.WarmUp(fp, options, log);
        double warmup = clock.Elapsed.TotalSeconds;
        using var again = images.Copy(); // a refined batch keeps no generator: the second refinement starts from the warm-up too
        // At the paper's refinement rates (1e-5, 1e-4) 20 steps move L_GM less than the step-to-step noise of the
        // random neighbour; ten times faster rates show the trend within the budget.
        SyntheticData.Refine(images, fp, q0, options with { RefineLatentLearningRate = 1e-4, RefineGeneratorLearningRate = 1e-3 }, log);
        double total = clock.Elapsed.TotalSeconds;
        // With ρ = 1 the neighbour is so close that L_GM stays ~1e-5 and its trend drowns in the neighbour's noise;
        // a wider neighbour and L_GM alone show that the term is minimized.
        var gmLog = new ProgressLog();
        SyntheticData.Refine(again, fp, q0, options with
        {
            Rho = 16, LambdaDiv = 0, LambdaBn = 0, RefineLatentLearningRate = 1e-3, RefineGeneratorLearningRate = 1e-3,
        }, gmLog);

        var bn = log.Series(GenerationStage.Warmup, 0, "bn");
        Assert.Equal(options.WarmupSteps, bn.Length);
        double start = bn[0], end = bn[^5..].Average();
        using var scope = NewDisposeScope();
        using var all = images.Images();
        Assert.Equal(new long[] { 32, 1, 28, 28 }, all.shape);
        long[] classes;
        using (no_grad()) classes = fp.forward(all).argmax(1).data<long>().ToArray();
        int distinct = classes.Distinct().Count();

        var gm = gmLog.Series(GenerationStage.Refinement, 1, "gm");
        var gmPaper = log.Series(GenerationStage.Refinement, 1, "gm");
        var div = log.Series(GenerationStage.Refinement, 1, "div");
        output.WriteLine($"L_BN {start:G4} -> {end:G4} ({100 * end / start:F1}%); classes {distinct}; " +
            $"L_GM (ρ = 1) {gmPaper[..5].Average():G4} -> {gmPaper[^5..].Average():G4}; L_GM (ρ = 16, alone) {gm[..5].Average():G4} -> {gm[^5..].Average():G4}; L_div {div[..5].Average():G4} -> {div[^5..].Average():G4}; " +
            $"warm-up {warmup:F1}s, total {total:F1}s");
        Assert.True(end <= 0.1 * start, $"L_BN fell from {start} to {end} only.");
        Assert.True(distinct >= 3, $"The batch collapsed to {distinct} classes.");
        Assert.True(gm[^5..].Average() < gm[..5].Average(), "L_GM did not fall.");
        Assert.True(div[^5..].Average() < div[..5].Average(), "L_div did not fall.");
        Assert.True(images.Refined);
    }
}

public class PassWithoutAGraphTests
{
    static long Live => DisposeScopeManager.Statistics.TensorStatistics.ThreadTotalLiveCount;

    /// <summary>
    /// SADAG's neighbour pass runs without a graph while the pass at z may hold its graph (paper/raw neighbours): the
    /// generator's intermediates must go when its forward ends, not when the caller's scope does.
    /// </summary>
    [Fact]
    public void The_generator_without_a_graph_leaves_only_its_images()
    {
        using var g = new GenieGenerator(3, 32, 32, 16, 8, seed: 3);
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var z = randn(4, 16);
        long before = Live;
        var images = g.forward(z);
        Assert.Equal(before + 1, Live);
        Assert.Equal([4L, 3, 32, 32], images.shape);
    }

    /// <summary>
    /// The logits alone need no BN statistics, so the objective makes none for that run: nothing of the run stays
    /// beyond what a plain run leaves. The statistics work again afterwards.
    /// </summary>
    [Fact]
    public void Logits_alone_keep_no_BN_input_and_the_statistics_still_work_after()
    {
        using var fp = GenerationTestSupport.ResNet(channels: 3, size: 32);
        int batchNorms = fp.Nodes.Where(n => n.OpType == "BatchNormalization").Select(n => n.Inputs[0]).Distinct().Count();
        Assert.True(batchNorms >= 3);
        using var objective = new GenerationObjective(fp, GenerationTestSupport.Tiny());
        var images = randn(2, 3, 32, 32);

        using (no_grad())
        using (NewDisposeScope())
        {
            // A run of the model while the objective makes its statistics: each BN input's reduction stays until the scope ends.
            long before = Live;
            using (NewDisposeScope())
            {
                fp.forward(images);
                before -= Live;
            }
            long capturing = -before;
            before = Live;
            var logits = objective.Logits(images);
            long alone = Live - before;
            // + 1: the logits' flattened view.
            Assert.True(alone <= capturing + 1 - batchNorms, $"{alone} tensors stayed alive for the logits alone, {capturing} for a capturing run ({batchNorms} BN inputs)");

            using var check = NewDisposeScope();
            var (again, loss) = objective.Evaluate(images, null, null);
            Assert.True(loss.item<float>() > 0);
            Assert.True(again.eq(logits).all().item<bool>());
        }
    }
}
