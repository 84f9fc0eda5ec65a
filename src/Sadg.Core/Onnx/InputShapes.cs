using System.Globalization;
using Onnx;

namespace Sadg.Onnx;

/// <summary>
/// The image size (C, H, W) Sadg generates and calibrates at, for models whose image input leaves some of those
/// dimensions free (<c>[N, 3, 48, W]</c>, as OCR and detection models declare). The batch dimension is never set
/// here: a free batch stays free, and a batch fixed to 1 (as CNTK exports) stays 1 in the written model.
/// </summary>
public static class InputShapes
{
    static readonly string[] AxisNames = ["N", "C", "H", "W"];

    /// <summary>Parses <c>C,H,W</c> (also <c>CxHxW</c>): three whole numbers ≥ 1 (the schema's rule), else SADG1502.</summary>
    public static int[] Parse(string text) => QuantizeSchema.TryShape(text, out var shape) ? shape!
        : throw new SadgException(SadgErrorCode.InvalidOptionValue,
            $"{QuantizeSchema.InputShape.Label} must be {QuantizeSchema.InputShape.Requirement}, not \"{text}\".");

    /// <summary><c>C,H,W</c>, the form <see cref="Parse"/> reads and the canonical options hold.</summary>
    public static string Format(IReadOnlyList<int> chw) => QuantizeSchema.Ints(chw)!;

    /// <summary>A dimension as ONNX declares it: its size, its symbolic name, or "?".</summary>
    internal static string Describe(TensorShapeProto.Types.Dimension d) =>
        d.DimValue > 0 ? d.DimValue.ToString(CultureInfo.InvariantCulture) : string.IsNullOrEmpty(d.DimParam) ? "?" : d.DimParam;

    /// <summary>
    /// The SADG1107 error for an image input whose C, H or W is free, naming each free dimension where the input
    /// declares it (<paramref name="channelsLast"/>: <c>[N, H, W, C]</c>); null when none is.
    /// </summary>
    internal static SadgException? FreeDimensionError(ValueInfoProto input, bool channelsLast, string? file)
    {
        var dims = input.Type.TensorType.Shape.Dim;
        var axes = InputLayout.Axes(channelsLast);
        var free = Enumerable.Range(1, 3).Where(a => dims[axes[a]].DimValue <= 0).ToList();
        if (free.Count == 0) return null;
        string shape = "[" + string.Join(", ", dims.Select(Describe)) + "]";
        string names = string.Join(", ", free.Select(a => $"{AxisNames[a]} ('{Describe(dims[axes[a]])}', dimension {axes[a]})"));
        string example = string.Join(",", Enumerable.Range(1, 3).Select(a => dims[axes[a]].DimValue > 0 ? Describe(dims[axes[a]]) : AxisNames[a]));
        string layout = channelsLast ? " (channels-last: the graph turns it to N, C, H, W)" : "";
        return new SadgException(SadgErrorCode.InputShapeRequired,
            $"The model's input '{input.Name}' is {shape}{layout}: {names} {(free.Count == 1 ? "is" : "are")} free, so Sadg does not know what " +
            $"size of images to generate. Give the size with {QuantizeSchema.InputShape.Flag} {example} (MSBuild: {QuantizeSchema.InputShape.Name}=\"{example}\"); " +
            "the written model keeps the free dimension.", file);
    }

