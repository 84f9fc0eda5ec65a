using System.Security.Cryptography;
using System.Text;
using Google.Protobuf;
using Onnx;
using Sadg.Onnx;

namespace Sadg.Pipeline;

/// <summary>A cache entry whose every file matched its recorded SHA-256 and whose model parsed as ONNX.</summary>
public sealed record CacheEntry(string Path, byte[] Model, IReadOnlyDictionary<string, byte[]> Files);

/// <summary>
/// What <see cref="ModelCache.Lookup"/> found: a verified <see cref="Entry"/>, nothing (both null), or a folder
/// that failed verification (<see cref="Problem"/> says why; it must not be used).
/// </summary>
public sealed record CacheLookup(CacheEntry? Entry, string? Problem);

/// <summary>How <see cref="ModelCache.Put"/> ended.</summary>
public enum CachePutOutcome
{
    /// <summary>This call wrote the entry.</summary>
    Stored,

    /// <summary>A verified entry was there already (another process stored the same key); nothing was written.</summary>
    AlreadyPresent,
}

/// <summary>
/// A content-addressed cache of quantized models. The key is SHA-256 over the model's bytes, the canonical options
/// (<see cref="PipelineOptions.Canonical"/>, which include a hash of real calibration data) and the tool version.
/// An entry is a folder <c>&lt;key&gt;/</c> holding <c>model.onnx</c>, the report files and <c>entry.sha256</c>,
/// the SHA-256 of each of them (<c>sha256sum</c>'s format). Every lookup checks the hashes and parses the model
/// before the entry is used; an entry that fails is reported, removed and recomputed. Entries are written into a
/// temporary sibling folder and renamed into place, so a reader sees a whole entry or none; when two processes
/// write the same key, the first rename wins and the other's copy is discarded; a broken entry in the way is moved
/// aside first.
/// </summary>
public sealed class ModelCache
{
    public const string EnvironmentVariable = "SADG_CACHE_DIR";
    public const string ModelFile = "model.onnx";
    public const string ManifestFile = "entry.sha256";

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

    /// <summary>
    /// Reads and verifies the entry of <paramref name="key"/>: the manifest lists exactly the files of the folder,
    /// each file's SHA-256 matches, and the model parses as an ONNX model. The bytes returned are the ones verified.
    /// </summary>
    public CacheLookup Lookup(string key)
    {
        string entry = EntryPath(key);
        if (!System.IO.Directory.Exists(entry))
            return File.Exists(entry) ? new CacheLookup(null, "it is a file, not an entry folder") : new CacheLookup(null, null);
        try
        {
            string manifestPath = Path.Combine(entry, ManifestFile);
            if (!File.Exists(manifestPath))
                return new CacheLookup(null, $"it has no {ManifestFile} (an incomplete entry, or one written by an older sadg)");
            var expected = new SortedDictionary<string, string>(StringComparer.Ordinal);
            foreach (string line in File.ReadAllLines(manifestPath))
            {
                if (line.Length == 0) continue;
                string[] parts = line.Split("  ", 2);
                if (parts.Length != 2 || parts[0].Length != 64 || !IsBareName(parts[1]) || parts[1] == ManifestFile || !expected.TryAdd(parts[1], parts[0]))
                    return new CacheLookup(null, $"its {ManifestFile} is malformed");
            }
            if (!expected.ContainsKey(ModelFile)) return new CacheLookup(null, $"its {ManifestFile} does not list {ModelFile}");
            var present = System.IO.Directory.GetFileSystemEntries(entry).Select(Path.GetFileName).Where(n => n != ManifestFile).Order(StringComparer.Ordinal);
            if (!present.SequenceEqual(expected.Keys, StringComparer.Ordinal))
                return new CacheLookup(null, $"its files ({string.Join(", ", present)}) are not the ones {ManifestFile} lists ({string.Join(", ", expected.Keys)})");
            var files = new SortedDictionary<string, byte[]>(StringComparer.Ordinal);
            byte[]? model = null;
            foreach (var (name, sha) in expected)
            {
                byte[] bytes = File.ReadAllBytes(Path.Combine(entry, name));
                if (!string.Equals(Convert.ToHexStringLower(SHA256.HashData(bytes)), sha, StringComparison.OrdinalIgnoreCase))
                    return new CacheLookup(null, $"{name} does not match its SHA-256 in {ManifestFile} (the file was changed or damaged)");
                if (name == ModelFile) model = bytes;
                else files[name] = bytes;
            }
            if (CheckModel(model!) is { } problem) return new CacheLookup(null, $"{ModelFile} {problem}");
            return new CacheLookup(new CacheEntry(entry, model!, files), null);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return new CacheLookup(null, $"it cannot be read ({e.Message})");
        }
    }

