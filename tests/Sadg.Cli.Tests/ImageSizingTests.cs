using Sadg.Cli.Data;
using Sadg.Tests.Support;
using SkiaSharp;

namespace Sadg.Cli.Tests;

/// <summary>
/// Image folders of another size than the model's: <c>--resize</c> and <c>--crop</c> (torchvision's Resize and
/// CenterCrop), the error without them, and a real image folder that needs neither.
/// </summary>
public class ImageSizingTests
{
    /// <summary>A linear pattern: any symmetric resampling filter gives its value at the sample's centre, away from the borders.</summary>
    static (double R, double G, double B) Pattern(double x, double y) => (5 * x + 10, 6 * y + 20, 200 - 2 * x - 3 * y);

    /// <summary>Writes <paramref name="count"/> PNGs of <paramref name="width"/>×<paramref name="height"/> with <see cref="Pattern"/> into class folders a and b.</summary>
    static string WritePngFolder(TempFolder folder, string name, int width, int height, int count = 2)
    {
        string root = folder.File(name);
        for (int i = 0; i < count; i++)
        {
            string dir = Directory.CreateDirectory(Path.Combine(root, i % 2 == 0 ? "a" : "b")).FullName;
            using var bitmap = new SKBitmap(width, height);
            for (int y = 0; y < height; y++)
                for (int x = 0; x < width; x++)
                {
                    var (r, g, b) = Pattern(x, y);
                    bitmap.SetPixel(x, y, new SKColor((byte)r, (byte)g, (byte)b));
                }
            using var data = bitmap.Encode(SKEncodedImageFormat.Png, 100);
            File.WriteAllBytes(Path.Combine(dir, $"{i:D3}.png"), data.ToArray());
        }
        return root;
    }

    static float At(ImageSet set, int n, int c, int y, int x) => set.Images[((n * set.Shape[1] + c) * set.Shape[2] + y) * set.Shape[3] + x];

    [Fact]
    public void Resize_then_center_crop_matches_a_direct_computation()
    {
        using var folder = new TempFolder();
        string images = WritePngFolder(folder, "images", 40, 30);
        // The shorter side 30 -> 15 (so 40x30 -> 20x15, a factor of 2), then the centre 10x10: left (20-10)/2 = 5,
        // top round-half-even((15-10)/2 = 2.5) = 2, as torchvision's CenterCrop.
        var set = ImageSet.Load(images, channels: 3, height: 10, width: 10, resize: new ImageResize(15), crop: CropMode.Center);
        Assert.Equal([2, 3, 10, 10], set.Shape);
        Assert.Equal([0, 1], set.Labels);
        for (int y = 0; y < 10; y++)
            for (int x = 0; x < 10; x++)
            {
                // Output pixel (x, y) is resized pixel (x + 5, y + 2), whose centre is source (2(x + 5) + 0.5, 2(y + 2) + 0.5).
                var (r, g, b) = Pattern(2 * (x + 5) + 0.5, 2 * (y + 2) + 0.5);
                for (int n = 0; n < 2; n++)
                {
                    Assert.Equal(r / 255, At(set, n, 0, y, x), 1.01 / 255);
                    Assert.Equal(g / 255, At(set, n, 1, y, x), 1.01 / 255);
                    Assert.Equal(b / 255, At(set, n, 2, y, x), 1.01 / 255);
                }
            }
    }

    [Fact]
    public void Center_crop_alone_takes_the_exact_pixels_and_resize_model_gives_the_model_size()
    {
        using var folder = new TempFolder();
        string images = WritePngFolder(folder, "images", 40, 30);
        // Without a resize the crop is exact: left (40-16)/2 = 12, top round-half-even((30-15)/2 = 7.5) = 8.
        var cropped = ImageSet.Load(images, channels: 3, height: 15, width: 16, crop: CropMode.Center);
        Assert.Equal([2, 3, 15, 16], cropped.Shape);
        for (int y = 0; y < 15; y++)
            for (int x = 0; x < 16; x++)
            {
                var (r, g, b) = Pattern(x + 12, y + 8);
                Assert.Equal((float)((byte)r / 255.0), At(cropped, 1, 0, y, x));
                Assert.Equal((float)((byte)g / 255.0), At(cropped, 1, 1, y, x));
                Assert.Equal((float)((byte)b / 255.0), At(cropped, 1, 2, y, x));
            }

        // --resize model: 40x30 -> exactly 20x15 (here the same factor 2 both ways), no crop needed.
        var resized = ImageSet.Load(images, channels: 3, height: 15, width: 20, resize: ImageResize.ToModel);
        Assert.Equal([2, 3, 15, 20], resized.Shape);
        var (r0, g0, b0) = Pattern(2 * 9 + 0.5, 2 * 7 + 0.5);
        Assert.Equal(r0 / 255, At(resized, 0, 0, 7, 9), 1.01 / 255);
        Assert.Equal(g0 / 255, At(resized, 0, 1, 7, 9), 1.01 / 255);
        Assert.Equal(b0 / 255, At(resized, 0, 2, 7, 9), 1.01 / 255);

        // A crop larger than the (resized) image is an error that says so.
        var small = Assert.Throws<SadgException>(() => ImageSet.Load(images, channels: 3, height: 32, width: 32, crop: CropMode.Center));
        Assert.Equal(SadgErrorCode.DataInvalid, small.Code);
        Assert.Contains("is 40x30, smaller than the 32x32 the model takes", small.Message);
    }

