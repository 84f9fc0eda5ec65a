namespace Sadg;

/// <summary>
/// Paths compared as the files they name: every symbolic link on the way (in folders and in the file name itself)
/// is resolved, so <c>link/model.onnx</c> with <c>link -&gt; m</c> is <c>m/model.onnx</c>. A path whose tail does
/// not exist yet keeps that tail as written, after its existing folders are resolved.
/// </summary>
public static class FilePaths
{
    const int MaxLinks = 40;

    /// <summary>The absolute path with every symbolic link resolved (like realpath(3), but the path need not exist).</summary>
    public static string RealPath(string path)
    {
        int links = 0;
        return Resolve(Path.GetFullPath(path), ref links);
    }

    /// <summary>True when both paths name the same file once links are resolved.</summary>
    public static bool SameFile(string a, string b) =>
        string.Equals(RealPath(a), RealPath(b), OperatingSystem.IsLinux() ? StringComparison.Ordinal : StringComparison.OrdinalIgnoreCase);

    static string Resolve(string full, ref int links)
    {
        string root = Path.GetPathRoot(full) ?? "/";
        string current = root;
        foreach (string part in full[root.Length..].Split(Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries))
        {
            string next = Path.Combine(current, part);
            string? target = LinkTarget(next);
            if (target is not null)
            {
                if (++links > MaxLinks) return next; // a loop: leave it to the file system to report
                next = Resolve(Path.GetFullPath(Path.Combine(current, target)), ref links);
            }
            current = next;
        }
        return current;
    }

    static string? LinkTarget(string path)
    {
        try { return new FileInfo(path).LinkTarget; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }
}
