using Sadg.Generation;
using static TorchSharp.torch;

namespace Sadg.Pipeline;

/// <summary>Calibration images made by <see cref="QuantizationPipeline"/>, with how they were made.</summary>
public sealed class CalibrationSet : IDisposable
{
    internal CalibrationSet(Tensor images, long[] labels, string? warning, bool usedStatistics)
    {
        Images = images;
        Labels = labels;
        Warning = warning;
        UsedBatchNormStatistics = usedStatistics;
    }

    /// <summary>[N, C, H, W] on the CPU, as the model is fed (standardized when the model's metadata says so).</summary>
    public Tensor Images { get; }

    /// <summary>The FP32 model's top-1 class of each image.</summary>
    public long[] Labels { get; }

    /// <summary>The notice for BN-free models (the statistics-free objective was used), else null.</summary>
    public string? Warning { get; }

    public bool UsedBatchNormStatistics { get; }

    /// <summary>The input prior the generation used (null: none, or no generation).</summary>
    public InputPrior? Prior { get; init; }

    public List<StageTiming> Timings { get; } = [];

    public List<StageLosses> Losses { get; } = [];

    public float[] ImageData() => Images.contiguous().data<float>().ToArray();

    /// <summary>The images as a PNG grid, each labelled with the FP32 model's top-1 class.</summary>
    public byte[] GridPng() => ImageGrid.Png(Images, Labels);

    public void Dispose() => Images.Dispose();
}

/// <summary>The pipeline's product: the quantized model, its report and the calibration images.</summary>
public sealed class PipelineResult : IDisposable
{
    internal PipelineResult(global::Onnx.ModelProto model, byte[] modelBytes, QuantizationReport report, CalibrationSet images)
    {
        Model = model;
        ModelBytes = modelBytes;
        Report = report;
        Images = images;
    }

    public global::Onnx.ModelProto Model { get; }

    /// <summary>The serialized model, exactly the bytes of the file to write.</summary>
    public byte[] ModelBytes { get; }

    public QuantizationReport Report { get; }

    public CalibrationSet Images { get; }

    public void Dispose() => Images.Dispose();
}
