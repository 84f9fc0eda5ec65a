using Onnx;
using Sadg.Onnx;
using static TorchSharp.torch;
using DataType = Onnx.TensorProto.Types.DataType;

namespace Sadg.Quantization;

/// <summary>What <see cref="BatchNormFolding.FoldWithReport"/> did.</summary>
/// <param name="Model">The folded model (a new model; the input is not modified).</param>
/// <param name="Folded">BatchNormalization nodes folded into the Conv/Gemm/ConvTranspose that produces their input.</param>
/// <param name="Kept">BatchNormalization nodes left in the graph (after an Add, on a graph input, on a shared or non-constant producer, …).</param>
public sealed record FoldResult(OnnxModel Model, int Folded, int Kept);

/// <summary>
/// Folds inference-mode BatchNormalization into the preceding Conv, ConvTranspose or Gemm (the first step of
/// reconstruction, DESIGN §3): with σ = sqrt(var + ε) and f = γ / σ per output channel,
/// W' = W · f and b' = (b − mean) · f + β (a bias is created when the producer had none). The producer then writes
/// the BatchNormalization's output name and the BatchNormalization node is removed.
/// <para>
/// A BatchNormalization is folded only when its input X is produced by such a node whose output has no other
/// reader (and is not a graph output), whose weight and bias are initializers, and whose own scale, B, mean and
/// var are 1-D initializers of the producer's output-channel count; spatial = 0 (opsets 7–8), training mode and
/// named statistics outputs are left alone. Weights that another node also reads get a new initializer; a weight
/// read only by the folded node is replaced under its own name. Arithmetic runs in float64 and is stored in the
/// weight's own type.
/// </para>
/// </summary>
public static class BatchNormFolding
{
    /// <summary>The folded model; see <see cref="FoldWithReport"/> for the counts.</summary>
    public static OnnxModel Fold(OnnxModel model) => FoldWithReport(model).Model;

    /// <summary>Folds every foldable BatchNormalization and says how many were folded and kept.</summary>
    public static FoldResult FoldWithReport(OnnxModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var proto = model.Proto.Clone();
        var folder = new Folder(proto, model);
        int folded = folder.Run();
        int kept = proto.Graph.Node.Count(n => IsBatchNorm(n));
        return new FoldResult(OnnxModel.FromProto(proto, model.Path), folded, kept);
    }

    static bool IsBatchNorm(NodeProto n) => n.OpType == "BatchNormalization" && n.IsDefaultDomain();

    sealed class Folder
    {
        readonly ModelProto proto;
        readonly GraphProto graph;
        readonly OnnxModel source;
        readonly long opset;
        readonly Dictionary<string, int> initializerIndex = new(StringComparer.Ordinal);
        readonly Dictionary<string, NodeProto> producers;
        readonly Dictionary<string, int> readers = new(StringComparer.Ordinal);
        readonly HashSet<string> names = new(StringComparer.Ordinal);
        readonly HashSet<string> graphInputs;
        readonly HashSet<string> graphOutputs;

        public Folder(ModelProto proto, OnnxModel source)
        {
            this.proto = proto;
            this.source = source;
            graph = proto.Graph;
            opset = OnnxModel.OpsetOf(proto);
            graphInputs = graph.Input.Select(i => i.Name).ToHashSet(StringComparer.Ordinal);
            graphOutputs = graph.Output.Select(o => o.Name).ToHashSet(StringComparer.Ordinal);
            for (int i = 0; i < graph.Initializer.Count; i++) initializerIndex[graph.Initializer[i].Name] = i;
            producers = GraphEdits.Producers(graph);
            // Nodes inside subgraphs (If/Loop/Scan bodies) may read outer values implicitly: count those reads too.
            foreach (var input in AllInputs(graph)) readers[input] = readers.GetValueOrDefault(input) + 1;
            CollectNames(graph);
        }

        public int Run()
        {
            int folded = 0;
            foreach (var bn in graph.Node.Where(IsBatchNorm).ToList())
                if (TryFold(bn)) folded++;
            return folded;
        }

