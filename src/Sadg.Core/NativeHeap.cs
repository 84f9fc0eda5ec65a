using System.Runtime.InteropServices;
using System.Text;

namespace Sadg;

/// <summary>
/// How the process's native heap (glibc malloc, which libtorch's CPU allocator uses) hands memory back to the system.
/// By default glibc serves every block above its mmap threshold (at most 32 MiB; per-thread arenas map anything above
/// 64 MiB whatever the settings) with a fresh <c>mmap</c> and unmaps it on free, so each step of a generation or
/// reconstruction loop maps its activations, faults them in page by page and unmaps them again: training the 28×28
/// MobileNetV2 sample for 3,000 images took 33 million minor page faults and 80 s of system time beside 100 s of user
/// time, and 1 million faults and 4 s with the settings below (docs/benchmarks/steps.md).
/// <para>
/// The settings — one arena for all threads, no <c>mmap</c> for large blocks, no trimming of the heap's top — only take
/// effect when glibc reads them at process start (<c>mallopt</c> at run time leaves threads on the arenas they already
/// have), so <see cref="ReexecWithReusedHeap"/> starts the process image again with them in its environment. The price:
/// the process keeps its peak heap until it ends, and glibc's single heap fragments: at 224² its free blocks grow to
/// several GB beside 0.5 GB in use between SADAG steps. Where jemalloc is installed the restart preloads it instead,
/// also without purging, whose size classes do not fragment so (<see cref="JemallocSettings"/>).
/// </para>
/// </summary>
public static class NativeHeap
{
    /// <summary>
    /// <c>SADG_NATIVE_HEAP=system</c> keeps the process's own heap (no re-exec); <c>glibc</c> uses glibc with
    /// <see cref="Settings"/> even where jemalloc is installed.
    /// </summary>
    public const string Variable = "SADG_NATIVE_HEAP";

    /// <summary>glibc's environment variables and the values that make freed memory stay for the next step.</summary>
    public static readonly IReadOnlyList<(string Name, string Value)> Settings =
    [
        ("MALLOC_ARENA_MAX", "1"),
        ("MALLOC_MMAP_MAX_", "0"),
        ("MALLOC_TRIM_THRESHOLD_", "2147483647"),
    ];

    /// <summary>Where Debian, Ubuntu and Fedora install jemalloc (package libjemalloc2 / jemalloc).</summary>
    public static readonly IReadOnlyList<string> JemallocPaths =
    [
        "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
        "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
        "/usr/lib64/libjemalloc.so.2",
        "/usr/lib/libjemalloc.so.2",
    ];

    /// <summary>
    /// jemalloc's settings: freed pages are never purged (as with glibc's <see cref="Settings"/>, no page is faulted in
    /// twice), while its size classes keep the heap from fragmenting: at 224² SADAG refinement holds 3.2 GB instead of
    /// glibc's 5.0 GB at the same speed (docs/benchmarks/mobilenet-224-quick.md).
    /// </summary>
    public static IReadOnlyList<(string Name, string Value)> JemallocSettings(string library) =>
        [("LD_PRELOAD", library), ("MALLOC_CONF", "dirty_decay_ms:-1,muzzy_decay_ms:-1")];

    /// <summary>Every variable a restart may set, glibc's and jemalloc's (a child process that should not inherit them drops these).</summary>
    public static IEnumerable<string> Variables => Settings.Concat(JemallocSettings("")).Select(s => s.Name);

    /// <summary>
    /// The settings a restart uses: jemalloc's where it is installed (unless <c>SADG_NATIVE_HEAP=glibc</c>), else glibc's.
    /// </summary>
    public static IReadOnlyList<(string Name, string Value)> Chosen(Func<string, string?> environment, Func<string, bool> exists)
    {
        ArgumentNullException.ThrowIfNull(environment);
        ArgumentNullException.ThrowIfNull(exists);
        if (environment(Variable) is "glibc") return Settings;
        return JemallocPaths.FirstOrDefault(exists) is { } library ? JemallocSettings(library) : Settings;
    }

