using SkiaSharp;
using static TorchSharp.torch;

namespace Sadg.Data;

/// <summary>
/// An image folder: one subfolder per class, each holding JPEG or PNG files (class index = the subfolder's rank in
/// ordinal name order, the usual convention), decoded with SkiaSharp to RGB (or grey for one channel) pixels in
/// [0, 1], [N, C, H, W]. Files are taken in ordinal name order within each class, so a selection is reproducible.
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
    /// subfolders is unlabelled: every label is −1. Every image must be <paramref name="height"/>×<paramref name="width"/>
    /// (when null, the size of the first image).
    /// </summary>
    public static LabelledImages Read(string folder, int channels, int? height, int? width, Func<int, bool>? select = null, int? limit = null)
    {
        if (channels is not (1 or 3))
            throw new SadgException(SadgErrorCode.DataInvalid, $"Image folders hold grey or RGB images; the model takes {channels} channels.", folder);
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
        var pixels = new List<float>();
        var labels = new List<long>();
        foreach (var (file, label, _) in order)
        {
            using var bitmap = SKBitmap.Decode(file)
                ?? throw new SadgException(SadgErrorCode.DataInvalid, $"'{file}' is not a JPEG or PNG image SkiaSharp can decode.", file);
            height ??= bitmap.Height;
            width ??= bitmap.Width;
            if (bitmap.Width != width || bitmap.Height != height)
                throw new SadgException(SadgErrorCode.DataInvalid,
                    $"'{file}' is {bitmap.Width}x{bitmap.Height}; the other images (or the model) are {width}x{height}. Give images of one size.", file);
            int plane = height.Value * width.Value;
            var image = new float[channels * plane];
            for (int y = 0; y < height; y++)
                for (int x = 0; x < width; x++)
                {
                    var c = bitmap.GetPixel(x, y);
                    int at = y * width.Value + x;
                    if (channels == 1) image[at] = (0.299f * c.Red + 0.587f * c.Green + 0.114f * c.Blue) / 255f;
                    else
                    {
                        image[at] = c.Red / 255f;
                        image[plane + at] = c.Green / 255f;
                        image[2 * plane + at] = c.Blue / 255f;
                    }
                }
            pixels.AddRange(image);
            labels.Add(flat.Length > 0 ? -1 : label);
        }
        using var scope = NewDisposeScope();
        return new LabelledImages(tensor(pixels.ToArray(), [labels.Count, channels, height!.Value, width!.Value]), tensor(labels.ToArray()));
    }
}
