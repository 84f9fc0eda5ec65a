using System.Security.Cryptography;
using System.Text;

namespace Sadg.Pipeline;

/// <summary>
/// A content-addressed cache of quantized models. The key is SHA-256 over the model's bytes, the canonical options
/// (<see cref="PipelineOptions.Canonical"/>, which include a hash of real calibration data) and the tool version.
/// An entry is a folder <c>&lt;key&gt;/</c> holding <c>model.onnx</c> and the report files. Entries are written into
/// a temporary sibling folder and renamed into place, so a reader sees a whole entry or none; when two processes
/// write the same key, the first rename wins and the other's (identical) copy is discarded.
/// </summary>
public sealed class ModelCache
{
    public const string EnvironmentVariable = "SADG_CACHE_DIR";
    public const string ModelFile = "model.onnx";

    public ModelCache(string directory) => Directory = Path.GetFullPath(directory);

    public string Directory { get; }

    /// <summary>$SADG_CACHE_DIR, else $XDG_CACHE_HOME/sadg, else ~/.cache/sadg.</summary>
    public static string DefaultDirectory()
    {
        string? dir = Environment.GetEnvironmentVariable(EnvironmentVariable);
        if (!string.IsNullOrWhiteSpace(dir)) return dir;
        string? xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        if (!string.IsNullOrWhiteSpace(xdg)) return Path.Combine(xdg, "sadg");
        return Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "sadg");
    }

    public static string Key(ReadOnlySpan<byte> model, string canonicalOptions, string toolVersion)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(Encoding.UTF8.GetBytes($"sadg-cache/1\ntool={toolVersion}\n"));
        hash.AppendData(Encoding.UTF8.GetBytes(canonicalOptions + "\nmodel="));
        hash.AppendData(model);
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    public string EntryPath(string key) => Path.Combine(Directory, key);

    /// <summary>The entry's folder when it exists (then it is complete), else null.</summary>
    public string? TryGet(string key)
    {
        string entry = EntryPath(key);
        return File.Exists(Path.Combine(entry, ModelFile)) ? entry : null;
    }

    /// <summary>Stores the model and the other files (name → bytes) under <paramref name="key"/>; a no-op when the entry exists.</summary>
    public void Put(string key, byte[] model, IReadOnlyDictionary<string, byte[]> files)
    {
        string entry = EntryPath(key);
        if (System.IO.Directory.Exists(entry)) return;
        string tmp = Path.Combine(Directory, $".{key}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            System.IO.Directory.CreateDirectory(tmp);
            foreach (var (name, bytes) in files) File.WriteAllBytes(Path.Combine(tmp, name), bytes);
            using (var stream = new FileStream(Path.Combine(tmp, ModelFile), FileMode.CreateNew, FileAccess.Write))
            {
                stream.Write(model);
                stream.Flush(flushToDisk: true);
            }
            try
            {
                System.IO.Directory.Move(tmp, entry);
            }
            catch (IOException) when (System.IO.Directory.Exists(entry))
            {
                // Another process stored the same key first; its entry has the same content.
                TryDelete(tmp);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            TryDelete(tmp);
            throw new SadgException(SadgErrorCode.WriteFailed, $"Could not write the cache entry '{entry}': {e.Message}", entry, inner: e);
        }
        catch
        {
            TryDelete(tmp);
            throw;
        }
    }

    static void TryDelete(string folder)
    {
        try { if (System.IO.Directory.Exists(folder)) System.IO.Directory.Delete(folder, recursive: true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}
