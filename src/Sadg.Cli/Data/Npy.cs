using System.Buffers.Binary;
using System.Globalization;
using System.Text;

namespace Sadg.Cli.Data;

/// <summary>
/// NumPy's <c>.npy</c> files, format version 1.0: the magic <c>\x93NUMPY</c>, the version, a little-endian uint16
/// header length, a Python dict literal (<c>descr</c>, <c>fortran_order</c>, <c>shape</c>) padded with spaces and
/// a newline to a multiple of 64 bytes, then the values in C order, little-endian.
/// </summary>
public static class Npy
{
    /// <summary>Writes float32 values (<c>&lt;f4</c>) of <paramref name="shape"/> to <paramref name="stream"/>.</summary>
    public static void WriteFloat32(Stream stream, float[] values, int[] shape)
    {
        WriteHeader(stream, "<f4", shape, values.LongLength);
        var buffer = new byte[4 * 4096];
        for (int i = 0; i < values.Length; i += 4096)
        {
            int count = Math.Min(4096, values.Length - i);
            for (int j = 0; j < count; j++) BinaryPrimitives.WriteSingleLittleEndian(buffer.AsSpan(j * 4), values[i + j]);
            stream.Write(buffer, 0, count * 4);
        }
    }

    /// <summary>Writes int64 values (<c>&lt;i8</c>) of <paramref name="shape"/> to <paramref name="stream"/>.</summary>
    public static void WriteInt64(Stream stream, long[] values, int[] shape)
    {
        WriteHeader(stream, "<i8", shape, values.LongLength);
        var buffer = new byte[8];
        foreach (long v in values)
        {
            BinaryPrimitives.WriteInt64LittleEndian(buffer, v);
            stream.Write(buffer);
        }
    }

    static void WriteHeader(Stream stream, string descr, int[] shape, long count)
    {
        if (shape.Aggregate(1L, (n, d) => n * d) != count)
            throw new ArgumentException($"{count} values do not fill the shape [{string.Join(", ", shape)}].");
        string dims = shape.Length == 1
            ? $"({shape[0].ToString(CultureInfo.InvariantCulture)},)"
            : "(" + string.Join(", ", shape.Select(d => d.ToString(CultureInfo.InvariantCulture))) + ")";
        string dict = $"{{'descr': '{descr}', 'fortran_order': False, 'shape': {dims}, }}";
        // Magic (6) + version (2) + length (2) + dict + padding + '\n' is a multiple of 64.
        int length = 10 + dict.Length + 1;
        string header = dict + new string(' ', (64 - length % 64) % 64) + "\n";
        if (header.Length > ushort.MaxValue) throw new ArgumentException("The shape is too long for an .npy 1.0 header.");
        stream.Write([0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', 1, 0]);
        var size = new byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(size, (ushort)header.Length);
        stream.Write(size);
        stream.Write(Encoding.ASCII.GetBytes(header));
    }
}
