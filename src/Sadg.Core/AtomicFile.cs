namespace Sadg;

/// <summary>
/// Writes files atomically: into a temporary file beside the target, flushed to disk, then renamed over it. A
/// reader sees the old file or the whole new one, never a part; an interrupted write leaves no file that looks
/// finished (at most a hidden ".name.pid.guid.tmp" that the failure path removes).
/// </summary>
public static class AtomicFile
{
    public static void Write(string path, ReadOnlySpan<byte> bytes)
    {
        var copy = bytes.ToArray();
        Write(path, stream => stream.Write(copy));
    }

    /// <summary>Writes whatever <paramref name="write"/> puts into the stream.</summary>
    public static void Write(string path, Action<Stream> write)
    {
        string full = Path.GetFullPath(path);
        string dir = Path.GetDirectoryName(full)!;
        string tmp = Path.Combine(dir, $".{Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            Directory.CreateDirectory(dir);
            using (var stream = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(tmp, full, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            TryDelete(tmp);
            throw new SadgException(SadgErrorCode.WriteFailed, $"Could not write '{path}': {e.Message}", path, inner: e);
        }
        catch
        {
            TryDelete(tmp);
            throw;
        }
    }

    public static void Copy(string source, string path)
    {
        byte[] bytes;
        try { bytes = File.ReadAllBytes(source); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new SadgException(SadgErrorCode.WriteFailed, $"Could not read '{source}': {e.Message}", source, inner: e);
        }
        Write(path, bytes);
    }

    static void TryDelete(string path)
    {
        try { File.Delete(path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
