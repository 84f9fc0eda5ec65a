using System.Buffers.Binary;
using System.Text.Json;
using System.Text.Json.Serialization;
using Sadg.Data;

namespace Sadg.Cli.Data;

/// <summary>
/// Labelled images for evaluation or calibration, as float32 NCHW in the units the files hold (IDX bytes are
/// divided by 255 into [0, 1]). Two on-disk forms (docs/cli.md):
/// <list type="bullet">
/// <item>an IDX folder: <c>t10k-images-idx3-ubyte[.gz]</c> + <c>t10k-labels-idx1-ubyte[.gz]</c> and/or the
/// <c>train-</c> pair (Fashion-MNIST, MNIST);</item>
/// <item>a tensor folder: <c>sadg-data.json</c> (<c>{"format": "sadg-tensors/1", "shape": [N, C, H, W],
/// "images": "images.f32", "labels": "labels.i32"}</c>), raw little-endian float32 images and int32 labels;</item>
/// <item>an image folder: JPEG/PNG files in one subfolder per class (label = the subfolder's rank in ordinal name
/// order), or directly in the folder (unlabelled: every label is −1, for calibration only), decoded to [0, 1]
/// (<see cref="ImageFolder"/>).</item>
/// </list>
/// </summary>
public sealed class ImageSet
{
    public const string HeaderFile = "sadg-data.json";
    public const string FormatName = "sadg-tensors/1";

    public ImageSet(float[] images, int[] shape, int[] labels, string source)
    {
        if (shape.Length != 4 || (long)shape[0] * shape[1] * shape[2] * shape[3] != images.Length || labels.Length != shape[0])
            throw new ArgumentException("Images must be [N, C, H, W] with N labels.");
        Images = images;
        Shape = shape;
        Labels = labels;
        Source = source;
    }

    public float[] Images { get; }

    /// <summary>[N, C, H, W].</summary>
    public int[] Shape { get; }

    public int[] Labels { get; }

    public string Source { get; }

    public int Count => Shape[0];

    public int ImageSize => Shape[1] * Shape[2] * Shape[3];

    /// <summary>True when every image has a label (an image folder without class subfolders has none).</summary>
    public bool Labelled => Labels.All(l => l >= 0);

    /// <summary>
    /// Reads a data folder in any form; <paramref name="split"/> (IDX) is test, train or null (test when present);
    /// <paramref name="channels"/> is what image folders are decoded to (3: RGB, 1: grey). Images of an image folder
    /// must be <paramref name="height"/>×<paramref name="width"/> (the model's; null: the first image's) once resized
    /// (<paramref name="resize"/>) and cropped (<paramref name="crop"/>), which only image folders accept.
    /// </summary>
    public static ImageSet Load(string path, string? split = null, int? limit = null, int channels = 3,
        int? height = null, int? width = null, ImageResize? resize = null, CropMode crop = CropMode.None, ChannelOrder channelOrder = ChannelOrder.Rgb)
    {
        bool transform = resize is not null || crop != CropMode.None || channelOrder != ChannelOrder.Rgb;
        void NotAnImageFolder(string form)
        {
            if (transform)
                throw new SadgException(SadgErrorCode.InvalidOptionValue,
                    $"--resize, --crop and --channel-order (Resize, Crop, ChannelOrder) apply to image folders of JPEG or PNG files; '{path}' is {form}, whose images are used as they are.", path);
        }
        void NotAnIdxFolder(string form)
        {
            if (split is not null)
                throw new SadgException(SadgErrorCode.InvalidOptionValue, $"--split applies to IDX folders (train-*/t10k-* files); '{path}' is {form}.", path);
        }
        if (File.Exists(Path.Combine(path, HeaderFile)))
        {
            NotAnImageFolder("a tensor folder");
            NotAnIdxFolder("a tensor folder");
            return LoadTensors(path, limit);
        }
        if (File.Exists(path) && Path.GetFileName(path) == HeaderFile)
        {
            NotAnImageFolder("a tensor folder");
            NotAnIdxFolder("a tensor folder");
            return LoadTensors(Path.GetDirectoryName(Path.GetFullPath(path))!, limit);
        }
        if (!Directory.Exists(path))
            throw new SadgException(SadgErrorCode.DataNotFound, $"No data folder at '{path}'.", path);
        if (File.Exists(Path.Combine(path, "images.npy")))
            throw new SadgException(SadgErrorCode.DataInvalid,
                $"'{path}' holds images.npy (as `sadg generate --format npy` writes for other toolchains); Sadg reads tensor folders, " +
                "IDX folders and image folders. Generate with --format tensors (the default) to read the images back.", path);
        if (!Directory.EnumerateFiles(path, "*-idx?-ubyte*").Any() && ImageFolder.IsImageFolder(path))
        {
            NotAnIdxFolder("an image folder");
            using var read = ImageFolder.Read(path, channels, height, width, limit: limit, resize: resize, crop: crop, channelOrder: channelOrder);
            return new ImageSet(read.Images.contiguous().data<float>().ToArray(), read.Images.shape.Select(d => (int)d).ToArray(),
                read.Labels.data<long>().Select(l => (int)l).ToArray(), path);
        }
        NotAnImageFolder("an IDX folder");
        return LoadIdx(path, split, limit);
    }

