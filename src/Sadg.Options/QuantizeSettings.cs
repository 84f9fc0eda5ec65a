using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;

namespace Sadg.Options
{
    /// <summary>
    /// Every setting that decides what <c>sadg quantize</c> produces, typed. Read from the tool's command line or from
    /// a <c>QuantizeModel</c> item's metadata through <see cref="QuantizeSchema"/>, and written back as the command
    /// line the build passes, the stamp and the cache key's canonical options.
    /// </summary>
    public sealed record QuantizeSettings
    {
        public int Bits { get; init; } = 4;

        /// <summary>null: float activations (<c>none</c>). When not given: the same as <see cref="Bits"/>.</summary>
        public int? ActivationBits { get; init; } = 4;

        public CalibrationMethod Method { get; init; } = CalibrationMethod.Sadag;

        /// <summary>The data folder for <see cref="CalibrationMethod.Real"/> (the tool's cache key holds its content hash instead).</summary>
        public string? CalibrationData { get; init; }

        /// <summary>Number of calibration images; null: the profile's.</summary>
        public int? Samples { get; init; }

        public StepProfile Profile { get; init; } = StepProfile.Default;

        public int Seed { get; init; }

        public DeviceKind Device { get; init; } = DeviceKind.Auto;

        /// <summary>C, H, W to generate and calibrate at, for a model whose input leaves some free; null: the model's.</summary>
        public int[]? InputShape { get; init; }

        /// <summary>What the model is fed: pixels in [0, 1] mapped onto [lo, hi]; null: not stated.</summary>
        public float[]? InputRange { get; init; }

        /// <summary>What the model is fed: pixels in [0, 1] as (x − mean) / std (one value or one per channel); null: not stated.</summary>
        public float[]? InputMean { get; init; }

        /// <summary>The std of <see cref="InputMean"/>'s normalization.</summary>
        public float[]? InputStd { get; init; }

        public InputPriorMode InputPrior { get; init; } = InputPriorMode.Auto;

        public NeighbourMode Neighbour { get; init; } = NeighbourMode.Random;

        /// <summary>Which biases the reconstruction corrects after each block (depthwise blocks by default).</summary>
        public BiasCorrectionMode BiasCorrection { get; init; } = BiasCorrectionMode.Depthwise;

        /// <summary>
        /// The accuracy gate, a percentage (0–100): the least top-1 agreement (cosine similarity × 100 for models without
        /// class scores) with the FP32 model on the validation images; null: no gate.
        /// </summary>
        public double? MinAgreement { get; init; }

        /// <summary>
        /// The data folder the agreement is measured on (the tool's cache key holds its content hash instead); null:
        /// held-out synthetic images when <see cref="MinAgreement"/> is given, else no measurement.
        /// </summary>
        public string? ValidationData { get; init; }

        /// <summary>How the images of an image folder (calibration or validation data) are resized as they are read; null: not resized.</summary>
        public ImageResize? Resize { get; init; }

        /// <summary>How the images of an image folder are cropped to the model's size after any resize.</summary>
        public CropMode Crop { get; init; } = CropMode.None;

        /// <summary>The colour order the JPEG and PNG images of an image folder are decoded to.</summary>
        public ChannelOrder ChannelOrder { get; init; } = ChannelOrder.Rgb;

        /// <summary>Layers left in float: node names or op types, sorted; null: none.</summary>
        public string[]? Exclude { get; init; }

        /// <summary>Weight bits of single layers by node name; null: none.</summary>
        public SortedDictionary<string, int>? LayerBits { get; init; }

        /// <summary>The first and last quantized layers at the run's bits (<c>same</c>) instead of 8 bits (<c>8</c>, the default).</summary>
        public bool FirstLastSame { get; init; }

        /// <summary>Mixed precision under a size budget: weight bits per layer chosen from 2, 3, 4 and 8; null: none.</summary>
        public SizeBudget? SizeBudget { get; init; }

        /// <summary>Internal (the tool's hidden option): reconstruction steps per block; null: the profile's.</summary>
        public int? ReconstructionSteps { get; init; }

        /// <summary>Internal (the tool's hidden option): warm-up and refinement steps per batch; null: the profile's.</summary>
        public int? GenerationSteps { get; init; }

        /// <summary>
        /// Every setting as canonical <c>key=value</c> pairs (invariant culture), sorted by key: the stamp and the
        /// cache key hold them, the report lists them. An unset setting has its <see cref="Setting.Unset"/> text.
        /// </summary>
        public SortedDictionary<string, string> Canonical()
        {
            var values = new SortedDictionary<string, string>(StringComparer.Ordinal);
            foreach (var s in QuantizeSchema.All) values[s.CanonicalKey] = s.Write(this) ?? s.Unset;
            return values;
        }

