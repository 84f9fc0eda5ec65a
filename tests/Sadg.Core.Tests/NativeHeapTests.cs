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
}
