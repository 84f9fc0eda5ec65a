using static TorchSharp.torch;

namespace Sadg.Graph.Ops;

/// <summary>
/// One-input math: Neg, Abs, Exp, Log, Sqrt, Reciprocal, Erf, Floor, Ceil, Round (halves to even), Sign.
/// Neg, Abs and Sign keep integer types.
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
        var other => throw new InvalidOperationException($"UnaryMathOp does not implement {other}."),
    };

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs) => [function(Required(inputs, 0))];
}
