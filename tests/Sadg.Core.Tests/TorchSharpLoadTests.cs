using static TorchSharp.torch;

namespace Sadg.Tests;

public class TorchSharpLoadTests
{
    [Fact]
    public void ForwardAndBackwardRunOnCpu()
    {
        using var scope = NewDisposeScope();
        var w = randn(4, 3, requires_grad: true);
        var x = randn(2, 4);
        var y = x.matmul(w).relu().sum();
        y.backward();
        Assert.NotNull(w.grad);
        Assert.Equal(new long[] { 4, 3 }, w.grad!.shape);
        // d/dw sum(relu(xw)) = x^T 1[xw>0]
        var expected = x.t().matmul(x.matmul(w).gt(0).to_type(ScalarType.Float32));
        Assert.True(w.grad.allclose(expected, 1e-5, 1e-6));
    }
}
