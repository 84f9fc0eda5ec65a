using Sadg.Onnx;
using static TorchSharp.torch;

namespace Sadg.Graph.Ops;

/// <summary>Constant: the value attribute (tensor, value_float(s), value_int(s)); sparse and string values are not supported.</summary>
[OnnxOperator("Constant")]
sealed class ConstantOp : OnnxOp
{
    readonly global::Onnx.TensorProto? proto;
    readonly float[]? floats;
    readonly long[]? ints;
    readonly bool scalar;

    public ConstantOp(OpContext context) : base(context)
    {
        if (context.Has("sparse_value")) throw context.Unsupported("Constant with sparse_value");
        if (context.Has("value_string") || context.Has("value_strings")) throw context.Unsupported("Constant with a string value");
        if (context.TensorAttribute("value") is { } t) proto = t;
        else if (context.Has("value_float")) { floats = [context.Float("value_float", 0)]; scalar = true; }
        else if (context.Floats("value_floats") is { } fs) floats = fs;
        else if (context.Has("value_int")) { ints = [context.Int("value_int", 0)]; scalar = true; }
        else if (context.Ints("value_ints") is { } ls) ints = ls;
        else throw context.Error(SadgErrorCode.InvalidNode, "Constant has no value attribute");
        if (proto is not null) OnnxTensors.Validate(proto, context.File);
    }

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        if (proto is not null)
            return [OnnxTensors.ToTorch(proto, Context.File is { } f ? Path.GetDirectoryName(Path.GetFullPath(f)) : null, Context.File)];
        if (floats is not null) return [scalar ? tensor(floats[0]) : tensor(floats)];
        return [scalar ? tensor(ints![0]) : ShapeOpSupport.Longs(ints!)];
    }
}

/// <summary>ConstantOfShape: a tensor of the given shape filled with the value attribute (float 0 by default).</summary>
[OnnxOperator("ConstantOfShape")]
sealed class ConstantOfShapeOp : OnnxOp
{
    readonly double value;
    readonly long integer;
    readonly bool floating = true;
    readonly ScalarType dtype = ScalarType.Float32;

    public ConstantOfShapeOp(OpContext context) : base(context)
    {
        if (context.TensorAttribute("value") is { } t)
        {
            using var v = OnnxTensors.ToTorch(t, null, context.File);
            if (v.numel() != 1) throw context.Error(SadgErrorCode.InvalidNode, "the value attribute must hold one element");
            dtype = v.dtype;
            value = ShapeOpSupport.Scalar(v);
            floating = v.is_floating_point();
            if (!floating && v.dtype != ScalarType.Bool) integer = OpHelpers.ToLongs(v)[0];
        }
    }

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        long[] shape = OpHelpers.ToLongs(Required(inputs, 0));
        if (shape.Any(d => d < 0)) throw Context.Error(SadgErrorCode.InvalidNode, $"negative dimension in {ShapeOpSupport.Dims(shape)}");
        if (dtype == ScalarType.Bool) return [TorchScalars.Full(shape, value != 0, dtype: dtype)];
        // Integers keep full 64-bit precision.
        return [floating ? TorchScalars.Full(shape, value, dtype: dtype) : TorchScalars.Full(shape, integer, dtype: dtype)];
    }
}

/// <summary>Range (opset 11): start, limit, delta scalars of one numeric type.</summary>
[OnnxOperator("Range")]
sealed class RangeOp(OpContext context) : OnnxOp(context)
{
    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var start = Required(inputs, 0);
        var dtype = start.dtype;
        if (start.is_floating_point())
        {
            double s = ShapeOpSupport.Scalar(start), l = ShapeOpSupport.Scalar(Required(inputs, 1)), d = ShapeOpSupport.Scalar(Required(inputs, 2));
            if (d == 0) throw Context.Error(SadgErrorCode.InvalidNode, "delta is 0");
            long n = Math.Max((long)Math.Ceiling((l - s) / d), 0);
            var values = new double[n];
            for (long i = 0; i < n; i++) values[i] = s + i * d;
            return [tensor(values).to_type(dtype)];
        }
        else
        {
            long s = OpHelpers.ToLongs(start)[0], l = OpHelpers.ToLongs(Required(inputs, 1))[0], d = OpHelpers.ToLongs(Required(inputs, 2))[0];
            if (d == 0) throw Context.Error(SadgErrorCode.InvalidNode, "delta is 0");
            long n = Math.Max((long)Math.Ceiling((double)(l - s) / d), 0);
            var values = new long[n];
            for (long i = 0; i < n; i++) values[i] = s + i * d;
            return [ShapeOpSupport.Longs(values).to_type(dtype)];
        }
    }
}
