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
    /// The SADG1107 error for an NCHW input whose C, H or W is free, naming each free dimension; null when none is.
    /// </summary>
    internal static SadgException? FreeDimensionError(ValueInfoProto input, string? file)
    {
        var dims = input.Type.TensorType.Shape.Dim;
        var free = Enumerable.Range(1, 3).Where(i => dims[i].DimValue <= 0).ToList();
        if (free.Count == 0) return null;
        string shape = "[" + string.Join(", ", dims.Select(Describe)) + "]";
        string names = string.Join(", ", free.Select(i => $"{AxisNames[i]} ('{Describe(dims[i])}', dimension {i})"));
        string example = string.Join(",", Enumerable.Range(1, 3).Select(i => dims[i].DimValue > 0 ? Describe(dims[i]) : AxisNames[i]));
        return new SadgException(SadgErrorCode.InputShapeRequired,
            $"The model's input '{input.Name}' is {shape}: {names} {(free.Count == 1 ? "is" : "are")} free, so Sadg does not know what " +
            $"size of images to generate. Give the size with {QuantizeSchema.InputShape.Flag} {example} (MSBuild: {QuantizeSchema.InputShape.Name}=\"{example}\"); " +
            "the written model keeps the free dimension.", file);
    }

    /// <summary>
    /// <paramref name="model"/> with its image input's C, H and W set to <paramref name="chw"/> (the batch as declared),
    /// or the model itself when <paramref name="chw"/> is null or changes nothing. A given size that contradicts a
    /// fixed dimension is SADG1502; a model without a single NCHW float input is SADG1102.
    /// </summary>
    public static OnnxModel Apply(OnnxModel model, IReadOnlyList<int>? chw)
    {
        if (chw is null) return model;
        if (chw.Count != 3 || chw.Any(d => d < 1))
            throw new SadgException(SadgErrorCode.InvalidOptionValue, $"{QuantizeSchema.InputShape.Label} must be {QuantizeSchema.InputShape.Requirement}, not {Format(chw)}.");
        var input = ImageInputProto(model);
        var dims = input.Type.TensorType.Shape.Dim;
        for (int i = 1; i <= 3; i++)
            if (dims[i].DimValue > 0 && dims[i].DimValue != chw[i - 1])
                throw new SadgException(SadgErrorCode.InvalidOptionValue,
                    $"{QuantizeSchema.InputShape.Label} {Format(chw)} does not fit the model: its input '{input.Name}' is " +
                    $"[{string.Join(", ", dims.Select(Describe))}], with {AxisNames[i]} fixed at {dims[i].DimValue}.", model.Path);
        if (Enumerable.Range(1, 3).All(i => dims[i].DimValue > 0)) return model;

        var proto = model.Proto.Clone();
        var pinned = proto.Graph.Input.First(v => v.Name == input.Name).Type.TensorType.Shape.Dim;
        for (int i = 1; i <= 3; i++) pinned[i] = new TensorShapeProto.Types.Dimension { DimValue = chw[i - 1] };
        return OnnxModel.FromProto(proto, model.Path);
    }

    /// <summary>
    /// Gives the image input of <paramref name="written"/> (a model made from the pinned copy of
    /// <paramref name="source"/>) the type <paramref name="source"/> declares, so a free dimension stays free.
    /// </summary>
    public static void RestoreInput(ModelProto written, OnnxModel source)
    {
        var original = ImageInputProto(source);
        var target = written.Graph.Input.FirstOrDefault(v => v.Name == original.Name);
        if (target is not null) target.Type = original.Type.Clone();
    }

    /// <summary>The single rank-4 float input, whatever its dimensions; else the SADG1102 of <see cref="OnnxModel.GetImageInput"/>.</summary>
    static ValueInfoProto ImageInputProto(OnnxModel model)
    {
        var inputs = model.RuntimeInputs;
        if (inputs.Count == 1 && OnnxModel.IsRank4Float(inputs[0])) return inputs[0];
        model.GetImageInput();
        throw new InvalidOperationException("unreachable: GetImageInput accepted a model without a rank-4 float input");
    }
}