    /// <summary>
    /// <paramref name="model"/> with its image input's C, H and W set to <paramref name="chw"/> (the batch as declared;
    /// each where the input declares it, channels-first or channels-last), or the model itself when
    /// <paramref name="chw"/> is null or changes nothing. A given size that contradicts a fixed dimension is SADG1502;
    /// a model without a single rank-4 float input is SADG1102.
    /// </summary>
    public static OnnxModel Apply(OnnxModel model, IReadOnlyList<int>? chw)
    {
        if (chw is null) return model;
        if (chw.Count != 3 || chw.Any(d => d < 1))
            throw new SadgException(SadgErrorCode.InvalidOptionValue, $"{QuantizeSchema.InputShape.Label} must be {QuantizeSchema.InputShape.Requirement}, not {Format(chw)}.");
        var input = ImageInputProto(model);
        var axes = InputLayout.Axes(InputLayout.IsChannelsLast(model.Graph, input.Name));
        var dims = input.Type.TensorType.Shape.Dim;
        for (int a = 1; a <= 3; a++)
            if (dims[axes[a]].DimValue > 0 && dims[axes[a]].DimValue != chw[a - 1])
                throw new SadgException(SadgErrorCode.InvalidOptionValue,
                    $"{QuantizeSchema.InputShape.Label} {Format(chw)} does not fit the model: its input '{input.Name}' is " +
                    $"[{string.Join(", ", dims.Select(Describe))}], with {AxisNames[a]} fixed at {dims[axes[a]].DimValue}.", model.Path);
        if (Enumerable.Range(1, 3).All(a => dims[axes[a]].DimValue > 0)) return model;

        var proto = model.Proto.Clone();
        var pinned = proto.Graph.Input.First(v => v.Name == input.Name).Type.TensorType.Shape.Dim;
        for (int a = 1; a <= 3; a++) pinned[axes[a]] = new TensorShapeProto.Types.Dimension { DimValue = chw[a - 1] };
        return OnnxModel.FromProto(proto, model.Path);
    }

    /// <summary>
    /// The model the pipeline works on: <see cref="Apply"/>'s, in <see cref="GraphCanonicalization"/>'s form (weights
    /// as initializers, every node named), its input declared float where it takes uint8 pixels that the graph casts
    /// (<see cref="AsFloatInput"/>), turned channels-first where its input is channels-last
    /// (<see cref="InputLayout.ChannelsFirst"/>). <see cref="RestoreInput"/> undoes the size, the type and the layout
    /// in what is written; the canonical form stays (the same values).
    /// </summary>
    public static OnnxModel ForPipeline(OnnxModel model, IReadOnlyList<int>? chw) =>
        InputLayout.ChannelsFirst(AsFloatInput(GraphCanonicalization.Canonical(Apply(model, chw))));

    /// <summary>
    /// <paramref name="model"/> itself, or, when its image input is uint8 pixels that every reader casts to float
    /// (<see cref="OnnxModel.IsBytePixelInput"/>), a copy whose input is declared float: the Casts then change nothing,
    /// and generation and reconstruction feed it float images in the same units (0 … 255).
    /// </summary>
    public static OnnxModel AsFloatInput(OnnxModel model)
    {
        var inputs = model.RuntimeInputs;
        if (inputs.Count != 1 || !model.IsBytePixelInput(inputs[0])) return model;
        var proto = model.Proto.Clone();
        proto.Graph.Input.First(v => v.Name == inputs[0].Name).Type.TensorType.ElemType = (int)TensorProto.Types.DataType.Float;
        return OnnxModel.FromProto(proto, model.Path);
    }

    /// <summary>
    /// Gives the image input of <paramref name="written"/> (a model made from <see cref="ForPipeline"/>'s copy of
    /// <paramref name="source"/>) the type and layout <paramref name="source"/> declares, so a free dimension stays
    /// free, a channels-last input stays channels-last and a uint8 input stays uint8.
    /// </summary>
    public static void RestoreInput(ModelProto written, OnnxModel source)
    {
        InputLayout.Restore(written, source);
        var original = ImageInputProto(source);
        var target = written.Graph.Input.FirstOrDefault(v => v.Name == original.Name);
        if (target is not null) target.Type = original.Type.Clone();
    }

    /// <summary>The single rank-4 float input, whatever its dimensions; else the SADG1102 of <see cref="OnnxModel.GetImageInput"/>.</summary>
    static ValueInfoProto ImageInputProto(OnnxModel model)
    {
        var inputs = model.RuntimeInputs;
        if (inputs.Count == 1 && model.IsImageTensor(inputs[0])) return inputs[0];
        model.GetImageInput();
        throw new InvalidOperationException("unreachable: GetImageInput accepted a model without a rank-4 float input");
    }
}
