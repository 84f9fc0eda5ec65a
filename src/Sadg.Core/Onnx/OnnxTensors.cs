using System.Runtime.InteropServices;
using Google.Protobuf;
using Onnx;
using TorchSharp;
using static TorchSharp.torch;
using DataType = Onnx.TensorProto.Types.DataType;

namespace Sadg.Onnx;

/// <summary>
/// Converts between ONNX <see cref="TensorProto"/> and TorchSharp tensors. Sizes are checked before anything
/// is allocated, so a model that declares an absurd shape is refused instead of exhausting memory.
/// </summary>
public static class OnnxTensors
{
    /// <summary>Largest tensor Sadg accepts, in elements (2^31 − 1, the protobuf and .NET array limit).</summary>
    public const long MaxElements = int.MaxValue;

    /// <summary>Bytes per element of an ONNX data type; 4-bit types return 0 (two per byte).</summary>
    public static int ElementSize(DataType type) => type switch
    {
        DataType.Float or DataType.Int32 or DataType.Uint32 => 4,
        DataType.Double or DataType.Int64 or DataType.Uint64 => 8,
        DataType.Float16 or DataType.Bfloat16 or DataType.Int16 or DataType.Uint16 => 2,
        DataType.Int8 or DataType.Uint8 or DataType.Bool => 1,
        DataType.Int4 or DataType.Uint4 => 0,
        _ => -1,
    };

    /// <summary>Bytes that <paramref name="count"/> elements of <paramref name="type"/> occupy in raw_data.</summary>
    public static long RawByteCount(DataType type, long count)
    {
        int size = ElementSize(type);
        return size == 0 ? (count + 1) / 2 : count * size;
    }

    /// <summary>The element count the dims declare, refusing negative dims and counts beyond <see cref="MaxElements"/>.</summary>
    public static long ElementCount(TensorProto t, string? file = null)
    {
        long count = 1;
        foreach (long d in t.Dims)
        {
            if (d < 0)
                throw new SadgException(SadgErrorCode.TensorDataInvalid,
                    $"Tensor '{t.Name}' declares a negative dimension ({string.Join("x", t.Dims)}). The file is corrupt; re-export the model.", file);
            if (d != 0 && count > MaxElements / d)
                throw TooLarge(t, file);
            count *= d;
        }
        if (count > MaxElements) throw TooLarge(t, file);
        return count;
    }

    static SadgException TooLarge(TensorProto t, string? file) => new(SadgErrorCode.TensorTooLarge,
        $"Tensor '{t.Name}' declares shape [{string.Join(", ", t.Dims)}], more than {MaxElements} elements. " +
        "The file is corrupt or not a model Sadg can hold in memory; nothing was allocated.", file);

    /// <summary>
    /// Checks that the data a tensor carries matches its declared shape, without reading external data.
    /// Returns the element count.
    /// </summary>
    public static long Validate(TensorProto t, string? file = null)
    {
        var type = (DataType)t.DataType;
        if (ElementSize(type) < 0)
            throw new SadgException(SadgErrorCode.UnsupportedDataType,
                $"Tensor '{t.Name}' has data type {type}, which Sadg does not read. Supported: float, double, float16, bfloat16, (u)int4/8/16/32/64 and bool.", file);
        long count = ElementCount(t, file);
        if (t.DataLocation == TensorProto.Types.DataLocation.External) return count;
        long have = TypedCount(t, type, out bool typed);
        long want = typed ? TypedFieldCount(type, count) : RawByteCount(type, count);
        if (have != want)
            throw new SadgException(SadgErrorCode.TensorDataInvalid,
                $"Tensor '{t.Name}' declares shape [{string.Join(", ", t.Dims)}] ({count} elements of {type}) but carries " +
                $"{have} {(typed ? "values" : "bytes")} where {want} are needed. The file is corrupt or truncated; re-export the model.", file);
        return count;
    }

    static long TypedFieldCount(DataType type, long count) => type is DataType.Int4 or DataType.Uint4 ? (count + 1) / 2 : count;

