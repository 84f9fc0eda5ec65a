using System.IO.Compression;
using System.Reflection;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

// Classifies the Fashion-MNIST test set with the embedded W4A4 model that the build quantized, and with the
// FP32 original, and prints both accuracies and sizes.
//   dotnet run --project samples/FashionApp [-- --limit N]

int limit = args.Length == 2 && args[0] == "--limit" ? int.Parse(args[1]) : int.MaxValue;
string data = Path.Combine(AppContext.BaseDirectory, "data");
var (images, rows, columns) = ReadIdxImages(Path.Combine(data, "t10k-images-idx3-ubyte.gz"), limit);
var labels = ReadIdxLabels(Path.Combine(data, "t10k-labels-idx1-ubyte.gz"), images.Length);

byte[] fp32 = ReadResource("resnet20-fmnist.onnx");
byte[] quantized = FashionApp.QuantizedModels.ResNet20;
Console.WriteLine($"{images.Length} Fashion-MNIST test images, {rows}x{columns}");
Console.WriteLine($"{"model",-26} {"size",10} {"top-1",8}");
foreach (var (name, model) in new[] { ("FP32", fp32), ($"W4A4 ({FashionApp.QuantizedModels.ResNet20Name})", quantized) })
{
    double accuracy = Accuracy(model, images, labels, rows, columns);
    Console.WriteLine($"{name,-26} {model.Length / 1024.0,7:F0} KB {accuracy,8:P2}");
}
return 0;

static double Accuracy(byte[] model, byte[][] images, byte[] labels, int rows, int columns)
{
    using var session = new InferenceSession(model);
    // The model expects standardized pixels; the mean and std are in its metadata.
    var meta = session.ModelMetadata.CustomMetadataMap;
    float mean = float.Parse(meta["sadg.input_mean"], System.Globalization.CultureInfo.InvariantCulture);
    float std = float.Parse(meta["sadg.input_std"], System.Globalization.CultureInfo.InvariantCulture);
    string input = session.InputMetadata.Keys.Single();
    int correct = 0;
    const int Batch = 500;
    for (int start = 0; start < images.Length; start += Batch)
    {
        int n = Math.Min(Batch, images.Length - start);
        var x = new DenseTensor<float>([n, 1, rows, columns]);
        for (int i = 0; i < n; i++)
            for (int p = 0; p < rows * columns; p++)
                x.Buffer.Span[i * rows * columns + p] = (images[start + i][p] / 255f - mean) / std;
        using var results = session.Run([NamedOnnxValue.CreateFromTensor(input, x)]);
        var logits = results[0].AsTensor<float>();
        for (int i = 0; i < n; i++)
        {
            int best = 0;
            for (int c = 1; c < logits.Dimensions[1]; c++) if (logits[i, c] > logits[i, best]) best = c;
            if (best == labels[start + i]) correct++;
        }
    }
    return (double)correct / images.Length;
}

static byte[] ReadResource(string name)
{
    using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream(name)
        ?? throw new InvalidOperationException($"No embedded resource '{name}'.");
    using var copy = new MemoryStream();
    stream.CopyTo(copy);
    return copy.ToArray();
}

// IDX (the MNIST format): big-endian header, then unsigned bytes.
static (byte[][] Images, int Rows, int Columns) ReadIdxImages(string path, int limit)
{
    using var reader = new BinaryReader(new GZipStream(File.OpenRead(path), CompressionMode.Decompress));
    if (BigEndian(reader) != 0x803) throw new InvalidDataException($"{path} is not an IDX image file.");
    int count = Math.Min(BigEndian(reader), limit), rows = BigEndian(reader), columns = BigEndian(reader);
    var images = new byte[count][];
    for (int i = 0; i < count; i++) images[i] = reader.ReadBytes(rows * columns);
    return (images, rows, columns);
}

static byte[] ReadIdxLabels(string path, int count)
{
    using var reader = new BinaryReader(new GZipStream(File.OpenRead(path), CompressionMode.Decompress));
    if (BigEndian(reader) != 0x801) throw new InvalidDataException($"{path} is not an IDX label file.");
    BigEndian(reader);
    return reader.ReadBytes(count);
}

static int BigEndian(BinaryReader reader)
{
    var b = reader.ReadBytes(4);
    return (b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3];
}
