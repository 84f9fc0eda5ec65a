namespace Sadg.Cli;

public static class Program
{
    public static async Task<int> Main(string[] args)
    {
        // Before libtorch allocates anything: the verbs that run long training loops restart with a heap that reuses
        // freed native memory (NativeHeap); the others are not worth a second process start.
        if (args is ["quantize" or "generate", ..]) NativeHeap.ReexecWithReusedHeap();
        using var cancellation = new CancellationTokenSource();
        int interrupts = 0;
        Console.CancelKeyPress += (_, e) =>
        {
            // First Ctrl+C: cancel and let the command clean up (exit 130). A second one ends the process at once.
            if (Interlocked.Increment(ref interrupts) == 1)
            {
                e.Cancel = true;
                Console.Error.WriteLine("sadg: stopping…");
                cancellation.Cancel();
            }
        };
        using var sigterm = System.Runtime.InteropServices.PosixSignalRegistration.Create(
            System.Runtime.InteropServices.PosixSignal.SIGTERM, context =>
            {
                context.Cancel = true;
                cancellation.Cancel();
            });
        return await RunAsync(args, Console.Out, Console.Error, cancellation.Token);
    }

    /// <summary>Runs one command line in this process with the given writers (tests, embedding).</summary>
    public static Task<int> RunAsync(string[] args, TextWriter output, TextWriter error, CancellationToken cancellationToken = default) =>
        CliApp.RunAsync(args, new CliServices(output, error), cancellationToken);
}