    static long TypedCount(TensorProto t, DataType type, out bool typed)
    {
        typed = t.RawData.Length == 0;
        if (!typed) return t.RawData.Length;
        return type switch
        {
            DataType.Float => t.FloatData.Count,
            DataType.Double => t.DoubleData.Count,
            DataType.Int64 => t.Int64Data.Count,
            DataType.Uint32 or DataType.Uint64 => t.Uint64Data.Count,
            _ => t.Int32Data.Count,
        };
    }

    /// <summary>
    /// Reads a tensor into a TorchSharp tensor on the CPU. External data is resolved against
    /// <paramref name="baseDirectory"/> and must stay inside it. UINT16/UINT32/UINT64 widen to the next signed
    /// type; INT4/UINT4 unpack to one int8/uint8 per element.
    /// </summary>
    public static Tensor ToTorch(TensorProto t, string? baseDirectory = null, string? file = null)
    {
        var type = (DataType)t.DataType;
        long count = Validate(t, file);
        long[] shape = t.Dims.ToArray();
        if (t.DataLocation == TensorProto.Types.DataLocation.External)
        {
            byte[] bytes = ExternalData.Read(t, RawByteCount(type, count), baseDirectory, file);
            return FromRaw(bytes, type, shape, count);
        }
        if (t.RawData.Length > 0)
            return FromRaw(t.RawData.Span, type, shape, count);
        return type switch
        {
            DataType.Float => tensor(t.FloatData.ToArray(), shape),
            DataType.Double => tensor(t.DoubleData.ToArray(), shape),
            DataType.Int64 => tensor(t.Int64Data.ToArray(), shape),
            DataType.Int32 => tensor(t.Int32Data.ToArray(), shape),
            DataType.Int16 => tensor(t.Int32Data.Select(v => (short)v).ToArray(), shape),
            DataType.Int8 => tensor(t.Int32Data.Select(v => (sbyte)v).ToArray(), shape),
            DataType.Uint8 => tensor(t.Int32Data.Select(v => (byte)v).ToArray(), shape),
            DataType.Uint16 => tensor(t.Int32Data.Select(v => v & 0xffff).ToArray(), shape),
            DataType.Bool => tensor(t.Int32Data.Select(v => v != 0).ToArray(), shape),
            DataType.Uint32 => tensor(t.Uint64Data.Select(v => (long)(uint)v).ToArray(), shape),
            DataType.Uint64 => tensor(t.Uint64Data.Select(v => (long)v).ToArray(), shape),
            DataType.Float16 => tensor(t.Int32Data.Select(v => (float)BitConverter.UInt16BitsToHalf((ushort)v)).ToArray(), shape).to_type(ScalarType.Float16),
            DataType.Bfloat16 => tensor(t.Int32Data.Select(v => BitConverter.Int32BitsToSingle(v << 16)).ToArray(), shape).to_type(ScalarType.BFloat16),
            DataType.Int4 or DataType.Uint4 => Unpack4Bit(t.Int32Data.Select(v => (byte)v).ToArray(), count, type == DataType.Int4, shape),
            _ => throw new SadgException(SadgErrorCode.UnsupportedDataType, $"Tensor '{t.Name}' has unsupported data type {type}.", file),
        };
    }