    [Fact]
    public async Task Images_of_the_wrong_size_are_an_error_that_suggests_resize_and_crop()
    {
        using var folder = new TempFolder();
        string images = WritePngFolder(folder, "images", 40, 30, count: 4);
        string model = Models.Save(Models.Tiny(1), folder, "m.onnx");

        var evaluate = await CliRunner.RunAsync("evaluate", model, "--data", images, "--device", "cpu");
        Assert.Equal(1, evaluate.ExitCode);
        Assert.Contains("error SADG1302: '", evaluate.Err);
        Assert.Contains("000.png' is 40x30; the model takes 8x8. Give images of that size, or have them resized as they are read: " +
            "--resize N --crop center", evaluate.Err);

        var quantize = await CliRunner.RunAsync("quantize", model, "-o", folder.File("q.onnx"), "--method", "real",
            "--calibration-data", images, "--device", "cpu", "--no-cache");
        Assert.Equal(1, quantize.ExitCode);
        Assert.Contains("error SADG1403: '", quantize.Err);
        Assert.Contains("is 40x30; the model takes 8x8", quantize.Err);
        Assert.Contains("--resize", quantize.Err);
        Assert.False(File.Exists(folder.File("q.onnx")));

        // With them the same folder is read: the shorter side to 8 (10x8), then the centre 8x8.
        var fitted = await CliRunner.RunAsync("evaluate", model, "--data", images, "--device", "cpu", "--resize", "8", "--crop", "center", "--json");
        Assert.True(fitted.ExitCode == 0, fitted.Err);
        Assert.Equal(4, System.Text.Json.JsonDocument.Parse(fitted.Out).RootElement.GetProperty("images").GetInt32());

        // A resize without a crop must land on the model's size.
        var noCrop = await CliRunner.RunAsync("evaluate", model, "--data", images, "--device", "cpu", "--resize", "8");
        Assert.Equal(1, noCrop.ExitCode);
        Assert.Contains("is 10x8 after --resize 8; the model takes 8x8. Add --crop center", noCrop.Err);

        var bad = await CliRunner.RunAsync("evaluate", model, "--data", images, "--device", "cpu", "--resize", "0");
        Assert.Equal(1, bad.ExitCode);
        Assert.Contains("error SADG1502: Resize (`--resize` / `Resize` metadata) must be a whole number of at least 1", bad.Err);
    }

    [Fact]
    public async Task Resize_and_crop_on_a_tensor_or_IDX_folder_are_refused()
    {
        using var folder = new TempFolder();
        string model = Models.Save(Models.Tiny(1), folder, "m.onnx");
        new ImageSet(new float[2 * 64], [2, 1, 8, 8], [0, 1], "test").Save(folder.File("tensors"));
        var r = await CliRunner.RunAsync("evaluate", model, "--data", folder.File("tensors"), "--device", "cpu", "--crop", "center");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("error SADG1502: --resize, --crop and --channel-order (Resize, Crop, ChannelOrder) apply to image folders of JPEG or PNG files;", r.Err);
        Assert.Contains("is a tensor folder", r.Err);
        var bgr = await CliRunner.RunAsync("evaluate", model, "--data", folder.File("tensors"), "--device", "cpu", "--channel-order", "bgr");
        Assert.Equal(1, bgr.ExitCode);
        Assert.Contains("is a tensor folder", bgr.Err);
    }

