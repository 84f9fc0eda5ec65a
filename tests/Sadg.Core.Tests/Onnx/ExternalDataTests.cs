using Google.Protobuf;
using Onnx;
using Sadg.Graph;
using Sadg.Onnx;
using Sadg.Tests.Support;
using static TorchSharp.torch;
using DataType = Onnx.TensorProto.Types.DataType;

namespace Sadg.Tests.Onnx;

/// <summary>Tensors stored in external files: read correctly from the model's folder, refused outside it.</summary>
public class ExternalDataTests
{
    static readonly float[] Weights = [1.5f, -2f, 0.25f, 4f];

    /// <summary>Writes "model.onnx" whose initializer "w" (4 floats) lives at <paramref name="location"/>.</summary>
    static string WriteModel(string folder, string location, long offset = 0)
    {
        var g = new OnnxGraphBuilder();
        g.AddInput("x", DataType.Float, -1, 4);
        var w = new TensorProto { Name = "w", DataType = (int)DataType.Float, DataLocation = TensorProto.Types.DataLocation.External };
        w.Dims.Add(4);
        w.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = location });
        w.ExternalData.Add(new StringStringEntryProto { Key = "offset", Value = offset.ToString() });
        w.ExternalData.Add(new StringStringEntryProto { Key = "length", Value = "16" });
        g.AddInitializer(w);
        g.AddNode("Mul", ["x", "w"], ["y"]);
        g.AddOutput("y", DataType.Float, -1, 4);
        string path = Path.Combine(folder, "model.onnx");
        File.WriteAllBytes(path, g.Build(opset: 13).ToByteArray());
        return path;
    }

    static byte[] WeightBytes(int padding = 0) =>
        new byte[padding].Concat(Weights.SelectMany(BitConverter.GetBytes)).ToArray();

    [Fact]
    public void ReadsExternalDataBesideTheModel()
    {
        using var dir = new TempFolder();
        Directory.CreateDirectory(dir.File("data"));
        File.WriteAllBytes(dir.File("data/weights.bin"), WeightBytes(padding: 8));
        var model = OnnxModel.Load(WriteModel(dir.Path, "data/weights.bin", offset: 8));

        using var scope = NewDisposeScope();
        using var graph = new GraphModule(model);
        var y = graph.forward(ones(2, 4));
        Assert.Equal(Weights, y[1].data<float>().ToArray());
    }

    [Theory]
    [InlineData("../outside.bin")]
    [InlineData("data/../../outside.bin")]
    [InlineData("/etc/passwd")]
    public void RefusesLocationsOutsideTheModelFolder(string location)
    {
        using var parent = new TempFolder();
        string folder = parent.File("model");
        Directory.CreateDirectory(folder);
        File.WriteAllBytes(parent.File("outside.bin"), WeightBytes());
        var e = Assert.Throws<SadgException>(() => OnnxModel.Load(WriteModel(folder, location)));
        Assert.Equal(SadgErrorCode.ExternalDataOutsideModelFolder, e.Code);
        Assert.Contains("'w'", e.Message);
        Assert.Contains(location, e.Message);
    }

    [Fact]
    public void RefusesALinkThatLeadsOut()
    {
        using var parent = new TempFolder();
        string folder = parent.File("model");
        Directory.CreateDirectory(folder);
        File.WriteAllBytes(parent.File("outside.bin"), WeightBytes());
        File.CreateSymbolicLink(Path.Combine(folder, "weights.bin"), parent.File("outside.bin"));
        var e = Assert.Throws<SadgException>(() => OnnxModel.Load(WriteModel(folder, "weights.bin")));
        Assert.Equal(SadgErrorCode.ExternalDataOutsideModelFolder, e.Code);
        Assert.Contains("link", e.Message);

        // A link to a folder outside is refused too.
        Directory.CreateDirectory(parent.File("elsewhere"));
        File.WriteAllBytes(parent.File("elsewhere/w.bin"), WeightBytes());
        Directory.CreateSymbolicLink(Path.Combine(folder, "linked"), parent.File("elsewhere"));
        e = Assert.Throws<SadgException>(() => OnnxModel.Load(WriteModel(folder, "linked/w.bin")));
        Assert.Equal(SadgErrorCode.ExternalDataOutsideModelFolder, e.Code);
    }

    [Fact]
    public void MissingOrShortDataFilesAreClearErrors()
    {
        using var dir = new TempFolder();
        var model = OnnxModel.Load(WriteModel(dir.Path, "weights.bin"));
        var e = Assert.Throws<SadgException>(() => new GraphModule(model));
        Assert.Equal(SadgErrorCode.ExternalDataMissing, e.Code);

        File.WriteAllBytes(dir.File("weights.bin"), new byte[10]);
        e = Assert.Throws<SadgException>(() => new GraphModule(model));
        Assert.Equal(SadgErrorCode.TensorDataInvalid, e.Code);
        Assert.Contains("10 bytes", e.Message);
    }
}
