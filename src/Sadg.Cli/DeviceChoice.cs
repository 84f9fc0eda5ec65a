using Microsoft.ML.OnnxRuntime;
using Sadg.Cli.Output;
using TorchSharp;

namespace Sadg.Cli;

/// <summary>
/// Turns <c>--device</c> into a TorchSharp device (for generation and quantization) or an ONNX Runtime session
/// (for checking and evaluating), saying in one line which one was chosen when <c>auto</c> had to fall back.
/// </summary>
public static class DeviceChoice
{
    /// <summary>What this build of the tool has for CUDA (the SadgBackend it was built with; docs/packaging.md).</summary>
#if SADG_CUDA
    const string TorchBackend = "This sadg is the CUDA build (Sadg.Tool.Cuda, TorchSharp-cuda-linux); check the NVIDIA driver and that a GPU is visible.";
    const string OrtBackend = "It needs CUDA 13 and cuDNN 9 (Microsoft.ML.OnnxRuntime.Gpu 1.31.0) and an NVIDIA driver.";
#else
    const string TorchBackend = "This sadg is the CPU build (Sadg.Tool, CPU libtorch). CUDA needs the Sadg.Tool.Cuda package " +
        "(dotnet pack src/Sadg.Cli -p:SadgBackend=cuda, with TorchSharp-cuda-linux from your own NuGet feed; docs/packaging.md) " +
        "and an NVIDIA driver.";
    const string OrtBackend = "This sadg is the CPU build (Sadg.Tool, ONNX Runtime without CUDA); the CUDA provider is in the " +
        "Sadg.Tool.Cuda package (Microsoft.ML.OnnxRuntime.Gpu: CUDA 13 and cuDNN 9; docs/packaging.md).";
#endif

    /// <summary>The TorchSharp device: CUDA when asked for (or available under auto), else the CPU.</summary>
    public static torch.Device ResolveTorch(DeviceKind option, CliConsole console)
    {
        if (option == DeviceKind.Cpu) return torch.CPU;
        bool available = torch.cuda.is_available();
        if (option == DeviceKind.Cuda)
        {
            if (!available)
                throw new SadgException(SadgErrorCode.DeviceUnavailable,
                    $"--device cuda, but TorchSharp sees no CUDA device. {TorchBackend} Use --device cpu or auto.");
            return torch.CUDA;
        }
        if (available)
        {
            console.Log.Information("Device: CUDA ({Count} GPU(s) visible to TorchSharp).", torch.cuda.device_count());
            return torch.CUDA;
        }
        console.Log.Information("Device: CPU (TorchSharp sees no CUDA device; the CUDA build is the Sadg.Tool.Cuda package).");
        return torch.CPU;
    }

    /// <summary>
    /// Session options for every ONNX Runtime session the tool makes: ONNX Runtime's own log shows errors only. Its
    /// warnings are about the model's form (weights also listed as graph inputs, as older exporters write them: one
    /// line per weight on the console) and change nothing in what it computes; its errors reach the tool as exceptions.
    /// </summary>
    public static SessionOptions NewSessionOptions() => new() { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR };

    /// <summary>
    /// An ONNX Runtime session for <paramref name="modelPath"/>: the CUDA execution provider when the option
    /// allows it and CUDA 13 (with cuDNN 9) loads, else the CPU provider. <paramref name="announce"/> says which.
    /// </summary>
    public static InferenceSession CreateOrtSession(string modelPath, DeviceKind option, CliConsole console, bool announce = true)
    {
        var options = NewSessionOptions();
        string provider = "CPU";
        try
        {
            if (option != DeviceKind.Cpu)
            {
                try
                {
                    options.AppendExecutionProvider_CUDA(0);
                    provider = "CUDA";
                }
                catch (Exception e) when (e is OnnxRuntimeException or DllNotFoundException or EntryPointNotFoundException)
                {
                    string why = FirstLine(e.Message);
                    if (option == DeviceKind.Cuda)
                        throw new SadgException(SadgErrorCode.DeviceUnavailable,
                            $"--device cuda, but ONNX Runtime's CUDA provider does not load ({why}). {OrtBackend} Use --device cpu or auto.",
                            modelPath, inner: e);
                    options.Dispose();
                    options = NewSessionOptions();
                    if (announce) console.Log.Information("ONNX Runtime: CPU provider (no CUDA provider: {Why}).", why);
                }
            }
            else if (announce) console.Log.Information("ONNX Runtime: CPU provider (--device cpu).");
            if (provider == "CUDA" && announce) console.Log.Information("ONNX Runtime: CUDA provider.");
            try
            {
                return new InferenceSession(modelPath, options);
            }
            catch (OnnxRuntimeException e)
            {
                throw new SadgException(SadgErrorCode.InvalidGraph,
                    $"ONNX Runtime cannot load '{modelPath}': {FirstLine(e.Message)}", modelPath, inner: e);
            }
        }
        finally
        {
            options.Dispose();
        }
    }

    static string FirstLine(string message)
    {
        string line = message.Split('\n', 2)[0].Trim();
        return line.Length > 300 ? line[..300] + "…" : line;
    }
}
