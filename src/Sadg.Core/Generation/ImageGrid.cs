using Sadg.Graph;
using SkiaSharp;
using static TorchSharp.torch;

namespace Sadg.Generation;

/// <summary>
/// A PNG contact sheet of synthetic images, each labelled with the FP model's top-1 class index. Each image is
/// min-max scaled on its own for display (synthetic images are in the model's input units, often not [0, 1]); 1-channel images
/// are drawn in grey, 3-channel ones in RGB (other channel counts show their first channel). Labels use the
/// system's default font when there is one, else a built-in 5×7 digit font, so they always render.
/// </summary>
public static class ImageGrid
{
    const int Gap = 2, LabelHeight = 9, DigitScale = 1;

    /// <summary>Labels <paramref name="images"/> with <paramref name="model"/>'s predictions and writes the grid.</summary>
    public static void Save(GraphModule model, Tensor images, string path, int columns = 16)
    {
        long[] labels;
        using (no_grad())
        using (NewDisposeScope())
        {
            var predictions = new List<long>();
            for (long start = 0; start < images.shape[0]; start += 128)
            {
                long end = Math.Min(images.shape[0], start + 128);
                predictions.AddRange(model.forward(images[TensorIndex.Slice(start, end)].to(model.Device)).flatten(1).argmax(1).cpu().data<long>().ToArray());
            }
            labels = predictions.ToArray();
        }
        Save(images, labels, path, columns);
    }

    /// <summary>Writes images [N, C, H, W] with the given labels (one per image) as a PNG grid, atomically.</summary>
    public static void Save(Tensor images, IReadOnlyList<long> labels, string path, int columns = 16) =>
        AtomicFile.Write(path, Png(images, labels, columns));

    /// <summary>Encodes images [N, C, H, W] with the given labels (one per image) as a PNG grid.</summary>
    public static byte[] Png(Tensor images, IReadOnlyList<long> labels, int columns = 16)
    {
        if (images.dim() != 4) throw new ArgumentException($"Expected images [N, C, H, W], got [{string.Join(", ", images.shape)}].", nameof(images));
        int n = (int)images.shape[0], c = (int)images.shape[1], h = (int)images.shape[2], w = (int)images.shape[3];
        if (labels.Count != n) throw new ArgumentException($"Got {labels.Count} labels for {n} images.", nameof(labels));
        if (n == 0) throw new ArgumentException("No images to draw.", nameof(images));
        int scale = Math.Max(1, 64 / Math.Max(h, w));
        int cols = Math.Clamp(columns, 1, n), rows = (n + cols - 1) / cols;
        int tileW = w * scale, tileH = h * scale + LabelHeight;
        using var bitmap = new SKBitmap(Gap + cols * (tileW + Gap), Gap + rows * (tileH + Gap), SKColorType.Rgba8888, SKAlphaType.Opaque);
        using var canvas = new SKCanvas(bitmap);
        canvas.Clear(SKColors.White);

        float[] pixels = Display(images, out int shown);
        using var font = LabelFont();
        using var paint = new SKPaint { Color = SKColors.Black, IsAntialias = true };
        using var pixelPaint = new SKPaint { FilterQuality = SKFilterQuality.None };
        var tile = new SKColor[h * w];
        for (int i = 0; i < n; i++)
        {
            int x0 = Gap + i % cols * (tileW + Gap), y0 = Gap + i / cols * (tileH + Gap);
            using var image = new SKBitmap(w, h, SKColorType.Rgba8888, SKAlphaType.Opaque);
            for (int p = 0; p < h * w; p++)
            {
                byte Channel(int ch) => (byte)Math.Round(255 * pixels[((long)i * shown + ch) * h * w + p]);
                tile[p] = shown == 3 ? new SKColor(Channel(0), Channel(1), Channel(2)) : new SKColor(Channel(0), Channel(0), Channel(0));
            }
            image.Pixels = tile;
            canvas.DrawBitmap(image, new SKRect(x0, y0, x0 + tileW, y0 + h * scale), pixelPaint);
            string text = labels[i].ToString(System.Globalization.CultureInfo.InvariantCulture);
            if (font is not null) canvas.DrawText(text, x0 + 1, y0 + h * scale + LabelHeight - 1, font, paint);
            else DrawDigits(canvas, text, x0 + 1, y0 + h * scale + 1);
        }
        canvas.Flush();

        using var data = bitmap.Encode(SKEncodedImageFormat.Png, 100)
            ?? throw new SadgException(SadgErrorCode.WriteFailed, "Could not encode the image grid as PNG.");
        return data.ToArray();
    }

    /// <summary>Per image min-max scaled pixel values in [0, 1], [N, shown, H, W] flattened.</summary>
    static float[] Display(Tensor images, out int shown)
    {
        using var scope = NewDisposeScope();
        var x = images.detach().to(ScalarType.Float32).cpu();
        shown = x.shape[1] == 3 ? 3 : 1;
        if (x.shape[1] != shown) x = x[.., TensorIndex.Slice(0, 1)];
        var flat = x.flatten(1);
        var low = flat.amin([1], keepdim: true);
        var high = flat.amax([1], keepdim: true);
        return ((flat - low) / (high - low).ClampMin(1e-12)).contiguous().data<float>().ToArray();
    }

    /// <summary>The default typeface as a font, when it can draw digits; else null (use the built-in digits).</summary>
    static SKFont? LabelFont()
    {
        try
        {
            var typeface = SKTypeface.Default;
            if (typeface is null || typeface.GlyphCount == 0) return null;
            var font = new SKFont(typeface, LabelHeight);
            if (font.ContainsGlyphs("0123456789")) return font;
            font.Dispose();
        }
        catch (Exception e) when (e is DllNotFoundException or TypeInitializationException or InvalidOperationException)
        {
        }
        return null;
    }

    // 5×7 bitmap digits, one row per byte (low 5 bits, most significant bit on the left).
    static readonly byte[][] Digits =
    [
        [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E], [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F], [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02], [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E], [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E], [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
    ];

    /// <summary>Draws decimal digits with the built-in 5×7 font at (x, y), top-left.</summary>
    static void DrawDigits(SKCanvas canvas, string text, int x, int y)
    {
        using var paint = new SKPaint { Color = SKColors.Black, IsAntialias = false };
        foreach (char ch in text)
        {
            if (ch is >= '0' and <= '9')
            {
                var glyph = Digits[ch - '0'];
                for (int row = 0; row < 7; row++)
                    for (int col = 0; col < 5; col++)
                        if ((glyph[row] >> (4 - col) & 1) != 0)
                            canvas.DrawRect(x + col * DigitScale, y + row * DigitScale, DigitScale, DigitScale, paint);
            }
            x += 6 * DigitScale;
        }
    }
}
