using Sadg.Generation;
using Sadg.Graph;
using Sadg.Onnx;

namespace Sadg.Pipeline;

/// <summary>Where the generation's input prior comes from (<see cref="InputPriorChoice.Choose"/>).</summary>
public enum InputPriorOrigin
{
    /// <summary>No input prior term (<c>--input-prior off</c>).</summary>
    Off,
    /// <summary>Standardized because the user asked for it (<c>--input-prior standardized</c>).</summary>
    Standardized,
    /// <summary>The user's statement, the model's metadata or its uint8 input (<see cref="InputStandardization"/>).</summary>
    Stated,
    /// <summary>A fit to the statistics of the model's first BatchNormalization node (<see cref="InputPrior.FitToFirstBatchNorm"/>).</summary>
    FirstBatchNorm,
    /// <summary>What the graph's own input normalization implies (<see cref="InputPrior.FromInputNormalization"/>).</summary>
    InputNormalization,
    /// <summary>Nothing to go by: standardized is assumed (warning SADG2002).</summary>
    Assumed,
}

/// <summary>
/// The order in which a run chooses its input prior, one rule for quantize (which then fits the BatchNorm prior) and
/// <c>inspect</c> (which only says where it will come from): <paramref name="mode"/> off or standardized; else what is
/// stated; else the first BatchNormalization; else the graph's input normalization; else standardized, assumed.
/// </summary>
public static class InputPriorChoice
{
    /// <summary>
    /// The origin of the prior and, for every origin but <see cref="InputPriorOrigin.Off"/> and
    /// <see cref="InputPriorOrigin.FirstBatchNorm"/> (a fit that takes seconds and a seed), the prior itself.
    /// </summary>
    /// <param name="fp">The graph as the pipeline builds it (channels-first input).</param>
    public static (InputPriorOrigin Origin, InputPrior? Prior) Choose(GraphModule fp, InputPriorMode mode, InputStandardization standardization,
        ImageInput input)
    {
        switch (mode)
        {
            case InputPriorMode.Off: return (InputPriorOrigin.Off, null);
            case InputPriorMode.Standardized:
                return (InputPriorOrigin.Standardized, InputPrior.Standardized(input.Channels, "assumed standardized: --input-prior standardized"));
        }
        if (standardization.Prior(input.Channels) is { } stated) return (InputPriorOrigin.Stated, stated);
        if (BnStatisticsLoss.HasStatistics(fp)) return (InputPriorOrigin.FirstBatchNorm, null);
        if (InputPrior.FromInputNormalization(fp, input.Channels, input.Height, input.Width) is { } normalized)
            return (InputPriorOrigin.InputNormalization, normalized);
        return (InputPriorOrigin.Assumed, InputPrior.Standardized(input.Channels,
            "assumed standardized: the model has no BatchNormalization to infer it from; state --input-range or --input-mean/--input-std"));
    }
}
