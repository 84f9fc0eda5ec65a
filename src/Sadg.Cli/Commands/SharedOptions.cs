using System.CommandLine;
using Sadg.Onnx;

namespace Sadg.Cli.Commands;

/// <summary>Options several verbs share, and the checks on their values (each failure is a SADG error, exit 1).</summary>
public static class SharedOptions
{
    public static readonly string[] Profiles = ["quick", "default", "paper"];

    public static Argument<string> Model() => new("model")
    {
        Description = "The FP32 ONNX model (.onnx).",
    };

    public static Option<string> Device() => new("--device")
    {
        Description = "Where to compute: auto (CUDA when available, else the CPU, said in one line), cpu, or cuda (an error when CUDA is missing).",
        DefaultValueFactory = _ => "auto",
        HelpName = "auto|cpu|cuda",
    };

    public static Option<string> Profile() => new("--profile")
    {
        Description = "Step budgets: quick (minutes on a CPU), default, or paper (the paper's budgets; meant for a GPU).",
        DefaultValueFactory = _ => "default",
        HelpName = "quick|default|paper",
    };

    public static Option<int?> Samples() => new("--samples")
    {
        Description = "Number of calibration images (default: the profile's).",
        HelpName = "N",
    };

    public static Option<int> Seed() => new("--seed")
    {
        Description = "Random seed; the same seed, options and model give the same result.",
        DefaultValueFactory = _ => 0,
        HelpName = "N",
    };

    public static string CheckProfile(string value)
    {
        string lower = value.ToLowerInvariant();
        if (!Profiles.Contains(lower))
            throw new SadgException(SadgErrorCode.InvalidOptionValue, $"Unknown profile '{value}'; use {string.Join(", ", Profiles)}.");
        return lower;
    }

    public static string CheckMethod(string value, string[] allowed)
    {
        string lower = value.ToLowerInvariant();
        if (!allowed.Contains(lower))
            throw new SadgException(SadgErrorCode.InvalidOptionValue, $"Unknown method '{value}'; use {string.Join(", ", allowed)}.");
        return lower;
    }

    public static Option<string?> InputShape() => new("--input-shape")
    {
        Description = "The image size C,H,W to generate and calibrate at, for a model whose input leaves channels, height or " +
                      "width free (e.g. [N,3,48,W]); the written model keeps them free.",
        HelpName = "C,H,W",
    };

    public static int? CheckSamples(int? samples)
    {
        if (samples is < 1)
            throw new SadgException(SadgErrorCode.InvalidOptionValue, $"--samples {samples}: give at least 1 image.");
        return samples;
    }

    /// <summary>
    /// Loads the model and requires a single NCHW image input (SADG1001–1009, SADG1102), of a known size once
    /// <paramref name="inputShape"/> (C,H,W) is applied (SADG1107, SADG1502). The model is returned as the file has it.
    /// </summary>
    public static (OnnxModel Model, ImageInput Input) LoadClassifier(string path, int[]? inputShape = null)
    {
        var model = OnnxModel.Load(path);
        return (model, InputShapes.Apply(model, inputShape).GetImageInput());
    }

    /// <summary>The parsed <c>--input-shape</c>, or null when not given.</summary>
    public static int[]? ParseInputShape(string? text) => text is null ? null : InputShapes.Parse(text);
}
