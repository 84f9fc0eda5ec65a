using static TorchSharp.torch;

namespace Sadg.Graph.Ops;

/// <summary>
/// One-input math: Neg, Abs, Exp, Log, Sqrt, Reciprocal, Erf, Floor, Ceil, Round (halves to even), Sign, and the
/// trigonometric and hyperbolic functions and their inverses. Neg, Abs and Sign keep integer types.
/// </summary>
[OnnxOperator("Neg")]
[OnnxOperator("Abs")]
[OnnxOperator("Exp")]
[OnnxOperator("Log")]
[OnnxOperator("Sqrt")]
[OnnxOperator("Reciprocal")]
[OnnxOperator("Erf")]
[OnnxOperator("Floor")]
[OnnxOperator("Ceil")]
[OnnxOperator("Round")]
[OnnxOperator("Sign")]
[OnnxOperator("Sin")]
[OnnxOperator("Cos")]
[OnnxOperator("Tan")]
[OnnxOperator("Asin")]
[OnnxOperator("Acos")]
[OnnxOperator("Atan")]
[OnnxOperator("Sinh")]
[OnnxOperator("Cosh")]
[OnnxOperator("Asinh")]
[OnnxOperator("Acosh")]
[OnnxOperator("Atanh")]
sealed class UnaryMathOp(OpContext context) : OnnxOp(context)
{
    readonly Func<Tensor, Tensor> function = context.Node.OpType switch
    {
        "Neg" => x => x.neg(),
        "Abs" => x => x.abs(),
        "Exp" => x => x.exp(),
        "Log" => x => x.log(),
        "Sqrt" => x => x.sqrt(),
        "Reciprocal" => x => x.reciprocal(),
        "Erf" => x => x.erf(),
        "Floor" => x => x.floor(),
        "Ceil" => x => x.ceil(),
        "Round" => x => x.round(),
        "Sign" => x => x.sign(),
        "Sin" => x => x.sin(),
        "Cos" => x => x.cos(),
        "Tan" => x => x.tan(),
        "Asin" => x => x.asin(),
        "Acos" => x => x.acos(),
        "Atan" => x => x.atan(),
        "Sinh" => x => x.sinh(),
        "Cosh" => x => x.cosh(),
        "Asinh" => x => x.asinh(),
        "Acosh" => x => x.acosh(),
        "Atanh" => x => x.atanh(),
        var other => throw new InvalidOperationException($"UnaryMathOp does not implement {other}."),
    };

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs) => [function(Required(inputs, 0))];
}

/// <summary>IsNaN, and IsInf with detect_negative / detect_positive (both 1 by default): bool.</summary>
[OnnxOperator("IsNaN")]
[OnnxOperator("IsInf")]
sealed class FloatClassOp(OpContext context) : OnnxOp(context)
{
    readonly bool nan = context.Node.OpType == "IsNaN";
    readonly bool negative = context.Int("detect_negative", 1) != 0;
    readonly bool positive = context.Int("detect_positive", 1) != 0;

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var x = Required(inputs, 0);
        if (nan) return [x.isnan()];
        if (negative && positive) return [x.isinf()];
        if (!negative && !positive) return [zeros(x.shape, ScalarType.Bool, x.device)];
        return [negative ? x.isneginf() : x.isposinf()];
    }
}
