using Google.Protobuf;
using Onnx;
using DataType = Onnx.TensorProto.Types.DataType;

namespace Sadg.Onnx;

/// <summary>
/// Rewrites a model of another default-domain opset (7 to <see cref="NewestKnownOpset"/>) as an opset-21 model (IR 10
/// or the model's own, if newer) with the same meaning, so that 4-bit QuantizeLinear/DequantizeLinear (which need
/// opset 21) can be added to it and the model written at one opset.
/// From newer opsets (22 to <see cref="NewestKnownOpset"/>) every node is kept: the operators' versions since 21
/// changed only the tensor types they accept (bfloat16, float4, float8e8m0, 2-bit integers), as ONNX's version
/// converter records, but Attention's and the operators new since 22 (Swish, RMSNormalization, …), which the
/// executor does not run and the upgrader refuses.
/// Forms that changed: attributes that became inputs (Clip, Squeeze, Unsqueeze, Reduce*, Split, Pad, Slice, TopK),
/// Upsample and opset-10 Resize (become opset-21 Resize with the coordinate mapping and rounding they had),
/// Dropout (becomes Identity: inference), BatchNormalization (removed attributes and unused extra outputs),
/// Softmax/LogSoftmax/Hardmax before 13 (which flattened to 2-D at <c>axis</c>), Scatter (now ScatterElements),
/// GroupNormalization before 21 (scale and bias per group: InstanceNormalization between two Reshapes), GridSample
/// before 20 (modes bilinear and bicubic renamed linear and cubic).
/// Operators whose other attribute changes only added options with the old behaviour as default (Conv, pools,
/// Gemm, Flatten, element-wise ops, …) are kept as they are. Anything else, or a form that cannot be expressed
/// at opset 21, is refused with a <see cref="SadgException"/> naming the node.
/// </summary>
public static class OpsetUpgrader
{
    public const long TargetOpset = 21;

    /// <summary>
    /// The newest default-domain opset Sadg reads: the newest the ONNX Runtime it checks with supports (1.31: opset
    /// 26, ONNX 1.21). Newer models are refused.
    /// </summary>
    public const long NewestKnownOpset = 26;

    public const long TargetIrVersion = 10;

    /// <summary>
    /// Operators whose opset-21 form accepts every older form (from opset 7) unchanged, and whose newer forms (to
    /// <see cref="NewestKnownOpset"/>) differ from it only in the tensor types they accept.
    /// </summary>
    static readonly HashSet<string> Unchanged = new(StringComparer.Ordinal)
    {
        "Abs", "Acos", "Acosh", "Add", "And", "ArgMax", "ArgMin", "Asin", "Asinh", "Atan", "Atanh", "AveragePool",
        "BitShift", "Cast", "CastLike", "Ceil", "Celu", "Concat", "Constant", "ConstantOfShape", "Conv", "ConvTranspose",
        "Cos", "Cosh", "CumSum", "DepthToSpace", "Div", "Einsum", "Elu", "Equal", "Erf", "Exp", "Expand", "EyeLike",
        "Flatten", "Floor", "Gather", "GatherElements", "GatherND", "Gelu", "Gemm", "GlobalAveragePool", "GlobalLpPool",
        "GlobalMaxPool", "Greater", "GreaterOrEqual", "HardSigmoid", "HardSwish", "Identity", "InstanceNormalization",
        "IsInf", "IsNaN", "LayerNormalization", "LeakyRelu", "Less", "LessOrEqual", "Log", "LpNormalization", "LpPool",
        "LRN", "MatMul", "Max", "MaxPool", "Mean", "MeanVarianceNormalization", "Min", "Mish", "Mod", "Mul", "Neg", "NonZero", "Not", "OneHot", "Or",
        "Pow", "PRelu", "Range", "Reciprocal", "Relu", "Reshape", "Round", "ScatterElements", "ScatterND", "Selu",
        "Shape", "Shrink", "Sigmoid", "Sign", "Sin", "Sinh", "Size", "Softplus", "Softsign", "SpaceToDepth", "Sqrt",
        "Sub", "Sum", "Tan", "Tanh", "ThresholdedRelu", "Tile", "Transpose", "Trilu", "Where", "Xor",
    };

