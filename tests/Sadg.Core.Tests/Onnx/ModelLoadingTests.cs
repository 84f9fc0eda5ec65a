using Google.Protobuf;
using Onnx;
using Sadg.Graph;
using Sadg.Onnx;
using Sadg.Tests.Support;
using static TorchSharp.torch;
using DataType = Onnx.TensorProto.Types.DataType;

namespace Sadg.Tests.Onnx;

/// <summary>Bad model files: each is a typed <see cref="SadgException"/> naming the file and saying what to do.</summary>
public class ModelLoadingTests
{
    static ModelProto ValidModel()
    {
        var g = new OnnxGraphBuilder();
        g.AddInput("image", DataType.Float, -1, 3, 8, 8);
        using var w = randn(new long[] { 1, 3, 8, 8 }, generator: new TorchSharp.torch.Generator(7));
        g.AddInitializer("w", w);
        g.AddNode("Mul", ["image", "w"], ["scaled"]);
        g.AddNode("Relu", ["scaled"], ["out"]);
        g.AddOutput("out", DataType.Float, -1, 3, 8, 8);
        return g.Build(opset: 13);
    }

    static SadgException LoadFails(string path) => Assert.Throws<SadgException>(() => OnnxModel.Load(path));

    [Fact]
    public void MissingFile()
    {
        using var dir = new TempFolder();
        var e = LoadFails(dir.File("nope.onnx"));
        Assert.Equal(SadgErrorCode.ModelNotFound, e.Code);
        Assert.Contains("nope.onnx", e.Message);
        Assert.Equal(dir.File("nope.onnx"), e.File);
        Assert.StartsWith($"{dir.File("nope.onnx")}(0,0): error SADG1001: ", e.ToDiagnostic());
    }

    [Fact]
    public void EmptyFile()
    {
        using var dir = new TempFolder();
        File.WriteAllBytes(dir.File("empty.onnx"), []);
        var e = LoadFails(dir.File("empty.onnx"));
        Assert.Equal(SadgErrorCode.ModelEmpty, e.Code);
        Assert.Contains("empty", e.Message);
    }

    [Fact]
    public void RandomBytesNeverCrash()
    {
        using var dir = new TempFolder();
        for (int seed = 0; seed < 50; seed++)
        {
            var bytes = new byte[64 + seed * 37];
            new Random(seed).NextBytes(bytes);
            File.WriteAllBytes(dir.File("random.onnx"), bytes);
            var e = LoadFails(dir.File("random.onnx"));
            Assert.True(e.Code is SadgErrorCode.ModelNotProtobuf or SadgErrorCode.ModelNotOnnx, $"seed {seed}: {e.Code} {e.Message}");
            Assert.Contains("not an ONNX model", e.Message);
        }
    }

    [Fact]
    public void TruncatedProtobuf()
    {
        using var dir = new TempFolder();
        var bytes = ValidModel().ToByteArray();
        File.WriteAllBytes(dir.File("cut.onnx"), bytes[..(bytes.Length * 2 / 3)]);
        var e = LoadFails(dir.File("cut.onnx"));
        Assert.Equal(SadgErrorCode.ModelNotProtobuf, e.Code);
        Assert.Contains("truncated", e.Message);
    }

    [Fact]
    public void UnsupportedOperatorsAreAllNamedInOneError()
    {
        var g = new OnnxGraphBuilder();
        g.AddInput("image", DataType.Float, -1, 3, 8, 8);
        g.AddNode("Relu", ["image"], ["a"]);
        g.AddNode("FancyOp", ["a"], ["b"], name: "fancy_1");
        g.AddNode("FancyOp", ["b"], ["c"], name: "fancy_2");
        g.AddNode("OtherOp", ["c"], ["d"], name: "other");
        g.AddOutput("d", DataType.Float, -1, 3, 8, 8);
        var e = Assert.Throws<SadgException>(() => new GraphModule(OnnxModel.FromProto(g.Build(), "m.onnx")));
        Assert.Equal(SadgErrorCode.UnsupportedOperator, e.Code);
        Assert.Contains("FancyOp (nodes 'fancy_1', 'fancy_2')", e.Message);
        Assert.Contains("OtherOp (node 'other')", e.Message);
        Assert.Contains("Supported:", e.Message);
    }

    [Fact]
    public void ModelWithoutAnImageInput()
    {
        var g = new OnnxGraphBuilder();
        g.AddInput("features", DataType.Float, -1, 16);
        g.AddNode("Relu", ["features"], ["out"]);
        g.AddOutput("out", DataType.Float, -1, 16);
        var model = OnnxModel.FromProto(g.Build(), "tabular.onnx");
        var e = Assert.Throws<SadgException>(() => model.GetImageInput());
        Assert.Equal(SadgErrorCode.NoImageInput, e.Code);
        Assert.Contains("'features' Float [N, 16]", e.Message);
        Assert.Contains("NCHW", e.Message);

        Assert.Equal(new ImageInput("image", 3, 8, 8, 0), OnnxModel.FromProto(ValidModel()).GetImageInput());
    }

