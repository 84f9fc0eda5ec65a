using System.CommandLine;
using Sadg.Onnx;

namespace Sadg.Cli.Commands;

/// <summary>Options several verbs share, and the checks on their values (each failure is a SADG error, exit 1).</summary>
public static class SharedOptions
{
    public static Argument<string> Model() => new("model")
    {
        Description = "The FP32 ONNX model (.onnx).",
    };

    /// <summary>
    /// Loads the model and requires a single NCHW image input (SADG1001–1009, SADG1102), of a known size once
    /// <paramref name="inputShape"/> (C,H,W) is applied (SADG1107, SADG1502). The model is returned as the file has it.
    /// </summary>
    public static (OnnxModel Model, ImageInput Input) LoadClassifier(string path, int[]? inputShape = null)
    {
        var model = OnnxModel.Load(path);
        return (model, InputShapes.Apply(model, inputShape).GetImageInput());
    }
}

/// <summary>
/// The tool's options for settings of <see cref="QuantizeSchema"/>: name, alias, help, default and value type come
/// from the schema, and <see cref="Read"/> checks the values with the schema's rules, as the build tasks check item
/// metadata. A whole-number setting is parsed by System.CommandLine, so <c>--bits four</c> stays a usage error.
/// </summary>
public sealed class SettingOptions
{
    readonly List<(Setting Setting, Option Option)> _options = [];

    public SettingOptions(IEnumerable<Setting> settings)
    {
        foreach (var s in settings) _options.Add((s, Create(s)));
    }

    public IEnumerable<Option> All => _options.Select(o => o.Option);

    static Option Create(Setting s)
    {
        string[] aliases = s.Alias is null ? [] : [s.Alias];
        if (s.IsInteger)
        {
            var option = new Option<int?>(s.Flag, aliases) { Description = s.Description, HelpName = s.HelpName, Hidden = s.Hidden };
            if (s.DefaultText is { } d) option.DefaultValueFactory = _ => int.Parse(d, System.Globalization.CultureInfo.InvariantCulture);
            return option;
        }
        var text = new Option<string?>(s.Flag, aliases) { Description = s.Description, HelpName = s.HelpName, Hidden = s.Hidden };
        if (s.DefaultText is { } t) text.DefaultValueFactory = _ => t;
        return text;
    }

    /// <summary>The settings given on the command line, checked; the first problem is a SADG error (exit 1).</summary>
    public QuantizeSettings Read(ParseResult parse)
    {
        string? Text(Setting s)
        {
            var option = _options.FirstOrDefault(o => o.Setting == s).Option;
            return option switch
            {
                Option<int?> i => parse.GetValue(i)?.ToString(System.Globalization.CultureInfo.InvariantCulture),
                Option<string?> t => parse.GetValue(t),
                _ => null,
            };
        }
        var problems = new List<OptionProblem>();
        var settings = QuantizeSettings.Parse(Text, problems, _options.Select(o => o.Setting));
        if (problems.Count > 0) throw Error(problems[0]);
        return settings;
    }

    /// <summary>A schema problem as the tool's error (its code, its message naming both doors).</summary>
    public static SadgException Error(OptionProblem problem) =>
        new((SadgErrorCode)int.Parse(problem.Code.AsSpan(4), System.Globalization.CultureInfo.InvariantCulture), problem.Message);
}