    static readonly HashSet<string> ReduceOps = new(StringComparer.Ordinal)
    {
        "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd",
        "ReduceSum", "ReduceSumSquare",
    };

    /// <summary>
    /// A copy of <paramref name="source"/> at opset <see cref="TargetOpset"/> and IR <see cref="TargetIrVersion"/>.
    /// Node names are kept; unnamed nodes get "OpType_index" names; new nodes and initializers are named after the
    /// node or value they come from. Nodes of other domains are kept as they are, with their opset imports.
    /// </summary>
    public static ModelProto Upgrade(ModelProto source, string? file = null)
    {
        long from = OnnxModel.OpsetOf(source);
        if (from < 7)
            throw new SadgException(SadgErrorCode.UnsupportedOperator,
                $"The model imports ONNX opset {from}; Sadg upgrades models from opset 7 on. Re-export the model with a newer opset (13 or later).", file);
        if (from > NewestKnownOpset)
            throw new SadgException(SadgErrorCode.UnsupportedOperator,
                $"The model imports ONNX opset {from}, newer than opset {NewestKnownOpset}, the newest Sadg reads. " +
                $"Re-export it with opset {NewestKnownOpset} or older ({TargetOpset}, the opset Sadg writes, keeps it as exported).", file);

        var model = source.Clone();
        model.IrVersion = Math.Max(model.IrVersion, TargetIrVersion);
        foreach (var import in model.OpsetImport.Where(o => o.Domain is "" or "ai.onnx").ToList()) model.OpsetImport.Remove(import);
        model.OpsetImport.Insert(0, new OperatorSetIdProto { Domain = "", Version = TargetOpset });

        var graph = model.Graph;
        var names = new NameSet(graph);
        NameNodes(graph, names);
        var ranks = new RankInference(graph);
        var nodes = graph.Node.ToList();
        var upgrader = new Context(graph, nodes, from, names, file);

        graph.Node.Clear();
        foreach (var node in nodes)
        {
            ranks.Visit(node);
            foreach (var converted in upgrader.Convert(node, ranks)) graph.Node.Add(converted);
        }
        return model;
    }

