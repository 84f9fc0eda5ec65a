using System.Text;
using Onnx;
using Sadg.Graph.Ops;
using Sadg.Onnx;
using TorchSharp;
using static TorchSharp.torch;

namespace Sadg.Graph;

/// <summary>
/// Runs an ONNX graph as a differentiable TorchSharp module. Build it once per model; call it inside a
/// <c>torch.NewDisposeScope()</c> (every intermediate tensor of a run belongs to the caller's scope).
/// <list type="bullet">
/// <item>Constant subgraphs are folded when the graph is built; shape computations (Shape→Gather→…→Reshape) are
/// computed once per set of input shapes; only the data path runs per step.</item>
/// <item>Any value can be captured or replaced by name with <see cref="AddHook"/>/<see cref="Capture"/>, float
/// weights (initializers and Constant nodes) included: they stay leaves, so a hook on a weight sees every use.</item>
/// <item><see cref="Run"/> runs any node range from any set of fed values (one block at a time).</item>
/// </list>
/// </summary>
public sealed class GraphModule : nn.Module<Tensor, Tensor>
{
    readonly Dictionary<string, Tensor> constants = new(StringComparer.Ordinal);
    readonly HashSet<string> leaves = new(StringComparer.Ordinal);
    readonly Dictionary<string, int> producers = new(StringComparer.Ordinal);
    readonly Dictionary<string, List<Func<Tensor, Tensor>>> hooks = new(StringComparer.Ordinal);
    readonly Dictionary<(int Node, int Input), List<Func<Tensor, Tensor>>> inputHooks = [];
    readonly Dictionary<string, Plan> plans = new(StringComparer.Ordinal);
    readonly Dictionary<string, int> keepers = new(StringComparer.Ordinal);
    // The run-time values whose shapes key some shape-only node's cached result (every node's ShapeRoots).
    readonly HashSet<string> shapeRoots = new(StringComparer.Ordinal);
    readonly List<GraphNode> nodes = [];

    public GraphModule(OnnxModel model, Device? device = null) : base("GraphModule")
    {
        Model = model;
        Device = device ?? CPU;
        CheckDevice(Device);
        var graph = model.Graph;
        InputNames = model.RuntimeInputs.Select(i => i.Name).ToArray();
        OutputNames = graph.Output.Select(o => o.Name).ToArray();

        RejectUnsupported(model);
        var ordered = TopologicalOrder(model);
        bool batchOne = model.RuntimeInputs.Any(i => i.Type?.TensorType?.Shape?.Dim is { Count: >= 2 } d && d[0].DimValue == 1);

        using (NewDisposeScope())
        {
            foreach (var initializer in graph.Initializer)
            {
                var t = OnnxTensors.ToTorch(initializer, model.BaseDirectory, model.Path);
                Keep(initializer.Name, t, leaf: t.is_floating_point());
            }

            for (int i = 0; i < ordered.Count; i++)
            {
                var (proto, originalIndex) = ordered[i];
                var op = OperatorRegistry.Create(new OpContext(proto, model.Opset, originalIndex, model.Path, batchOne));
                var node = new GraphNode(i, proto, op);
                nodes.Add(node);
                foreach (var output in node.Outputs.Where(o => o.Length > 0)) producers[output] = i;
                Classify(node);
            }
        }
        if (Device.type != DeviceType.CPU) MoveConstants(Device);
    }

    /// <summary>Refuses a CUDA device when the TorchSharp backend in use has none (the CPU package, or no GPU).</summary>
    public static void CheckDevice(Device device)
    {
        if (device.type == DeviceType.CUDA && !cuda.is_available())
            throw new SadgException(SadgErrorCode.DeviceUnavailable,
                "CUDA was requested but TorchSharp sees no CUDA device. Either this machine has no NVIDIA GPU/driver, " +
                "or Sadg was built with the CPU backend (libtorch-cpu-linux-x64); build with the CUDA backend " +
                "(TorchSharp-cuda-linux, from your own feed) or use the CPU.");
    }

