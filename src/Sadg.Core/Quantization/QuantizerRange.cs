using static TorchSharp.torch;

namespace Sadg.Quantization;

/// <summary>
/// What the weight and activation quantizers share: the bit-width check and the clip-ratio search criterion
/// (DESIGN §3): try clip ratios r = 1.00, 0.99, …, 0.01 of the observed range and keep the one minimizing
/// mean |x − Q(x)|^p with p = <see cref="P"/> = 2.4. Ties keep the larger ratio.
/// </summary>
public static class QuantizerRange
{
    /// <summary>The exponent p of the range-search error mean |x − Q(x)|^p.</summary>
    public const double P = 2.4;

    /// <summary>Number of clip ratios tried: r_i = (RatioCount − i) / RatioCount, i = 0 … RatioCount − 1.</summary>
    public const int RatioCount = 100;

    public const int MinBits = 2;

    public const int MaxBits = 8;

    /// <summary>The i-th clip ratio: 1.00, 0.99, …, 0.01.</summary>
    public static double Ratio(int i) => (RatioCount - i) / (double)RatioCount;

    /// <summary>Throws when <paramref name="bits"/> is outside [2, 8].</summary>
    public static void CheckBits(int bits, string paramName = "bits")
    {
        if (bits < MinBits || bits > MaxBits)
            throw new ArgumentOutOfRangeException(paramName, bits,
                $"Quantizers support {MinBits} to {MaxBits} bits; {bits} was given.");
    }

    /// <summary>mean |x − q|^p over <paramref name="dims"/> (all dims when null).</summary>
    internal static Tensor Error(Tensor x, Tensor q, long[]? dims = null) =>
        dims is null ? (x - q).abs().Pow(P).mean() : (x - q).abs().Pow(P).mean(dims);
}