    /// <summary>
    /// "jemalloc" or "reused" when this process started with <see cref="JemallocSettings"/> or <see cref="Settings"/>,
    /// else "system" (glibc's defaults, or what the user set).
    /// </summary>
    public static string Mode =>
        Environment.GetEnvironmentVariable("LD_PRELOAD") is { } preload && JemallocPaths.Contains(preload)
            && JemallocSettings(preload).All(s => Environment.GetEnvironmentVariable(s.Name) == s.Value) ? "jemalloc"
        : Settings.All(s => Environment.GetEnvironmentVariable(s.Name) == s.Value) ? "reused"
        : "system";

    /// <summary>
    /// Whether a process with this environment should start again with <see cref="Chosen"/> settings: on Linux, unless
    /// it already has them, the user set any of glibc's or jemalloc's variables or a preload (theirs win), or
    /// <c>SADG_NATIVE_HEAP=system</c>.
    /// </summary>
    public static bool ShouldReexec(Func<string, string?> environment)
    {
        ArgumentNullException.ThrowIfNull(environment);
        if (!OperatingSystem.IsLinux() || environment(Variable) is "system") return false;
        return Variables.All(name => environment(name) is null);
    }

    /// <summary>
    /// Hands the heap's free pages back to the system. The settings above keep freed pages for the next step of a loop;
    /// between stages this drops what the last stage freed, so that it does not stay in the process beside the next
    /// stage's own peak (the ONNX Runtime check, for one, does not reuse libtorch's freed pages). jemalloc: purges every
    /// arena (<c>mallctl("arena.4096.purge")</c>); glibc: <c>malloc_trim(0)</c>. Does nothing elsewhere. Returns whether a
    /// heap was asked.
    /// </summary>
    public static bool ReleaseFree()
    {
        if (!OperatingSystem.IsLinux()) return false;
        try
        {
            if (Environment.GetEnvironmentVariable("LD_PRELOAD") is { } preload && preload.Contains("libjemalloc", StringComparison.Ordinal))
                return Mallctl("arena.4096.purge", IntPtr.Zero, IntPtr.Zero, IntPtr.Zero, UIntPtr.Zero) == 0;
            MallocTrim(UIntPtr.Zero);
            return true;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false;
        }
    }

    [DllImport("libjemalloc.so.2", EntryPoint = "mallctl")]
    static extern int Mallctl(string name, IntPtr oldp, IntPtr oldlenp, IntPtr newp, UIntPtr newlen);

    [DllImport("libc", EntryPoint = "malloc_trim")]
    static extern int MallocTrim(UIntPtr pad);

    [DllImport("libc", EntryPoint = "execve", SetLastError = true)]
    static extern int Execve(string path, string?[] argv, string?[] envp);

    /// <summary>
    /// Replaces this process (same PID, same standard streams) with a fresh start of the same command line and the
    /// <see cref="Chosen"/> settings added to the environment, when <see cref="ShouldReexec"/> says so. Call it first thing in
    /// Main, before any native memory is used. Returns only when nothing was done or the exec failed (the process then
    /// goes on with glibc's defaults).
    /// </summary>
    public static void ReexecWithReusedHeap()
    {
        if (!ShouldReexec(Environment.GetEnvironmentVariable)) return;
        string[] argv;
        try
        {
            // The exact argv this process started with (the dotnet host or the apphost, then its arguments).
            argv = Encoding.UTF8.GetString(File.ReadAllBytes("/proc/self/cmdline")).TrimEnd('\0').Split('\0');
        }
        catch (IOException)
        {
            return;
        }
        if (argv.Length == 0 || argv[0].Length == 0) return;
        var environment = Environment.GetEnvironmentVariables().Cast<System.Collections.DictionaryEntry>()
            .Select(e => $"{e.Key}={e.Value}")
            .Concat(Chosen(Environment.GetEnvironmentVariable, File.Exists).Select(s => $"{s.Name}={s.Value}"));
        try
        {
            Execve("/proc/self/exe", [.. argv, null], [.. environment, null]);
        }
        catch (EntryPointNotFoundException)
        {
        }
        catch (DllNotFoundException)
        {
        }
    }
}
