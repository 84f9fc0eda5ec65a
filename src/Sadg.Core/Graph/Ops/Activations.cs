using static TorchSharp.torch;

namespace Sadg.Graph.Ops;

[OnnxOperator("Relu")]
sealed class ReluOp(OpContext context) : OnnxOp(context)
{
    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs) => [nn.functional.relu(Required(inputs, 0))];
}
