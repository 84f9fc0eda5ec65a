using Sadg.Graph;
using Sadg.Onnx;
using Sadg.Reconstruction;
using Sadg.Pipeline;
using Sadg.Quantization;
using DataType = global::Onnx.TensorProto.Types.DataType;

namespace Sadg.Cli.Commands;

/// <summary>A layer whose weight Sadg would quantize (<see cref="QuantizableOps.OpTypes"/>).</summary>
public sealed record QuantizableLayer(string Name, string Op, string Weight, long[] WeightShape, long Parameters, long Channels);

/// <summary>The estimated size of the quantized model at one bit width.</summary>
/// <summary>
/// The estimated size at <see cref="Bits"/>: all layers at that width, and the default policy (first and last layer at
/// 8 bits); <see cref="DefaultPolicyWeightBytes"/> is the default policy's quantized weights alone.
/// </summary>
public sealed record SizeEstimate(int Bits, long UniformBytes, long DefaultPolicyBytes, long DefaultPolicyWeightBytes);

/// <summary>Something that stops quantization, as the error Sadg would report.</summary>
public sealed record Blocker(string Code, string Message, string Diagnostic);

/// <summary>
/// What <c>sadg inspect</c> reports: read from the file and from the executor that quantization would build,
/// without quantizing. Every problem that would stop <c>sadg quantize</c> is collected in <see cref="Blockers"/>.
/// </summary>
public sealed class ModelAnalysis
{
    public required string Path { get; init; }
    public long FileBytes { get; init; }
    public long IrVersion { get; init; }
    public long Opset { get; init; }
    public string Producer { get; init; } = "";
    public IReadOnlyList<string> Inputs { get; init; } = [];
    public ImageInput? ImageInput { get; init; }
    public IReadOnlyDictionary<string, int> OpTypes { get; init; } = new Dictionary<string, int>();
    public int BatchNormNodes { get; init; }

    /// <summary>
    /// What zero-shot generation takes the model to be fed when nothing is stated on the command line (quantize's order:
    /// metadata or a uint8 input, the first BatchNorm, the graph's input normalization, else a standardized
    /// assumption); null when the model has no image input or its graph does not build.
    /// </summary>
    public string? InputExpectation { get; init; }
    public IReadOnlyList<QuantizableLayer> Layers { get; init; } = [];
    public long QuantizableParameters => Layers.Sum(l => l.Parameters);
    public long OtherParameters { get; init; }
    public int? Blocks { get; init; }
    public IReadOnlyList<SizeEstimate> Sizes { get; init; } = [];
    public IReadOnlyList<Blocker> Blockers { get; init; } = [];
    public IReadOnlyDictionary<string, string> Metadata { get; init; } = new Dictionary<string, string>();

    /// <summary>
    /// <see cref="InputExpectation"/>: where quantize's input prior will come from (<see cref="InputPriorChoice"/>),
    /// without running the BatchNorm fit (which takes seconds and a seed).
    /// </summary>
    static string ExpectedInput(OnnxModel model, GraphModule module, ImageInput image)
    {
        var stated = InputStandardization.FromMetadata(model);
        var (origin, prior) = InputPriorChoice.Choose(module, InputPriorMode.Auto, stated, image);
        return origin switch
        {
            InputPriorOrigin.Stated => stated.ToString(),
            InputPriorOrigin.FirstBatchNorm => "fitted to the first BatchNormalization's statistics when quantizing",
            InputPriorOrigin.InputNormalization => prior!.Source,
            _ => $"nothing says: generation assumes a standardized input (mean 0, std 1) unless {QuantizeSchema.InputRange.Label}, or " +
                $"{QuantizeSchema.InputMean.Label} and {QuantizeSchema.InputStd.Label}, state it (warning SADG2002)",
        };
    }

