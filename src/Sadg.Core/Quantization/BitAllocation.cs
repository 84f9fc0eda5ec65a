using Sadg.Onnx;

namespace Sadg.Quantization;

/// <summary>One candidate of a layer: its weight bits, the bytes its weights take as written, and the error it adds.</summary>
public sealed record BitChoice(int Bits, long Bytes, double Noise);

/// <summary>A layer whose weight bits are to be chosen, with its candidates.</summary>
public sealed record BitItem(string Name, IReadOnlyList<BitChoice> Choices);

/// <summary>
/// Mixed precision under a size budget as a multiple-choice knapsack: pick one <see cref="BitChoice"/> per
/// <see cref="BitItem"/> so that the total <see cref="BitChoice.Noise"/> is least and the total
/// <see cref="BitChoice.Bytes"/> is at most a capacity. Summing the layers' noise is the additive-noise assumption of
/// HAWQ- and ZeroQ-style searches: each layer's quantization error reaches the output independently of the others'.
/// </summary>
public static class BitAllocation
{
    /// <summary>The most cells of the dynamic program's byte axis; byte counts are grouped into units above it.</summary>
    public const int MaxCells = 1 << 16;

    /// <summary>
    /// The bytes a quantized weight takes at its nominal bit width, as HAWQ and ZeroQ count model size: b bits a weight,
    /// a float32 scale and a b-bit zero point per output channel. What a size budget counts.
    /// </summary>
    public static long NominalBytes(long elements, long channels, int bits) =>
        (elements * bits + 7) / 8 + 4 * channels + (channels * bits + 7) / 8;

    /// <summary>
    /// The bytes a quantized weight takes in the written file: its integers in their containers
    /// (<see cref="OnnxTensors.IntegerBytes"/>: 2–4 bits in packed 4-bit containers), a float32 scale and a zero point per
    /// output channel. Equal to <see cref="NominalBytes"/> at 4 and 8 bits, larger below 4.
    /// </summary>
    public static long FileBytes(long elements, long channels, int bits) =>
        OnnxTensors.IntegerBytes(elements, bits) + 4 * channels + OnnxTensors.IntegerBytes(channels, bits);

    /// <summary>The least bytes <paramref name="items"/> can take: every layer at its smallest candidate.</summary>
    public static long MinimumBytes(IEnumerable<BitItem> items) => items.Sum(i => i.Choices.Min(c => c.Bytes));

    /// <summary>
    /// The chosen bits of each item (in order), by dynamic programming over the bytes above each layer's smallest
    /// candidate. When those extra bytes fit in <paramref name="maxCells"/> cells the answer is optimal; above, byte
    /// counts are grouped into units of ⌈extra / cells⌉ bytes, a candidate's cost rounded up and the capacity down, so
    /// the choice never exceeds the capacity (it may miss the optimum by less than a unit per layer). Ties go to the
    /// candidate listed first. Throws <see cref="SadgException"/> (SizeBudgetTooSmall) when even the smallest
    /// candidates do not fit.
    /// </summary>
    public static int[] Solve(IReadOnlyList<BitItem> items, long capacity, int maxCells = MaxCells)
    {
        if (items.Any(i => i.Choices.Count == 0 || i.Choices.Count > 256 || i.Choices.Any(c => double.IsNaN(c.Noise) || c.Bytes < 0)))
            throw new ArgumentException("Every item needs 1 to 256 candidates with bytes ≥ 0 and a noise that is a number.", nameof(items));
        if (maxCells < 1) throw new ArgumentOutOfRangeException(nameof(maxCells));
        long minimum = MinimumBytes(items);
        if (minimum > capacity)
            throw new SadgException(SadgErrorCode.SizeBudgetTooSmall,
                $"The size budget of {capacity} bytes is below the smallest feasible size, {minimum} bytes (every layer at its fewest bytes).");
        long extra = capacity - minimum;
        long unit = Math.Max(1, (extra + maxCells - 1) / maxCells);
        int cells = (int)(extra / unit);
        var best = new double[cells + 1]; // least noise of the items so far within c units
        var picks = new byte[items.Count][];
        for (int i = 0; i < items.Count; i++)
        {
            var choices = items[i].Choices;
            long least = choices.Min(c => c.Bytes);
            var cost = choices.Select(c => (c.Bytes - least + unit - 1) / unit).ToArray();
            var next = new double[cells + 1];
            var pick = picks[i] = new byte[cells + 1];
            for (int c = 0; c <= cells; c++)
            {
                double value = 0;
                bool found = false;
                for (int j = 0; j < choices.Count; j++)
                {
                    if (cost[j] > c) continue;
                    double v = best[c - cost[j]] + choices[j].Noise;
                    if (!found || v < value)
                    {
                        found = true;
                        value = v;
                        pick[c] = (byte)j;
                    }
                }
                next[c] = value;
            }
            best = next;
        }
        var bits = new int[items.Count];
        for (int i = items.Count - 1, c = cells; i >= 0; i--)
        {
            var choices = items[i].Choices;
            long least = choices.Min(x => x.Bytes);
            var choice = choices[picks[i][c]];
            bits[i] = choice.Bits;
            c -= (int)((choice.Bytes - least + unit - 1) / unit);
        }
        return bits;
    }
}
