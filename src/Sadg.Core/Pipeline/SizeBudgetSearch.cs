using Sadg.Graph;
using Sadg.Onnx;
using Sadg.Quantization;
using static TorchSharp.torch;

namespace Sadg.Pipeline;

/// <summary>
/// A quantized layer under a size budget: its weight bits, its weight's nominal bytes (<see cref="BitAllocation.NominalBytes"/>;
/// 0 for a second reader of a shared weight), and whether the search chose them.
/// </summary>
/// <param name="SqnrDb">The layer's measured SQNR at each candidate bit width (chosen layers only; empty for fixed ones).</param>
public sealed record BudgetLayer(string Node, int WeightBits, long Bytes, bool Chosen, IReadOnlyDictionary<int, double> SqnrDb);

/// <summary>
/// What <see cref="SizeBudgetSearch"/> chose: the budget, the quantized weights' FP32 and chosen bytes, and each layer.
/// Budget, minimum and <paramref name="WeightBytes"/> are nominal (<see cref="BitAllocation.NominalBytes"/>);
/// <paramref name="FileBytes"/> is what the same weights take in the written file.
/// </summary>
/// <param name="Budget">The setting as given (<c>0.125</c>, <c>600KiB</c>, <c>W3</c>).</param>
/// <param name="MinimumBytes">The smallest feasible size: fixed layers at their bits, the others at 2 bits.</param>
public sealed record SizeBudgetResult(string Budget, long BudgetBytes, long Fp32Bytes, long MinimumBytes, long WeightBytes, long FileBytes,
    IReadOnlyList<BudgetLayer> Layers);

/// <summary>
/// Mixed precision under <see cref="PipelineOptions.SizeBudget"/>: each quantized layer that neither the first/last
/// policy (<c>--first-last-bits 8</c>) nor <c>--layer-bits</c> fixes gets weight bits from <see cref="Candidates"/>,
/// chosen by <see cref="BitAllocation.Solve"/> so that the measured error is least and the quantized weights at their
/// nominal bit widths (<see cref="BitAllocation.NominalBytes"/>, fixed layers included) fit the budget. Nominal, because
/// ONNX Runtime runs no 2- or 3-bit type: the file stores them in 4-bit containers (<see cref="BitAllocation.FileBytes"/>),
/// and a budget of file bytes could never choose them. A layer's error at b bits is
/// its noise power 10^(−SQNR/10) relative to the output when it alone has b-bit weights (<see cref="SensitivityAnalysis"/>
/// on the calibration images); the layers' errors are summed (the additive-noise assumption). Activation bits stay as
/// the options give them. A weight read by several layers is one item, its bits those of its first reader.
/// </summary>
public static class SizeBudgetSearch
{
    /// <summary>The weight bits a free layer may get.</summary>
    public static IReadOnlyList<int> Candidates { get; } = [2, 3, 4, 8];

    /// <summary>
    /// Checks that the budget can be met at all (fixed layers at their bits, the others at their fewest bytes), in
    /// seconds and before any generation; throws <see cref="SadgException"/> (SizeBudgetTooSmall) naming the smallest
    /// feasible size otherwise. <paramref name="graph"/> may be the model before BatchNorm folding (weight shapes are the same).
    /// </summary>
    public static void Check(GraphModule graph, PipelineOptions options, string? file = null)
    {
        if (options.SizeBudget is null) return;
        var groups = Groups(graph, options);
        Capacity(options, groups, file);
    }

    /// <summary>
    /// Measures the free layers at each candidate on <paramref name="images"/>, solves the knapsack and returns the
    /// quantization options with the chosen bits as layer bits, what was chosen, and each free layer's sensitivity
    /// at its chosen bits (what the report's sensitivity pass would measure again).
    /// </summary>
    /// <param name="model">The model (given its input shape), before BatchNorm folding.</param>
    /// <param name="progress">Called after each layer measured with the measurements done and their number (every
    /// free layer at every candidate bit width).</param>
    public static (QuantizationOptions Options, SizeBudgetResult Result, IReadOnlyList<LayerSensitivity> Measured) Run(OnnxModel model,
        Tensor images, PipelineOptions options, Device? device = null, CancellationToken cancellationToken = default,
        Action<int, int>? progress = null)
    {
        var budget = options.SizeBudget ?? throw new ArgumentException("No size budget is set.", nameof(options));
        var folded = BatchNormFolding.Fold(model);
        var quantization = options.Quantization();
        List<Group> groups;
        using (var graph = new GraphModule(folded, device))
            groups = Groups(graph, options);
        var items = groups.Where(g => !g.Fixed).ToList();
        long fixedBytes = groups.Where(g => g.Fixed).Sum(g => g.Bytes(g.PlannedBits));
        long budgetBytes = Capacity(options, groups, model.Path);

        // Fixed layers are left out of the measurement (positions, and so the free layers' input bits, do not move).
        var measureOnly = quantization.Layers with
        {
            Exclude = [.. quantization.Layers.Exclude, .. groups.Where(g => g.Fixed).SelectMany(g => g.Nodes)],
        };
        var byBits = new Dictionary<int, Dictionary<string, LayerSensitivity>>();
        for (int k = 0; k < Candidates.Count; k++)
        {
            int bits = Candidates[k], round = k;
            var all = new Dictionary<string, int>(StringComparer.Ordinal);
            foreach (var g in items)
                foreach (var node in g.Nodes) all[node] = bits;
            byBits[bits] = SensitivityAnalysis.Measure(folded, images, quantization with { Layers = measureOnly with { WeightBits = all } },
                device, cancellationToken, progress: progress is null ? null : new Action<int, int>((done, total) => progress(round * total + done, Candidates.Count * total)))
                .ToDictionary(l => l.Node, StringComparer.Ordinal);
        }
        var sqnr = items.ToDictionary(g => g, g => Candidates.ToDictionary(b => b, b => byBits[b][g.Nodes[0]].SqnrDb));
        var knapsack = items.Select(g => new BitItem(g.Nodes[0], Candidates.Select(b =>
            new BitChoice(b, g.Bytes(b), double.IsPositiveInfinity(sqnr[g][b]) ? 0 : Math.Pow(10, -sqnr[g][b] / 10))).ToList())).ToList();
        int[] chosen = BitAllocation.Solve(knapsack, budgetBytes - fixedBytes);

        var chosenBits = groups.ToDictionary(g => g, g => g.PlannedBits);
        for (int i = 0; i < items.Count; i++) chosenBits[items[i]] = chosen[i];
        var layerBits = new Dictionary<string, int>(quantization.Layers.WeightBits, StringComparer.Ordinal);
        foreach (var g in items)
            foreach (var node in g.Nodes) layerBits[node] = chosenBits[g];
        var layers = groups.SelectMany(g => g.Nodes.Select((node, k) => new BudgetLayer(node, chosenBits[g], k == 0 ? g.Bytes(chosenBits[g]) : 0, !g.Fixed,
            g.Fixed ? new Dictionary<int, double>() : sqnr[g]))).ToList();
        var result = new SizeBudgetResult(budget.ToString(), budgetBytes, groups.Sum(g => g.Fp32Bytes), Minimum(groups),
            groups.Sum(g => g.Bytes(chosenBits[g])), groups.Sum(g => g.FileBytes(chosenBits[g])), layers);
        var chosenSensitivity = items.SelectMany(g => g.Nodes.Select(node => byBits[chosenBits[g]][node])).ToList();
        return (quantization with { Layers = quantization.Layers with { WeightBits = layerBits } }, result, chosenSensitivity);
    }

