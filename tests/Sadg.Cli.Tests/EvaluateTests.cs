using System.IO.Compression;
using System.Text.Json;
using Sadg.Cli.Data;
using Sadg.Graph;
using Sadg.Onnx;
using Sadg.Tests.Support;
using static TorchSharp.torch;

namespace Sadg.Cli.Tests;

public class EvaluateTests
{
    const int Count = 60;

    /// <summary>Writes t10k IDX files (gzip) of random 8x8 images and labels; returns pixels and labels.</summary>
    static (byte[] Pixels, byte[] Labels) WriteIdx(string folder, string prefix = "t10k", int seed = 3)
    {
        var random = new Random(seed);
        var pixels = new byte[Count * 64];
        random.NextBytes(pixels);
        var labels = Enumerable.Range(0, Count).Select(_ => (byte)random.Next(10)).ToArray();
        static byte[] Header(byte rank, params int[] dims) =>
            [0, 0, 8, rank, .. dims.SelectMany(d => new[] { (byte)(d >> 24), (byte)(d >> 16), (byte)(d >> 8), (byte)d })];
        void Write(string name, byte[] header, byte[] data)
        {
            using var file = File.Create(Path.Combine(folder, name));
            using var gz = new GZipStream(file, CompressionLevel.Fastest);
            gz.Write(header);
            gz.Write(data);
        }
        Write($"{prefix}-images-idx3-ubyte.gz", Header(3, Count, 8, 8), pixels);
        Write($"{prefix}-labels-idx1-ubyte.gz", Header(1, Count), labels);
        return (pixels, labels);
    }

    /// <summary>Top-1 predictions computed directly with the executor (TorchSharp), independent of the tool.</summary>
    static long[] Predict(string modelPath, byte[] pixels, float mean = 0, float std = 1)
    {
        using var scope = NewDisposeScope();
        using var graph = new GraphModule(OnnxModel.Load(modelPath));
        var x = (tensor(pixels, [Count, 1, 8, 8]).to_type(ScalarType.Float32) / 255f - mean) / std;
        return graph.forward(x).argmax(1).data<long>().ToArray();
    }

    [Fact]
    public async Task A_model_that_does_not_take_the_data_fails_before_any_model_is_evaluated()
    {
        using var folder = new TempFolder();
        WriteIdx(folder.Path);
        string a = Models.Save(Models.Tiny(1), folder, "a.onnx");
        string big = Models.Save(TestModels.ResNet(seed: 3, width: 4, channels: 1, size: 16), folder, "big.onnx");
        var r = await CliRunner.RunAsync("evaluate", a, big, "--data", folder.Path, "--device", "cpu");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("error SADG1302: The data holds 1x8x8 images", r.Err);
        Assert.Contains("'" + big + "' takes 1x16x16", r.Err);
        Assert.DoesNotContain("evaluating a.onnx", r.Err);
    }

    [Fact]
    public async Task Accuracy_and_agreement_match_a_direct_computation()
    {
        using var folder = new TempFolder();
        var (pixels, labels) = WriteIdx(folder.Path);
        string a = Models.Save(Models.Tiny(1), folder, "a.onnx");
        string b = Models.Save(Models.Tiny(2), folder, "b.onnx");

        var r = await CliRunner.RunAsync("evaluate", a, b, "--data", folder.Path, "--json", "--device", "cpu");
        Assert.True(r.ExitCode == 0, r.Err);
        using var json = JsonDocument.Parse(r.Out);
        var models = json.RootElement.GetProperty("models").EnumerateArray().ToList();

        var pa = Predict(a, pixels);
        var pb = Predict(b, pixels);
        double Accuracy(long[] p) => (double)p.Where((c, i) => c == labels[i]).Count() / Count;
        Assert.Equal(Accuracy(pa), models[0].GetProperty("top1").GetDouble(), 12);
        Assert.Equal(Accuracy(pb), models[1].GetProperty("top1").GetDouble(), 12);
        double agreement = (double)pa.Where((c, i) => c == pb[i]).Count() / Count;
        var pair = json.RootElement.GetProperty("agreement").EnumerateArray().Single();
        Assert.Equal(agreement, pair.GetProperty("top1Agreement").GetDouble(), 12);
        Assert.Contains("ONNX Runtime: CPU provider", r.Err);

        // The table form says the same.
        var table = await CliRunner.RunAsync("evaluate", a, b, "--data", folder.Path, "--quiet");
        Assert.Equal(0, table.ExitCode);
        Assert.Contains((Accuracy(pa) * 100).ToString("0.00", System.Globalization.CultureInfo.InvariantCulture) + "%", table.Out);
        Assert.Contains("top-1 agreement", table.Out);
        Assert.Equal("", table.Err);
    }

