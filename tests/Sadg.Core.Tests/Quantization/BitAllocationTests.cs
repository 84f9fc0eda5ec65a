using Sadg.Onnx;
using Sadg.Quantization;

namespace Sadg.Tests.Quantization;

/// <summary>The size-budget knapsack: hand-checked cases, exhaustive search on random ones, the byte grid and infeasible budgets.</summary>
public class BitAllocationTests
{
    static BitItem Item(string name, params (int Bits, long Bytes, double Noise)[] choices) =>
        new(name, choices.Select(c => new BitChoice(c.Bits, c.Bytes, c.Noise)).ToList());

    /// <summary>
    /// Three layers, 10 bytes at W4 each, 40 bytes in all. Upgrading a to W8 costs 6 bytes for 7 less noise (the best
    /// noise per byte, 7/6, so a greedy search takes it first and then 4 bytes fit nothing more: noise 1 + 6 + 6 = 13);
    /// upgrading b and c costs 5 + 5 bytes for 5 + 5 less noise: noise 8 + 1 + 1 = 10, which the DP finds.
    /// </summary>
    [Fact]
    public void The_DP_finds_the_optimum_where_greedy_by_noise_per_byte_does_not()
    {
        var items = new[]
        {
            Item("a", (4, 10, 8), (8, 16, 1)),
            Item("b", (4, 10, 6), (8, 15, 1)),
            Item("c", (4, 10, 6), (8, 15, 1)),
        };
        Assert.Equal([4, 8, 8], BitAllocation.Solve(items, 40));
        Assert.Equal([8, 4, 4], BitAllocation.Solve(items, 39)); // b and c no longer both fit: a (7 less) beats b or c (5 less)
        Assert.Equal([4, 4, 4], BitAllocation.Solve(items, 30));
        Assert.Equal([8, 8, 8], BitAllocation.Solve(items, 46));
    }

    [Fact]
    public void Dominated_candidates_are_not_chosen_and_ties_go_to_the_first_listed()
    {
        // W2 and W3 take the same 4-bit containers as W4, with more noise.
        var item = Item("a", (2, 10, 5), (3, 10, 2), (4, 10, 1), (8, 18, 0.5));
        Assert.Equal([4], BitAllocation.Solve([item], 17));
        Assert.Equal([8], BitAllocation.Solve([item], 18));
        Assert.Equal([3], BitAllocation.Solve([Item("t", (2, 10, 1), (3, 10, 0), (4, 10, 0))], 10));
    }

    [Fact]
    public void A_budget_below_the_smallest_size_is_a_coded_error_naming_it()
    {
        var items = new[] { Item("a", (4, 10, 1), (8, 16, 0)), Item("b", (4, 12, 1), (8, 20, 0)) };
        var e = Assert.Throws<SadgException>(() => BitAllocation.Solve(items, 21));
        Assert.Equal(SadgErrorCode.SizeBudgetTooSmall, e.Code);
        Assert.Contains("22 bytes", e.Message);
        Assert.Equal([4, 4], BitAllocation.Solve(items, 22));
    }

    /// <summary>On random instances the DP's noise is the exhaustive optimum (exact grid) and within the budget on a coarse grid.</summary>
    [Fact]
    public void The_DP_matches_exhaustive_search_and_a_coarse_grid_stays_within_the_budget()
    {
        var random = new Random(7);
        for (int trial = 0; trial < 200; trial++)
        {
            int n = random.Next(1, 6);
            var items = Enumerable.Range(0, n).Select(i => new BitItem($"l{i}", new[] { 2, 3, 4, 8 }
                .Select(b => new BitChoice(b, random.Next(1, 400), random.NextDouble())).ToList())).ToList();
            long min = BitAllocation.MinimumBytes(items), max = items.Sum(i => i.Choices.Max(c => c.Bytes));
            long capacity = min + random.NextInt64(0, max - min + 1);
            var (best, _) = Exhaustive(items, capacity);
            var exact = BitAllocation.Solve(items, capacity);
            Assert.Equal(best, Noise(items, exact), 9);
            Assert.True(Bytes(items, exact) <= capacity);
            var coarse = BitAllocation.Solve(items, capacity, maxCells: 7);
            Assert.True(Bytes(items, coarse) <= capacity, $"trial {trial}: {Bytes(items, coarse)} > {capacity}");
        }
    }

    [Fact]
    public void File_bytes_are_the_packed_integers_a_float_scale_and_a_zero_point_per_channel()
    {
        // 16 channels of 3x3x8: 1152 weights.
        Assert.Equal(576 + 64 + 8, BitAllocation.FileBytes(1152, 16, 4));
        Assert.Equal(576 + 64 + 8, BitAllocation.FileBytes(1152, 16, 2));
        Assert.Equal(1152 + 64 + 16, BitAllocation.FileBytes(1152, 16, 8));
        Assert.Equal(OnnxTensors.IntegerBytes(5, 3) + 4 * 5 + OnnxTensors.IntegerBytes(5, 3), BitAllocation.FileBytes(5, 5, 3));
    }

    [Fact]
    public void Nominal_bytes_count_b_bits_a_weight_and_equal_the_file_bytes_at_4_and_8_bits()
    {
        Assert.Equal(288 + 64 + 4, BitAllocation.NominalBytes(1152, 16, 2));
        Assert.Equal(432 + 64 + 6, BitAllocation.NominalBytes(1152, 16, 3));
        Assert.Equal(2 + 20 + 2, BitAllocation.NominalBytes(5, 5, 3)); // 15 bits round up to 2 bytes
        foreach (int bits in new[] { 4, 8 })
            Assert.Equal(BitAllocation.FileBytes(1152, 16, bits), BitAllocation.NominalBytes(1152, 16, bits));
    }

    static double Noise(IReadOnlyList<BitItem> items, int[] bits) => items.Select((i, k) => i.Choices.First(c => c.Bits == bits[k]).Noise).Sum();

    static long Bytes(IReadOnlyList<BitItem> items, int[] bits) => items.Select((i, k) => i.Choices.First(c => c.Bits == bits[k]).Bytes).Sum();

    static (double Noise, int[] Bits) Exhaustive(IReadOnlyList<BitItem> items, long capacity)
    {
        (double, int[]) best = (double.PositiveInfinity, []);
        void Visit(int k, int[] bits)
        {
            if (k == items.Count)
            {
                if (Bytes(items, bits) <= capacity && Noise(items, bits) < best.Item1) best = (Noise(items, bits), bits.ToArray());
                return;
            }
            foreach (var c in items[k].Choices)
            {
                bits[k] = c.Bits;
                Visit(k + 1, bits);
            }
        }
        Visit(0, new int[items.Count]);
        return best;
    }
}
