using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Onnx;
using Sadg.Tests.Support;
using DataLocation = Onnx.TensorProto.Types.DataLocation;

namespace Sadg.Cli.Tests;

/// <summary>
/// A model whose weights are in a file beside it (ONNX external data): quantized, written and checked as one whole
/// model, and the data file's content is part of the cache key.
/// </summary>
public class ExternalDataTests
{
    static readonly string[] Tiny = ["--device", "cpu", "--method", "gaussian", "--samples", "8", "--reconstruction-steps", "2"];

    /// <summary>Writes <paramref name="proto"/> to <paramref name="path"/> with every initializer in <paramref name="data"/> beside it.</summary>
    static void SaveWithExternalData(ModelProto proto, string path, string data)
    {
        var copy = proto.Clone();
        using var stream = new MemoryStream();
        foreach (var t in copy.Graph.Initializer)
        {
            byte[] raw = t.RawData.Length > 0 ? t.RawData.ToByteArray() : t.FloatData.SelectMany(BitConverter.GetBytes).ToArray();
            t.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = data });
            t.ExternalData.Add(new StringStringEntryProto { Key = "offset", Value = stream.Position.ToString() });
            t.ExternalData.Add(new StringStringEntryProto { Key = "length", Value = raw.Length.ToString() });
            t.DataLocation = DataLocation.External;
            t.RawData = ByteString.Empty;
            t.FloatData.Clear();
            stream.Write(raw);
        }
        File.WriteAllBytes(Path.Combine(Path.GetDirectoryName(path)!, data), stream.ToArray());
        File.WriteAllBytes(path, copy.ToByteArray());
    }

    static Dictionary<string, ByteString> Initializers(string path) =>
        ModelProto.Parser.ParseFrom(File.ReadAllBytes(path)).Graph.Initializer.ToDictionary(t => t.Name, t => t.RawData);

    [Fact]
    public async Task A_model_with_external_data_is_quantized_as_the_same_model_stored_whole_and_its_data_is_in_the_cache_key()
    {
        using var folder = new TempFolder();
        string model = folder.File("m.onnx");
        SaveWithExternalData(Models.Tiny(1), model, "m.onnx.data");
        string whole = Models.Save(Models.Tiny(1), folder, "whole.onnx");
        string cache = folder.File("cache");

        var run = await CliRunner.RunAsync(["quantize", model, "-o", folder.File("a.onnx"), "--cache-dir", cache, .. Tiny]);
        Assert.True(run.ExitCode == 0, run.Err);
        Assert.Contains("top-1 agreement", run.Out); // the ONNX Runtime check ran on both models
        var written = ModelProto.Parser.ParseFrom(File.ReadAllBytes(folder.File("a.onnx")));
        Assert.DoesNotContain(written.Graph.Initializer, t => t.DataLocation == DataLocation.External || t.ExternalData.Count > 0);
        using (var session = new InferenceSession(File.ReadAllBytes(folder.File("a.onnx")))) // from bytes: nothing to find beside it
            Assert.Single(session.OutputNames);

        // The same model stored whole gives the same quantized weights.
        var reference = await CliRunner.RunAsync(["quantize", whole, "-o", folder.File("b.onnx"), "--no-cache", .. Tiny]);
        Assert.True(reference.ExitCode == 0, reference.Err);
        Assert.Equal(Initializers(folder.File("b.onnx")), Initializers(folder.File("a.onnx")));

        // Other weights in the data file, the .onnx file unchanged: not a cache hit, and other quantized weights.
        byte[] onnx = File.ReadAllBytes(model);
        SaveWithExternalData(Models.Tiny(2), model, "m.onnx.data");
        Assert.Equal(onnx, File.ReadAllBytes(model));
        var changed = await CliRunner.RunAsync(["quantize", model, "-o", folder.File("c.onnx"), "--cache-dir", cache, .. Tiny]);
        Assert.True(changed.ExitCode == 0, changed.Err);
        Assert.DoesNotContain("cache hit", changed.Out);
        Assert.NotEqual(Initializers(folder.File("a.onnx"))["conv_w_quantized"], Initializers(folder.File("c.onnx"))["conv_w_quantized"]);
    }
}