    public OnnxModel Model { get; }

    /// <summary>Names of the inputs fed at run time, in graph order.</summary>
    public IReadOnlyList<string> InputNames { get; }

    public IReadOnlyList<string> OutputNames { get; }

    /// <summary>Nodes in execution order (folded ones included, for reference).</summary>
    public IReadOnlyList<GraphNode> Nodes => nodes;

    /// <summary>The device float constants live on; inputs must be on it too.</summary>
    public Device Device { get; private set; }

    /// <summary>The float weights of the graph (initializers and Constant-node outputs), by value name.</summary>
    public IReadOnlyDictionary<string, Tensor> Weights => leaves.ToDictionary(n => n, n => constants[n]);

    /// <summary>
    /// A <see cref="QuantizableOps.OpTypes"/> node whose weight (second input) is a constant float tensor of the graph: the
    /// operators Sadg quantizes. A MatMul's weight must be a [K, N] matrix (quantized per column); a vector or a batch
    /// of matrices stays float.
    /// </summary>
    public bool IsQuantizable(GraphNode node) =>
        node.Kind == NodeKind.Dynamic && QuantizableOps.OpTypes.Contains(node.OpType)
        && node.Inputs.Count >= 2 && leaves.Contains(node.Inputs[1])
        && (node.OpType != "MatMul" || constants[node.Inputs[1]].dim() == 2);

    /// <summary>True when the value is known without running anything (an initializer or folded constant).</summary>
    public bool IsConstant(string value) => constants.ContainsKey(value);

    /// <summary>The constant value (initializer, Constant node or folded result), or null.</summary>
    public Tensor? GetConstant(string value) => constants.GetValueOrDefault(value);

    /// <summary>The node that produces a value, or null for inputs and initializers.</summary>
    public GraphNode? Producer(string value) => producers.TryGetValue(value, out int i) ? nodes[i] : null;

    /// <summary>The nodes that read a value, in execution order.</summary>
    public IReadOnlyList<GraphNode> Consumers(string value) => nodes.Where(n => n.Inputs.Contains(value)).ToList();

    /// <summary>Replaces a float weight; the new value is used from the next run on.</summary>
    public void SetWeight(string name, Tensor value)
    {
        if (!leaves.Contains(name))
            throw new ArgumentException($"'{name}' is not a float weight of this graph.", nameof(name));
        var old = constants[name];
        constants[name] = value.detach().to(Device).DetachFromDisposeScope();
        old.Dispose();
    }

    /// <summary>
    /// Calls <paramref name="hook"/> with a value each time it is produced (or, for weights, read) and uses what
    /// it returns instead. Hooks on one value run in the order they were added; <paramref name="first"/> puts this one
    /// before those already there (to see a value before a quantizer hook changes it). Dispose the result to remove
    /// it. Folded and shape-only values cannot be hooked.
    /// </summary>
    /// <param name="keepsValue">The hook holds on to a tensor it sees or returns after the run (a capture): the value
    /// is then kept until the caller's dispose scope ends. False for a hook that only transforms (a quantizer): the
    /// run frees the value after its last reader.</param>
    public IDisposable AddHook(string value, Func<Tensor, Tensor> hook, bool first = false, bool keepsValue = true)
    {
        bool produced = producers.TryGetValue(value, out int p) && nodes[p].Kind == NodeKind.Dynamic;
        if (!produced && !leaves.Contains(value) && !InputNames.Contains(value))
            throw new ArgumentException(IsConstant(value) || producers.ContainsKey(value)
                ? $"'{value}' is computed once, not per run, so it cannot be hooked."
                : $"The graph has no value named '{value}'.", nameof(value));
        if (!hooks.TryGetValue(value, out var list)) hooks[value] = list = [];
        if (first) list.Insert(0, hook);
        else list.Add(hook);
        if (keepsValue) keepers[value] = keepers.GetValueOrDefault(value) + 1;
        return new OnDispose(() =>
        {
            list.Remove(hook);
            if (list.Count == 0) hooks.Remove(value);
            if (keepsValue && --keepers[value] == 0) keepers.Remove(value);
        });
    }

