using SkiaSharp;
using static TorchSharp.torch;

namespace Sadg.Data;

/// <summary>
/// An image folder: one subfolder per class, each holding JPEG or PNG files (class index = the subfolder's rank in
/// ordinal name order, the usual convention), decoded with SkiaSharp to RGB (BGR when asked; grey for one channel) pixels in
/// [0, 1], [N, C, H, W]. Files are taken in ordinal name order within each class, so a selection is reproducible.
/// Images of another size than the model's can be resized and centre-cropped as they are read (<see cref="ImageResize"/>,
/// <see cref="CropMode"/>: torchvision's Resize and CenterCrop).
/// </summary>
public static class ImageFolder
{
    static readonly string[] Extensions = [".jpg", ".jpeg", ".png"];

    /// <summary>The class folders in label order.</summary>
    public static string[] Classes(string folder)
    {
        if (!Directory.Exists(folder))
            throw new SadgException(SadgErrorCode.DataNotFound, $"No image folder at '{folder}'.", folder);
        var classes = Directory.GetDirectories(folder).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToArray();
        if (classes.Length == 0)
            throw new SadgException(SadgErrorCode.DataInvalid, $"'{folder}' has no class subfolders (one folder of images per class).", folder);
        return classes!;
    }

    /// <summary>True when <paramref name="folder"/> holds JPEG/PNG images directly or in subfolders (an image folder).</summary>
    public static bool IsImageFolder(string folder) =>
        Directory.Exists(folder) && (ImageFiles(folder).Length > 0 || Directory.GetDirectories(folder).Any(d => ImageFiles(d).Length > 0));

    static string[] ImageFiles(string folder) => Directory.GetFiles(folder)
        .Where(f => Extensions.Contains(Path.GetExtension(f).ToLowerInvariant())).Order(StringComparer.Ordinal).ToArray();

