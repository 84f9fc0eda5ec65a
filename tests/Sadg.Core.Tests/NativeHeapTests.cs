namespace Sadg.Tests;

public class NativeHeapTests
{
    static Func<string, string?> Env(params (string Name, string Value)[] set) =>
        name => set.FirstOrDefault(s => s.Name == name).Value;

    [Fact]
    public void A_process_restarts_once_with_the_heap_settings_unless_the_user_chose_otherwise()
    {
        Assert.True(OperatingSystem.IsLinux(), "The suite runs on linux-x64 (README).");
        Assert.True(NativeHeap.ShouldReexec(Env()));
        // After the restart the settings are there: no second restart.
        Assert.False(NativeHeap.ShouldReexec(Env([.. NativeHeap.Settings])));
        // Any of glibc's own variables set by the user wins, and SADG_NATIVE_HEAP=system opts out.
        Assert.False(NativeHeap.ShouldReexec(Env(("MALLOC_ARENA_MAX", "4"))));
        Assert.False(NativeHeap.ShouldReexec(Env(("MALLOC_TRIM_THRESHOLD_", "131072"))));
        Assert.False(NativeHeap.ShouldReexec(Env((NativeHeap.Variable, "system"))));
    }

    [Fact]
    public void The_restart_preloads_jemalloc_where_it_is_installed_and_glibcs_settings_elsewhere()
    {
        string library = NativeHeap.JemallocPaths[0];
        var jemalloc = NativeHeap.Chosen(Env(), path => path == library);
        Assert.Contains(("LD_PRELOAD", library), jemalloc);
        Assert.Contains(jemalloc, s => s.Name == "MALLOC_CONF" && s.Value.Contains("dirty_decay_ms:-1"));
        Assert.Equal(NativeHeap.Settings, NativeHeap.Chosen(Env(), _ => false));
        Assert.Equal(NativeHeap.Settings, NativeHeap.Chosen(Env((NativeHeap.Variable, "glibc")), _ => true));
        // After a restart with jemalloc's settings there is no second one; a preload or MALLOC_CONF of the user's wins.
        Assert.False(NativeHeap.ShouldReexec(Env([.. jemalloc])));
        Assert.False(NativeHeap.ShouldReexec(Env(("LD_PRELOAD", "/opt/tcmalloc.so"))));
        Assert.False(NativeHeap.ShouldReexec(Env(("MALLOC_CONF", "narenas:2"))));
        Assert.True(NativeHeap.ShouldReexec(Env((NativeHeap.Variable, "glibc"))));
    }
}

[Collection(nameof(NativeHeapReleaseTests))]
public class NativeHeapReleaseTests
{
    static long ResidentBytes() => long.Parse(File.ReadLines("/proc/self/status").First(l => l.StartsWith("VmRSS:", StringComparison.Ordinal))
        .Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture) * 1024;

    /// <summary>
    /// Freed heap blocks below the top stay resident until the heap is asked to give them back: 192 MiB of small
    /// blocks, all freed but the last (which pins the heap's top), leave the resident size up; ReleaseFree brings it down.
    /// </summary>
    [Fact]
    public void ReleaseFree_gives_the_heaps_free_pages_back_to_the_system()
    {
        const int block = 64 * 1024, count = 3072;
        var ones = Enumerable.Repeat((byte)1, block).ToArray();
        var blocks = new IntPtr[count];
        for (int i = 0; i < count; i++)
        {
            blocks[i] = System.Runtime.InteropServices.Marshal.AllocHGlobal(block);
            System.Runtime.InteropServices.Marshal.Copy(ones, 0, blocks[i], block);
        }
        for (int i = 0; i < count - 1; i++) System.Runtime.InteropServices.Marshal.FreeHGlobal(blocks[i]);
        long held = ResidentBytes();
        Assert.True(NativeHeap.ReleaseFree(), "No heap was asked to release its free pages.");
        long released = ResidentBytes();
        System.Runtime.InteropServices.Marshal.FreeHGlobal(blocks[count - 1]);
        Assert.True(held - released > 96L << 20, $"resident {held >> 20} MiB before, {released >> 20} MiB after ReleaseFree");
    }
}

/// <summary>Runs <see cref="NativeHeapReleaseTests"/> alone: another test's allocations would move the resident size it reads.</summary>
[CollectionDefinition(nameof(NativeHeapReleaseTests), DisableParallelization = true)]
public class NativeHeapReleaseCollection;
