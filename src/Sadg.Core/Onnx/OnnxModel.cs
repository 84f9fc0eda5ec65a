using Google.Protobuf;
using Onnx;
using DataType = Onnx.TensorProto.Types.DataType;

namespace Sadg.Onnx;

/// <summary>
/// An ONNX model read from a file and checked well enough that later stages can trust it: it parses, it has a
/// graph and an opset, and every tensor's declared size matches the data it carries (checked before any
/// tensor is allocated). External data stays inside the model's folder.
/// </summary>
public sealed class OnnxModel
{
    OnnxModel(ModelProto proto, string? path)
    {
        Proto = proto;
        Path = path;
        BaseDirectory = path is null ? null : System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path));
    }

    public ModelProto Proto { get; }

    public GraphProto Graph => Proto.Graph;

    /// <summary>The file the model came from; null for models built in memory.</summary>
    public string? Path { get; }

    /// <summary>The folder external data is resolved against.</summary>
    public string? BaseDirectory { get; }

    /// <summary>The opset version of the default ONNX domain ("" or "ai.onnx").</summary>
    public long Opset => OpsetOf(Proto);

    public static long OpsetOf(ModelProto proto) =>
        proto.OpsetImport.Where(o => o.Domain is "" or "ai.onnx").Select(o => o.Version).DefaultIfEmpty(0).Max();

    /// <summary>Graph inputs that are fed at run time (older IR versions also list initializers as inputs).</summary>
    public IReadOnlyList<ValueInfoProto> RuntimeInputs
    {
        get
        {
            var initializers = Graph.Initializer.Select(i => i.Name).ToHashSet();
            return Graph.Input.Where(i => !initializers.Contains(i.Name)).ToList();
        }
    }

    /// <summary>Whether any initializer's data is stored in a file beside the model (ONNX external data).</summary>
    public bool HasExternalData => Graph.Initializer.Any(t => t.DataLocation == TensorProto.Types.DataLocation.External);

    /// <summary>
    /// This model with the bytes of every initializer stored in external data read into the model itself (the same
    /// path; itself when it has none). The quantized model is written whole from it, and its serialization is what
    /// the FP32 side of the ONNX Runtime check runs and what the cache key hashes, so that the data file's content
    /// counts and nothing written points back at it.
    /// </summary>
    public OnnxModel WithExternalDataInlined()
    {
        if (!HasExternalData) return this;
        var proto = Proto.Clone();
        foreach (var t in proto.Graph.Initializer.Where(t => t.DataLocation == TensorProto.Types.DataLocation.External))
        {
            long count = OnnxTensors.Validate(t, Path);
            byte[] bytes = ExternalData.Read(t, OnnxTensors.RawByteCount((DataType)t.DataType, count), BaseDirectory, Path);
            t.RawData = ByteString.CopyFrom(bytes);
            t.ExternalData.Clear();
            t.DataLocation = TensorProto.Types.DataLocation.Default;
        }
        return FromProto(proto, Path);
    }

    /// <summary>Reads and checks a model file. Every failure is a <see cref="SadgException"/> naming the file.</summary>
    public static OnnxModel Load(string path)
    {
        if (Directory.Exists(path))
            throw new SadgException(SadgErrorCode.ModelNotFound, $"'{path}' is a folder; give the path of an .onnx file.", path);
        if (!File.Exists(path))
            throw new SadgException(SadgErrorCode.ModelNotFound,
                $"No model file at '{path}' (looked in '{System.IO.Path.GetFullPath(path)}'). Check the path.", path);
        var info = new FileInfo(path);
        if (info.Length == 0)
            throw new SadgException(SadgErrorCode.ModelEmpty, $"'{path}' is empty (0 bytes). The export or copy that wrote it did not finish; export the model again.", path);

        ModelProto proto;
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
            using var coded = new CodedInputStream(stream);
            proto = ModelProto.Parser.ParseFrom(coded);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new SadgException(SadgErrorCode.ModelNotProtobuf,
                $"'{path}' is not an ONNX model: it is not valid protobuf ({e.Message.TrimEnd('.')}). The file is truncated, corrupt, or of another format; export the model again.", path, inner: e);
        }
        return FromProto(proto, path);
    }

    /// <summary>Wraps and checks a model held in memory; <paramref name="path"/> (if any) locates external data.</summary>
    public static OnnxModel FromProto(ModelProto proto, string? path = null)
    {
        var model = new OnnxModel(proto, path);
        model.Check();
        return model;
    }

    void Check()
    {
        if (Proto.Graph is null || Proto.IrVersion <= 0 || Proto.OpsetImport.Count == 0 || Proto.Graph.Output.Count == 0)
        {
            string missing = Proto.Graph is null ? "no graph" : Proto.IrVersion <= 0 ? "no IR version" :
                Proto.OpsetImport.Count == 0 ? "no opset import" : "no graph outputs";
            throw new SadgException(SadgErrorCode.ModelNotOnnx,
                $"'{Path ?? "model"}' parses as protobuf but is not an ONNX model ({missing}). Give the .onnx file the exporter wrote.", Path);
        }
        if (Opset == 0)
            throw new SadgException(SadgErrorCode.ModelNotOnnx,
                $"'{Path ?? "model"}' imports no opset of the default ONNX domain; Sadg only runs standard ONNX operators.", Path);

        foreach (var t in Graph.Initializer) OnnxTensors.Validate(t, Path);
        foreach (var node in AllNodes(Graph))
            foreach (var attribute in node.Attribute)
            {
                if (attribute.T is not null) OnnxTensors.Validate(attribute.T, Path);
                foreach (var t in attribute.Tensors) OnnxTensors.Validate(t, Path);
            }
        // External locations are checked now, so a hostile model is refused before anything runs.
        foreach (var t in Graph.Initializer.Where(t => t.DataLocation == TensorProto.Types.DataLocation.External))
        {
            string? location = t.ExternalData.FirstOrDefault(e => e.Key == "location")?.Value;
            if (location is not null && BaseDirectory is not null)
                ExternalData.ResolveInside(BaseDirectory, location, t.Name, Path);
        }
    }

    static IEnumerable<NodeProto> AllNodes(GraphProto graph)
    {
        foreach (var node in graph.Node)
        {
            yield return node;
            foreach (var attribute in node.Attribute)
            {
                if (attribute.G is not null)
                    foreach (var inner in AllNodes(attribute.G)) yield return inner;
                foreach (var g in attribute.Graphs)
                    foreach (var inner in AllNodes(g)) yield return inner;
            }
        }
    }

    /// <summary>
    /// The image input Sadg calibrates: the single float input of rank 4, (N, C, H, W), or (N, H, W, C) where the graph
    /// turns it channels-first (<see cref="InputLayout"/>); or a uint8 one of those that the graph only casts to float
    /// (<see cref="IsBytePixelInput"/>). Errors say what the model has instead.
    /// </summary>
    public ImageInput GetImageInput()
    {
        var inputs = RuntimeInputs;
        var candidates = inputs.Where(IsImageLike).ToList();
        if (inputs.Count == 1 && IsRank4Float(inputs[0]) && (DataType)inputs[0].Type.TensorType.ElemType is not DataType.Float and var type)
            throw new SadgException(SadgErrorCode.NoImageInput,
                $"The model's input '{inputs[0].Name}' is {type}: Sadg quantizes float32 models. Export the model in float32 " +
                "(PyTorch: model.float() before torch.onnx.export), or convert its tensors and types to float32.", Path);
        if (inputs.Count == 1 && inputs[0].Type?.TensorType is { Shape.Dim.Count: 4 } integer && !IsBytePixelInput(inputs[0])
            && (DataType)integer.ElemType is DataType.Uint8 or DataType.Int8 or DataType.Uint16 or DataType.Int16 or DataType.Int32 or DataType.Int64)
            throw new SadgException(SadgErrorCode.NoImageInput,
                $"The model's input '{inputs[0].Name}' is {Describe(inputs[0])}: integer pixels, turned into floats inside the graph. " +
                "Sadg calibrates float32 inputs, and uint8 ones that the graph only casts to float32 (every reader a Cast to " +
                "float); export the model with the cast outside it (PyTorch: call x.float() before the model, not in forward; " +
                "TensorFlow: a float32 input signature), taking the same pixel values as floats.", Path);
        if (candidates.Count == 1 && inputs.Count == 1) return ImageInput.From(candidates[0], InputLayout.IsChannelsLast(Graph, candidates[0].Name));
        if (inputs.Count == 1 && IsImageTensor(inputs[0])
            && InputShapes.FreeDimensionError(inputs[0], InputLayout.IsChannelsLast(Graph, inputs[0].Name), Path) is { } free) throw free;
        string have = inputs.Count == 0 ? "no inputs" :
            string.Join(", ", inputs.Select(i => $"'{i.Name}' {Describe(i)}"));
        string why = candidates.Count > 1 || (candidates.Count == 1 && inputs.Count > 1)
            ? "Sadg quantizes models with exactly one input, an image batch"
            : "Sadg needs one float input shaped (N, C, H, W), an image batch";
        throw new SadgException(SadgErrorCode.NoImageInput,
            $"{why}; this model has {have}. Export the classifier with a single NCHW float input.", Path);
    }

    /// <summary>
    /// <see cref="GetImageInput"/> for code that feeds the graph [N, C, H, W] images itself (generation, calibration):
    /// a channels-last input is a caller's mistake there, since the pipeline works on <see cref="InputShapes.ForPipeline"/>'s copy.
    /// </summary>
    public ImageInput GetChannelsFirstImageInput()
    {
        var input = GetImageInput();
        if (input.ChannelsLast)
            throw new InvalidOperationException($"The input '{input.Name}' is declared channels-last; run the graph of InputShapes.ForPipeline(model, …), which takes [N, C, H, W] images.");
        return input;
    }

    bool IsImageLike(ValueInfoProto v) => IsImageTensor(v) && v.Type.TensorType.Shape.Dim.Skip(1).All(d => d.DimValue > 0);

    /// <summary>A rank-4 input Sadg can calibrate, whatever its sizes: float (<see cref="IsRank4Float"/>) or <see cref="IsBytePixelInput"/>.</summary>
    internal bool IsImageTensor(ValueInfoProto v) => IsRank4Float(v) || IsBytePixelInput(v);

    /// <summary>
    /// Whether <paramref name="v"/> is a rank-4 uint8 input (pixels 0 … 255, as TensorFlow serving signatures and some
    /// converters declare them) that the graph only casts to float32: every reader a Cast to FLOAT, or a Shape. Sadg
    /// calibrates such a model on a copy whose input is declared float (the Cast then changes nothing) and writes it
    /// with its uint8 input; ONNX Runtime is fed the images rounded to bytes.
    /// </summary>
    internal bool IsBytePixelInput(ValueInfoProto v)
    {
        if (v.Type?.TensorType is not { } t || (DataType)t.ElemType != DataType.Uint8 || t.Shape?.Dim.Count != 4) return false;
        var readers = Graph.Node.Where(n => n.Input.Contains(v.Name)).ToList();
        return readers.Any(n => n.IsCastToFloat()) && readers.All(n => n.IsCastToFloat() || n.OpType == "Shape" && n.IsDefaultDomain());
    }

    internal static bool IsRank4Float(ValueInfoProto v) =>
        v.Type?.TensorType is { } t && (DataType)t.ElemType is DataType.Float or DataType.Float16 or DataType.Double && t.Shape?.Dim.Count == 4;

    static string Describe(ValueInfoProto v)
    {
        var t = v.Type?.TensorType;
        if (t is null) return "(not a tensor)";
        string dims = t.Shape is null ? "unknown shape" :
            "[" + string.Join(", ", t.Shape.Dim.Select(InputShapes.Describe)) + "]";
        return $"{(DataType)t.ElemType} {dims}";
    }

    /// <summary>Writes the model atomically (<see cref="AtomicFile"/>).</summary>
    public static void Save(ModelProto proto, string path) => AtomicFile.Write(path, proto.WriteTo);

    public void Save(string path) => Save(Proto, path);
}

/// <summary>
/// The image input of a classifier: name, channels, height, width, whether the batch is fixed, and whether it is
/// declared channels-last, <c>[N, H, W, C]</c> (images are then fed to ONNX Runtime in that order), and whether it takes
/// uint8 pixels that the graph casts to float (<see cref="OnnxModel.IsBytePixelInput"/>; ONNX Runtime is fed bytes).
/// </summary>
public sealed record ImageInput(string Name, int Channels, int Height, int Width, long DeclaredBatch, bool ChannelsLast = false, bool BytePixels = false)
{
    public static ImageInput From(ValueInfoProto v, bool channelsLast)
    {
        var d = v.Type.TensorType.Shape.Dim;
        var axes = InputLayout.Axes(channelsLast);
        return new ImageInput(v.Name, (int)d[axes[1]].DimValue, (int)d[axes[2]].DimValue, (int)d[axes[3]].DimValue, d[0].DimValue, channelsLast,
            (DataType)v.Type.TensorType.ElemType == DataType.Uint8);
    }

    /// <summary>"NCHW" or "NHWC", as the input is declared.</summary>
    public string Layout => ChannelsLast ? "NHWC" : "NCHW";
}