    static ImageSet LoadIdx(string folder, string? split, int? limit)
    {
        string? Find(string prefix, string kind) =>
            new[] { $"{prefix}-{kind}", $"{prefix}-{kind}.gz" }.Select(n => Path.Combine(folder, n)).FirstOrDefault(File.Exists);
        (string? images, string? labels) Pair(string prefix) => (Find(prefix, "images-idx3-ubyte"), Find(prefix, "labels-idx1-ubyte"));

        string chosen = split?.ToLowerInvariant() switch
        {
            null => Pair("t10k").images is not null ? "t10k" : "train",
            "test" => "t10k",
            "train" => "train",
            _ => throw new SadgException(SadgErrorCode.InvalidOptionValue, $"Unknown split '{split}'; use test or train."),
        };
        var (imagesPath, labelsPath) = Pair(chosen);
        if (imagesPath is null || labelsPath is null)
            throw new SadgException(SadgErrorCode.DataNotFound,
                $"'{folder}' holds no {(chosen == "t10k" ? "test" : "train")} data: looked for {chosen}-images-idx3-ubyte[.gz] and " +
                $"{chosen}-labels-idx1-ubyte[.gz] (IDX, as Fashion-MNIST ships), and for {HeaderFile} (a tensor folder, see docs/cli.md).", folder);

        var (pixels, shape, labelBytes) = Idx.ReadLabelled(imagesPath, labelsPath, limit);
        var images = new float[pixels.Length];
        for (long i = 0; i < images.Length; i++) images[i] = pixels[i] / 255f;
        var labels = labelBytes.Select(b => (int)b).ToArray();
        return new ImageSet(images, shape, labels, imagesPath);
    }

    sealed record Header(
        [property: JsonPropertyName("format")] string? Format,
        [property: JsonPropertyName("shape")] int[]? Shape,
        [property: JsonPropertyName("images")] string? Images,
        [property: JsonPropertyName("labels")] string? Labels);

    static ImageSet LoadTensors(string folder, int? limit)
    {
        string headerPath = Path.Combine(folder, HeaderFile);
        Header header;
        try
        {
            header = JsonSerializer.Deserialize<Header>(File.ReadAllText(headerPath))
                ?? throw new JsonException("the file holds null");
        }
        catch (JsonException e)
        {
            throw new SadgException(SadgErrorCode.DataInvalid, $"'{headerPath}' is not valid JSON: {e.Message}", headerPath, inner: e);
        }
        if (header.Format != FormatName)
            throw new SadgException(SadgErrorCode.DataInvalid, $"'{headerPath}' has format '{header.Format}'; Sadg reads \"{FormatName}\".", headerPath);
        if (header.Shape is not { Length: 4 } shape || shape.Any(d => d <= 0))
            throw new SadgException(SadgErrorCode.DataInvalid, $"'{headerPath}' needs \"shape\": [N, C, H, W] with positive sizes.", headerPath);
        string imagesPath = Inside(folder, header.Images ?? "images.f32", headerPath);
        string labelsPath = Inside(folder, header.Labels ?? "labels.i32", headerPath);
        long count = (long)shape[0] * shape[1] * shape[2] * shape[3];
        if (count > int.MaxValue)
            throw new SadgException(SadgErrorCode.DataInvalid, $"'{headerPath}' declares {count} values, more than Sadg reads.", headerPath);
        int n = Math.Min(shape[0], limit ?? int.MaxValue);
        int per = shape[1] * shape[2] * shape[3];
        var imageBytes = ReadExactly(imagesPath, count * 4, (long)n * per * 4);
        var labelBytes = ReadExactly(labelsPath, shape[0] * 4L, n * 4L);
        var images = new float[(long)n * per];
        for (int i = 0; i < images.Length; i++) images[i] = BinaryPrimitives.ReadSingleLittleEndian(imageBytes.AsSpan(i * 4));
        var labels = new int[n];
        for (int i = 0; i < n; i++) labels[i] = BinaryPrimitives.ReadInt32LittleEndian(labelBytes.AsSpan(i * 4));
        return new ImageSet(images, [n, shape[1], shape[2], shape[3]], labels, folder);
    }

