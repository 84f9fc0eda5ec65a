using Onnx;
using Sadg.Graph;
using Sadg.Graph.Ops;
using Sadg.Onnx;
using Sadg.Tests.Support;
using Xunit.Abstractions;
using static TorchSharp.torch;
using DataType = Onnx.TensorProto.Types.DataType;

namespace Sadg.Tests.Graph;

/// <summary>
/// Runs ONNX's own operator conformance tests (Debian package libonnx-testdata) through the executor: every
/// test whose operators the executor claims must match the expected outputs within rtol = atol = 1e-4.
/// Tests the executor refuses on purpose (an attribute form it does not support, a data type it does not
/// read) are listed with the reason.
/// </summary>
public class ConformanceTests(ITestOutputHelper output)
{
    const double Tolerance = 1e-4;

    /// <summary>
    /// Tests whose stored outputs ONNX Runtime does not reproduce. The executor follows ONNX Runtime (the runtime the
    /// quantized model is checked with and runs on); these compare the executor against ONNX Runtime on the test's inputs.
    /// </summary>
    static readonly Dictionary<string, string> FollowOnnxRuntime = new(StringComparer.Ordinal)
    {
        ["test_resize_downsample_scales_linear_align_corners"] =
            "ONNX 1.12's reference maps align_corners with the unrounded output length (4 · 0.6 = 2.4); ONNX Runtime, with the output's 2",
        ["test_resize_downsample_scales_cubic_align_corners"] =
            "ONNX 1.12's reference maps align_corners with the unrounded output length (4 · 0.8 = 3.2); ONNX Runtime, with the output's 3",
    };

    public static string TestDataRoot =>
        Environment.GetEnvironmentVariable("SADG_ONNX_TESTDATA") ?? "/usr/share/libonnx-testdata/data/node";

    [Fact]
    public void ClaimedOperatorsMatchOnnxConformanceData()
    {
        Assert.True(Directory.Exists(TestDataRoot),
            $"ONNX conformance data not found at {TestDataRoot}. Install it with 'apt-get install -y libonnx-testdata' (.ci/run does).");
        string? filter = Environment.GetEnvironmentVariable("SADG_CONFORMANCE_FILTER");

        var passed = new List<string>();
        var failed = new List<string>();
        var excluded = new List<string>();
        foreach (var dir in Directory.GetDirectories(TestDataRoot).Order(StringComparer.Ordinal))
        {
            string name = Path.GetFileName(dir);
            if (filter is not null && !System.Text.RegularExpressions.Regex.IsMatch(name, filter)) continue;
            var proto = ModelProto.Parser.ParseFrom(File.ReadAllBytes(Path.Combine(dir, "model.onnx")));
            if (!proto.Graph.Node.All(n => OperatorRegistry.IsSupported(n.Domain, n.OpType))) continue;

            string? verdict = RunOne(dir, proto, FollowOnnxRuntime.ContainsKey(name), out bool wasExcluded);
            if (wasExcluded) excluded.Add($"{name}: {verdict}");
            else if (verdict is null) passed.Add(FollowOnnxRuntime.TryGetValue(name, out string? why) ? $"{name} (against ONNX Runtime: {why})" : name);
            else failed.Add($"{name}: {verdict}");
        }

        foreach (var e in excluded) output.WriteLine($"excluded {e}");
        foreach (var f in failed) output.WriteLine($"FAILED {f}");
        output.WriteLine($"conformance: {passed.Count} passed, {failed.Count} failed ({excluded.Count} excluded on purpose, listed above)");
        File.WriteAllLines(Path.Combine(AppContext.BaseDirectory, "conformance.txt"),
            passed.Select(p => $"passed {p}").Concat(failed.Select(f => $"FAILED {f}")).Concat(excluded.Select(e => $"excluded {e}")));

        Assert.True(failed.Count == 0, $"conformance: {passed.Count} passed, {failed.Count} failed\n" + string.Join("\n", failed));
        if (filter is null)
            Assert.True(passed.Count >= 150, $"Only {passed.Count} conformance tests ran; the executor claims more operators than that covers.");
    }

