using System.Globalization;
using Onnx;
using Sadg.Export;
using Sadg.Pipeline;

namespace Sadg.Cli.Commands;

/// <summary>
/// The accuracy gate of <c>sadg quantize --min-agreement P</c> (<c>MinAgreement</c> metadata): the quantized model's
/// agreement with the FP32 model, as the pipeline recorded it in the model's metadata (<c>sadg.validation_*</c>),
/// must be at least P percent. Read from the model's bytes, so a fresh result and a cache hit are judged alike.
/// </summary>
public static class AccuracyGate
{
    /// <summary>
    /// null when there is no gate; else the line saying it passed. Below the threshold: error SADG1405 naming the
    /// measured value, the threshold and the data it was measured on.
    /// </summary>
    public static string? Check(byte[] model, QuantizeSettings settings, string modelPath)
    {
        if (settings.MinAgreement is not double threshold) return null;
        var proto = ModelProto.Parser.ParseFrom(model);
        string? Meta(string key) => proto.MetadataProps.FirstOrDefault(p => p.Key == key)?.Value;
        string metric;
        string? recorded = Meta(SadgMetadata.ValidationAgreement);
        if (recorded is not null) metric = "top-1 agreement";
        else
        {
            recorded = Meta(SadgMetadata.ValidationCosine);
            metric = "output cosine similarity (x 100; the model does not output class scores)";
        }
        if (recorded is null || !double.TryParse(recorded, NumberStyles.Float, CultureInfo.InvariantCulture, out double fraction))
            throw new SadgException(SadgErrorCode.InternalError,
                $"The quantized model records no validation measurement ({SadgMetadata.ValidationAgreement} or " +
                $"{SadgMetadata.ValidationCosine}), so {QuantizeSchema.MinAgreement.Label} cannot be checked.", modelPath);
        double measured = fraction * 100;
        string data = Meta(SadgMetadata.ValidationData) ?? "unrecorded data";
        if (settings.ValidationData is { } path) data = $"'{path}': {data}";
        string value = measured.ToString("0.00", CultureInfo.InvariantCulture) + "%";
        string limit = threshold.ToString("0.##", CultureInfo.InvariantCulture) + "%";
        if (measured < threshold)
            throw new SadgException(SadgErrorCode.AccuracyGateFailed,
                $"The accuracy gate failed: the quantized model's {metric} with the FP32 model is {value} on {data}, below " +
                $"the threshold of {limit} ({QuantizeSchema.MinAgreement.Label}). Nothing was written and nothing was cached. " +
                "Use more bits, another --method or a longer --profile, or lower the threshold.", modelPath);
        return $"accuracy gate passed: {metric} {value} >= {limit} on {data}";
    }
}