    /// <summary>
    /// Loads and analyses a model. A file that cannot be read at all throws (<see cref="SadgException"/>); a model
    /// that reads but cannot be quantized returns with <see cref="Blockers"/>.
    /// </summary>
    public static ModelAnalysis Analyze(string path, CancellationToken cancellationToken = default)
    {
        var model = OnnxModel.Load(path);
        cancellationToken.ThrowIfCancellationRequested();
        var graph = model.Graph;
        var blockers = new List<Blocker>();
        void Block(SadgException e) => blockers.Add(new Blocker(e.CodeText, e.Message, e.ToDiagnostic()));

        ImageInput? image = null;
        try { image = model.GetImageInput(); }
        catch (SadgException e) { Block(e); }

        var initializers = graph.Initializer.ToDictionary(i => i.Name, StringComparer.Ordinal);
        var floatWeights = graph.Initializer.Where(IsFloat).Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var node in graph.Node.Where(n => n.OpType == "Constant"))
            if (node.Attribute.FirstOrDefault(a => a.Name == "value")?.T is { } t && IsFloat(t))
                floatWeights.Add(node.Output[0]);
        var constantDims = graph.Node.Where(n => n.OpType == "Constant")
            .Select(n => (n.Output[0], n.Attribute.FirstOrDefault(a => a.Name == "value")?.T))
            .Where(x => x.Item2 is not null).ToDictionary(x => x.Item1, x => x.Item2!.Dims.ToArray(), StringComparer.Ordinal);
        long[] DimsOf(string name) => initializers.TryGetValue(name, out var t) ? t.Dims.ToArray() : constantDims.GetValueOrDefault(name, []);

        // Quantizable layers: the executor's rule when it builds, the same rule on the file otherwise.
        GraphModule? module = null;
        int? blocks = null;
        string? expectation = null;
        List<(string Name, global::Onnx.NodeProto Proto)> quantizable;
        try
        {
            // The graph as the pipeline builds it (every node named, a channels-last input turned channels-first), so
            // that the names listed are those quantize reads in --exclude and --layer-bits and writes in its report.
            module = new GraphModule(ComputedWeights.ForPipeline(model, null));
            quantizable = module.Nodes.Where(module.IsQuantizable).Select(n => (n.Name, n.Proto)).ToList();
            cancellationToken.ThrowIfCancellationRequested();
            if (image is not null)
            {
                try { blocks = BlockPartition.Partition(module, module.IsQuantizable).Count; }
                catch (SadgException e) { Block(e); }
                try { expectation = ExpectedInput(model, module, image); }
                catch (SadgException e) { Block(e); }
            }
        }
        catch (SadgException e)
        {
            Block(e);
            quantizable = graph.Node.Select((n, i) => (Name: string.IsNullOrEmpty(n.Name) ? $"{n.OpType}#{i}" : n.Name, Proto: n))
                .Where(x => QuantizableOps.OpTypes.Contains(x.Proto.OpType) && x.Proto.Input.Count >= 2 && floatWeights.Contains(x.Proto.Input[1]))
                .ToList();
        }
        finally
        {
            module?.Dispose();
        }
        // The written model's opset: a form or an opset the upgrade refuses stops quantize in its preflight.
        if (model.Opset != OpsetUpgrader.TargetOpset && !blockers.Any(b => b.Code == $"SADG{(int)SadgErrorCode.UnsupportedOperator:D4}"))
        {
            try { OpsetUpgrader.Upgrade(model.Proto, path); }
            catch (SadgException e) { Block(e); }
        }
        if (quantizable.Count == 0 && !blockers.Any(b => b.Code == $"SADG{(int)SadgErrorCode.NothingToQuantize:D4}"))
            Block(new SadgException(SadgErrorCode.NothingToQuantize,
                QuantizableOps.NothingToQuantize, path));

        var layers = quantizable.Select(q =>
        {
            string weight = q.Proto.Input[1];
            long[] dims = DimsOf(weight);
            long parameters = dims.Length == 0 ? 0 : dims.Aggregate(1L, (a, b) => a * b);
            return new QuantizableLayer(q.Name, q.Proto.OpType, weight, dims, parameters, OutputChannels(q.Proto, dims));
        }).ToList();

