using System;
using System.Collections.Generic;
using System.Linq;
using System.Text;

namespace Sadg.BuildTasks
{
    /// <summary>
    /// The external-data files an ONNX model's initializers name (ONNX "external data": weights in a file beside the
    /// .onnx), read from the protobuf wire format directly (ModelProto.graph = 7, GraphProto.initializer = 5,
    /// TensorProto.external_data = 13, its entries' key = 1 and value = 2): the task assembly carries no protobuf
    /// library. Their content belongs in the stamp as much as the model file's. Malformed input gives what was read
    /// up to there; the tool reports a malformed model itself.
    /// </summary>
    internal static class ExternalDataLocations
    {
        public static IReadOnlyList<string> Of(byte[] model)
        {
            var locations = new SortedSet<string>(StringComparer.Ordinal);
            foreach (var graph in Fields(model, 0, model.Length, 7))
                foreach (var tensor in Fields(model, graph.Start, graph.End, 5))
                    foreach (var entry in Fields(model, tensor.Start, tensor.End, 13))
                    {
                        string? key = Fields(model, entry.Start, entry.End, 1).Select(f => Text(model, f)).LastOrDefault();
                        string? value = Fields(model, entry.Start, entry.End, 2).Select(f => Text(model, f)).LastOrDefault();
                        if (key == "location" && !string.IsNullOrEmpty(value)) locations.Add(value!);
                    }
            return locations.ToList();
        }

        private static string Text(byte[] b, (int Start, int End) f) => Encoding.UTF8.GetString(b, f.Start, f.End - f.Start);

        /// <summary>The length-delimited fields numbered <paramref name="number"/> in [start, end).</summary>
        private static List<(int Start, int End)> Fields(byte[] b, int start, int end, int number)
        {
            var found = new List<(int, int)>();
            int i = start;
            while (i < end)
            {
                if (!Varint(b, ref i, end, out ulong tag)) break;
                ulong field = tag >> 3;
                switch ((int)(tag & 7))
                {
                    case 0:
                        if (!Varint(b, ref i, end, out _)) return found;
                        break;
                    case 1: i += 8; break;
                    case 5: i += 4; break;
                    case 2:
                        if (!Varint(b, ref i, end, out ulong length) || length > (ulong)(end - i)) return found;
                        if (field == (ulong)number) found.Add((i, i + (int)length));
                        i += (int)length;
                        break;
                    default: return found; // groups (deprecated) or garbage
                }
            }
            return found;
        }

        private static bool Varint(byte[] b, ref int i, int end, out ulong value)
        {
            value = 0;
            for (int shift = 0; shift < 64 && i < end; shift += 7)
            {
                byte x = b[i++];
                value |= (ulong)(x & 0x7f) << shift;
                if ((x & 0x80) == 0) return true;
            }
            return false;
        }
    }
}
