using TorchSharp;
using static TorchSharp.torch;

namespace Sadg.Graph.Ops;

/// <summary>Small conversions shared by operator implementations.</summary>
public static class OpHelpers
{
    /// <summary>The values of an integer tensor (shapes, axes, pads), read on the CPU.</summary>
    public static long[] ToLongs(Tensor t)
    {
        using var cpu = t.detach().cpu().to_type(ScalarType.Int64).contiguous();
        return cpu.data<long>().ToArray();
    }

    /// <summary>The values of a float tensor (scales), read on the CPU.</summary>
    public static float[] ToFloats(Tensor t)
    {
        using var cpu = t.detach().cpu().to_type(ScalarType.Float32).contiguous();
        return cpu.data<float>().ToArray();
    }

    /// <summary>Moves <paramref name="t"/> to <paramref name="like"/>'s device when they differ (CPU shape-derived constants meeting GPU data).</summary>
    public static Tensor OnDeviceOf(Tensor t, Tensor like) => OnDevice(t, like.device);

    /// <summary><paramref name="t"/> on <paramref name="device"/>, moved only when it is elsewhere.</summary>
    public static Tensor OnDevice(Tensor t, Device device) => t.device == device ? t : t.to(device);

    /// <summary>
    /// Puts <paramref name="b"/> on <paramref name="a"/>'s device, or <paramref name="a"/> on <paramref name="b"/>'s
    /// when only <paramref name="a"/> is on the CPU (a shape-derived constant meeting accelerator data).
    /// </summary>
    public static (Tensor A, Tensor B) Align(Tensor a, Tensor b)
    {
        if (a.device == b.device) return (a, b);
        return a.device.type == DeviceType.CPU ? (OnDeviceOf(a, b), b) : (a, OnDeviceOf(b, a));
    }

    /// <summary>The device every operand of an elementwise op should be on: the first non-CPU device, else the CPU.</summary>
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

    /// <summary>A negative axis counted from the end, as ONNX allows.</summary>
    public static long NormalizeAxis(long axis, long rank) => axis < 0 ? axis + rank : axis;
}