    /// <summary>
    /// Like <see cref="AddHook"/>, but changes what one node sees at one input only; other readers of the value
    /// see it unchanged (e.g. swing convolution shifts a strided Conv's input, not the shortcut beside it). The hook
    /// must not hold on to the tensor it is given after the run (the run frees the value after its last reader;
    /// capture it with <see cref="AddHook"/>).
    /// </summary>
    public IDisposable AddInputHook(GraphNode node, int input, Func<Tensor, Tensor> hook)
    {
        if (node.Index >= nodes.Count || !ReferenceEquals(nodes[node.Index], node))
            throw new ArgumentException($"{node} is not a node of this graph.", nameof(node));
        if (input < 0 || input >= node.Inputs.Count || node.Inputs[input].Length == 0)
            throw new ArgumentOutOfRangeException(nameof(input), $"{node} has no input {input}.");
        if (node.Kind != NodeKind.Dynamic)
            throw new ArgumentException($"{node} is computed once, not per run, so its inputs cannot be hooked.", nameof(node));
        var key = (node.Index, input);
        if (!inputHooks.TryGetValue(key, out var list)) inputHooks[key] = list = [];
        list.Add(hook);
        return new OnDispose(() =>
        {
            list.Remove(hook);
            if (list.Count == 0) inputHooks.Remove(key);
        });
    }

    /// <summary>Records the given values on every run; read them from the returned capture after a run.</summary>
    public ValueCapture Capture(IEnumerable<string> values)
    {
        var capture = new ValueCapture();
        foreach (var value in values)
            capture.Add(AddHook(value, t =>
            {
                capture.Set(value, t);
                return t;
            }));
        return capture;
    }

    /// <summary>Runs the whole graph on its single run-time input and returns its first output.</summary>
    public override Tensor forward(Tensor input)
    {
        if (InputNames.Count != 1)
            throw new SadgException(SadgErrorCode.InvalidGraph,
                $"The graph has {InputNames.Count} run-time inputs ({string.Join(", ", InputNames)}); call Run with a value for each.", Model.Path);
        return Run(new Dictionary<string, Tensor> { [InputNames[0]] = input }, [OutputNames[0]])[OutputNames[0]];
    }