        /// <summary>
        /// The tool's command line for these settings: every setting that has a value, as <c>flag value</c> pairs in
        /// the schema's order, so the tool never falls back on a default of its own.
        /// </summary>
        public IEnumerable<KeyValuePair<string, string>> Arguments()
        {
            foreach (var s in QuantizeSchema.All)
                if (s.Write(this) is string value) yield return new KeyValuePair<string, string>(s.Flag, value);
        }

        /// <summary>
        /// Reads settings from text (a command line's values or item metadata; <paramref name="text"/> returns null or
        /// empty for a setting that is not given), checking each. Every problem is added to <paramref name="problems"/>;
        /// <paramref name="settings"/> limits what is read (the others keep their defaults).
        /// </summary>
        public static QuantizeSettings Parse(Func<Setting, string?> text, ICollection<OptionProblem> problems, IEnumerable<Setting>? settings = null)
        {
            var result = new QuantizeSettings();
            var given = new HashSet<Setting>();
            var read = (settings ?? QuantizeSchema.All).ToList();
            foreach (var s in read)
            {
                string value = (text(s) ?? "").Trim();
                if (value.Length == 0) continue;
                given.Add(s);
                var next = s.Read(result, value);
                if (next != null) result = next;
                else problems.Add(new OptionProblem(s, s.Code, $"{s.Label} must be {s.Requirement}, not \"{value}\"."));
            }
            if (!given.Contains(QuantizeSchema.ActivationBits)) result = result with { ActivationBits = result.Bits };
            return result.Check(problems, withData: read.Contains(QuantizeSchema.CalibrationData));
        }

        /// <summary>
        /// The checks between settings: the method and its data (when <paramref name="withData"/>: a caller that reads
        /// no calibration data, like <c>sadg generate</c>, checks the method itself), SADAG's neighbour with another method,
        /// the input statements that go together.
        /// </summary>
        public QuantizeSettings Check(ICollection<OptionProblem> problems, bool withData = true)
        {
            Setting method = QuantizeSchema.Method, data = QuantizeSchema.CalibrationData;
            if (withData && Method == CalibrationMethod.Real && CalibrationData == null)
                problems.Add(new OptionProblem(data, data.Code,
                    $"{method.Label} real needs {data.Label}: a data folder (an IDX, tensor or image folder; docs/cli.md)."));
            if (withData && Method != CalibrationMethod.Real && CalibrationData != null)
                problems.Add(new OptionProblem(data, data.Code,
                    $"{data.Label} is only read by {method.Label} real; {QuantizeSchema.Name(Method)} generates its own data."));
            Setting neighbour = QuantizeSchema.Neighbour;
            if (Method != CalibrationMethod.Sadag && Neighbour != NeighbourMode.Random)
                problems.Add(new OptionProblem(neighbour, neighbour.Code,
                    $"{neighbour.Label} {QuantizeSchema.Name(Neighbour)} is read by {method.Label} sadag only; {QuantizeSchema.Name(Method)} has no " +
                    "sharpness-aware refinement to use it. Leave it out, or choose sadag."));
            Setting resize = QuantizeSchema.Resize, crop = QuantizeSchema.Crop, order = QuantizeSchema.ChannelOrder;
            if (withData && (Resize != null || Crop != CropMode.None || ChannelOrder != ChannelOrder.Rgb) && CalibrationData == null && ValidationData == null)
            {
                var given = Resize != null ? resize : Crop != CropMode.None ? crop : order;
                problems.Add(new OptionProblem(given, given.Code,
                    $"{given.Label} applies to the image folders of {data.Label} or {QuantizeSchema.ValidationData.Label}; give one of them, or leave it out."));
            }
            Setting range = QuantizeSchema.InputRange, mean = QuantizeSchema.InputMean, std = QuantizeSchema.InputStd;
            if (InputRange != null && (InputMean != null || InputStd != null))
                problems.Add(new OptionProblem(range, range.Code, $"Give either {range.Label} or {mean.Label} with {std.Label}, not both."));
            else if ((InputMean == null) != (InputStd == null))
                problems.Add(new OptionProblem(mean, mean.Code, $"{mean.Label} and {std.Label} go together; give both."));
            return this;
        }
    }

    /// <summary>One problem with a setting's value: its SADG code and a message that names the setting for both doors.</summary>
    public sealed class OptionProblem
    {
        public OptionProblem(Setting setting, string code, string message)
        {
            Setting = setting;
            Code = code;
            Message = message;
        }

        public Setting Setting { get; }

        /// <summary><c>SADGnnnn</c> (docs/errors.md).</summary>
        public string Code { get; }

        public string Message { get; }
    }
}
