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

    /// <summary>
    /// Checks, before any long work, that a file can be written into <paramref name="folder"/> (created if missing):
    /// creates and removes a hidden probe file there. <paramref name="purpose"/> says what the folder is for.
    /// </summary>
    public static void CheckWritable(string folder, string purpose)
    {
        string probe = Path.Combine(folder, $".sadg-probe.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            Directory.CreateDirectory(folder);
            using (new FileStream(probe, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.DeleteOnClose)) { }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            TryDelete(probe);
            throw new SadgException(SadgErrorCode.WriteFailed,
                $"Cannot write into the folder '{folder}' ({purpose}): {e.Message} Make it writable (or choose another path); nothing was run.",
                folder, inner: e);
        }
    }

    static void TryDelete(string path)
    {
        try { File.Delete(path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
