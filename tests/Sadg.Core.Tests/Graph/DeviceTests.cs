using Sadg.Graph;
using Sadg.Onnx;
using Sadg.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;
using DataType = Onnx.TensorProto.Types.DataType;

namespace Sadg.Tests.Graph;

public class DeviceTests
{
    static OnnxModel Model()
    {
        var g = new OnnxGraphBuilder();
        g.AddInput("x", DataType.Float, -1, 3, 4, 4);
        using var w = randn(1, 3, 1, 1, generator: new Generator(3));
        g.AddInitializer("w", w);
        g.AddNode("Mul", ["x", "w"], ["m"]);
        g.AddNode("Relu", ["m"], ["y"]);
        g.AddOutput("y", DataType.Float, -1, 3, 4, 4);
        return OnnxModel.FromProto(g.Build(opset: 13));
    }

    [NoCudaFact]
    public void CudaWithoutABackendIsAClearError()
    {
        var e = Assert.Throws<SadgException>(() => new GraphModule(Model(), new Device(DeviceType.CUDA, 0)));
        Assert.Equal(SadgErrorCode.DeviceUnavailable, e.Code);
        Assert.Contains("TorchSharp-cuda-linux", e.Message);
    }

    [CudaFact]
    public void RunsOnCudaLikeOnCpu()
    {
        using var scope = NewDisposeScope();
        var x = randn(4, 3, 4, 4);
        using var cpuGraph = new GraphModule(Model());
        using var gpuGraph = new GraphModule(Model(), CUDA);
        var gpu = gpuGraph.forward(x.cuda()).cpu();
        Assert.True(gpu.allclose(cpuGraph.forward(x), 1e-5, 1e-5));
    }
}