        bool TryFold(NodeProto bn)
        {
            if (bn.Input.Count < 5 || bn.Output.Count == 0 || bn.Output[0].Length == 0) return false;
            if (bn.Output.Skip(1).Any(o => o.Length > 0)) return false;
            if (Int(bn, "training_mode", 0) != 0) return false;
            if (opset < 9 && Int(bn, "spatial", 1) != 1) return false;

            string x = bn.Input[0];
            if (!producers.TryGetValue(x, out var producer) || !producer.IsDefaultDomain()) return false;
            if (producer.OpType is not ("Conv" or "ConvTranspose" or "Gemm")) return false;
            if (producer.Output.Count != 1 || producer.Output[0] != x) return false;
            if (readers.GetValueOrDefault(x) != 1 || graphOutputs.Contains(x)) return false;
            if (producer.Input.Count < 2 || !IsFloatInitializer(producer.Input[1])) return false;
            bool hasBias = producer.Input.Count > 2 && producer.Input[2].Length > 0;
            if (hasBias && !IsFloatInitializer(producer.Input[2])) return false;
            if (!bn.Input.Skip(1).Take(4).All(IsFloatInitializer)) return false;

            using var scope = NewDisposeScope();
            var weightProto = Initializer(producer.Input[1]);
            var weightType = (DataType)weightProto.DataType;
            var w = Read(producer.Input[1]);
            var bnParams = bn.Input.Skip(1).Take(4).Select(Read).ToArray();
            var (gamma, beta, mean, variance) = (bnParams[0], bnParams[1], bnParams[2], bnParams[3]);
            long channels = gamma.numel();
            if (bnParams.Any(t => t.dim() != 1 || t.numel() != channels)) return false;
            double epsilon = Float(bn, "epsilon", 1e-5f);
            var f = gamma / variance.Add(epsilon).sqrt();

            Tensor newWeight, newBias;
            switch (producer.OpType)
            {
                case "Conv":
                {
                    if (w.dim() < 3 || w.shape[0] != channels) return false;
                    newWeight = w * f.reshape([channels, .. Enumerable.Repeat(1L, (int)w.dim() - 1)]);
                    var b = hasBias ? Read(producer.Input[2]) : zeros(channels, dtype: ScalarType.Float64);
                    if (b.dim() != 1 || b.numel() != channels) return false;
                    newBias = ((b - mean) * f).Add(beta);
                    break;
                }
                case "ConvTranspose":
                {
                    // W is [Cin, Cout / group, k…]; output channel g · (Cout / group) + j lives in group g's slice j.
                    long group = Int(producer, "group", 1);
                    if (w.dim() < 3 || group < 1 || w.shape[0] % group != 0 || w.shape[1] * group != channels) return false;
                    long perGroup = w.shape[1];
                    var grouped = w.reshape([group, w.shape[0] / group, perGroup, .. w.shape.Skip(2)]);
                    var factor = f.reshape([group, 1, perGroup, .. Enumerable.Repeat(1L, (int)w.dim() - 2)]);
                    newWeight = (grouped * factor).reshape(w.shape);
                    var b = hasBias ? Read(producer.Input[2]) : zeros(channels, dtype: ScalarType.Float64);
                    if (b.dim() != 1 || b.numel() != channels) return false;
                    newBias = ((b - mean) * f).Add(beta);
                    break;
                }
                default: // Gemm: Y = alpha · A' · B' + beta · C, output channels along Y's dim 1.
                {
                    bool transB = Int(producer, "transB", 0) != 0;
                    if (w.dim() != 2) return false;
                    int axis = transB ? 0 : 1;
                    if (w.shape[axis] != channels) return false;
                    newWeight = w * (transB ? f.reshape(channels, 1) : f.reshape(1, channels));
                    double gemmBeta = Float(producer, "beta", 1f);
                    var c = hasBias ? Read(producer.Input[2]).Mul(gemmBeta) : zeros(channels, dtype: ScalarType.Float64);
                    if (c.dim() > 2 || (c.dim() >= 1 && c.shape[^1] != 1 && c.shape[^1] != channels)) return false;
                    newBias = ((c - mean) * f).Add(beta);
                    if (newBias.dim() == 0) newBias = newBias.expand(channels).contiguous();
                    SetAttribute(producer, "beta", 1f);
                    break;
                }
            }

            var storedType = OnnxTensors.ToTorchType(weightType);
            string biasBase = hasBias ? producer.Input[2] : producer.Input[1] + "_bias";
            Replace(producer, 1, newWeight.to_type(storedType), producer.Input[1]);
            if (producer.Input.Count == 2) producer.Input.Add("");
            Replace(producer, 2, newBias.to_type(storedType), biasBase);

            // Rewire: the producer now writes the BN's output; the BN and its now-unread parameters go.
            string folded = bn.Output[0];
            producer.Output[0] = folded;
            producers.Remove(x);
            producers[folded] = producer;
            readers.Remove(x);
            RemoveValueInfo(x);
            graph.Node.Remove(bn);
            foreach (var param in bn.Input.Skip(1).Take(4)) Release(param);
            return true;
        }

