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
    public static Tensor OnDeviceOf(Tensor t, Tensor like) => t.device == like.device ? t : t.to(like.device);

    /// <summary>A negative axis counted from the end, as ONNX allows.</summary>
    public static long NormalizeAxis(long axis, long rank) => axis < 0 ? axis + rank : axis;
}
