using System.IO.Compression;
using static TorchSharp.torch;

namespace Sadg.Data;

/// <summary>
/// IDX files (the MNIST / Fashion-MNIST format), plain or gzip-compressed: a big-endian header (two zero bytes,
/// a type code, the rank, one 32-bit size per dimension) followed by the data. Only unsigned-byte data (type
/// 0x08) is read, which is what image and label files use.
/// </summary>
public static class Idx
{
    const int MaxRank = 4;

    /// <summary>Reads an IDX file of unsigned bytes: the data and its dimensions.</summary>
    public static (byte[] Data, int[] Dims) Read(string path)
    {
        if (!File.Exists(path))
            throw new SadgException(SadgErrorCode.DataNotFound, $"No IDX file at '{path}'.", path);
        using var file = File.OpenRead(path);
        bool gzip = file.ReadByte() == 0x1f && file.ReadByte() == 0x8b;
        file.Position = 0;
        using Stream stream = gzip ? new GZipStream(file, CompressionMode.Decompress) : file;
        try
        {
            var header = new byte[4];
            stream.ReadExactly(header);
            if (header[0] != 0 || header[1] != 0)
                throw Invalid(path, "it does not start with the IDX magic number (two zero bytes)");
            if (header[2] != 0x08)
                throw Invalid(path, $"its data type is 0x{header[2]:x2}; Sadg reads unsigned-byte IDX files (0x08)");
            int rank = header[3];
            if (rank is < 1 or > MaxRank) throw Invalid(path, $"it declares {rank} dimensions");
            var dims = new int[rank];
            long count = 1;
            var size = new byte[4];
            for (int i = 0; i < rank; i++)
            {
                stream.ReadExactly(size);
                dims[i] = (size[0] << 24) | (size[1] << 16) | (size[2] << 8) | size[3];
                if (dims[i] < 0) throw Invalid(path, "a dimension is negative");
                count *= dims[i];
                if (count > int.MaxValue) throw Invalid(path, $"it declares {string.Join("x", dims.Take(i + 1))} elements, more than Sadg reads");
            }
            var data = new byte[count];
            stream.ReadExactly(data);
            return (data, dims);
        }
        catch (EndOfStreamException)
        {
            throw Invalid(path, "it is shorter than its header declares (truncated)");
        }
        catch (InvalidDataException e)
        {
            throw Invalid(path, $"its gzip stream is corrupt ({e.Message})");
        }
    }

    /// <summary>
    /// Reads an IDX image file ([N, H, W] or [N, C, H, W]) and its IDX label file ([N]), checking that they belong
    /// together; <paramref name="limit"/> keeps the first images only. Returns the pixels of the kept images, their
    /// shape [n, C, H, W] and their labels.
    /// </summary>
    public static (byte[] Pixels, int[] Shape, byte[] Labels) ReadLabelled(string imagesPath, string labelsPath, int? limit = null)
    {
        var (pixels, dims) = Read(imagesPath);
        var (labels, labelDims) = Read(labelsPath);
        if (dims.Length is not (3 or 4))
            throw new SadgException(SadgErrorCode.DataInvalid, $"'{imagesPath}' has {dims.Length} dimensions; image files have 3 (N, H, W) or 4 (N, C, H, W).", imagesPath);
        if (labelDims.Length != 1 || labelDims[0] != dims[0])
            throw new SadgException(SadgErrorCode.DataInvalid,
                $"'{labelsPath}' holds [{string.Join(", ", labelDims)}] labels for {dims[0]} images in '{imagesPath}'; give the label file that belongs to the images.", labelsPath);
        int n = Math.Min(dims[0], limit ?? int.MaxValue);
        int[] shape = dims.Length == 3 ? [n, 1, dims[1], dims[2]] : [n, dims[1], dims[2], dims[3]];
        int perImage = shape[1] * shape[2] * shape[3];
        return (n == dims[0] ? pixels : pixels.AsSpan(0, n * perImage).ToArray(), shape, labels.AsSpan(0, n).ToArray());
    }

    static SadgException Invalid(string path, string why) =>
        new(SadgErrorCode.DataInvalid, $"'{path}' is not a readable IDX file: {why}.", path);
}

/// <summary>A labelled image set: images as float [N, C, H, W] in [0, 1], labels as int64 [N].</summary>
public sealed class LabelledImages : IDisposable
{
    public LabelledImages(Tensor images, Tensor labels)
    {
        if (images.shape[0] != labels.shape[0])
            throw new ArgumentException($"{images.shape[0]} images but {labels.shape[0]} labels.");
        Images = images.DetachFromDisposeScope();
        Labels = labels.DetachFromDisposeScope();
    }

    public Tensor Images { get; }

    public Tensor Labels { get; }

    public long Count => Images.shape[0];

    /// <summary>
    /// Reads an IDX image file ([N, H, W] or [N, C, H, W]) and its IDX label file ([N]); <paramref name="limit"/>
    /// keeps the first images only.
    /// </summary>
    public static LabelledImages FromIdx(string imagesPath, string labelsPath, int? limit = null)
    {
        var (pixels, shape, labels) = Idx.ReadLabelled(imagesPath, labelsPath, limit);
        using var scope = NewDisposeScope();
        var images = tensor(pixels, shape.Select(d => (long)d).ToArray()).to_type(ScalarType.Float32).Div_(255f);
        var y = tensor(labels).to_type(ScalarType.Int64);
        return new LabelledImages(images, y);
    }

    public void Dispose()
    {
        Images.Dispose();
        Labels.Dispose();
    }
}
