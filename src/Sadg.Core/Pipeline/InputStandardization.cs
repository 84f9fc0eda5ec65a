using System.Globalization;
using Sadg.Onnx;
using static TorchSharp.torch;

namespace Sadg.Pipeline;

/// <summary>Where an <see cref="InputStandardization"/> comes from.</summary>
public enum InputConvention
{
    /// <summary>Nothing says: images are fed as they are.</summary>
    None,

    /// <summary>The model's <c>sadg.input_mean</c>/<c>sadg.input_std</c> metadata (its training data's statistics).</summary>
    Metadata,

    /// <summary>The user's --input-mean/--input-std (normalization constants: the training data's statistics).</summary>
    Normalization,

    /// <summary>The user's --input-range lo,hi: pixels in [0, 1] mapped linearly onto [lo, hi].</summary>
    Range,

    /// <summary>The model's uint8 input (<see cref="Onnx.ImageInput.BytePixels"/>), without metadata: pixels in [0, 1] fed as 0 … 255.</summary>
    BytePixels,
}

/// <summary>
/// What the model is fed, in the convention of <c>sadg evaluate</c>: pixels in [0, 1] are fed as (x − mean[c]) / std[c].
/// From the model's metadata (<c>sadg.input_mean</c>, <c>sadg.input_std</c>: one number or one per channel, invariant
/// culture), or stated by the user as normalization constants or as a range [lo, hi] (mean = −lo / (hi − lo),
/// std = 1 / (hi − lo)). Without any, images are fed as they are.
/// </summary>
public sealed record InputStandardization(float[]? Mean, float[]? Std)
{
    public bool IsIdentity => Mean is null && Std is null;

    /// <summary>Where the values come from.</summary>
    public InputConvention Convention { get; init; } = InputConvention.Metadata;

    /// <summary>The user's range [lo, hi] (for <see cref="InputConvention.Range"/>).</summary>
    public double[]? Range { get; init; }

    /// <summary>Pixels in [0, 1] fed mapped linearly onto [lo, hi] (x/255: 0,1; x/127.5 − 1: −1,1; raw bytes: 0,255).</summary>
    public static InputStandardization FromRange(double lo, double hi, int channels)
    {
        if (!double.IsFinite(lo) || !double.IsFinite(hi) || hi <= lo)
            throw new SadgException(SadgErrorCode.InvalidOptionValue, $"{QuantizeSchema.InputRange.Label} must be {QuantizeSchema.InputRange.Requirement}, not [{lo}, {hi}].");
        return new InputStandardization(Enumerable.Repeat((float)(-lo / (hi - lo)), channels).ToArray(),
            Enumerable.Repeat((float)(1 / (hi - lo)), channels).ToArray()) { Convention = InputConvention.Range, Range = [lo, hi] };
    }

    /// <summary>
    /// Normalization constants stated by the user: pixels in [0, 1] fed as (x − mean[c]) / std[c] (one value or one
    /// per channel). <paramref name="meanName"/> and <paramref name="stdName"/> name where the user stated them (for
    /// errors and the description); by default the quantize settings.
    /// </summary>
    public static InputStandardization FromNormalization(float[] mean, float[] std, int channels, string? meanName = null, string? stdName = null)
    {
        meanName ??= QuantizeSchema.InputMean.Label;
        stdName ??= QuantizeSchema.InputStd.Label;
        float[] Expand(float[] v, string what) => v.Length == 1 ? Enumerable.Repeat(v[0], channels).ToArray()
            : v.Length == channels ? v
            : throw new SadgException(SadgErrorCode.InvalidOptionValue, $"{what} has {v.Length} values; the model has {channels} input channels (give 1 or {channels}).");
        var m = Expand(mean, meanName);
        var s = Expand(std, stdName);
        if (m.Concat(s).Any(v => !float.IsFinite(v)) || s.Any(v => v <= 0))
            throw new SadgException(SadgErrorCode.InvalidOptionValue, $"{meanName} and {stdName} must be finite numbers, each std > 0.");
        return new InputStandardization(m, s) { Convention = InputConvention.Normalization, StatedBy = $"{meanName}/{stdName}" };
    }

    /// <summary>Where the user stated the constants (<see cref="InputConvention.Normalization"/>), for the description.</summary>
    public string? StatedBy { get; init; }

    /// <summary>
    /// What the settings state the model is fed (<see cref="QuantizeSettings.InputRange"/>, or
    /// <see cref="QuantizeSettings.InputMean"/> with <see cref="QuantizeSettings.InputStd"/>) for a model with
    /// <paramref name="channels"/> input channels; null when they state nothing.
    /// </summary>
    public static InputStandardization? FromSettings(QuantizeSettings settings, int channels)
    {
        var problems = new List<OptionProblem>();
        settings.Check(problems, withData: false);
        if (problems.FirstOrDefault(p => p.Setting == QuantizeSchema.InputRange || p.Setting == QuantizeSchema.InputMean) is { } problem)
            throw new SadgException(SadgErrorCode.InvalidOptionValue, problem.Message);
        if (settings.InputRange is { } range) return FromRange(range[0], range[1], channels);
        if (settings.InputMean is { } mean && settings.InputStd is { } std) return FromNormalization(mean, std, channels);
        return null;
    }

