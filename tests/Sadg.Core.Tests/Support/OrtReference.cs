using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using DenseTensor = Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<float>;
using Tensor = TorchSharp.torch.Tensor;
using Onnx;
using Sadg.Graph;
using Sadg.Onnx;
using static TorchSharp.torch;

namespace Sadg.Tests.Support;

/// <summary>ONNX Runtime (CPU) as the reference the executor is compared against.</summary>
public static class OrtReference
{
    /// <summary>Runs <paramref name="model"/> in ONNX Runtime on float inputs and returns every graph output as a float tensor.</summary>
    public static Tensor[] Run(ModelProto model, IReadOnlyDictionary<string, Tensor> inputs,
        GraphOptimizationLevel optimization = GraphOptimizationLevel.ORT_DISABLE_ALL)
    {
        using var options = new SessionOptions { GraphOptimizationLevel = optimization };
        using var session = new InferenceSession(model.ToByteArray(), options);
        return Run(session, inputs);
    }

    /// <summary>Runs the model file at <paramref name="path"/> (as a deployed model is run) on float inputs.</summary>
    public static Tensor[] Run(string path, IReadOnlyDictionary<string, Tensor> inputs,
        GraphOptimizationLevel optimization = GraphOptimizationLevel.ORT_DISABLE_ALL)
    {
        using var options = new SessionOptions { GraphOptimizationLevel = optimization };
        using var session = new InferenceSession(path, options);
        return Run(session, inputs);
    }

    /// <summary>Runs an open session on float inputs and returns every output as a float tensor.</summary>
    public static Tensor[] Run(InferenceSession session, IReadOnlyDictionary<string, Tensor> inputs)
    {
        var values = inputs.Select(kv =>
        {
            var cpu = kv.Value.detach().cpu().to_type(ScalarType.Float32).contiguous();
            var dense = new DenseTensor(cpu.data<float>().ToArray(), cpu.shape.Select(d => (int)d).ToArray());
            return NamedOnnxValue.CreateFromTensor(kv.Key, dense);
        }).ToList();
        using var results = session.Run(values);
        return results.Select(r =>
        {
            var t = r.AsTensor<float>();
            return tensor(t.ToArray(), t.Dimensions.ToArray().Select(d => (long)d).ToArray());
        }).ToArray();
    }

    /// <summary>Max |executor − ORT| over the first output, and the output's scale (max |ORT|).</summary>
    public static (double MaxAbsDiff, double Scale) CompareWithExecutor(ModelProto model, Tensor input)
    {
        using var scope = NewDisposeScope();
        using var graph = new GraphModule(OnnxModel.FromProto(model));
        var ours = graph.forward(input).detach();
        var reference = Run(model, new Dictionary<string, Tensor> { [graph.InputNames[0]] = input })[0];
        Assert.Equal(reference.shape, ours.shape);
        return ((ours - reference).abs().max().item<float>(), reference.abs().max().item<float>());
    }
}