    /// <summary>
    /// Stores the model and the other files (name → bytes) under <paramref name="key"/>. A verified entry already
    /// there is kept (<see cref="CachePutOutcome.AlreadyPresent"/>); a broken one is replaced. Throws
    /// <see cref="SadgErrorCode.WriteFailed"/> when the entry cannot be written; nothing partial is left.
    /// </summary>
    public CachePutOutcome Put(string key, byte[] model, IReadOnlyDictionary<string, byte[]> files)
    {
        string entry = EntryPath(key);
        foreach (string name in files.Keys)
            if (!IsBareName(name) || name is ModelFile or ManifestFile)
                throw new ArgumentException($"'{name}' cannot be stored in a cache entry.", nameof(files));
        SweepLeftovers();
        for (int attempt = 0; ; attempt++)
        {
            var found = Lookup(key);
            if (found.Entry is not null) return CachePutOutcome.AlreadyPresent;
            if (found.Problem is not null) Remove(key);
            string tmp = AtomicFile.Beside(entry, "tmp");
            try
            {
                System.IO.Directory.CreateDirectory(tmp);
                var manifest = new StringBuilder();
                foreach (var (name, bytes) in files.Append(new KeyValuePair<string, byte[]>(ModelFile, model)).OrderBy(f => f.Key, StringComparer.Ordinal))
                {
                    WriteDurably(Path.Combine(tmp, name), bytes);
                    manifest.Append(Convert.ToHexStringLower(SHA256.HashData(bytes))).Append("  ").Append(name).Append('\n');
                }
                // The manifest last: a folder with a manifest has every file it lists.
                WriteDurably(Path.Combine(tmp, ManifestFile), Encoding.UTF8.GetBytes(manifest.ToString()));
                try
                {
                    System.IO.Directory.Move(tmp, entry);
                    return CachePutOutcome.Stored;
                }
                catch (IOException) when (System.IO.Directory.Exists(entry) || File.Exists(entry))
                {
                    // Another process renamed its entry into place first: use it if it verifies, else try again.
                    AtomicFile.TryDelete(tmp);
                    if (attempt >= 3) throw;
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                AtomicFile.TryDelete(tmp);
                throw new SadgException(SadgErrorCode.WriteFailed, $"Could not write the cache entry '{entry}': {e.Message}", entry, inner: e);
            }
            catch
            {
                AtomicFile.TryDelete(tmp);
                throw;
            }
        }
    }

    /// <summary>
    /// Removes the entry of <paramref name="key"/>: renamed aside first (so no reader sees it half-deleted), then
    /// deleted. Throws <see cref="SadgErrorCode.CacheUnavailable"/> when it cannot be moved.
    /// </summary>
    public void Remove(string key)
    {
        string entry = EntryPath(key);
        string trash = AtomicFile.Beside(entry, "removed");
        try
        {
            if (System.IO.Directory.Exists(entry)) System.IO.Directory.Move(entry, trash);
            else if (File.Exists(entry)) File.Move(entry, trash);
            else return;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            if (!System.IO.Directory.Exists(entry) && !File.Exists(entry)) return; // removed by another process
            throw new SadgException(SadgErrorCode.CacheUnavailable,
                $"Could not remove the broken cache entry '{entry}': {e.Message} Delete the folder by hand.", entry, inner: e);
        }
        AtomicFile.TryDelete(trash);
    }

    /// <summary>
    /// Removes what killed processes left (hidden <c>.&lt;key&gt;.*.tmp</c> and <c>.removed</c> folders) once it is a
    /// day old, so no live writer's folder is touched.
    /// </summary>
    void SweepLeftovers()
    {
        try
        {
            foreach (string path in System.IO.Directory.EnumerateFileSystemEntries(Directory, ".*"))
                if ((path.EndsWith(".tmp", StringComparison.Ordinal) || path.EndsWith(".removed", StringComparison.Ordinal))
                    && System.IO.Directory.GetLastWriteTimeUtc(path) < DateTime.UtcNow.AddDays(-1))
                    AtomicFile.TryDelete(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }

    /// <summary>null when the bytes are an ONNX model that loads, else why not.</summary>
    static string? CheckModel(byte[] bytes)
    {
        if (bytes.Length == 0) return "is empty";
        try
        {
            OnnxModel.FromProto(ModelProto.Parser.ParseFrom(bytes));
            return null;
        }
        catch (InvalidProtocolBufferException e) { return $"is not valid protobuf ({e.Message.TrimEnd('.')})"; }
        catch (SadgException e) { return $"is not a valid ONNX model ({e.Message})"; }
    }

    static bool IsBareName(string name) =>
        name.Length > 0 && name is not ("." or "..") && name.IndexOfAny(['/', '\\', '\0']) < 0;

    static void WriteDurably(string path, byte[] bytes)
    {
        using var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write);
        stream.Write(bytes);
        stream.Flush(flushToDisk: true);
    }
}
