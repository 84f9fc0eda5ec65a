namespace Sadg.Pipeline;

/// <summary>
/// Compares the FP model's and the quantized model's outputs (both run by ONNX Runtime on the calibration images):
/// top-1 agreement (argmax of the class scores) for classifiers; for every model the mean per-image cosine
/// similarity and the SQNR in dB (10·log10 Σf² / Σ(f − q)²) of the flattened outputs.
/// </summary>
public static class OutputComparison
{
    public const string Top1Agreement = "top1_agreement";
    public const string CosineSimilarity = "cosine_similarity";

    /// <summary><paramref name="reference"/> and <paramref name="quantized"/>: <paramref name="images"/> rows of equal length.</summary>
    public static RuntimeCheck Compare(string runtime, OutputKind kind, float[] reference, float[] quantized, int images)
    {
        if (images < 1 || reference.Length != quantized.Length || reference.Length % images != 0)
            throw new SadgException(SadgErrorCode.InvalidGraph,
                $"The FP and the quantized model gave outputs of different sizes ({reference.Length} and {quantized.Length} values for {images} images).");
        int width = reference.Length / images;
        double? agreement = kind == OutputKind.ClassScores
            ? (double)Enumerable.Range(0, images).Count(i => ArgMax(reference.AsSpan(i * width, width)) == ArgMax(quantized.AsSpan(i * width, width))) / images
            : null;
        double cosines = 0, signal = 0, noise = 0;
            for (int i = 0; i < images; i++)
            {
                double dot = 0, ff = 0, qq = 0;
                for (int k = i * width; k < (i + 1) * width; k++)
                {
                    double f = reference[k], q = quantized[k];
                    dot += f * q;
                    ff += f * f;
                    qq += q * q;
                    noise += (f - q) * (f - q);
                }
                signal += ff;
                cosines += ff == 0 && qq == 0 ? 1 : ff == 0 || qq == 0 ? 0 : dot / Math.Sqrt(ff * qq);
            }
        return new RuntimeCheck(runtime, images, agreement)
        {
            Metric = agreement is null ? CosineSimilarity : Top1Agreement,
            CosineSimilarity = cosines / images,
            SqnrDb = noise == 0 ? double.PositiveInfinity : 10 * Math.Log10(signal / noise),
        };
    }

    static int ArgMax(ReadOnlySpan<float> row)
    {
        int best = 0;
        for (int k = 1; k < row.Length; k++) if (row[k] > row[best]) best = k;
        return best;
    }
}