        var quantizedWeights = layers.Select(l => l.Weight).ToHashSet(StringComparer.Ordinal);
        long other = graph.Initializer.Where(t => IsFloat(t) && !quantizedWeights.Contains(t.Name))
            .Sum(t => t.Dims.Aggregate(1L, (a, b) => a * b));

        return new ModelAnalysis
        {
            Path = path,
            FileBytes = new FileInfo(path).Length,
            IrVersion = model.Proto.IrVersion,
            Opset = model.Opset,
            Producer = string.Join(" ", new[] { model.Proto.ProducerName, model.Proto.ProducerVersion }.Where(s => !string.IsNullOrEmpty(s))),
            Inputs = model.RuntimeInputs.Select(Describe).ToList(),
            ImageInput = image,
            OpTypes = graph.Node.GroupBy(n => string.IsNullOrEmpty(n.Domain) || n.Domain == "ai.onnx" ? n.OpType : $"{n.Domain}.{n.OpType}")
                .OrderByDescending(g => g.Count()).ThenBy(g => g.Key, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.Count()),
            BatchNormNodes = graph.Node.Count(n => n.OpType == "BatchNormalization"),
            InputExpectation = expectation,
            Layers = layers,
            OtherParameters = other,
            Blocks = blocks,
            Sizes = Enumerable.Range(2, 7).Select(b => Estimate(layers, other, b)).ToList(),
            Blockers = blockers,
            Metadata = model.Proto.MetadataProps.GroupBy(p => p.Key).ToDictionary(g => g.Key, g => g.Last().Value),
        };
    }

    static bool IsFloat(global::Onnx.TensorProto t) => (DataType)t.DataType is DataType.Float or DataType.Float16 or DataType.Double or DataType.Bfloat16;

    /// <summary>The number of per-channel scales: the weight's size along <see cref="QuantizedGraph.WeightAxis(global::Onnx.NodeProto)"/>.</summary>
    static long OutputChannels(global::Onnx.NodeProto node, long[] dims)
    {
        int axis = QuantizedGraph.WeightAxis(node);
        return dims.Length > axis ? dims[axis] : 1;
    }

    /// <summary>
    /// Weights stored as the QDQ writer stores them (<see cref="Sadg.Quantization.BitAllocation.FileBytes"/>: b-bit integers
    /// in 4-bit containers two a byte up to 4 bits, bytes above, a float32 scale and a zero point per output channel),
    /// every other float parameter at float32. "Default policy": the first and last quantized layers at 8 bits
    /// (DESIGN §3). Protobuf framing and names are not counted.
    /// </summary>
    static SizeEstimate Estimate(IReadOnlyList<QuantizableLayer> layers, long otherParameters, int bits)
    {
        long LayerBytes(QuantizableLayer l, int b) => Sadg.Quantization.BitAllocation.FileBytes(l.Parameters, l.Channels, b);
        int PolicyBits(int i) => i == 0 || i == layers.Count - 1 ? 8 : bits;
        long rest = otherParameters * 4;
        long uniform = rest + layers.Sum(l => LayerBytes(l, bits));
        long policy = rest + layers.Select((l, i) => LayerBytes(l, PolicyBits(i))).Sum();
        long weights = layers.Select((l, i) => Sadg.Onnx.OnnxTensors.IntegerBytes(l.Parameters, PolicyBits(i))).Sum();
        return new SizeEstimate(bits, uniform, policy, weights);
    }

    static string Describe(global::Onnx.ValueInfoProto v)
    {
        var t = v.Type?.TensorType;
        if (t is null) return $"{v.Name} (not a tensor)";
        string dims = t.Shape is null ? "unknown shape" :
            "[" + string.Join(", ", t.Shape.Dim.Select(d => d.DimValue > 0 ? d.DimValue.ToString() : string.IsNullOrEmpty(d.DimParam) ? "?" : d.DimParam)) + "]";
        return $"{v.Name} {(DataType)t.ElemType} {dims}";
    }
}
