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
        string tmp = Beside(full, "tmp");
        Publish(path, () =>
        {
            Directory.CreateDirectory(Path.GetDirectoryName(full)!);
            using (var stream = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(tmp, full, overwrite: true);
        }, () => TryDelete(tmp));
    }

    /// <summary>
    /// Writes a folder atomically: <paramref name="fill"/> writes the files into a fresh hidden sibling folder, which
    /// is then renamed into place, so an interrupted write leaves nothing. <paramref name="folder"/> must not exist or
    /// be empty (the caller checks, with its own message). An empty folder that exists is kept (it may be a mount
    /// point, or some shell's current folder): the finished files are renamed into it one by one, and on a failure the
    /// ones already there are removed again.
    /// </summary>
    public static void WriteFolder(string folder, Action<string> fill)
    {
        string full = Path.GetFullPath(folder).TrimEnd(Path.DirectorySeparatorChar);
        string tmp = Beside(full, "tmp");
        var moved = new List<string>();
        Publish(folder, () =>
        {
            Directory.CreateDirectory(tmp);
            fill(tmp);
            if (!Directory.Exists(full))
            {
                Directory.Move(tmp, full);
                return;
            }
            foreach (string file in Directory.GetFiles(tmp))
            {
                string target = Path.Combine(full, Path.GetFileName(file));
                File.Move(file, target);
                moved.Add(target);
            }
            Directory.Delete(tmp);
        }, () =>
        {
            foreach (string file in moved) TryDelete(file);
            TryDelete(tmp);
        });
    }

    /// <summary>
    /// Runs <paramref name="write"/> (which ends by renaming its temporary into place); on any failure runs
    /// <paramref name="cleanUp"/> and rethrows, a file-system failure as SADG WriteFailed naming <paramref name="path"/>.
    /// </summary>
    static void Publish(string path, Action write, Action cleanUp)
    {
        try
        {
            write();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            cleanUp();
            throw new SadgException(SadgErrorCode.WriteFailed, $"Could not write '{path}': {e.Message}", path, inner: e);
        }
        catch
        {
            cleanUp();
            throw;
        }
    }

    /// <summary>
    /// A hidden path beside <paramref name="full"/> that no other writer picks: <c>.name.pid.guid.suffix</c> (a
    /// temporary file or folder, or an entry renamed aside before it is deleted).
    /// </summary>
    public static string Beside(string full, string suffix) =>
        Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}.{suffix}");

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

    /// <summary>Removes a file, or a folder and what it holds, if it can; a failure to clean up hides nothing worse.</summary>
    public static void TryDelete(string path)
    {
        try
        {
            if (Directory.Exists(path)) Directory.Delete(path, recursive: true);
            else File.Delete(path);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}
