using System.Globalization;
using Sadg.Onnx;
using static TorchSharp.torch;

namespace Sadg.Pipeline;

/// <summary>
/// The model's input standardization from its metadata (<c>sadg.input_mean</c>, <c>sadg.input_std</c>: one number
/// or one per channel, invariant culture), the same convention as <c>sadg evaluate</c>: pixels in [0, 1] are fed as
/// (x − mean[c]) / std[c]. Without metadata, images are fed as they are.
/// </summary>
public sealed record InputStandardization(float[]? Mean, float[]? Std)
{
    public const string MeanKey = "sadg.input_mean";
    public const string StdKey = "sadg.input_std";

    public bool IsIdentity => Mean is null && Std is null;

    public static InputStandardization FromMetadata(OnnxModel model)
    {
        int channels = model.GetImageInput().Channels;
        string? meanText = null, stdText = null;
        foreach (var p in model.Proto.MetadataProps)
        {
            if (p.Key == MeanKey) meanText = p.Value;
            if (p.Key == StdKey) stdText = p.Value;
        }
        var mean = Parse(meanText, MeanKey, channels, model.Path);
        var std = Parse(stdText, StdKey, channels, model.Path);
        if (std is not null && std.Any(s => s <= 0))
            throw new SadgException(SadgErrorCode.DataInvalid, $"Metadata '{StdKey}' has a value <= 0.", model.Path);
        return new InputStandardization(mean, std);
    }

    static float[]? Parse(string? text, string key, int channels, string? file)
    {
        if (string.IsNullOrWhiteSpace(text)) return null;
        var parts = text.Split([',', ' ', ';'], StringSplitOptions.RemoveEmptyEntries);
        var values = new float[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!float.TryParse(parts[i], NumberStyles.Float, CultureInfo.InvariantCulture, out values[i]) || !float.IsFinite(values[i]))
                throw new SadgException(SadgErrorCode.DataInvalid, $"Metadata '{key}' '{text}' is not a number or a comma-separated list of numbers.", file);
        if (values.Length == 1) return Enumerable.Repeat(values[0], channels).ToArray();
        if (values.Length != channels)
            throw new SadgException(SadgErrorCode.DataInvalid, $"Metadata '{key}' has {values.Length} values; the model has {channels} input channels.", file);
        return values;
    }

    Tensor Shape(float[] v, Tensor like) => tensor(v, device: like.device).reshape(1, v.Length, 1, 1);

    /// <summary>Pixel units → what the model is fed.</summary>
    public Tensor Standardize(Tensor pixels)
    {
        var x = pixels;
        if (Mean is not null) x = x - Shape(Mean, x);
        if (Std is not null) x = x / Shape(Std, x);
        return x;
    }

    /// <summary>What the model is fed → pixel units.</summary>
    public Tensor Destandardize(Tensor fed)
    {
        var x = fed;
        if (Std is not null) x = x * Shape(Std, x);
        if (Mean is not null) x = x + Shape(Mean, x);
        return x;
    }

    public override string ToString() => IsIdentity ? "none" :
        $"mean [{string.Join(", ", (Mean ?? []).Select(v => v.ToString("0.####", CultureInfo.InvariantCulture)))}], " +
        $"std [{string.Join(", ", (Std ?? []).Select(v => v.ToString("0.####", CultureInfo.InvariantCulture)))}] (model metadata)";
}
