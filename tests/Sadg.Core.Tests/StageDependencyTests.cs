using NetArchTest.Rules;

namespace Sadg.Tests;

/// <summary>
/// Core's folders are the pipeline's stages, in order; each may use only the ones before it (read from the compiled
/// IL, so a use inside a method body or a lambda counts).
/// </summary>
public class StageDependencyTests
{
    /// <summary>The stages in order: the root namespace (errors, files, TorchSharp helpers) first, the pipeline last.</summary>
    static readonly string[] Stages =
        ["Sadg", "Sadg.Onnx", "Sadg.Data", "Sadg.Graph", "Sadg.Generation", "Sadg.Quantization", "Sadg.Reconstruction", "Sadg.Export", "Sadg.Pipeline"];

    public static TheoryData<int> StageIndices()
    {
        var data = new TheoryData<int>();
        for (int i = 0; i < Stages.Length; i++) data.Add(i);
        return data;
    }

    [Theory]
    [MemberData(nameof(StageIndices))]
    public void A_stage_uses_only_earlier_stages(int stage)
    {
        string[] later = Stages[(stage + 1)..];
        if (later.Length == 0) return;
        var types = Types.InAssembly(typeof(Sadg.Pipeline.QuantizationPipeline).Assembly).That();
        var inStage = stage == 0
            ? types.ResideInNamespaceMatching(@"^Sadg$")
            : types.ResideInNamespaceMatching($@"^{System.Text.RegularExpressions.Regex.Escape(Stages[stage])}(\..+)?$");
        var result = inStage.ShouldNot().HaveDependencyOnAny(later).GetResult();
        Assert.True(result.IsSuccessful,
            $"{Stages[stage]} uses a later stage ({string.Join(", ", later)}): " +
            string.Join(", ", result.FailingTypes?.Select(t => t.FullName) ?? []));
    }

    [Fact]
    public void Every_namespace_of_Core_is_a_stage()
    {
        var namespaces = typeof(Sadg.Pipeline.QuantizationPipeline).Assembly.GetTypes()
            .Select(t => t.Namespace).Where(n => n is not null && n.StartsWith("Sadg", StringComparison.Ordinal))
            .Select(n => Stages.Where(s => n == s || n!.StartsWith(s + ".", StringComparison.Ordinal)).LastOrDefault() is null ? n : null)
            .Where(n => n is not null).Distinct().ToList();
        Assert.True(namespaces.Count == 0, $"Namespaces outside the stage list: {string.Join(", ", namespaces)}");
    }
}