    /// <summary>
    /// <c>--channel-order bgr</c> decodes blue into channel 0 and red into channel 2; quantize refuses it without image
    /// data to apply it to, and a bgr run has its own cache key.
    /// </summary>
    [Fact]
    public async Task Bgr_decodes_blue_first_and_needs_image_data()
    {
        using var folder = new TempFolder();
        string images = WritePngFolder(folder, "images", 6, 5);
        var rgb = ImageSet.Load(images, channels: 3, height: 5, width: 6);
        var bgr = ImageSet.Load(images, channels: 3, height: 5, width: 6, channelOrder: ChannelOrder.Bgr);
        for (int y = 0; y < 5; y++)
            for (int x = 0; x < 6; x++)
            {
                var (r, g, b) = Pattern(x, y);
                Assert.Equal((float)((byte)b / 255.0), At(bgr, 0, 0, y, x));
                Assert.Equal((float)((byte)g / 255.0), At(bgr, 0, 1, y, x));
                Assert.Equal((float)((byte)r / 255.0), At(bgr, 0, 2, y, x));
                Assert.Equal(At(rgb, 1, 2, y, x), At(bgr, 1, 0, y, x));
            }

        string model = Models.Save(Models.Tiny(1), folder, "m.onnx");
        var refused = await CliRunner.RunAsync("quantize", model, "--channel-order", "bgr", "--device", "cpu");
        Assert.Equal(1, refused.ExitCode);
        Assert.Contains("ChannelOrder", refused.Err);
        Assert.Contains("applies to the image folders of", refused.Err);

        var plain = new Sadg.Pipeline.PipelineOptions();
        Assert.DoesNotContain("channel_order", plain.Canonical());
        Assert.Contains("channel_order=bgr", (plain with { ChannelOrder = ChannelOrder.Bgr }).Canonical());
        Assert.NotEqual(plain.OptionsHash(), (plain with { ChannelOrder = ChannelOrder.Bgr }).OptionsHash());
    }

    /// <summary>The CIFAR-10 test images of ../shared/bench (32x32 JPEGs, one folder per class).</summary>
    public static string Cifar10 => Path.Combine(BenchFactAttribute.Bench ?? "", "cifar10-test");

    [BenchFact]
    public void Cifar10_images_of_the_model_size_load_as_before()
    {
        var plain = ImageSet.Load(Cifar10, limit: 20);
        var sized = ImageSet.Load(Cifar10, limit: 20, channels: 3, height: 32, width: 32);
        var cropped = ImageSet.Load(Cifar10, limit: 20, channels: 3, height: 32, width: 32, crop: CropMode.Center);
        Assert.Equal([20, 3, 32, 32], plain.Shape);
        Assert.Equal(Enumerable.Range(0, 20).Select(i => i % 10), plain.Labels);
        Assert.All(plain.Images, v => Assert.InRange(v, 0f, 1f));
        Assert.Equal(plain.Images, sized.Images);
        Assert.Equal(plain.Images, cropped.Images);
        Assert.Equal(plain.Labels, sized.Labels);
    }

    [BenchFact]
    public async Task Cifar10_evaluates_without_resize_or_crop()
    {
        string model = Path.Combine(BenchFactAttribute.Bench!, "cifar10_resnet_v1_8_32.onnx");
        var r = await CliRunner.RunAsync("evaluate", model, "--data", Cifar10, "--limit", "50", "--device", "cpu", "--json");
        Assert.True(r.ExitCode == 0, r.Err);
        var json = System.Text.Json.JsonDocument.Parse(r.Out).RootElement;
        Assert.Equal(50, json.GetProperty("images").GetInt32());
        // The pretrained ResNet-8 scores well above chance on the first 50 images (76.7% on all of them).
        Assert.InRange(json.GetProperty("models")[0].GetProperty("top1").GetDouble(), 0.5, 1.0);
    }
}

/// <summary>A test that reads ../shared/bench (beside the repository); skipped, with the reason shown, where it is absent.</summary>
public sealed class BenchFactAttribute : FactAttribute
{
    /// <summary>The ../shared/bench folder above the repository root, or null.</summary>
    public static string? Bench { get; } = Find();

    public BenchFactAttribute()
    {
        if (Bench is null || !Directory.Exists(Path.Combine(Bench, "cifar10-test")) || !File.Exists(Path.Combine(Bench, "cifar10_resnet_v1_8_32.onnx")))
            Skip = "Needs ../shared/bench (cifar10-test, cifar10_resnet_v1_8_32.onnx) beside the repository: third-party benchmark data, not committed; it is absent here.";
    }

    static string? Find()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "global.json")))
                return Path.GetFullPath(Path.Combine(dir.FullName, "..", "shared", "bench"));
        return null;
    }
}