    static Tensor FromRaw(ReadOnlySpan<byte> raw, DataType type, long[] shape, long count)
    {
        if (!BitConverter.IsLittleEndian)
            throw new PlatformNotSupportedException("Sadg reads ONNX raw tensor data on little-endian machines only.");
        return type switch
        {
            DataType.Float => tensor(MemoryMarshal.Cast<byte, float>(raw).ToArray(), shape),
            DataType.Double => tensor(MemoryMarshal.Cast<byte, double>(raw).ToArray(), shape),
            DataType.Int64 => tensor(MemoryMarshal.Cast<byte, long>(raw).ToArray(), shape),
            DataType.Int32 => tensor(MemoryMarshal.Cast<byte, int>(raw).ToArray(), shape),
            DataType.Int16 => tensor(MemoryMarshal.Cast<byte, short>(raw).ToArray(), shape),
            DataType.Int8 => tensor(MemoryMarshal.Cast<byte, sbyte>(raw).ToArray(), shape),
            DataType.Uint8 => tensor(raw.ToArray(), shape),
            DataType.Bool => tensor(raw.ToArray().Select(b => b != 0).ToArray(), shape),
            DataType.Uint16 => tensor(MemoryMarshal.Cast<byte, ushort>(raw).ToArray().Select(v => (int)v).ToArray(), shape),
            DataType.Uint32 => tensor(MemoryMarshal.Cast<byte, uint>(raw).ToArray().Select(v => (long)v).ToArray(), shape),
            DataType.Uint64 => tensor(MemoryMarshal.Cast<byte, ulong>(raw).ToArray().Select(v => (long)v).ToArray(), shape),
            DataType.Float16 => tensor(MemoryMarshal.Cast<byte, Half>(raw).ToArray().Select(v => (float)v).ToArray(), shape).to_type(ScalarType.Float16),
            DataType.Bfloat16 => tensor(MemoryMarshal.Cast<byte, ushort>(raw).ToArray().Select(v => BitConverter.Int32BitsToSingle(v << 16)).ToArray(), shape).to_type(ScalarType.BFloat16),
            DataType.Int4 or DataType.Uint4 => Unpack4Bit(raw.ToArray(), count, type == DataType.Int4, shape),
            _ => throw new SadgException(SadgErrorCode.UnsupportedDataType, $"Unsupported data type {type}."),
        };
    }

    /// <summary>Two 4-bit values per byte, low nibble first (the ONNX layout).</summary>
    public static Tensor Unpack4Bit(byte[] packed, long count, bool signed, long[] shape)
    {
        if (signed)
        {
            var values = new sbyte[count];
            for (long i = 0; i < count; i++)
            {
                int nibble = (packed[i / 2] >> (int)(4 * (i % 2))) & 0xF;
                values[i] = (sbyte)(nibble >= 8 ? nibble - 16 : nibble);
            }
            return tensor(values, shape);
        }
        var u = new byte[count];
        for (long i = 0; i < count; i++) u[i] = (byte)((packed[i / 2] >> (int)(4 * (i % 2))) & 0xF);
        return tensor(u, shape);
    }

    /// <summary>
    /// The bits a b-bit integer takes in a written tensor: 4 up to 4 bits (INT4/UINT4, two a byte), else 8
    /// (INT8/UINT8). The QDQ writer stores by it and <c>sadg inspect</c> estimates sizes by it.
    /// </summary>
    public static int ContainerBits(int bits) => bits <= 4 ? 4 : 8;

    /// <summary>The bytes <paramref name="count"/> b-bit integers take as written (<see cref="ContainerBits"/>).</summary>
    public static long IntegerBytes(long count, int bits) => (count * ContainerBits(bits) + 7) / 8;

    /// <summary>Packs integer values in [−8, 7] (signed) or [0, 15] into ONNX's two-per-byte layout.</summary>
    public static byte[] Pack4Bit(ReadOnlySpan<int> values, bool signed)
    {
        var packed = new byte[(values.Length + 1) / 2];
        for (int i = 0; i < values.Length; i++)
        {
            int v = values[i];
            if (signed ? v < -8 || v > 7 : v < 0 || v > 15)
                throw new ArgumentOutOfRangeException(nameof(values), $"Value {v} at {i} does not fit a {(signed ? "signed" : "unsigned")} 4-bit integer.");
            packed[i / 2] |= (byte)((v & 0xF) << (4 * (i % 2)));
        }
        return packed;
    }

    /// <summary>A 4-bit initializer (INT4 or UINT4) from integer values.</summary>
    public static TensorProto FromInt4(string name, ReadOnlySpan<int> values, long[] dims, bool signed) => new()
    {
        Name = name,
        DataType = (int)(signed ? DataType.Int4 : DataType.Uint4),
        Dims = { dims },
        RawData = ByteString.CopyFrom(Pack4Bit(values, signed)),
    };