    /// <summary>
    /// Reads the images of every class; <paramref name="select"/> picks, from a class's files in name order, which
    /// indices to read (all when null). Images are taken round-robin over the classes (the first of each class, then
    /// the second …), so the first <paramref name="limit"/> cover every class. A folder with images and no class
    /// subfolders is unlabelled: every label is −1. Each image is resized (<paramref name="resize"/>) and cropped
    /// (<paramref name="crop"/>) when asked, and must then be <paramref name="height"/>×<paramref name="width"/> (when
    /// null, the size of the first image; a resize or crop needs them).
    /// </summary>
    public static LabelledImages Read(string folder, int channels, int? height, int? width, Func<int, bool>? select = null, int? limit = null,
        ImageResize? resize = null, CropMode crop = CropMode.None, ChannelOrder channelOrder = ChannelOrder.Rgb)
    {
        if (channels is not (1 or 3))
            throw new SadgException(SadgErrorCode.DataInvalid, $"Image folders hold grey or RGB images; the model takes {channels} channels.", folder);
        if ((resize is not null || crop != CropMode.None) && (height is null || width is null))
            throw new ArgumentException("A resize or crop needs the height and width to make.");
        if (!Directory.Exists(folder))
            throw new SadgException(SadgErrorCode.DataNotFound, $"No image folder at '{folder}'.", folder);
        var flat = ImageFiles(folder);
        var perClass = flat.Length > 0
            ? [flat]
            : Classes(folder).Select(c => ImageFiles(Path.Combine(folder, c))).ToArray();
        var order = perClass.SelectMany((files, label) => files.Select((file, index) => (file, label, index)))
            .Where(f => select is null || select(f.index))
            .OrderBy(f => f.index).ThenBy(f => f.label)
            .Take(limit ?? int.MaxValue).ToList();
        if (order.Count == 0)
            throw new SadgException(SadgErrorCode.DataInvalid, $"'{folder}' holds no JPEG or PNG images to read.", folder);
        bool modelSize = height is not null;
        var pixels = new List<float>();
        var labels = new List<long>();
        foreach (var (file, label, _) in order)
        {
            using var decoded = SKBitmap.Decode(file)
                ?? throw new SadgException(SadgErrorCode.DataInvalid, $"'{file}' is not a JPEG or PNG image SkiaSharp can decode.", file);
            using var resized = resize is null ? null : Resize(decoded, resize, height!.Value, width!.Value, file);
            var bitmap = resized ?? decoded;
            height ??= bitmap.Height;
            width ??= bitmap.Width;
            int left = 0, top = 0;
            if (crop == CropMode.Center)
            {
                if (bitmap.Width < width || bitmap.Height < height)
                    throw new SadgException(SadgErrorCode.DataInvalid,
                        $"'{file}' is {bitmap.Width}x{bitmap.Height}{(resize is null ? "" : $" after --resize {resize}")}, smaller than the " +
                        $"{width}x{height} the model takes, so --crop center cannot cut it. Resize it to at least that first (--resize).", file);
                // torchvision's CenterCrop: the offset rounded half to even.
                left = (int)Math.Round((bitmap.Width - width.Value) / 2.0);
                top = (int)Math.Round((bitmap.Height - height.Value) / 2.0);
            }
            else if (bitmap.Width != width || bitmap.Height != height)
                throw new SadgException(SadgErrorCode.DataInvalid,
                    $"'{file}' is {bitmap.Width}x{bitmap.Height}{(resize is null ? "" : $" after --resize {resize}")}; " +
                    $"{(modelSize ? "the model takes" : "the first image is")} {width}x{height}. " +
                    (resize is null
                        ? "Give images of that size, or have them resized as they are read: --resize N --crop center (the shorter side to N, then the centre) or --resize model (MSBuild: Resize and Crop metadata; docs/cli.md)."
                        : "Add --crop center (MSBuild: Crop=\"center\") to cut the centre, or use --resize model."), file);
            int plane = height.Value * width.Value;
            var image = new float[channels * plane];
            for (int y = 0; y < height; y++)
                for (int x = 0; x < width; x++)
                {
                    var c = bitmap.GetPixel(left + x, top + y);
                    int at = y * width.Value + x;
                    if (channels == 1) image[at] = (0.299f * c.Red + 0.587f * c.Green + 0.114f * c.Blue) / 255f;
                    else
                    {
                        image[at] = (channelOrder == ChannelOrder.Bgr ? c.Blue : c.Red) / 255f;
                        image[plane + at] = c.Green / 255f;
                        image[2 * plane + at] = (channelOrder == ChannelOrder.Bgr ? c.Red : c.Blue) / 255f;
                    }
                }
            pixels.AddRange(image);
            labels.Add(flat.Length > 0 ? -1 : label);
        }
        using var scope = NewDisposeScope();
        return new LabelledImages(tensor(pixels.ToArray(), [labels.Count, channels, height!.Value, width!.Value]), tensor(labels.ToArray()));
    }

    /// <summary>
    /// The size <paramref name="resize"/> gives a <paramref name="width"/>×<paramref name="height"/> image, as
    /// torchvision's Resize computes it: the shorter side to N and the longer scaled alike, truncated; or the model's
    /// <paramref name="modelWidth"/>×<paramref name="modelHeight"/>.
    /// </summary>
    public static (int Width, int Height) ResizedSize(int width, int height, ImageResize resize, int modelHeight, int modelWidth)
    {
        if (resize.ShorterSide is not int n) return (modelWidth, modelHeight);
        return width <= height
            ? (n, Math.Max(1, (int)((long)n * height / width)))
            : (Math.Max(1, (int)((long)n * width / height)), n);
    }

    static SKBitmap Resize(SKBitmap bitmap, ImageResize resize, int height, int width, string file)
    {
        var (w, h) = ResizedSize(bitmap.Width, bitmap.Height, resize, height, width);
        return bitmap.Resize(bitmap.Info.WithSize(w, h), SKFilterQuality.High)
            ?? throw new SadgException(SadgErrorCode.DataInvalid, $"'{file}' could not be resized to {w}x{h}.", file);
    }
}
