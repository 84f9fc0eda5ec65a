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

/// <summary>
/// What the model is fed and how generation uses it, shared by <c>quantize</c> and <c>generate</c>:
/// <c>--input-range lo,hi</c> or <c>--input-mean</c>/<c>--input-std</c>, <c>--input-prior</c> and <c>--neighbour</c>.
/// </summary>
public sealed class InputOptions
{
    public Option<string?> Range { get; } = new("--input-range")
    {
        Description = "What the model is fed: pixels in [0, 1] mapped onto [lo, hi] (x/255: 0,1; x/127.5-1: -1,1; raw bytes: 0,255). " +
                      "Default: the model's sadg.input_mean/std metadata, else inferred from its first BatchNormalization node.",
        HelpName = "lo,hi",
    };

    public Option<string?> Mean { get; } = new("--input-mean")
    {
        Description = "What the model is fed: pixels in [0, 1] as (x - mean) / std; one value or one per channel (with --input-std).",
        HelpName = "m[,m,m]",
    };

    public Option<string?> Std { get; } = new("--input-std")
    {
        Description = "The std of --input-mean's normalization; one value or one per channel.",
        HelpName = "s[,s,s]",
    };

    public Option<string> Prior { get; } = new("--input-prior")
    {
        Description = "The generation's input prior: auto (what --input-range/--input-mean state, else the metadata, else inferred), " +
                      "off, or standardized (mean 0, std 1).",
        DefaultValueFactory = _ => "auto",
        HelpName = "auto|off|standardized",
    };

    public Option<string> Neighbour { get; } = new("--neighbour")
    {
        Description = "SADAG's neighbour: random (default; what the paper's formula does in effect), paper (its formula), or raw " +
                      "(the formula on unnormalized features, which has a real gradient).",
        DefaultValueFactory = _ => "random",
        HelpName = "random|paper|raw",
    };

    public IEnumerable<Option> All => [Range, Mean, Std, Prior, Neighbour];

    /// <summary>The checked choices for a model with <paramref name="channels"/> input channels.</summary>
    public Pipeline.GenerationChoices Parse(ParseResult parse, int channels)
    {
        string? range = parse.GetValue(Range), mean = parse.GetValue(Mean), std = parse.GetValue(Std);
        Sadg.Pipeline.InputStandardization? input = null;
        if (range is not null)
        {
            if (mean is not null || std is not null)
                throw new SadgException(SadgErrorCode.InvalidOptionValue, "Give either --input-range or --input-mean/--input-std, not both.");
            var v = EvaluateCommand.ParseChannels(range, "--input-range")!;
            if (v.Length != 2) throw new SadgException(SadgErrorCode.InvalidOptionValue, $"--input-range '{range}': give two numbers lo,hi (e.g. 0,1).");
            input = Sadg.Pipeline.InputStandardization.FromRange(v[0], v[1], channels);
        }
        else if (mean is not null || std is not null)
        {
            if (mean is null || std is null)
                throw new SadgException(SadgErrorCode.InvalidOptionValue, "--input-mean and --input-std go together; give both.");
            input = Sadg.Pipeline.InputStandardization.FromNormalization(
                EvaluateCommand.ParseChannels(mean, "--input-mean")!, EvaluateCommand.ParseChannels(std, "--input-std")!, channels);
        }
        return new(input, ParseEnum<Sadg.Pipeline.InputPriorMode>(parse.GetValue(Prior)!, "--input-prior"),
            ParseEnum<Sadg.Generation.NeighbourMode>(parse.GetValue(Neighbour)!, "--neighbour"));
    }

    static T ParseEnum<T>(string text, string option) where T : struct, Enum =>
        Enum.TryParse<T>(text, ignoreCase: true, out var value) && Enum.IsDefined(value) && !int.TryParse(text, out _)
            ? value
            : throw new SadgException(SadgErrorCode.InvalidOptionValue,
                $"{option} '{text}': use {string.Join(", ", Enum.GetNames<T>().Select(n => n.ToLowerInvariant()))}.");
}