    /// <summary>The ONNX data type that holds a TorchSharp dtype.</summary>
    public static DataType ToOnnxType(ScalarType type) => type switch
    {
        ScalarType.Float32 => DataType.Float,
        ScalarType.Float64 => DataType.Double,
        ScalarType.Float16 => DataType.Float16,
        ScalarType.BFloat16 => DataType.Bfloat16,
        ScalarType.Int64 => DataType.Int64,
        ScalarType.Int32 => DataType.Int32,
        ScalarType.Int16 => DataType.Int16,
        ScalarType.Int8 => DataType.Int8,
        ScalarType.Byte => DataType.Uint8,
        ScalarType.Bool => DataType.Bool,
        _ => throw new ArgumentException($"TorchSharp dtype {type} has no ONNX counterpart in Sadg."),
    };

    /// <summary>The TorchSharp dtype Sadg uses for an ONNX type (see <see cref="ToTorch"/> for widening).</summary>
    public static ScalarType ToTorchType(DataType type) => type switch
    {
        DataType.Float => ScalarType.Float32,
        DataType.Double => ScalarType.Float64,
        DataType.Float16 => ScalarType.Float16,
        DataType.Bfloat16 => ScalarType.BFloat16,
        DataType.Int64 or DataType.Uint32 or DataType.Uint64 => ScalarType.Int64,
        DataType.Int32 or DataType.Uint16 => ScalarType.Int32,
        DataType.Int16 => ScalarType.Int16,
        DataType.Int8 or DataType.Int4 => ScalarType.Int8,
        DataType.Uint8 or DataType.Uint4 => ScalarType.Byte,
        DataType.Bool => ScalarType.Bool,
        _ => throw new SadgException(SadgErrorCode.UnsupportedDataType, $"ONNX data type {type} is not supported by Sadg."),
    };

    /// <summary>A TensorProto holding <paramref name="t"/> as raw little-endian bytes.</summary>
    public static TensorProto FromTorch(string name, Tensor t)
    {
        using var cpu = t.detach().cpu().contiguous();
        var type = ToOnnxType(cpu.dtype);
        byte[] raw = cpu.dtype switch
        {
            ScalarType.Float32 => MemoryMarshal.AsBytes<float>(cpu.data<float>().ToArray()).ToArray(),
            ScalarType.Float64 => MemoryMarshal.AsBytes<double>(cpu.data<double>().ToArray()).ToArray(),
            ScalarType.Int64 => MemoryMarshal.AsBytes<long>(cpu.data<long>().ToArray()).ToArray(),
            ScalarType.Int32 => MemoryMarshal.AsBytes<int>(cpu.data<int>().ToArray()).ToArray(),
            ScalarType.Int16 => MemoryMarshal.AsBytes<short>(cpu.data<short>().ToArray()).ToArray(),
            ScalarType.Int8 => MemoryMarshal.AsBytes<sbyte>(cpu.data<sbyte>().ToArray()).ToArray(),
            ScalarType.Byte => cpu.data<byte>().ToArray(),
            ScalarType.Bool => cpu.data<bool>().ToArray().Select(b => b ? (byte)1 : (byte)0).ToArray(),
            ScalarType.Float16 => MemoryMarshal.AsBytes<Half>(cpu.data<Half>().ToArray()).ToArray(),
            ScalarType.BFloat16 => BFloat16Bytes(cpu),
            _ => throw new ArgumentException($"Cannot write dtype {cpu.dtype}."),
        };
        var proto = new TensorProto { Name = name, DataType = (int)type, RawData = ByteString.CopyFrom(raw) };
        proto.Dims.AddRange(cpu.shape);
        return proto;
    }

    static byte[] BFloat16Bytes(Tensor t)
    {
        using var f = t.to_type(ScalarType.Float32);
        var floats = f.data<float>().ToArray();
        var raw = new byte[floats.Length * 2];
        for (int i = 0; i < floats.Length; i++)
        {
            ushort bits = (ushort)(BitConverter.SingleToInt32Bits(floats[i]) >> 16);
            raw[2 * i] = (byte)bits;
            raw[2 * i + 1] = (byte)(bits >> 8);
        }
        return raw;
    }
}
