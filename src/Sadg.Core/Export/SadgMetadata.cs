using Onnx;

namespace Sadg.Export;

/// <summary>
/// The <c>sadg.*</c> keys of an ONNX model's <c>metadata_props</c>: what Sadg reads from an FP32 model and what it
/// writes into the quantized one. Every key is declared here and nowhere else.
/// </summary>
public static class SadgMetadata
{
    /// <summary>The prefix every Sadg key starts with.</summary>
    public const string Prefix = "sadg.";

    // Read from the FP32 model (and copied into the quantized one): the training data's per-channel statistics.

    /// <summary>Per-channel mean subtracted from pixels in [0, 1] (one number or one per channel, invariant culture).</summary>
    public const string InputMean = "sadg.input_mean";

    /// <summary>Per-channel std the centred pixels are divided by.</summary>
    public const string InputStd = "sadg.input_std";

    // Written by the QDQ writer.

    /// <summary>The output format; its value is <see cref="FormatValue"/>.</summary>
    public const string Format = "sadg.format";

    public const string FormatValue = "qdq";

    /// <summary>The FP32 model's producer name and version.</summary>
    public const string SourceProducer = "sadg.source_producer";

    /// <summary>The FP32 model's default-domain opset before any upgrade.</summary>
    public const string SourceOpset = "sadg.source_opset";

    public const string WeightBits = "sadg.weight_bits";

    /// <summary>The activation bit width, or <c>none</c> (weights only).</summary>
    public const string ActivationBits = "sadg.activation_bits";

    public const string ReconstructionIterations = "sadg.reconstruction_iterations";

    // Written by the pipeline.

    public const string ToolVersion = "sadg.tool_version";
    public const string Method = "sadg.method";
    public const string Seed = "sadg.seed";
    public const string Profile = "sadg.profile";

    /// <summary>The hash of the canonical options (the cache key's options part).</summary>
    public const string OptionsHash = "sadg.options_hash";

    /// <summary>Top-1 agreement (a fraction, 4 decimals) with the FP model on the calibration images (classifiers).</summary>
    public const string Top1Agreement = "sadg.top1_agreement";

    /// <summary>Mean output cosine similarity with the FP model on the calibration images (models without class scores).</summary>
    public const string OutputCosine = "sadg.output_cosine";

    /// <summary>Output signal-to-quantization-noise ratio in dB on the calibration images (models without class scores).</summary>
    public const string OutputSqnr = "sadg.output_sqnr_db";

    public const string CalibrationImages = "sadg.calibration_images";

    /// <summary>Top-1 agreement (a fraction, 4 decimals) with the FP model on the validation images (classifiers).</summary>
    public const string ValidationAgreement = "sadg.validation_top1_agreement";

    /// <summary>Mean output cosine similarity with the FP model on the validation images (models without class scores).</summary>
    public const string ValidationCosine = "sadg.validation_output_cosine";

    /// <summary>What the validation images were: held-out synthetic images (method, count, seed) or user data (content hash, count).</summary>
    public const string ValidationData = "sadg.validation_data";

    public const string ValidationImages = "sadg.validation_images";

    /// <summary>Sets <paramref name="key"/> to <paramref name="value"/>, replacing an existing entry.</summary>
    public static void Set(ModelProto model, string key, string value)
    {
        var existing = model.MetadataProps.FirstOrDefault(p => p.Key == key);
        if (existing is not null) existing.Value = value;
        else model.MetadataProps.Add(new StringStringEntryProto { Key = key, Value = value });
    }

    /// <summary>The value of <paramref name="key"/> (the last entry when a model repeats it), or null.</summary>
    public static string? Get(ModelProto model, string key) => model.MetadataProps.LastOrDefault(p => p.Key == key)?.Value;
}
