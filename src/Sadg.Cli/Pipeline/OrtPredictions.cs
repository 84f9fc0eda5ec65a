using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Sadg.Onnx;

namespace Sadg.Cli.Pipeline;

/// <summary>Top-1 classes of a classifier, or any model's outputs, run by ONNX Runtime over a set of images, batch by batch.</summary>
public static class OrtPredictions
{
    /// <summary>
    /// Runs <paramref name="session"/> on <paramref name="count"/> images [C, H, W] stored one after another in
    /// <paramref name="images"/> and returns each image's top-1 class. A model declared with a fixed batch
    /// (<paramref name="fixedBatch"/>) always gets full batches, padded with zeros. <paramref name="prepare"/> may
    /// change each batch in place before it runs (standardization); <paramref name="progress"/> hears the number of
    /// images done. A channels-last model (<paramref name="channelsLast"/>) gets each batch as [N, H, W, C], after
    /// <paramref name="prepare"/>; a model with a uint8 input gets the values rounded to bytes. Cancelling stops a
    /// running batch.
    /// </summary>
    public static int[] Top1(InferenceSession session, string inputName, string outputName, float[] images, int count, int[] chw,
        int batch, bool fixedBatch, Action<Span<float>>? prepare, Action<int>? progress, string? path, CancellationToken cancellationToken,
        bool channelsLast = false)
    {
        var predictions = new int[count];
        Run(session, inputName, outputName, images, count, chw, batch, fixedBatch, prepare, progress, path, channelsLast, cancellationToken, (start, n, rows, logits) =>
        {
            int classes = logits.Length / rows;
            for (int r = 0; r < n; r++)
            {
                var row = logits.Slice(r * classes, classes);
                int best = 0;
                for (int k = 1; k < classes; k++) if (row[k] > row[best]) best = k;
                predictions[start + r] = best;
            }
        });
        return predictions;
    }

    /// <summary>
    /// Like <see cref="Top1"/>, but returns the (float) output itself: each image's output flattened, one row per
    /// image, one after another.
    /// </summary>
    public static float[] Outputs(InferenceSession session, string inputName, string outputName, float[] images, int count, int[] chw,
        int batch, bool fixedBatch, string? path, CancellationToken cancellationToken)
    {
        var values = new List<float>();
        Run(session, inputName, outputName, images, count, chw, batch, fixedBatch, null, null, path, channelsLast: false, cancellationToken, (_, n, rows, output) =>
        {
            foreach (float v in output[..(output.Length / rows * n)]) values.Add(v);
        });
        return values.ToArray();
    }

    /// <summary>Each value rounded to the nearest whole number (halves to even) and clamped to 0 … 255.</summary>
    internal static byte[] ToBytes(ReadOnlySpan<float> values)
    {
        var bytes = new byte[values.Length];
        ToBytes(values, bytes);
        return bytes;
    }

    /// <summary><see cref="ToBytes(ReadOnlySpan{float})"/> into <paramref name="bytes"/>.</summary>
    static void ToBytes(ReadOnlySpan<float> values, Span<byte> bytes)
    {
        for (int i = 0; i < values.Length; i++) bytes[i] = (byte)Math.Clamp(MathF.Round(values[i]), 0f, 255f);
    }

    /// <summary>Hears one batch's output (float) for <paramref name="images"/> images from <paramref name="start"/>; <paramref name="rows"/> were run (padding included).</summary>
    delegate void BatchOutput(int start, int images, int rows, ReadOnlySpan<float> output);

    static void Run(InferenceSession session, string inputName, string outputName, float[] images, int count, int[] chw,
        int batch, bool fixedBatch, Action<Span<float>>? prepare, Action<int>? progress, string? path, bool channelsLast,
        CancellationToken cancellationToken, BatchOutput consume)
    {
        int per = chw[0] * chw[1] * chw[2];
        long[] dims = channelsLast ? [chw[1], chw[2], chw[0]] : [chw[0], chw[1], chw[2]];
        bool bytes = session.InputMetadata[inputName].ElementDataType == TensorElementType.UInt8;
        using var runOptions = new RunOptions();
        using var stop = cancellationToken.Register(() => runOptions.Terminate = true);
        var buffer = new float[batch * per];
        // The batch as fed: the buffer itself, or its channels-last copy; a uint8 input gets it rounded to bytes.
        var layoutBuffer = channelsLast ? new float[batch * per] : null;
        var byteBuffer = bytes ? new byte[batch * per] : null;
        for (int start = 0; start < count; start += batch)
        {
            cancellationToken.ThrowIfCancellationRequested();
            int n = Math.Min(batch, count - start);
            Array.Clear(buffer);
            images.AsSpan(start * per, n * per).CopyTo(buffer);
            prepare?.Invoke(buffer.AsSpan(0, n * per));
            int rows = fixedBatch ? batch : n;
            long[] shape = [rows, .. dims];
            var fed = buffer.AsMemory(0, rows * per);
            if (layoutBuffer is not null)
            {
                InputLayout.ToChannelsLast(fed.Span, layoutBuffer, rows, chw[0], chw[1], chw[2]);
                fed = layoutBuffer.AsMemory(0, rows * per);
            }
            if (byteBuffer is not null) ToBytes(fed.Span, byteBuffer);
            // The value reads the buffers in place until it is disposed, before the next batch overwrites them.
            using var value = byteBuffer is not null
                ? OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, byteBuffer.AsMemory(0, rows * per), shape)
                : OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, fed, shape);
            IDisposableReadOnlyCollection<OrtValue> outputs;
            try
            {
                outputs = session.Run(runOptions, [inputName], [value], [outputName]);
            }
            catch (OnnxRuntimeException) when (cancellationToken.IsCancellationRequested)
            {
                throw new OperationCanceledException(cancellationToken);
            }
            catch (OnnxRuntimeException e)
            {
                string what = path is null ? "the model" : $"'{path}'";
                throw new SadgException(SadgErrorCode.InvalidNode, $"ONNX Runtime failed to run {what}: {e.Message.Split('\n')[0]}", path, inner: e);
            }
            using (outputs) consume(start, n, rows, outputs[0].GetTensorDataAsSpan<float>());
            progress?.Invoke(start + n);
        }
    }
}
