using TorchSharp;
using static TorchSharp.torch;

namespace Sadg.Graph.Ops;

/// <summary>Device alignment for elementwise ops whose operands may come from different devices.</summary>
static class ElementwiseHelpers
{
    /// <summary>
    /// Puts <paramref name="b"/> on <paramref name="a"/>'s device, or <paramref name="a"/> on <paramref name="b"/>'s
    /// when only <paramref name="a"/> is on the CPU (a shape-derived constant meeting accelerator data).
    /// </summary>
    public static (Tensor A, Tensor B) Align(Tensor a, Tensor b)
    {
        if (a.device == b.device) return (a, b);
        return a.device.type == DeviceType.CPU ? (OpHelpers.OnDeviceOf(a, b), b) : (a, OpHelpers.OnDeviceOf(b, a));
    }

    /// <summary>The device every operand should be on: the first non-CPU device, else the CPU.</summary>
    public static Device CommonDevice(IEnumerable<Tensor> tensors)
    {
        Device? found = null;
        foreach (var t in tensors)
        {
            if (t.device.type != DeviceType.CPU) return t.device;
            found ??= t.device;
        }
        return found ?? CPU;
    }

    public static Tensor To(Tensor t, Device device) => t.device == device ? t : t.to(device);
}