        /// <summary>
        /// Puts <paramref name="value"/> in the producer's input slot: under the same name when only this node
        /// reads that initializer, otherwise as a new initializer (a shared weight is never changed in place).
        /// </summary>
        void Replace(NodeProto node, int slot, Tensor value, string baseName)
        {
            string current = node.Input[slot];
            bool exclusive = current.Length > 0 && initializerIndex.ContainsKey(current) && readers.GetValueOrDefault(current) == 1
                && !graphInputs.Contains(current) && !graphOutputs.Contains(current);
            if (exclusive)
            {
                graph.Initializer[initializerIndex[current]] = OnnxTensors.FromTorch(current, value);
                return;
            }
            string name = Unique(baseName.Length > 0 ? baseName + "_bnfolded" : "bnfolded");
            graph.Initializer.Add(OnnxTensors.FromTorch(name, value));
            initializerIndex[name] = graph.Initializer.Count - 1;
            if (proto.IrVersion < 4)
                graph.Input.Add(OnnxGraphBuilder.ValueInfo(name, OnnxTensors.ToOnnxType(value.dtype), value.shape));
            if (current.Length > 0) Release(current);
            node.Input[slot] = name;
            readers[name] = 1;
        }

        /// <summary>One fewer reader of an initializer; removes it when nothing reads it any more.</summary>
        void Release(string name)
        {
            int left = readers.GetValueOrDefault(name) - 1;
            readers[name] = Math.Max(left, 0);
            if (left > 0 || graphInputs.Contains(name) || graphOutputs.Contains(name)) return;
            if (!initializerIndex.TryGetValue(name, out int index)) return;
            graph.Initializer.RemoveAt(index);
            initializerIndex.Remove(name);
            foreach (var key in initializerIndex.Keys.ToList())
                if (initializerIndex[key] > index) initializerIndex[key]--;
        }

        void RemoveValueInfo(string name)
        {
            for (int i = graph.ValueInfo.Count - 1; i >= 0; i--)
                if (graph.ValueInfo[i].Name == name) graph.ValueInfo.RemoveAt(i);
        }

        TensorProto Initializer(string name) => graph.Initializer[initializerIndex[name]];

        bool IsFloatInitializer(string name) =>
            name.Length > 0 && initializerIndex.ContainsKey(name) && !graphInputs.Contains(name)
            && (DataType)Initializer(name).DataType is DataType.Float or DataType.Double or DataType.Float16 or DataType.Bfloat16;

        Tensor Read(string name) => OnnxTensors.ToTorch(Initializer(name), source.BaseDirectory, source.Path).to_type(ScalarType.Float64);

        string Unique(string name)
        {
            string candidate = name;
            for (int i = 1; names.Contains(candidate); i++) candidate = $"{name}_{i}";
            names.Add(candidate);
            return candidate;
        }

        void CollectNames(GraphProto g)
        {
            foreach (var i in g.Input) names.Add(i.Name);
            foreach (var o in g.Output) names.Add(o.Name);
            foreach (var t in g.Initializer) names.Add(t.Name);
            foreach (var v in g.ValueInfo) names.Add(v.Name);
            foreach (var node in g.Node)
            {
                foreach (var v in node.Input) names.Add(v);
                foreach (var v in node.Output) names.Add(v);
                foreach (var a in node.Attribute)
                {
                    if (a.G is not null) CollectNames(a.G);
                    foreach (var sub in a.Graphs) CollectNames(sub);
                }
            }
        }

        static IEnumerable<string> AllInputs(GraphProto g)
        {
            foreach (var node in g.Node)
            {
                foreach (var input in node.Input.Where(i => i.Length > 0)) yield return input;
                foreach (var a in node.Attribute)
                {
                    if (a.G is not null)
                        foreach (var inner in AllInputs(a.G)) yield return inner;
                    foreach (var sub in a.Graphs)
                        foreach (var inner in AllInputs(sub)) yield return inner;
                }
            }
        }

        static long Int(NodeProto node, string name, long fallback) =>
            node.Attribute.FirstOrDefault(a => a.Name == name) is { } a ? a.I : fallback;

        static float Float(NodeProto node, string name, float fallback) =>
            node.Attribute.FirstOrDefault(a => a.Name == name) is { } a ? a.F : fallback;

        static void SetAttribute(NodeProto node, string name, float value)
        {
            var existing = node.Attribute.FirstOrDefault(a => a.Name == name);
            if (existing is not null) node.Attribute.Remove(existing);
            node.Attribute.Add(OnnxGraphBuilder.Attribute(name, value));
        }
    }
}
