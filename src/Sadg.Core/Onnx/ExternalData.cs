using Onnx;

namespace Sadg.Onnx;

/// <summary>
/// Tensors stored outside the .onnx file (ONNX "external data"). A location is trusted only if it names a file
/// inside the model's folder: absolute paths, <c>..</c> escapes and symbolic links that lead out are refused,
/// so a downloaded model cannot make Sadg read arbitrary files.
/// </summary>
public static class ExternalData
{
    /// <summary>Reads the bytes of an external tensor after checking location, offset and length.</summary>
    public static byte[] Read(TensorProto t, long expectedBytes, string? baseDirectory, string? file)
    {
        string? location = null;
        long offset = 0, length = -1;
        foreach (var entry in t.ExternalData)
        {
            switch (entry.Key)
            {
                case "location": location = entry.Value; break;
                case "offset": offset = ParseLong(entry.Value, "offset", t, file); break;
                case "length": length = ParseLong(entry.Value, "length", t, file); break;
            }
        }
        if (string.IsNullOrEmpty(location))
            throw new SadgException(SadgErrorCode.TensorDataInvalid,
                $"Tensor '{t.Name}' is marked as external data but names no location. Re-export the model.", file);
        if (baseDirectory is null)
            throw new SadgException(SadgErrorCode.ExternalDataMissing,
                $"Tensor '{t.Name}' is stored in external file '{location}', but the model was not loaded from a file, so there is no folder to find it in. Load it from its path.", file);

        string path = ResolveInside(baseDirectory, location, t.Name, file);
        if (!File.Exists(path))
            throw new SadgException(SadgErrorCode.ExternalDataMissing,
                $"Tensor '{t.Name}' is stored in '{location}', which does not exist next to the model. Copy the data file beside the .onnx file.", file);

        long fileLength = new FileInfo(path).Length;
        if (length < 0) length = fileLength - offset;
        if (offset < 0 || length != expectedBytes || offset + length > fileLength)
            throw new SadgException(SadgErrorCode.TensorDataInvalid,
                $"Tensor '{t.Name}' needs {expectedBytes} bytes from '{location}' at offset {offset} (length {length}), but that file holds {fileLength} bytes. The data file does not belong to this model or is truncated.", file);

        var bytes = new byte[length];
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        stream.Seek(offset, SeekOrigin.Begin);
        stream.ReadExactly(bytes);
        return bytes;
    }

    static long ParseLong(string value, string key, TensorProto t, string? file) =>
        long.TryParse(value, out long v) && v >= 0 ? v : throw new SadgException(SadgErrorCode.TensorDataInvalid,
            $"Tensor '{t.Name}' has external-data {key} '{value}', which is not a non-negative integer.", file);

    /// <summary>
    /// The full path of <paramref name="location"/> under <paramref name="baseDirectory"/>, following links, or an
    /// error when it would leave the folder.
    /// </summary>
    public static string ResolveInside(string baseDirectory, string location, string tensorName, string? file)
    {
        SadgException Escape(string why) => new(SadgErrorCode.ExternalDataOutsideModelFolder,
            $"Tensor '{tensorName}' points to external data '{location}', {why}. Sadg reads external data only from the model's own folder; move the data file beside the .onnx file and give its bare name.", file);

        if (Path.IsPathRooted(location) || location.Contains(':'))
            throw Escape("an absolute path");
        string root = RealPath(Path.GetFullPath(baseDirectory));
        string candidate = Path.GetFullPath(Path.Combine(root, location));
        if (!IsInside(root, candidate))
            throw Escape("which leaves the model's folder");
        if (!IsInside(root, RealPath(candidate)))
            throw Escape("a link that leads out of the model's folder");
        return candidate;
    }

    static bool IsInside(string root, string path)
    {
        string prefix = root.EndsWith(Path.DirectorySeparatorChar) ? root : root + Path.DirectorySeparatorChar;
        return path.StartsWith(prefix, StringComparison.Ordinal);
    }

    /// <summary>The path with every symbolic link along it resolved (what realpath(3) returns for existing parts).</summary>
    static string RealPath(string fullPath)
    {
        string current = Path.GetPathRoot(fullPath)!;
        var parts = fullPath[current.Length..].Split(Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries);
        for (int i = 0; i < parts.Length; i++)
        {
            string next = Path.Combine(current, parts[i]);
            FileSystemInfo info = Directory.Exists(next) ? new DirectoryInfo(next) : new FileInfo(next);
            if (info.Exists && info.LinkTarget is not null)
            {
                var target = info.ResolveLinkTarget(returnFinalTarget: true);
                next = target is null ? next : RealPath(Path.GetFullPath(target.FullName));
            }
            current = next;
        }
        return current;
    }
}