    /// <summary>Gives unnamed nodes a name and makes duplicate names unique (the first keeps its name).</summary>
    internal static void NameNodes(GraphProto graph, NameSet names)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < graph.Node.Count; i++)
        {
            var node = graph.Node[i];
            if (string.IsNullOrEmpty(node.Name)) node.Name = names.Unique($"{node.OpType}_{i}");
            else if (!seen.Add(node.Name)) node.Name = names.Unique(node.Name);
            seen.Add(node.Name);
        }
    }

    sealed class Context(GraphProto graph, IReadOnlyList<NodeProto> allNodes, long from, NameSet names, string? file)
    {
        IEnumerable<string> GraphOutputs => graph.Output.Select(o => o.Name);

        SadgException Refuse(NodeProto node, SadgErrorCode code, string what) => new(code,
            $"{node.OpType} node '{node.Name}' (opset {from}): {what}, which cannot be written at opset {TargetOpset}. " +
            "Re-export the model with a newer opset or without this form.", file, node.Name);

        public IEnumerable<NodeProto> Convert(NodeProto node, RankInference ranks)
        {
            if (!node.IsDefaultDomain()) return [node];
            foreach (var a in node.Attribute)
                if (a.G is not null || a.Graphs.Count > 0)
                    throw Refuse(node, SadgErrorCode.UnsupportedOperator, "it has subgraphs (control flow)");
            string op = node.OpType;
            if (ReduceOps.Contains(op)) return [AxesToInput(node, from < (op == "ReduceSum" ? 13 : 18), optional: true)];
            switch (op)
            {
                case "Clip": return [Clip(node)];
                case "Squeeze": return [AxesToInput(node, from < 13, optional: true)];
                case "Unsqueeze": return [AxesToInput(node, from < 13, optional: false)];
                case "Split": return [Split(node)];
                case "Pad": return [Pad(node)];
                case "Slice": return [Slice(node)];
                case "TopK": return [TopK(node)];
                case "Upsample": return [Upsample(node)];
                case "Resize": return [Resize(node)];
                case "Dropout": return [Dropout(node)];
                case "BatchNormalization": return [BatchNorm(node)];
                case "Softmax" or "LogSoftmax" or "Hardmax": return SoftmaxFamily(node, ranks);
                case "Scatter": node.OpType = "ScatterElements"; return [node];
                case "GroupNormalization" when from < 21: return GroupNormPerGroup(node);
                case "GridSample": return [GridSample(node)];
                case "GroupNormalization": return [node];
            }
            if (Unchanged.Contains(op))
            {
                if (op is "Gemm" or "Add" or "Sub" or "Mul" or "Div" && (Has(node, "broadcast") || Has(node, "axis") && op != "Gemm"))
                    throw Refuse(node, SadgErrorCode.UnsupportedAttribute, "the legacy 'broadcast'/'axis' attributes are set");
                return [node];
            }
            throw Refuse(node, SadgErrorCode.UnsupportedOperator,
                "Sadg does not know how this operator changed between opsets");
        }

        static bool Has(NodeProto node, string name) => node.Attribute.Any(a => a.Name == name);

        static AttributeProto? Get(NodeProto node, string name) => node.Attribute.FirstOrDefault(a => a.Name == name);

        static AttributeProto? Take(NodeProto node, string name)
        {
            var a = Get(node, name);
            if (a is not null) node.Attribute.Remove(a);
            return a;
        }

        string Int64s(NodeProto node, string what, IEnumerable<long> values)
        {
            var t = new TensorProto { Name = names.Unique($"{node.Name}_{what}"), DataType = (int)DataType.Int64 };
            var list = values.ToList();
            t.Dims.Add(list.Count);
            t.Int64Data.AddRange(list);
            graph.Initializer.Add(t);
            return t.Name;
        }

        string FloatScalar(NodeProto node, string what, float value)
        {
            var t = new TensorProto { Name = names.Unique($"{node.Name}_{what}"), DataType = (int)DataType.Float };
            t.FloatData.Add(value);
            graph.Initializer.Add(t);
            return t.Name;
        }

        string Floats(NodeProto node, string what, IEnumerable<float> values)
        {
            var t = new TensorProto { Name = names.Unique($"{node.Name}_{what}"), DataType = (int)DataType.Float };
            var list = values.ToList();
            t.Dims.Add(list.Count);
            t.FloatData.AddRange(list);
            graph.Initializer.Add(t);
            return t.Name;
        }

        static void SetInput(NodeProto node, int index, string value)
        {
            while (node.Input.Count <= index) node.Input.Add("");
            node.Input[index] = value;
        }

        NodeProto Clip(NodeProto node)
        {
            if (from >= 11) return node;
            var min = Take(node, "min");
            var max = Take(node, "max");
            if (min is not null) SetInput(node, 1, FloatScalar(node, "min", min.F));
            if (max is not null) SetInput(node, 2, FloatScalar(node, "max", max.F));
            return node;
        }

        NodeProto AxesToInput(NodeProto node, bool attributeForm, bool optional)
        {
            if (!attributeForm) return node;
            var axes = Take(node, "axes");
            if (axes is null)
            {
                if (!optional) throw Refuse(node, SadgErrorCode.UnsupportedAttribute, "the required 'axes' attribute is missing");
                return node;
            }
            SetInput(node, 1, Int64s(node, "axes", axes.Ints));
            return node;
        }

        NodeProto Split(NodeProto node)
        {
            if (from < 13 && Take(node, "split") is { } split)
                SetInput(node, 1, Int64s(node, "split", split.Ints));
            bool hasSizes = node.Input.Count > 1 && node.Input[1].Length > 0;
            if (!hasSizes && !Has(node, "num_outputs"))
                node.Attribute.Add(OnnxGraphBuilder.Attribute("num_outputs", (long)node.Output.Count));
            return node;
        }

        NodeProto Pad(NodeProto node)
        {
            if (from >= 11) return node;
            var pads = Take(node, "pads") ?? Take(node, "paddings")
                ?? throw Refuse(node, SadgErrorCode.UnsupportedAttribute, "the 'pads' attribute is missing");
            var value = Take(node, "value");
            SetInput(node, 1, Int64s(node, "pads", pads.Ints));
            if (value is not null && value.F != 0f) SetInput(node, 2, FloatScalar(node, "value", value.F));
            return node;
        }

        NodeProto Slice(NodeProto node)
        {
            if (from >= 10) return node;
            var starts = Take(node, "starts") ?? throw Refuse(node, SadgErrorCode.UnsupportedAttribute, "the 'starts' attribute is missing");
            var ends = Take(node, "ends") ?? throw Refuse(node, SadgErrorCode.UnsupportedAttribute, "the 'ends' attribute is missing");
            var axes = Take(node, "axes");
            SetInput(node, 1, Int64s(node, "starts", starts.Ints));
            SetInput(node, 2, Int64s(node, "ends", ends.Ints));
            if (axes is not null) SetInput(node, 3, Int64s(node, "axes", axes.Ints));
            return node;
        }

        NodeProto TopK(NodeProto node)
        {
            if (from >= 10) return node;
            var k = Take(node, "k") ?? throw Refuse(node, SadgErrorCode.UnsupportedAttribute, "the 'k' attribute is missing");
            SetInput(node, 1, Int64s(node, "k", [k.I]));
            return node;
        }

        /// <summary>Upsample (nearest: asymmetric coordinates, floor; linear: asymmetric) becomes Resize.</summary>
        NodeProto Upsample(NodeProto node)
        {
            string mode = Take(node, "mode")?.S.ToStringUtf8() ?? "nearest";
            string scales;
            if (from < 9)
            {
                var attribute = Take(node, "scales") ?? throw Refuse(node, SadgErrorCode.UnsupportedAttribute, "the 'scales' attribute is missing");
                scales = Floats(node, "scales", attribute.Floats);
            }
            else
            {
                scales = node.Input.Count > 1 ? node.Input[1] : throw Refuse(node, SadgErrorCode.UnsupportedAttribute, "the scales input is missing");
            }
            var resize = new NodeProto { Name = node.Name, OpType = "Resize", DocString = node.DocString };
            resize.Input.AddRange([node.Input[0], "", scales]);
            resize.Output.AddRange(node.Output);
            resize.Attribute.AddRange(ResizeMode(node, mode, downsampling: false));
            return resize;
        }

        IEnumerable<AttributeProto> ResizeMode(NodeProto node, string mode, bool downsampling)
        {
            yield return OnnxGraphBuilder.Attribute("coordinate_transformation_mode", "asymmetric");
            switch (mode)
            {
                case "nearest":
                    yield return OnnxGraphBuilder.Attribute("mode", "nearest");
                    // ONNX Runtime's opset-10 rounding: floor when enlarging, ceil when shrinking.
                    yield return OnnxGraphBuilder.Attribute("nearest_mode", downsampling ? "ceil" : "floor");
                    break;
                case "linear" or "bilinear":
                    yield return OnnxGraphBuilder.Attribute("mode", "linear");
                    break;
                default:
                    throw Refuse(node, SadgErrorCode.UnsupportedAttribute, $"mode '{mode}'");
            }
        }

        NodeProto Resize(NodeProto node)
        {
            if (from < 11)
            {
                string mode = Take(node, "mode")?.S.ToStringUtf8() ?? "nearest";
                string scales = node.Input.Count > 1 ? node.Input[1] : throw Refuse(node, SadgErrorCode.UnsupportedAttribute, "the scales input is missing");
                bool downsampling = false;
                if (mode == "nearest")
                {
                    var s = graph.Initializer.FirstOrDefault(t => t.Name == scales)
                        ?? throw Refuse(node, SadgErrorCode.UnsupportedAttribute, "nearest resizing with scales computed at run time (the rounding depends on them)");
                    using var scope = TorchSharp.torch.NewDisposeScope();
                    float[] f = OnnxTensors.ToTorch(s).to_type(TorchSharp.torch.ScalarType.Float32).data<float>().ToArray();
                    if (f.Any(v => v < 1) && f.Any(v => v > 1))
                        throw Refuse(node, SadgErrorCode.UnsupportedAttribute, "nearest resizing that enlarges some axes and shrinks others");
                    downsampling = f.Any(v => v < 1);
                }
                var resize = new NodeProto { Name = node.Name, OpType = "Resize", DocString = node.DocString };
                resize.Input.AddRange([node.Input[0], "", scales]);
                resize.Output.AddRange(node.Output);
                resize.Attribute.AddRange(ResizeMode(node, mode, downsampling));
                return resize;
            }
            if (Get(node, "coordinate_transformation_mode")?.S.ToStringUtf8() == "tf_half_pixel_for_nn")
                throw Refuse(node, SadgErrorCode.UnsupportedAttribute, "coordinate_transformation_mode 'tf_half_pixel_for_nn' (removed in opset 13)");
            // An empty scales initializer next to sizes was the opset-11 way to leave scales out.
            if (node.Input.Count > 3 && node.Input[3].Length > 0 && node.Input[2].Length > 0
                && graph.Initializer.FirstOrDefault(t => t.Name == node.Input[2]) is { } empty && OnnxTensors.ElementCount(empty) == 0)
                node.Input[2] = "";
            return node;
        }

        NodeProto Dropout(NodeProto node)
        {
            if (from < 7 && Get(node, "is_test")?.I != 1)
                throw Refuse(node, SadgErrorCode.UnsupportedAttribute, "training-mode dropout");
            if (node.Output.Count > 1 && node.Output[1].Length > 0 && IsRead(node.Output[1]))
                throw Refuse(node, SadgErrorCode.UnsupportedOperator, "its mask output is used");
            if (from >= 12 && node.Input.Count > 2 && node.Input[2].Length > 0)
            {
                var training = graph.Initializer.FirstOrDefault(t => t.Name == node.Input[2]);
                using var scope = TorchSharp.torch.NewDisposeScope();
                bool off = training is not null && !OnnxTensors.ToTorch(training).to_type(TorchSharp.torch.ScalarType.Bool).item<bool>();
                if (!off) throw Refuse(node, SadgErrorCode.UnsupportedAttribute, "a training_mode input that is not a constant false");
            }
            var identity = new NodeProto { Name = node.Name, OpType = "Identity", DocString = node.DocString };
            identity.Input.Add(node.Input[0]);
            identity.Output.Add(node.Output[0]);
            return identity;
        }

        bool IsRead(string value) => GraphOutputs.Contains(value) || allNodes.Any(n => n.Input.Contains(value));

        NodeProto BatchNorm(NodeProto node)
        {
            if (from < 9 && Get(node, "spatial") is { I: 0 })
                throw Refuse(node, SadgErrorCode.UnsupportedAttribute, "spatial = 0 (per-activation statistics)");
            if (Get(node, "training_mode") is { I: not 0 })
                throw Refuse(node, SadgErrorCode.UnsupportedAttribute, "training_mode = 1");
            if (from < 7 && Get(node, "is_test")?.I != 1)
                throw Refuse(node, SadgErrorCode.UnsupportedAttribute, "training mode (is_test = 0)");
            Take(node, "spatial");
            Take(node, "is_test");
            Take(node, "consumed_inputs");
            Take(node, "training_mode");
            for (int o = 1; o < node.Output.Count; o++)
                if (node.Output[o].Length > 0 && IsRead(node.Output[o]))
                    throw Refuse(node, SadgErrorCode.UnsupportedOperator, $"its training output '{node.Output[o]}' is used");
            while (node.Output.Count > 1) node.Output.RemoveAt(node.Output.Count - 1);
            return node;
        }

        /// <summary>GridSample before opset 20 named its modes bilinear and bicubic; from 20 they are linear and cubic.</summary>
        NodeProto GridSample(NodeProto node)
        {
            if (from >= 20 || Get(node, "mode") is not { } mode) return node;
            string renamed = mode.S.ToStringUtf8() switch { "bilinear" => "linear", "bicubic" => "cubic", var same => same };
            mode.S = ByteString.CopyFromUtf8(renamed);
            return node;
        }

        /// <summary>
        /// GroupNormalization of opsets 18 to 20 scales and shifts per group, opset 21's per channel. The group form is
        /// InstanceNormalization over [N, G, C/G·H·W] (its scale and bias per group) between two Reshapes, as
        /// PyTorch's exporter writes GroupNorm; the channel count need not be known.
        /// </summary>
        IEnumerable<NodeProto> GroupNormPerGroup(NodeProto node)
        {
            long groups = Get(node, "num_groups")?.I ?? throw Refuse(node, SadgErrorCode.InvalidNode, "the 'num_groups' attribute is missing");
            if (node.Input.Count < 3 || node.Input.Take(3).Any(string.IsNullOrEmpty))
                throw Refuse(node, SadgErrorCode.InvalidNode, "X, scale and bias are required");
            if ((Get(node, "stash_type")?.I ?? 1) != 1) throw Refuse(node, SadgErrorCode.UnsupportedAttribute, "stash_type is not 1 (float32)");
            string x = node.Input[0], prefix = node.Output[0];
            var grouped = new NodeProto { Name = names.Unique($"{prefix}_ReshapeGroups"), OpType = "Reshape" };
            grouped.Input.AddRange([x, Int64s(node, "groups_shape", [0, groups, -1])]);
            grouped.Output.Add(names.Unique($"{prefix}_groups"));

            var norm = new NodeProto { Name = node.Name, OpType = "InstanceNormalization", DocString = node.DocString };
            norm.Input.AddRange([grouped.Output[0], node.Input[1], node.Input[2]]);
            norm.Output.Add(names.Unique($"{prefix}_groups_normalized"));
            norm.Attribute.Add(OnnxGraphBuilder.Attribute("epsilon", Get(node, "epsilon")?.F ?? 1e-5f));

            var shape = new NodeProto { Name = names.Unique($"{prefix}_Shape"), OpType = "Shape" };
            shape.Input.Add(x);
            shape.Output.Add(names.Unique($"{prefix}_shape"));

            var back = new NodeProto { Name = names.Unique($"{prefix}_Reshape"), OpType = "Reshape" };
            back.Input.AddRange([norm.Output[0], shape.Output[0]]);
            back.Output.Add(node.Output[0]);
            return [grouped, norm, shape, back];
        }

        /// <summary>
        /// Before opset 13 these ops flattened the input to 2-D at <c>axis</c> (default 1) and normalized the
        /// second dimension. When the axis is the last one that is the opset-13 meaning too; otherwise the node
        /// becomes Flatten → op(axis = 1) → Reshape to the input's shape.
        /// </summary>
        IEnumerable<NodeProto> SoftmaxFamily(NodeProto node, RankInference ranks)
        {
            if (from >= 13) return [node];
            long axis = Take(node, "axis")?.I ?? 1;
            string x = node.Input[0];
            if (ranks.Rank(x) is { } rank && (axis == rank - 1 || axis == -1))
            {
                node.Attribute.Add(OnnxGraphBuilder.Attribute("axis", rank - 1));
                return [node];
            }
            string prefix = node.Output[0];
            var flatten = new NodeProto { Name = names.Unique($"{prefix}_Flatten"), OpType = "Flatten" };
            flatten.Input.Add(x);
            flatten.Output.Add(names.Unique($"{prefix}_flat"));
            flatten.Attribute.Add(OnnxGraphBuilder.Attribute("axis", axis));

            var shape = new NodeProto { Name = names.Unique($"{prefix}_Shape"), OpType = "Shape" };
            shape.Input.Add(x);
            shape.Output.Add(names.Unique($"{prefix}_shape"));

            var softmax = new NodeProto { Name = node.Name, OpType = node.OpType, DocString = node.DocString };
            softmax.Input.Add(flatten.Output[0]);
            softmax.Output.Add(names.Unique($"{prefix}_flat_{node.OpType}"));
            softmax.Attribute.Add(OnnxGraphBuilder.Attribute("axis", 1L));

            var reshape = new NodeProto { Name = names.Unique($"{prefix}_Reshape"), OpType = "Reshape" };
            reshape.Input.AddRange([softmax.Output[0], shape.Output[0]]);
            reshape.Output.Add(node.Output[0]);
            return [flatten, shape, softmax, reshape];
        }
    }

    /// <summary>Ranks known from declared shapes and the common shape-preserving ops (enough for Softmax's axis).</summary>
    sealed class RankInference
    {
        readonly Dictionary<string, int> ranks = new(StringComparer.Ordinal);

        public RankInference(GraphProto graph)
        {
            foreach (var v in graph.Input.Concat(graph.ValueInfo).Concat(graph.Output))
                if (v.Type?.TensorType?.Shape is { } shape) ranks[v.Name] = shape.Dim.Count;
            foreach (var t in graph.Initializer) ranks[t.Name] = t.Dims.Count;
        }

        public int? Rank(string value) => ranks.TryGetValue(value, out int r) ? r : null;

        static readonly HashSet<string> SameRank = new(StringComparer.Ordinal)
        {
            "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip", "Dropout", "Identity", "BatchNormalization", "Conv",
            "ConvTranspose", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LRN", "InstanceNormalization",
            "Softmax", "LogSoftmax", "Elu", "Selu", "Exp", "Log", "Abs", "Neg", "Sqrt", "Cast", "Pad", "Resize", "Upsample",
            "HardSigmoid", "HardSwish", "Softplus", "Gelu", "Mish", "Erf", "Reciprocal", "Floor", "Ceil", "Round", "Transpose",
        };

        static readonly HashSet<string> Broadcasting = new(StringComparer.Ordinal)
        {
            "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "PRelu", "Where",
        };

        public void Visit(NodeProto node)
        {
            if (node.Output.Count == 0 || node.Output[0].Length == 0 || ranks.ContainsKey(node.Output[0])) return;
            var inputs = node.Input.Where(i => i.Length > 0).Select(Rank).ToList();
            int? rank = node.OpType switch
            {
                "Gemm" or "Flatten" => 2,
                _ when SameRank.Contains(node.OpType) => inputs.FirstOrDefault(),
                _ when Broadcasting.Contains(node.OpType) => inputs.All(r => r is not null) ? inputs.Max() : null,
                "MatMul" => inputs.Count == 2 && inputs.All(r => r >= 2) ? inputs.Max() : null,
                _ => null,
            };
            if (rank is { } r) ranks[node.Output[0]] = r;
        }
    }
}

/// <summary>Every name used in a graph (values, initializers, nodes), handing out unused ones.</summary>
internal sealed class NameSet
{
    readonly HashSet<string> used = new(StringComparer.Ordinal);

    public NameSet(GraphProto graph)
    {
        foreach (var v in graph.Input.Concat(graph.Output).Concat(graph.ValueInfo)) used.Add(v.Name);
        foreach (var t in graph.Initializer) used.Add(t.Name);
        foreach (var n in graph.Node)
        {
            used.Add(n.Name);
            used.UnionWith(n.Input);
            used.UnionWith(n.Output);
        }
    }

    /// <summary><paramref name="wanted"/> if unused, else wanted_1, wanted_2, …; the result is marked used.</summary>
    public string Unique(string wanted)
    {
        string name = wanted;
        for (int i = 1; !used.Add(name); i++) name = $"{wanted}_{i}";
        return name;
    }
}
