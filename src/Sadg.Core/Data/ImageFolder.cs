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

    /// <summary>
    /// Reads the images of every class; <paramref name="select"/> picks, from a class's files in name order, which
    /// indices to read (all when null). Every image must be <paramref name="height"/>×<paramref name="width"/>.
    /// </summary>
    public static LabelledImages Read(string folder, int channels, int height, int width, Func<int, bool>? select = null)
    {
        if (channels is not (1 or 3))
            throw new SadgException(SadgErrorCode.DataInvalid, $"Image folders hold grey or RGB images; the model takes {channels} channels.", folder);
        var classes = Classes(folder);
        var pixels = new List<float>();
        var labels = new List<long>();
        int plane = height * width;
        var image = new float[channels * plane];
        for (int label = 0; label < classes.Length; label++)
        {
            var files = Directory.GetFiles(Path.Combine(folder, classes[label]))
                .Where(f => Extensions.Contains(Path.GetExtension(f).ToLowerInvariant())).Order(StringComparer.Ordinal).ToArray();
            for (int i = 0; i < files.Length; i++)
            {
                if (select is not null && !select(i)) continue;
                using var bitmap = SKBitmap.Decode(files[i])
                    ?? throw new SadgException(SadgErrorCode.DataInvalid, $"'{files[i]}' is not a JPEG or PNG image SkiaSharp can decode.", files[i]);
                if (bitmap.Width != width || bitmap.Height != height)
                    throw new SadgException(SadgErrorCode.DataInvalid,
                        $"'{files[i]}' is {bitmap.Width}x{bitmap.Height}; the model takes {width}x{height} images.", files[i]);
                for (int y = 0; y < height; y++)
                    for (int x = 0; x < width; x++)
                    {
                        var c = bitmap.GetPixel(x, y);
                        int at = y * width + x;
                        if (channels == 1) image[at] = (0.299f * c.Red + 0.587f * c.Green + 0.114f * c.Blue) / 255f;
                        else
                        {
                            image[at] = c.Red / 255f;
                            image[plane + at] = c.Green / 255f;
                            image[2 * plane + at] = c.Blue / 255f;
                        }
                    }
                pixels.AddRange(image);
                labels.Add(label);
            }
        }
        using var scope = NewDisposeScope();
        return new LabelledImages(tensor(pixels.ToArray(), [labels.Count, channels, height, width]), tensor(labels.ToArray()));
    }
}
