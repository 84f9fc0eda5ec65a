using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Security.Cryptography;
using System.Text;

namespace Sadg.BuildTasks
{
    /// <summary>
    /// SHA-256 of the files a quantized model is computed from (the model, every file under the calibration data),
    /// for the stamp: a change of content re-quantizes even when timestamps do not move forward (a file replaced by
    /// an older copy, data files swapped). Hashes are remembered in a memo file beside the stamp, keyed by path, size
    /// and last write time, so an unchanged input is not read again on a no-op build.
    /// </summary>
    internal sealed class InputHashes
    {
        private readonly string _memoFile;
        private readonly Dictionary<string, string> _memo = new Dictionary<string, string>(StringComparer.Ordinal);
        private readonly Dictionary<string, string> _used = new Dictionary<string, string>(StringComparer.Ordinal);

        public InputHashes(string memoFile)
        {
            _memoFile = memoFile;
            try
            {
                if (File.Exists(memoFile))
                    foreach (string line in File.ReadAllLines(memoFile))
                    {
                        int tab = line.LastIndexOf('\t');
                        if (tab > 0) _memo[line.Substring(0, tab)] = line.Substring(tab + 1);
                    }
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }

        /// <summary>The SHA-256 (hex) of one file.</summary>
        public string OfFile(string path)
        {
            var info = new FileInfo(path);
            string id = info.FullName + "\t" + info.Length.ToString(CultureInfo.InvariantCulture) + "\t" +
                        info.LastWriteTimeUtc.Ticks.ToString(CultureInfo.InvariantCulture);
            if (!_memo.TryGetValue(id, out string? hash)) hash = Sha256(path);
            _used[id] = hash!;
            return hash!;
        }

        /// <summary>The SHA-256 (hex) of a file's content, read now.</summary>
        internal static string Sha256(string path)
        {
            using (var sha = SHA256.Create())
            using (var stream = File.OpenRead(path))
                return Hex(sha.ComputeHash(stream));
        }

        /// <summary>
        /// One hash over a file, or over a folder's files (relative path and content of each, in ordinal order), so
        /// adding, removing, renaming or changing any of them changes it.
        /// </summary>
        public string Tree(string path)
        {
            if (File.Exists(path)) return OfFile(path);
            if (!Directory.Exists(path)) return "missing";
            string root = Path.GetFullPath(path).TrimEnd(Path.DirectorySeparatorChar) + Path.DirectorySeparatorChar;
            var lines = new StringBuilder();
            foreach (string file in Directory.GetFiles(root, "*", SearchOption.AllDirectories).OrderBy(f => f, StringComparer.Ordinal))
                lines.Append(file.Substring(root.Length).Replace('\\', '/')).Append('\t').Append(OfFile(file)).Append('\n');
            using (var sha = SHA256.Create())
                return Hex(sha.ComputeHash(Encoding.UTF8.GetBytes(lines.ToString())));
        }

        /// <summary>
        /// One hash over the external-data files the model's initializers name (each location and its content, or
        /// "missing"); empty when it names none. The locations read from a model are remembered as its hash is.
        /// </summary>
        public string ExternalData(string modelPath)
        {
            var info = new FileInfo(modelPath);
            if (!info.Exists) return "";
            string id = "external-data\t" + info.FullName + "\t" + info.Length.ToString(CultureInfo.InvariantCulture) + "\t" +
                        info.LastWriteTimeUtc.Ticks.ToString(CultureInfo.InvariantCulture);
            if (!_memo.TryGetValue(id, out string? joined))
                joined = string.Join(Separator, ExternalDataLocations.Of(File.ReadAllBytes(modelPath))
                    .Where(l => l.IndexOfAny(new[] { '\t', '\n', '\r', Separator[0] }) < 0));
            _used[id] = joined!;
            if (joined!.Length == 0) return "";
            string folder = info.DirectoryName ?? "";
            var lines = new StringBuilder();
            foreach (string location in joined.Split(Separator[0]))
            {
                string path = Path.GetFullPath(Path.Combine(folder, location));
                lines.Append(location).Append('\t').Append(File.Exists(path) ? OfFile(path) : "missing").Append('\n');
            }
            using (var sha = SHA256.Create())
                return Hex(sha.ComputeHash(Encoding.UTF8.GetBytes(lines.ToString())));
        }

        private const string Separator = "\u001f";

        /// <summary>Writes the memo (the hashes used this time) when it changed.</summary>
        public void Save()
        {
            var text = new StringBuilder();
            foreach (var kv in _used.OrderBy(k => k.Key, StringComparer.Ordinal)) text.Append(kv.Key).Append('\t').Append(kv.Value).Append('\n');
            try { SadgPrepareModels.WriteIfDifferent(_memoFile, text.ToString()); }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }

        internal static string Hex(IEnumerable<byte> bytes) => string.Concat(bytes.Select(b => b.ToString("x2", CultureInfo.InvariantCulture)));
    }
}