    /// <summary>
    /// Computes <paramref name="outputs"/> from <paramref name="feeds"/>, running only the needed nodes whose
    /// execution index lies in [<paramref name="fromNode"/>, <paramref name="toNode"/>). A needed value that is
    /// neither fed, constant, nor produced in the range is an error.
    /// </summary>
    public IReadOnlyDictionary<string, Tensor> Run(IReadOnlyDictionary<string, Tensor> feeds, IReadOnlyList<string> outputs,
        int fromNode = 0, int toNode = int.MaxValue)
    {
        toNode = Math.Min(toNode, nodes.Count);
        var env = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        // The shapes of the shape roots this run fed or produced, kept after the values themselves are freed: a
        // shape-only node further down a Shape → Gather → Concat chain keys its cached result on its roots' shapes,
        // and its roots are usually freed by then.
        var shapes = new Dictionary<string, long[]>(StringComparer.Ordinal);
        foreach (var (name, value) in feeds)
        {
            env[name] = ApplyHooks(name, value);
            if (shapeRoots.Contains(name)) shapes[name] = env[name].shape;
        }

        var plan = MakePlan(feeds.Keys, outputs, fromNode, toNode);
        for (int position = 0; position < plan.Nodes.Length; position++)
        {
            int index = plan.Nodes[position];
            var node = nodes[index];
            var inputs = new Tensor?[node.Inputs.Count];
            for (int i = 0; i < inputs.Length; i++)
            {
                inputs[i] = node.Inputs[i].Length == 0 ? null : Lookup(node.Inputs[i], env);
                if (inputHooks.Count > 0 && inputs[i] is { } value && inputHooks.TryGetValue((index, i), out var list))
                    foreach (var hook in list.ToArray()) inputs[i] = hook(inputs[i]!);
            }

            Tensor?[] results;
            if (node.Kind == NodeKind.ShapeOnly)
            {
                string? key = ShapeKey(node, shapes);
                if (key is null)
                    results = Execute(node, inputs);
                else if (!node.TryGetCached(key, out results))
                {
                    results = Execute(node, inputs);
                    node.Cache(key, results);
                }
            }
            else
            {
                results = Execute(node, inputs);
            }

            for (int o = 0; o < node.Outputs.Count && o < results.Length; o++)
            {
                if (node.Outputs[o].Length == 0 || results[o] is not { } value) continue;
                if (shapeRoots.Contains(node.Outputs[o])) shapes[node.Outputs[o]] = value.shape;
                if (node.Kind != NodeKind.Dynamic)
                {
                    env[node.Outputs[o]] = value;
                    continue;
                }
                var hooked = ApplyHooks(node.Outputs[o], value);
                env[node.Outputs[o]] = hooked;
                // What a transforming hook replaced is read by no one (unless the operator returned one of its inputs).
                if (!ReferenceEquals(hooked, value) && !keepers.ContainsKey(node.Outputs[o]) && !Aliased(value, env)) value.Dispose();
            }
            Release(plan.Releases[position], env);
        }

        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var name in outputs) result[name] = Lookup(name, env);
        return result;
    }

    Tensor?[] Execute(GraphNode node, Tensor?[] inputs)
    {
        try
        {
            return node.Op.Run(inputs);
        }
        catch (Exception e) when (e is not SadgException and not OperationCanceledException)
        {
            string shapes = string.Join(", ", inputs.Select(t => t is null ? "none" : $"{t.dtype}[{string.Join(", ", t.shape)}]"));
            throw node.Op.Context.Error(SadgErrorCode.InvalidNode, $"failed on inputs {shapes}: {e.Message.Split('\n')[0]}");
        }
    }

    Tensor Lookup(string name, Dictionary<string, Tensor> env)
    {
        if (env.TryGetValue(name, out var value)) return value;
        if (constants.TryGetValue(name, out var constant))
        {
            // Weights are re-read (and re-hooked) on every run; cache the hooked value for this run only.
            var hooked = leaves.Contains(name) ? ApplyHooks(name, constant) : constant;
            env[name] = hooked;
            return hooked;
        }
        throw new SadgException(SadgErrorCode.InvalidGraph, $"Value '{name}' was needed but not computed; feed it or widen the node range.", Model.Path);
    }

    Tensor ApplyHooks(string name, Tensor value)
    {
        if (!hooks.TryGetValue(name, out var list)) return value;
        foreach (var hook in list.ToArray()) value = hook(value);
        return value;
    }

    /// <summary>The cache key of a shape-only node: its roots' shapes in this run; null (run it, do not cache) when a
    /// root's shape is unknown to the run.</summary>
    static string? ShapeKey(GraphNode node, Dictionary<string, long[]> shapes)
    {
        var key = new StringBuilder();
        foreach (var root in node.ShapeRoots)
        {
            if (!shapes.TryGetValue(root, out var shape)) return null;
            key.Append(root).Append(':');
            foreach (long d in shape) key.Append(d).Append(',');
            key.Append(';');
        }
        return key.ToString();
    }

    /// <summary>
    /// Frees the values whose last reader in this run has run: each step's intermediates then go as the run goes, not
    /// when the caller's dispose scope ends (under no_grad nothing else holds them; with a graph, autograd keeps what
    /// its backward needs). A value a hook keeps (<see cref="AddHook"/>'s <c>keepsValue</c>) stays, and so does a tensor
    /// that another live value is (an operator that returns its input).
    /// </summary>
    void Release(string[] names, Dictionary<string, Tensor> env)
    {
        foreach (var name in names)
        {
            if (keepers.ContainsKey(name) || !env.Remove(name, out var tensor)) continue;
            if (!Aliased(tensor, env)) tensor.Dispose();
        }
    }

    static bool Aliased(Tensor tensor, Dictionary<string, Tensor> env)
    {
        foreach (var other in env.Values)
            if (ReferenceEquals(other, tensor)) return true;
        return false;
    }

    /// <summary>The nodes a run executes, in order, and after each the values it was the last to read.</summary>
    sealed record Plan(int[] Nodes, string[][] Releases);

    Plan MakePlan(IEnumerable<string> fed, IReadOnlyList<string> outputs, int fromNode, int toNode)
    {
        var fedSet = fed.ToHashSet(StringComparer.Ordinal);
        string key = $"{string.Join('\u0001', fedSet.Order(StringComparer.Ordinal))}\u0002{string.Join('\u0001', outputs)}\u0002{fromNode}\u0002{toNode}";
        if (plans.TryGetValue(key, out var plan)) return plan;

        var needed = new SortedSet<int>();
        var visited = new HashSet<string>(StringComparer.Ordinal);
        var stack = new Stack<string>(outputs);
        while (stack.Count > 0)
        {
            string value = stack.Pop();
            if (value.Length == 0 || !visited.Add(value) || fedSet.Contains(value) || constants.ContainsKey(value)) continue;
            if (!producers.TryGetValue(value, out int p))
                throw new SadgException(SadgErrorCode.InvalidGraph,
                    InputNames.Contains(value) ? $"Input '{value}' was not given." : $"The graph has no value named '{value}'.", Model.Path);
            if (p < fromNode || p >= toNode)
                throw new SadgException(SadgErrorCode.InvalidGraph,
                    $"Value '{value}' is produced by {nodes[p]} (node {p}), outside the requested range [{fromNode}, {toNode}); feed it.", Model.Path);
            if (needed.Add(p))
                foreach (var input in nodes[p].Inputs) stack.Push(input);
        }
        var order = needed.ToArray();

        // Each value a Dynamic node of the plan makes, other than the run's outputs, is freed after its last reader
        // (or at once when nothing reads it). Values of shape-only nodes are cached across runs and never freed.
        var lastUse = new Dictionary<string, int>(StringComparer.Ordinal);
        var wanted = outputs.ToHashSet(StringComparer.Ordinal);
        for (int position = 0; position < order.Length; position++)
        {
            var node = nodes[order[position]];
            foreach (var input in node.Inputs)
                if (lastUse.ContainsKey(input)) lastUse[input] = position;
            if (node.Kind != NodeKind.Dynamic) continue;
            foreach (var output in node.Outputs)
                if (output.Length > 0 && !wanted.Contains(output) && !fedSet.Contains(output)) lastUse[output] = position;
        }
        var releases = new List<string>[order.Length];
        for (int i = 0; i < releases.Length; i++) releases[i] = [];
        foreach (var (value, position) in lastUse) releases[position].Add(value);
        plan = new Plan(order, releases.Select(r => r.ToArray()).ToArray());
        plans[key] = plan;
        return plan;
    }

    void Keep(string name, Tensor value, bool leaf)
    {
        constants[name] = value.DetachFromDisposeScope();
        if (leaf) leaves.Add(name);
    }

    void Classify(GraphNode node)
    {
        var present = node.Inputs.Where(i => i.Length > 0).ToArray();
        bool isShapeSource = node.OpType is "Shape" or "Size";
        bool allConstant = present.All(constants.ContainsKey);
        bool readsWeight = present.Any(leaves.Contains);

        if (node.OpType == "Constant" || (allConstant && !readsWeight && !isShapeSource))
        {
            node.Kind = NodeKind.Folded;
            var results = Execute(node, present.Length == node.Inputs.Count
                ? node.Inputs.Select(i => (Tensor?)constants[i]).ToArray()
                : node.Inputs.Select(i => i.Length == 0 ? null : (Tensor?)constants[i]).ToArray());
            for (int o = 0; o < node.Outputs.Count && o < results.Length; o++)
                if (node.Outputs[o].Length > 0 && results[o] is { } value)
                    Keep(node.Outputs[o], value.detach(), leaf: node.OpType == "Constant" && value.is_floating_point());
            return;
        }

        bool IsShapeOnly(string v) => producers.TryGetValue(v, out int p) && nodes[p].Kind == NodeKind.ShapeOnly;
        if (isShapeSource || (present.All(v => constants.ContainsKey(v) || IsShapeOnly(v)) && present.Any(IsShapeOnly)))
        {
            node.Kind = NodeKind.ShapeOnly;
            var roots = new SortedSet<string>(StringComparer.Ordinal);
            foreach (var v in present)
            {
                if (IsShapeOnly(v)) roots.UnionWith(nodes[producers[v]].ShapeRoots);
                else if (isShapeSource && !constants.ContainsKey(v)) roots.Add(v);
            }
            node.ShapeRoots = roots.ToArray();
            shapeRoots.UnionWith(roots);
            return;
        }
        node.Kind = NodeKind.Dynamic;
    }

    /// <summary>Operators only a quantized model has (ONNX's QDQ and integer forms, ONNX Runtime's QLinear ones).</summary>
    static readonly HashSet<string> QuantizedOps =
    [
        "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger",
        "MatMulInteger", "QLinearAdd", "QLinearMul", "QLinearGlobalAveragePool", "QLinearSigmoid", "QLinearLeakyRelu",
    ];

    static void RejectUnsupported(OnnxModel model)
    {
        var unsupported = model.Graph.Node
            .Select((n, i) => (n, i))
            .Where(x => !OperatorRegistry.IsSupported(x.n.Domain, x.n.OpType))
            .GroupBy(x => string.IsNullOrEmpty(x.n.Domain) ? x.n.OpType : $"{x.n.Domain}.{x.n.OpType}")
            .ToList();
        if (unsupported.Count == 0) return;
        string list = string.Join("; ", unsupported.Select(g =>
        {
            var names = g.Select(x => string.IsNullOrEmpty(x.n.Name) ? $"#{x.i}" : $"'{x.n.Name}'").ToList();
            string shown = string.Join(", ", names.Take(5)) + (names.Count > 5 ? $" and {names.Count - 5} more" : "");
            return $"{g.Key} ({(names.Count == 1 ? "node" : "nodes")} {shown})";
        }));
        if (unsupported.FirstOrDefault(g => QuantizedOps.Contains(g.First().n.OpType)) is { } quantized)
        {
            bool ours = model.Proto.MetadataProps.Any(p => p.Key.StartsWith(Export.SadgMetadata.Prefix, StringComparison.Ordinal));
            throw new SadgException(SadgErrorCode.UnsupportedOperator,
                $"The model is already quantized: it has {list}. Sadg quantizes float (FP32) models; give the float model " +
                $"this one was made from{(ours ? " (its sadg.* metadata says Sadg wrote this file)" : "")}.",
                model.Path, quantized.First().n.Name);
        }
        throw new SadgException(SadgErrorCode.UnsupportedOperator,
            $"The model uses operators Sadg cannot run: {list}. Supported: {string.Join(", ", OperatorRegistry.SupportedOpTypes)}. " +
            "Re-export the model so these become supported operators (for PyTorch, try another opset or simplify the model with onnxsim).",
            model.Path, unsupported[0].First().n.Name);
    }

    static List<(NodeProto Node, int Index)> TopologicalOrder(OnnxModel model)
    {
        var graph = model.Graph;
        var available = new HashSet<string>(graph.Input.Select(i => i.Name).Concat(graph.Initializer.Select(i => i.Name)), StringComparer.Ordinal) { "" };
        var producedBy = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < graph.Node.Count; i++)
            foreach (var output in graph.Node[i].Output.Where(o => o.Length > 0))
                if (!producedBy.TryAdd(output, i) || available.Contains(output))
                    throw new SadgException(SadgErrorCode.InvalidGraph, $"Value '{output}' is produced twice (node {i}); the graph is not valid ONNX.", model.Path);

        foreach (var node in graph.Node.Select((n, i) => (n, i)))
            foreach (var input in node.n.Input)
                if (!available.Contains(input) && !producedBy.ContainsKey(input))
                    throw new SadgException(SadgErrorCode.InvalidGraph,
                        $"{node.n.OpType} node {node.i} '{node.n.Name}' reads '{input}', which no input, initializer or node provides.", model.Path, node.n.Name);
        foreach (var output in graph.Output)
            if (!available.Contains(output.Name) && !producedBy.ContainsKey(output.Name))
                throw new SadgException(SadgErrorCode.InvalidGraph, $"Graph output '{output.Name}' is not produced by any node.", model.Path);

        // Kahn's algorithm, keeping the file's order among ready nodes.
        var pending = graph.Node.Select(n => n.Input.Count(i => !available.Contains(i))).ToArray();
        var readers = new Dictionary<string, List<int>>(StringComparer.Ordinal);
        for (int i = 0; i < graph.Node.Count; i++)
            foreach (var input in graph.Node[i].Input.Where(x => !available.Contains(x)))
                (readers.TryGetValue(input, out var l) ? l : readers[input] = []).Add(i);
        var ready = new SortedSet<int>(Enumerable.Range(0, graph.Node.Count).Where(i => pending[i] == 0));
        var order = new List<(NodeProto, int)>(graph.Node.Count);
        while (ready.Count > 0)
        {
            int i = ready.Min;
            ready.Remove(i);
            order.Add((graph.Node[i], i));
            foreach (var output in graph.Node[i].Output.Where(o => o.Length > 0))
                if (readers.TryGetValue(output, out var list))
                    foreach (int r in list)
                        if (--pending[r] == 0) ready.Add(r);
        }
        if (order.Count != graph.Node.Count)
            throw new SadgException(SadgErrorCode.InvalidGraph, "The graph has a cycle; ONNX graphs must be acyclic.", model.Path);
        return order;
    }

    void MoveConstants(Device device)
    {
        CheckDevice(device);
        foreach (var name in constants.Keys.ToList())
        {
            var t = constants[name];
            if (!t.is_floating_point() || t.device == device) continue;
            constants[name] = t.to(device).DetachFromDisposeScope();
            t.Dispose();
        }
        foreach (var node in nodes) node.ClearCache();
        Device = device;
    }

    protected override nn.Module _to(DeviceType deviceType, int deviceIndex, bool non_blocking)
    {
        MoveConstants(new Device(deviceType, deviceIndex));
        return this;
    }

    protected override nn.Module _to(Device device, ScalarType dtype, bool non_blocking)
    {
        MoveConstants(device);
        return this;
    }

    protected override nn.Module _to(ScalarType dtype, bool non_blocking) =>
        throw new NotSupportedException("GraphModule keeps the model's own data types; convert inputs instead.");

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            foreach (var t in constants.Values) t.Dispose();
            constants.Clear();
            foreach (var node in nodes) node.ClearCache();
        }
        base.Dispose(disposing);
    }
}

/// <summary>Values recorded by <see cref="GraphModule.Capture"/>: the latest run's tensor for each name.</summary>
public sealed class ValueCapture : IDisposable
{
    readonly Dictionary<string, Tensor> values = new(StringComparer.Ordinal);
    readonly List<IDisposable> handles = [];

    public Tensor this[string name] => values.TryGetValue(name, out var t) ? t
        : throw new KeyNotFoundException($"'{name}' was not produced by the last run.");

    public IReadOnlyDictionary<string, Tensor> Values => values;

    internal void Add(IDisposable handle) => handles.Add(handle);

    internal void Set(string name, Tensor value) => values[name] = value;

    /// <summary>Forgets recorded tensors (they belong to the run's dispose scope) and keeps capturing.</summary>
    public void Clear() => values.Clear();

    public void Dispose()
    {
        foreach (var h in handles) h.Dispose();
        handles.Clear();
        values.Clear();
    }
}