    /// <summary>
    /// The user's statement when given, else the model's (<see cref="FromMetadata"/>). <paramref name="model"/> is the
    /// model as its file declares it, not the pipeline's copy (<see cref="InputShapes.ForPipeline"/> declares a uint8
    /// input float).
    /// </summary>
    public static InputStandardization Resolve(OnnxModel model, InputStandardization? user) => user ?? FromMetadata(model);

    /// <summary>
    /// <see cref="Resolve"/> for a pipeline run with <paramref name="options"/> on <paramref name="model"/> as its file
    /// declares it, sized by <see cref="PipelineOptions.InputShape"/> where the input leaves dimensions free.
    /// </summary>
    public static InputStandardization ForRun(OnnxModel model, PipelineOptions options) =>
        Resolve(InputShapes.Apply(model, options.InputShape), options.Input);

    /// <summary>
    /// The model's <c>sadg.input_mean</c>/<c>sadg.input_std</c> metadata; without it, a uint8 input's bytes
    /// (<see cref="InputConvention.BytePixels"/>: the range [0, 255]); else nothing.
    /// </summary>
    public static InputStandardization FromMetadata(OnnxModel model)
    {
        var input = model.GetImageInput();
        int channels = input.Channels;
        string? meanText = null, stdText = null;
        foreach (var p in model.Proto.MetadataProps)
        {
            if (p.Key == Export.SadgMetadata.InputMean) meanText = p.Value;
            if (p.Key == Export.SadgMetadata.InputStd) stdText = p.Value;
        }
        var mean = Parse(meanText, Export.SadgMetadata.InputMean, channels, model.Path);
        var std = Parse(stdText, Export.SadgMetadata.InputStd, channels, model.Path);
        if (std is not null && std.Any(s => s <= 0))
            throw new SadgException(SadgErrorCode.DataInvalid, $"Metadata '{Export.SadgMetadata.InputStd}' has a value <= 0.", model.Path);
        if (mean is null && std is null && input.BytePixels)
            return FromRange(0, 255, channels) with { Convention = InputConvention.BytePixels };
        return new InputStandardization(mean, std) { Convention = mean is null && std is null ? InputConvention.None : InputConvention.Metadata };
    }

    static float[]? Parse(string? text, string key, int channels, string? file)
    {
        if (string.IsNullOrWhiteSpace(text)) return null;
        if (!NumberLists.TryParse(text, out var values))
            throw new SadgException(SadgErrorCode.DataInvalid, $"Metadata '{key}' '{text}' is not a number or a comma-separated list of numbers.", file);
        if (values!.Length == 1) return Enumerable.Repeat(values[0], channels).ToArray();
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
        if (Mean is not null) x = x.Add(Shape(Mean, x));
        return x;
    }

    public override string ToString() => IsIdentity ? "none" : Convention is InputConvention.Range or InputConvention.BytePixels
        ? $"pixels in [0, 1] fed as [{Range![0].ToString(CultureInfo.InvariantCulture)}, {Range[1].ToString(CultureInfo.InvariantCulture)}] " +
          (Convention == InputConvention.Range ? $"({QuantizeSchema.InputRange.Name})" : "(the model's uint8 input)")
        : $"mean [{string.Join(", ", (Mean ?? []).Select(v => v.ToString("0.####", CultureInfo.InvariantCulture)))}], " +
          $"std [{string.Join(", ", (Std ?? []).Select(v => v.ToString("0.####", CultureInfo.InvariantCulture)))}] " +
          (Convention == InputConvention.Normalization ? $"({StatedBy})" : "(model metadata)");

    /// <summary>
    /// The generation's input prior this standardization implies: normalization constants (metadata or the user's)
    /// are the training data's statistics, so the fed images have mean 0 and std 1; a range carries natural-image
    /// statistics onto it. Null when nothing is stated.
    /// </summary>
    public Generation.InputPrior? Prior(int channels) => Convention switch
    {
        InputConvention.Range => Generation.InputPrior.FromRange(Range![0], Range[1], channels, QuantizeSchema.InputRange.Label),
        InputConvention.BytePixels => Generation.InputPrior.FromRange(Range![0], Range[1], channels, "the model's uint8 input"),
        InputConvention.Normalization => Generation.InputPrior.Standardized(channels, $"the normalization constants {QuantizeSchema.InputMean.Label}/{QuantizeSchema.InputStd.Label}"),
        InputConvention.Metadata => Generation.InputPrior.Standardized(channels, "the model's sadg.input_mean/std metadata"),
        _ => null,
    };
}