    /// <summary>
    /// A model with a uint8 input that it casts to float is fed the pixel bytes themselves (its standardization is
    /// "pixels in [0, 1] fed as [0, 255]"): the same predictions as its float twin fed the bytes as floats.
    /// </summary>
    [Fact]
    public async Task A_uint8_input_model_is_fed_the_pixel_bytes()
    {
        using var folder = new TempFolder();
        var (pixels, labels) = WriteIdx(folder.Path);
        string twin = Models.Save(Models.Tiny(1), folder, "float.onnx");
        string bytes = Models.Save(Models.WithBytePixels(Models.Tiny(1)), folder, "bytes.onnx");

        var r = await CliRunner.RunAsync("evaluate", bytes, "--data", folder.Path, "--json", "--device", "cpu");
        Assert.True(r.ExitCode == 0, r.Err);
        using var json = JsonDocument.Parse(r.Out);
        var model = json.RootElement.GetProperty("models").EnumerateArray().Single();
        Assert.Contains("uint8", model.GetProperty("standardization").GetString());
        var expected = Predict(twin, pixels, mean: 0, std: 1 / 255f);
        Assert.Equal((double)expected.Where((c, i) => c == labels[i]).Count() / Count, model.GetProperty("top1").GetDouble(), 12);
    }

    /// <summary>Writes the IDX images as grey PNGs into one subfolder per label (class folders "c0" … "c9").</summary>
    static void WriteImageFolder(string folder, byte[] pixels, byte[] labels)
    {
        for (int i = 0; i < Count; i++)
        {
            string dir = Directory.CreateDirectory(Path.Combine(folder, $"c{labels[i]}")).FullName;
            using var bitmap = new SkiaSharp.SKBitmap(8, 8);
            for (int y = 0; y < 8; y++)
                for (int x = 0; x < 8; x++)
                {
                    byte v = pixels[i * 64 + y * 8 + x];
                    bitmap.SetPixel(x, y, new SkiaSharp.SKColor(v, v, v));
                }
            using var data = bitmap.Encode(SkiaSharp.SKEncodedImageFormat.Png, 100);
            File.WriteAllBytes(Path.Combine(dir, $"{i:D3}.png"), data.ToArray());
        }
    }

    [Fact]
    public async Task An_image_folder_with_class_subfolders_scores_as_the_IDX_files_do()
    {
        using var folder = new TempFolder();
        string idx = Directory.CreateDirectory(folder.File("idx")).FullName;
        var (pixels, labels) = WriteIdx(idx);
        // Class folders c0 … c9: every label present in the data must exist as a folder for ranks to match labels.
        string images = Directory.CreateDirectory(folder.File("images")).FullName;
        for (int c = 0; c < 10; c++) Directory.CreateDirectory(Path.Combine(images, $"c{c}"));
        WriteImageFolder(images, pixels, labels);
        string a = Models.Save(Models.Tiny(1), folder, "a.onnx");

        var fromIdx = await CliRunner.RunAsync("evaluate", a, "--data", idx, "--json", "--device", "cpu");
        var fromImages = await CliRunner.RunAsync("evaluate", a, "--data", images, "--json", "--device", "cpu");
        Assert.True(fromImages.ExitCode == 0, fromImages.Err);
        double Top1(CliRunner.Result r) => JsonDocument.Parse(r.Out).RootElement.GetProperty("models")[0].GetProperty("top1").GetDouble();
        var direct = Predict(a, pixels);
        Assert.Equal((double)direct.Where((c, i) => c == labels[i]).Count() / Count, Top1(fromImages), 12);
        Assert.Equal(Top1(fromIdx), Top1(fromImages), 12);

        // Without class subfolders there are no labels to score against: a clear error, not a score.
        string flat = Directory.CreateDirectory(folder.File("flat")).FullName;
        foreach (var png in Directory.GetFiles(images, "*.png", SearchOption.AllDirectories)) File.Copy(png, Path.Combine(flat, Path.GetFileName(png)));
        var unlabelled = await CliRunner.RunAsync("evaluate", a, "--data", flat, "--device", "cpu");
        Assert.Equal(1, unlabelled.ExitCode);
        Assert.Contains("SADG1302", unlabelled.Err);
        Assert.Contains("no class subfolders", unlabelled.Err);
    }