    static string? RunOne(string dir, ModelProto proto, bool againstOnnxRuntime, out bool excluded)
    {
        excluded = false;
        string data = Path.Combine(dir, "test_data_set_0");
        var inputs = Directory.GetFiles(data, "input_*.pb").OrderBy(IndexOf).Select(Read).ToList();
        var expected = Directory.GetFiles(data, "output_*.pb").OrderBy(IndexOf).Select(Read).ToList();
        var declared = proto.Graph.Input.Where(i => proto.Graph.Initializer.All(t => t.Name != i.Name)).Concat(proto.Graph.Output).ToList();
        if (declared.FirstOrDefault(v => v.Type?.TensorType is null) is { } notTensor)
        {
            excluded = true;
            return $"'{notTensor.Name}' is not a tensor ({notTensor.Type?.ValueCase.ToString() ?? "no type"}); the executor runs tensors only";
        }
        var graphInputs = declared.Take(declared.Count - proto.Graph.Output.Count).ToList();
        var pairs = graphInputs.Zip(inputs).Concat(proto.Graph.Output.Zip(expected));
        if (pairs.FirstOrDefault(p => p.First.Type.TensorType.ElemType != p.Second.DataType) is { First: not null } mismatch)
        {
            excluded = true;
            return $"the test data stores '{mismatch.First.Name}' as {(DataType)mismatch.Second.DataType} while the model declares " +
                $"{(DataType)mismatch.First.Type.TensorType.ElemType} (ONNX 1.12's bfloat16 data are raw UINT16 bits with truncating rounding)";
        }
        var unreadable = inputs.Concat(expected).Select(t => (DataType)t.DataType)
            .FirstOrDefault(t => OnnxTensors.ElementSize(t) < 0 || t is DataType.Int4 or DataType.Uint4);
        if (unreadable != default)
        {
            excluded = true;
            return $"data type {unreadable} is not an executor type";
        }

        using var scope = NewDisposeScope();
        GraphModule graph;
        try
        {
            graph = new GraphModule(OnnxModel.FromProto(proto, Path.Combine(dir, "model.onnx")));
        }
        catch (SadgException e) when (e.Code is SadgErrorCode.UnsupportedAttribute or SadgErrorCode.UnsupportedDataType)
        {
            excluded = true;
            return e.Message;
        }
        catch (Exception e)
        {
            return $"build: {e.GetType().Name}: {e.Message}";
        }

        using (graph)
        {
            try
            {
                var feeds = new Dictionary<string, Tensor>();
                for (int i = 0; i < graph.InputNames.Count && i < inputs.Count; i++)
                    feeds[graph.InputNames[i]] = OnnxTensors.ToTorch(inputs[i]);
                var outputs = graph.Run(feeds, graph.OutputNames);
                var reference = againstOnnxRuntime ? OrtReference.Run(proto, feeds) : null;
                for (int i = 0; i < expected.Count; i++)
                {
                    var want = reference?[i] ?? OnnxTensors.ToTorch(expected[i]);
                    var got = outputs[graph.OutputNames[i]];
                    string? diff = Compare(want, got);
                    if (diff is not null) return $"output {i} '{graph.OutputNames[i]}': {diff}";
                }
                return null;
            }
            catch (SadgException e) when (e.Code is SadgErrorCode.UnsupportedAttribute or SadgErrorCode.UnsupportedDataType)
            {
                excluded = true;
                return e.Message;
            }
            catch (Exception e)
            {
                return $"run: {e.GetType().Name}: {e.Message.Split('\n')[0]}";
            }
        }
    }

    public static string? Compare(Tensor want, Tensor got)
    {
        if (!want.shape.SequenceEqual(got.shape))
            return $"shape [{string.Join(", ", got.shape)}], expected [{string.Join(", ", want.shape)}]";
        if (want.is_floating_point() != got.is_floating_point() || (want.dtype == ScalarType.Bool) != (got.dtype == ScalarType.Bool))
            return $"dtype {got.dtype}, expected {want.dtype}";
        if (want.numel() == 0) return null;
        var w = want.to_type(ScalarType.Float64);
        var g = got.detach().cpu().to_type(ScalarType.Float64);
        var bothNan = w.isnan().logical_and(g.isnan());
        var bothInf = w.isinf().logical_and(g.eq(w));
        var err = (w - g).abs();
        var ok = err.le(Tolerance + Tolerance * w.abs()).logical_or(bothNan).logical_or(bothInf);
        if (ok.all().item<bool>()) return null;
        double maxErr = err.masked_fill(ok, 0).max().item<double>();
        return $"max abs error {maxErr:G4} beyond rtol/atol {Tolerance}";
    }

    static TensorProto Read(string path) => TensorProto.Parser.ParseFrom(File.ReadAllBytes(path));

    static int IndexOf(string path) => int.Parse(Path.GetFileNameWithoutExtension(path).Split('_')[1]);
}
