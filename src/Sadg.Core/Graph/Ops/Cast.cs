using Sadg.Onnx;
using static TorchSharp.torch;
using DataType = Onnx.TensorProto.Types.DataType;

namespace Sadg.Graph.Ops;

/// <summary>
/// Cast (to the <c>to</c> attribute's type) and CastLike (opset 15, to the second input's type). Float to integer
/// truncates toward zero; anything to bool is "not zero". Unsigned ONNX types held in wider signed tensors
/// (uint16 in int32, uint32 in int64) wrap as the unsigned type would. Strings and 8-bit floats are not
/// executor types.
/// </summary>
[OnnxOperator("Cast")]
sealed class CastOp : OnnxOp
{
    readonly DataType target;
    readonly ScalarType type;

    public CastOp(OpContext context) : base(context)
    {
        if (!context.Has("to")) throw context.Error(SadgErrorCode.InvalidNode, "the 'to' attribute is required");
        target = (DataType)context.Int("to", 0);
        type = CastTypes.TorchType(context, target);
    }

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs) => [CastTypes.Convert(Required(inputs, 0), target, type)];
}

[OnnxOperator("CastLike")]
sealed class CastLikeOp(OpContext context) : OnnxOp(context)
{
    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var x = Required(inputs, 0);
        var like = Required(inputs, 1);
        return [x.dtype == like.dtype ? x.alias() : CastTypes.Convert(x, OnnxTensors.ToOnnxType(like.dtype), like.dtype)];
    }
}

static class CastTypes
{
    public static ScalarType TorchType(OpContext context, DataType target)
    {
        if (target is DataType.String) throw context.Unsupported("Cast to string");
        if (target is DataType.Int4 or DataType.Uint4) throw context.Unsupported($"Cast to {target}");
        try
        {
            return OnnxTensors.ToTorchType(target);
        }
        catch (SadgException)
        {
            throw context.Unsupported($"Cast to data type {target}");
        }
    }

    public static Tensor Convert(Tensor x, DataType target, ScalarType type)
    {
        if (x.dtype == type && target is not (DataType.Uint16 or DataType.Uint32)) return x.alias();
        return target switch
        {
            DataType.Uint16 => WrapUnsigned(x, type, 0xFFFF),
            DataType.Uint32 => WrapUnsigned(x, type, 0xFFFFFFFFL),
            _ => x.to_type(type),
        };
    }

    static Tensor WrapUnsigned(Tensor x, ScalarType type, long mask)
    {
        var integral = x.is_floating_point() ? x.trunc() : x;
        return integral.to_type(ScalarType.Int64).bitwise_and(mask).to_type(type);
    }
}
