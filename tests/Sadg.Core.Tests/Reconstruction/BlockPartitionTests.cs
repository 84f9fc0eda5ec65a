using Sadg.Graph;
using Sadg.Onnx;
using Sadg.Reconstruction;
using Sadg.Tests.Support;
using DataType = Onnx.TensorProto.Types.DataType;

namespace Sadg.Tests.Reconstruction;

public class BlockPartitionTests
{
    static (GraphModule Graph, IReadOnlyList<Block> Blocks) Partition(global::Onnx.ModelProto proto)
    {
        var graph = new GraphModule(OnnxModel.FromProto(proto));
        return (graph, BlockPartition.Partition(graph, graph.IsQuantizable));
    }

    [Fact]
    public void ResidualBlocksAreNotCutInside()
    {
        var (graph, blocks) = Partition(TestModels.ResNet());
        using var _ = graph;
        // Every Add of a residual block lies inside a block together with both of its branches.
        foreach (var add in graph.Nodes.Where(n => n.OpType == "Add"))
        {
            var block = blocks.Single(b => add.Index >= b.StartNode && add.Index < b.EndNode);
            foreach (var input in add.Inputs)
            {
                var producer = graph.Producer(input)!;
                Assert.InRange(producer.Index, block.StartNode, block.EndNode - 1);
            }
        }
        // Blocks tile the graph, each starts where the previous ended, and every quantizable op is in one.
        Assert.Equal(0, blocks[0].StartNode);
        Assert.Equal(graph.Nodes.Count, blocks[^1].EndNode);
        for (int i = 1; i < blocks.Count; i++)
        {
            Assert.Equal(blocks[i - 1].EndNode, blocks[i].StartNode);
            Assert.Equal(blocks[i - 1].Output, blocks[i].Input);
        }
        int quantizable = graph.Nodes.Count(graph.IsQuantizable);
        Assert.Equal(quantizable, blocks.Sum(b => b.QuantizedNodes.Count));
        Assert.Equal(graph.InputNames[0], blocks[0].Input);
        Assert.Equal(graph.OutputNames[0], blocks[^1].Output);
        // Stem, two residual blocks, and the classifier head.
        Assert.Equal(4, blocks.Count);
    }

    [Fact]
    public void ChainsAreCutAtEveryQuantizedLayer()
    {
        var (graph, blocks) = Partition(TestModels.Vgg());
        using var _ = graph;
        Assert.All(blocks, b => Assert.Single(b.QuantizedNodes));
        Assert.Equal(graph.Nodes.Count(graph.IsQuantizable), blocks.Count);
    }

    [Fact]
    public void A_depthwise_convolution_is_reconstructed_with_the_layers_after_it()
    {
        using var graph = new GraphModule(OnnxModel.FromProto(TestModels.MobileNetV2()));
        bool Quantizable(GraphNode n) => graph.IsQuantizable(n);
        var depthwise = graph.Nodes.Where(n => BlockPartition.IsDepthwise(graph, n)).ToList();
        Assert.NotEmpty(depthwise);
        Assert.DoesNotContain(graph.Nodes.Where(n => n.OpType == "Conv").Except(depthwise), n => BlockPartition.IsDepthwise(graph, n));

        var blocks = BlockPartition.Partition(graph, Quantizable);
        // No block holds only depthwise convolutions; each depthwise shares its block with the pointwise layer after it.
        Assert.DoesNotContain(blocks, b => b.QuantizedNodes.All(n => BlockPartition.IsDepthwise(graph, n)));
        foreach (var dw in depthwise)
        {
            var block = blocks.Single(b => b.QuantizedNodes.Contains(dw));
            Assert.Contains(block.QuantizedNodes, n => n.Index > dw.Index && n.OpType == "Conv" && !BlockPartition.IsDepthwise(graph, n));
        }
        // The ablation puts back one block per cut segment: more blocks, some of them a depthwise alone.
        var alone = BlockPartition.Partition(graph, Quantizable, depthwiseAlone: true);
        Assert.True(alone.Count > blocks.Count);
        Assert.Contains(alone, b => b.QuantizedNodes.All(n => BlockPartition.IsDepthwise(graph, n)));
        Assert.Equal(alone.Sum(b => b.QuantizedNodes.Count), blocks.Sum(b => b.QuantizedNodes.Count));
    }

    [Fact]
    public void BlockRangesRunOnTheirOwn()
    {
        var (graph, blocks) = Partition(TestModels.MobileNetV2());
        using var _ = graph;
        using var scope = TorchSharp.torch.NewDisposeScope();
        var x = TestModels.Input(2);
        var full = graph.forward(x);
        var value = x;
        foreach (var block in blocks)
            value = graph.Run(new Dictionary<string, TorchSharp.torch.Tensor> { [block.Input] = value }, [block.Output], block.StartNode, block.EndNode)[block.Output];
        Assert.True(value.allclose(full, 1e-5, 1e-6));
    }

    [Fact]
    public void AModelWithNothingToQuantizeIsAClearError()
    {
        var g = new OnnxGraphBuilder();
        g.AddInput("image", DataType.Float, -1, 3, 8, 8);
        g.AddNode("Relu", ["image"], ["r"]);
        g.AddNode("GlobalAveragePool", ["r"], ["y"]);
        g.AddOutput("y", DataType.Float, -1, 3, 1, 1);
        var e = Assert.Throws<SadgException>(() => Partition(g.Build()));
        Assert.Equal(SadgErrorCode.NothingToQuantize, e.Code);
    }
}
