namespace Sadg.Tests.Support;

/// <summary>A test that needs a CUDA device; skipped, with the reason shown, where TorchSharp sees none.</summary>
public sealed class CudaFactAttribute : FactAttribute
{
    public CudaFactAttribute()
    {
        if (!TorchSharp.torch.cuda.is_available())
            Skip = "Needs a CUDA device and Sadg built with the CUDA backend; this machine or build has neither.";
    }
}

/// <summary>A test of behaviour without CUDA; skipped, with the reason shown, where a CUDA device is present.</summary>
public sealed class NoCudaFactAttribute : FactAttribute
{
    public NoCudaFactAttribute()
    {
        if (TorchSharp.torch.cuda.is_available())
            Skip = "Checks the error for a missing CUDA backend; this machine has CUDA.";
    }
}

/// <summary>A fact that reads Linux's /proc: skipped, with the reason shown, elsewhere.</summary>
public sealed class LinuxFactAttribute : FactAttribute
{
    public LinuxFactAttribute()
    {
        if (!OperatingSystem.IsLinux()) Skip = "Reads /proc/self (Linux only).";
    }
}