    static string Inside(string folder, string name, string headerPath)
    {
        if (Path.IsPathRooted(name) || name.Contains("..") || name.Contains('/') || name.Contains('\\'))
            throw new SadgException(SadgErrorCode.DataInvalid, $"'{headerPath}' names '{name}'; data files are bare names beside the header.", headerPath);
        return Path.Combine(folder, name);
    }

    static byte[] ReadExactly(string path, long expected, long take)
    {
        if (!File.Exists(path)) throw new SadgException(SadgErrorCode.DataNotFound, $"No data file at '{path}'.", path);
        long length = new FileInfo(path).Length;
        if (length != expected)
            throw new SadgException(SadgErrorCode.DataInvalid, $"'{path}' has {length} bytes; its header declares {expected}.", path);
        var buffer = new byte[take];
        using var stream = File.OpenRead(path);
        stream.ReadExactly(buffer);
        return buffer;
    }

    /// <summary>
    /// Writes a tensor folder atomically: the files go to a fresh sibling folder that is renamed into place, so
    /// an interrupted write leaves nothing. <paramref name="folder"/> must not exist or be empty.
    /// </summary>
    public void Save(string folder, CancellationToken cancellationToken = default, IReadOnlyDictionary<string, byte[]>? extraFiles = null)
    {
        string full = Path.GetFullPath(folder);
        if (File.Exists(full))
            throw new SadgException(SadgErrorCode.OutputInvalid, $"'{folder}' is a file; give a folder to write the data set into.", folder);
        if (Directory.Exists(full) && Directory.EnumerateFileSystemEntries(full).Any())
            throw new SadgException(SadgErrorCode.OutputInvalid, $"'{folder}' exists and is not empty; give a new or empty folder.", folder);
        AtomicFile.WriteFolder(folder, tmp =>
        {
            var header = new Header(FormatName, Shape, "images.f32", "labels.i32");
            File.WriteAllText(Path.Combine(tmp, HeaderFile), JsonSerializer.Serialize(header, new JsonSerializerOptions { WriteIndented = true }));
            using (var images = new FileStream(Path.Combine(tmp, "images.f32"), FileMode.CreateNew))
            {
                var buffer = new byte[4 * 4096];
                for (int i = 0; i < Images.Length; i += 4096)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    int count = Math.Min(4096, Images.Length - i);
                    for (int j = 0; j < count; j++) BinaryPrimitives.WriteSingleLittleEndian(buffer.AsSpan(j * 4), Images[i + j]);
                    images.Write(buffer, 0, count * 4);
                }
            }
            var labelBytes = new byte[Labels.Length * 4];
            for (int i = 0; i < Labels.Length; i++) BinaryPrimitives.WriteInt32LittleEndian(labelBytes.AsSpan(i * 4), Labels[i]);
            File.WriteAllBytes(Path.Combine(tmp, "labels.i32"), labelBytes);
            foreach (var (name, bytes) in extraFiles ?? new Dictionary<string, byte[]>()) File.WriteAllBytes(Path.Combine(tmp, name), bytes);
            cancellationToken.ThrowIfCancellationRequested();
        });
    }
}