    /// <summary>The smallest feasible size: fixed weights at their bits, the others at their fewest bytes.</summary>
    static long Minimum(IEnumerable<Group> groups) => groups.Sum(g => g.Fixed ? g.Bytes(g.PlannedBits) : Candidates.Min(g.Bytes));

    /// <summary>The budget in bytes; throws SizeBudgetTooSmall when the smallest feasible size is above it.</summary>
    static long Capacity(PipelineOptions options, IReadOnlyList<Group> groups, string? file)
    {
        var budget = options.SizeBudget!;
        long fp32Bytes = groups.Sum(g => g.Fp32Bytes);
        long budgetBytes = budget.Bytes(fp32Bytes, b => groups.Sum(g => g.Bytes(g.Fixed ? g.PlannedBits : b)));
        long minimum = Minimum(groups);
        if (minimum > budgetBytes)
        {
            long fixedBytes = groups.Where(g => g.Fixed).Sum(g => g.Bytes(g.PlannedBits));
            throw new SadgException(SadgErrorCode.SizeBudgetTooSmall,
                $"{QuantizeSchema.SizeBudget.Label} {budget} allows {budgetBytes} bytes of quantized weights (at their nominal bits), but the smallest feasible " +
                $"size is {minimum} bytes ({(double)minimum / fp32Bytes:0.####} of the FP32 weights' {fp32Bytes} bytes): every layer " +
                $"at its fewest bytes, {fixedBytes} bytes of them in layers with fixed bits (--first-last-bits 8, --layer-bits). " +
                $"Give a budget of at least {(minimum + 1023) / 1024}KiB or {Math.Ceiling(10000.0 * minimum / fp32Bytes) / 10000:0.####}.", file);
        }
        return budgetBytes;
    }

    /// <summary>
    /// The quantized weights in plan order, each with the layers that read it; fixed when one of them has bits of its
    /// own (<c>--layer-bits</c>) or is the first or last quantizable layer under the 8-bit policy.
    /// </summary>
    static List<Group> Groups(GraphModule graph, PipelineOptions options)
    {
        var quantizable = graph.Nodes.Where(graph.IsQuantizable).ToList();
        var weights = graph.Weights;
        var groups = new List<Group>();
        foreach (var (node, bits, _) in QuantizedGraph.Plan(graph, options.Quantization()))
        {
            string weight = node.Inputs[1];
            var group = groups.FirstOrDefault(g => g.Weight == weight);
            if (group is null)
            {
                var shape = weights[weight].shape;
                groups.Add(group = new Group(weight, shape.Aggregate(1L, (a, d) => a * d), shape[QuantizedGraph.WeightAxis(node)], bits));
            }
            group.Nodes.Add(node.Name);
            group.Fixed |= options.LayerBits.ContainsKey(node.Name)
                || !options.FirstLastSame && (node == quantizable[0] || node == quantizable[^1]);
        }
        return groups;
    }

    /// <summary>One quantized weight and the layers that read it.</summary>
    sealed class Group(string weight, long elements, long channels, int plannedBits)
    {
        public string Weight { get; } = weight;
        public long Fp32Bytes { get; } = 4 * elements;
        public List<string> Nodes { get; } = [];
        public bool Fixed { get; set; }

        /// <summary>The bits the plan gives its first reader (a fixed weight keeps them).</summary>
        public int PlannedBits { get; } = plannedBits;
        public long Bytes(int bits) => BitAllocation.NominalBytes(elements, channels, bits);
        public long FileBytes(int bits) => BitAllocation.FileBytes(elements, channels, bits);
    }
}