    [Fact]
    public async Task Tensor_folder_gives_the_same_result_and_standardization_applies()
    {
        using var folder = new TempFolder();
        string idx = Directory.CreateDirectory(folder.File("idx")).FullName;
        var (pixels, labels) = WriteIdx(idx);
        var set = ImageSet.Load(idx);
        string tensors = folder.File("tensors");
        set.Save(tensors);
        Assert.True(File.Exists(Path.Combine(tensors, ImageSet.HeaderFile)));

        string a = Models.Save(Models.Tiny(1), folder, "a.onnx");
        var fromIdx = await CliRunner.RunAsync("evaluate", a, "--data", idx, "--json");
        var fromTensors = await CliRunner.RunAsync("evaluate", a, "--data", tensors, "--json");
        Assert.Equal(0, fromTensors.ExitCode);
        double Top1(string output) => JsonDocument.Parse(output).RootElement.GetProperty("models")[0].GetProperty("top1").GetDouble();
        Assert.Equal(Top1(fromIdx.Out), Top1(fromTensors.Out));

        // Metadata standardization, and --mean/--std overriding it.
        var proto = Models.Tiny(1);
        proto.MetadataProps.Add(new global::Onnx.StringStringEntryProto { Key = "sadg.input_mean", Value = "0.5" });
        proto.MetadataProps.Add(new global::Onnx.StringStringEntryProto { Key = "sadg.input_std", Value = "0.25" });
        string s = Models.Save(proto, folder, "standardized.onnx");
        var p = Predict(s, pixels, 0.5f, 0.25f);
        var standardized = await CliRunner.RunAsync("evaluate", s, "--data", idx, "--json");
        Assert.Equal((double)p.Where((c, i) => c == labels[i]).Count() / Count, Top1(standardized.Out), 12);
        var overridden = await CliRunner.RunAsync("evaluate", s, "--data", idx, "--json", "--mean", "0", "--std", "1");
        Assert.Equal(Top1(fromIdx.Out), Top1(overridden.Out));
    }

    [Fact]
    public async Task Limit_and_train_split()
    {
        using var folder = new TempFolder();
        WriteIdx(folder.Path, "train");
        string a = Models.Save(Models.Tiny(1), folder, "a.onnx");
        var r = await CliRunner.RunAsync("evaluate", a, "--data", folder.Path, "--limit", "10", "--json");
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.Equal(10, JsonDocument.Parse(r.Out).RootElement.GetProperty("images").GetInt32());
        var test = await CliRunner.RunAsync("evaluate", a, "--data", folder.Path, "--split", "test");
        Assert.Equal(1, test.ExitCode);
        Assert.Contains("error SADG1301: ", test.Err);
    }

    [Fact]
    public async Task Data_that_does_not_fit_the_model_is_an_error()
    {
        using var folder = new TempFolder();
        WriteIdx(folder.Path);
        string resnet = Models.Save(TestModels.ResNet(), folder, "resnet.onnx");
        var r = await CliRunner.RunAsync("evaluate", resnet, "--data", folder.Path);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains($"{resnet}(0,0): error SADG1302: ", r.Err);
    }

    [Fact]
    public async Task Cancelled_evaluation_exits_130()
    {
        using var folder = new TempFolder();
        WriteIdx(folder.Path);
        string a = Models.Save(Models.Tiny(1), folder, "a.onnx");
        using var cancellation = new CancellationTokenSource();
        cancellation.Cancel();
        var r = await CliRunner.RunAsync(["evaluate", a, "--data", folder.Path], cancellationToken: cancellation.Token);
        Assert.Equal(130, r.ExitCode);
        Assert.Contains("cancelled", r.Err);
    }

    [Fact]
    public async Task Device_cuda_uses_the_CUDA_provider_or_says_what_is_missing()
    {
        using var folder = new TempFolder();
        WriteIdx(folder.Path);
        string a = Models.Save(Models.Tiny(1), folder, "a.onnx");
        var r = await CliRunner.RunAsync("evaluate", a, "--data", folder.Path, "--device", "cuda");
        if (r.ExitCode == 0) Assert.Contains("ONNX Runtime: CUDA provider", r.Err);
        else
        {
            Assert.Equal(1, r.ExitCode);
            Assert.Contains("error SADG1106: ", r.Err);
            Assert.Contains("CUDA 13", r.Err);
            Assert.Contains("Sadg.Tool.Cuda", r.Err);
        }
    }
}