    /// <summary>A model fed integer pixels that it casts to float itself: [N, H, W, C] -> Cast -> Transpose -> ...</summary>
    static OnnxModel IntegerPixels(DataType type, DataType castTo)
    {
        var g = new OnnxGraphBuilder();
        g.AddInput("pixels", type, -1, 32, 32, 3);
        g.AddNode("Cast", ["pixels"], ["x"], attributes: new Dictionary<string, object> { ["to"] = (long)castTo });
        g.AddNode("Transpose", ["x"], ["y"], attributes: new Dictionary<string, object> { ["perm"] = new long[] { 0, 3, 1, 2 } });
        g.AddNode("Relu", ["y"], ["out"]);
        g.AddOutput("out", castTo, -1, 3, 32, 32);
        return OnnxModel.FromProto(g.Build(), "pixels.onnx");
    }

    [Fact]
    public void A_uint8_input_the_graph_casts_to_float_is_an_image_input_in_byte_units()
    {
        var model = IntegerPixels(DataType.Uint8, DataType.Float);
        Assert.Equal(new ImageInput("pixels", 3, 32, 32, 0, ChannelsLast: true, BytePixels: true), model.GetImageInput());
        var fed = Sadg.Pipeline.InputStandardization.FromMetadata(model);
        Assert.Equal(Sadg.Pipeline.InputConvention.BytePixels, fed.Convention);
        Assert.Equal([0.0, 255.0], fed.Range!);
        // The pipeline's copy takes float [N, 3, 32, 32]; the Cast stays (float to float).
        var copy = InputShapes.ForPipeline(model, null);
        Assert.Equal(new ImageInput("pixels", 3, 32, 32, 0), copy.GetImageInput());
        Assert.Contains(copy.Graph.Node, n => n.OpType == "Cast");
    }

    [Theory]
    [InlineData(DataType.Int32, DataType.Float)]
    [InlineData(DataType.Uint8, DataType.Double)]
    public void Other_integer_pixel_inputs_are_refused_naming_the_float_export(DataType type, DataType castTo)
    {
        var e = Assert.Throws<SadgException>(() => IntegerPixels(type, castTo).GetImageInput());
        Assert.Equal(SadgErrorCode.NoImageInput, e.Code);
        Assert.Contains($"The model's input 'pixels' is {type} [N, 32, 32, 3]: integer pixels", e.Message);
        Assert.Contains("x.float() before the model", e.Message);
    }

    [Theory]
    [InlineData(new long[] { 1L << 20, 1L << 20, 1L << 20 }, SadgErrorCode.TensorTooLarge)]
    [InlineData(new long[] { 4000, 4000, 4000 }, SadgErrorCode.TensorTooLarge)]
    [InlineData(new long[] { 100000, 1000 }, SadgErrorCode.TensorDataInvalid)]
    [InlineData(new long[] { 3, -1 }, SadgErrorCode.TensorDataInvalid)]
    public void AbsurdDeclaredSizesAreRefusedBeforeAllocating(long[] dims, SadgErrorCode expected)
    {
        using var dir = new TempFolder();
        var model = ValidModel();
        var w = model.Graph.Initializer[0];
        w.Dims.Clear();
        w.Dims.AddRange(dims);
        File.WriteAllBytes(dir.File("absurd.onnx"), model.ToByteArray());

        long allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
        var e = LoadFails(dir.File("absurd.onnx"));
        long allocated = GC.GetAllocatedBytesForCurrentThread() - allocatedBefore;
        Assert.Equal(expected, e.Code);
        Assert.Contains("'w'", e.Message);
        Assert.True(allocated < 1 << 20, $"{allocated} bytes allocated while refusing the model");
    }

    [Fact]
    public void WriteThenReadGivesTheSameGraphAndOnnxRuntimeRunsIt()
    {
        using var dir = new TempFolder();
        var original = ValidModel();
        OnnxModel.Save(original, dir.File("model.onnx"));
        Assert.Empty(Directory.GetFiles(dir.Path, "*.tmp"));
        var reread = OnnxModel.Load(dir.File("model.onnx"));
        Assert.Equal(original, reread.Proto);

        using var scope = NewDisposeScope();
        var x = randn(3, 3, 8, 8);
        var ort = OrtReference.Run(reread.Proto, new Dictionary<string, Tensor> { ["image"] = x })[0];
        using var graph = new GraphModule(reread);
        Assert.True(graph.forward(x).allclose(ort, 1e-5, 1e-6));
    }

    [Fact]
    public void FourBitTensorsRoundTrip()
    {
        int[] signed = [-8, -1, 0, 7, 3];
        var proto = OnnxTensors.FromInt4("q", signed, [5], signed: true);
        Assert.Equal(3, proto.RawData.Length);
        using var t = OnnxTensors.ToTorch(proto);
        Assert.Equal(signed, t.data<sbyte>().ToArray().Select(v => (int)v));

        int[] unsigned = [0, 15, 9, 4];
        using var u = OnnxTensors.ToTorch(OnnxTensors.FromInt4("u", unsigned, [2, 2], signed: false));
        Assert.Equal(unsigned, u.data<byte>().ToArray().Select(v => (int)v));
        Assert.Throws<ArgumentOutOfRangeException>(() => OnnxTensors.Pack4Bit([16], signed: false));
    }
}
