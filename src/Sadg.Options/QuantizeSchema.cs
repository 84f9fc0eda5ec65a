using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;

namespace Sadg.Options
{
    /// <summary>
    /// One setting of <see cref="QuantizeSettings"/>: its name for both doors (the tool's flag, the item metadata),
    /// what it accepts, its default and help text, and its canonical key. Declared once in <see cref="QuantizeSchema"/>.
    /// </summary>
    public sealed class Setting
    {
        internal Setting(string name, string flag, string canonicalKey, string helpName, string description, string requirement,
            Func<QuantizeSettings, string, QuantizeSettings?> read, Func<QuantizeSettings, string?> write)
        {
            Name = name;
            Flag = flag;
            CanonicalKey = canonicalKey;
            HelpName = helpName;
            Description = description;
            Requirement = requirement;
            Read = read;
            Write = write;
        }

        /// <summary>The setting's name, which is also its <c>QuantizeModel</c> metadata name (<c>Samples</c>).</summary>
        public string Name { get; }

        /// <summary>The tool's option (<c>--samples</c>).</summary>
        public string Flag { get; }

        /// <summary>A short alias of <see cref="Flag"/> (<c>-b</c>), or null.</summary>
        public string? Alias { get; internal set; }

        /// <summary>The key in the canonical options (stamp, cache key, report): <c>samples</c>.</summary>
        public string CanonicalKey { get; }

        /// <summary>The value's placeholder in help (<c>N</c>, <c>2-8</c>, <c>auto|cpu|cuda</c>).</summary>
        public string HelpName { get; }

        public string Description { get; }

        /// <summary>What a value must be, for messages: "a whole number from 2 to 8".</summary>
        public string Requirement { get; }

        /// <summary>The default as help shows it; null when there is none to show (the profile's, the model's).</summary>
        public string? DefaultText { get; internal set; }

        /// <summary>The canonical text of an unset value.</summary>
        public string Unset { get; internal set; } = "none";

        /// <summary>The tool parses the value as a whole number (so a non-number is a usage error there).</summary>
        public bool IsInteger { get; internal set; }

        /// <summary>QuantizeModel metadata carries it (false: the tool's hidden, internal options).</summary>
        public bool IsMetadata { get; internal set; } = true;

        /// <summary>Hidden from the tool's help (internal options for tests and experiments).</summary>
        public bool Hidden { get; internal set; }

        /// <summary>The SADG code of a value that is not allowed.</summary>
        public string Code { get; internal set; } = QuantizeSchema.InvalidOptionValue;

        /// <summary>The setting named for both doors: <c>Samples (`--samples` / `Samples` metadata)</c>.</summary>
        public string Label => IsMetadata ? $"{Name} (`{Flag}` / `{Name}` metadata)" : $"{Name} (`{Flag}`)";

        /// <summary>The settings with this value read from text, or null when the text is not allowed.</summary>
        public Func<QuantizeSettings, string, QuantizeSettings?> Read { get; }

        /// <summary>The value as text (what <see cref="Read"/> reads back), or null when unset.</summary>
        public Func<QuantizeSettings, string?> Write { get; }

        public override string ToString() => Name;
    }

    /// <summary>
    /// The schema of <c>sadg quantize</c>'s settings, each declared once. The tool builds its options from it, the
    /// build tasks check item metadata, write the stamp and pass the command line with it, and Core encodes the cache
    /// key and the report's options with it.
    /// </summary>
    public static class QuantizeSchema
    {
        public const string InvalidBits = "SADG1402";
        public const string CalibrationDataInvalid = "SADG1403";
        public const string InvalidOptionValue = "SADG1502";
        public const string DataNotFound = "SADG1301";

        public static readonly Setting Bits = new Setting("Bits", "--bits", "bits", "2-8", "Weight bit width, 2-8.",
            "a whole number from 2 to 8", (s, t) => TryBits(t, out int b) ? s with { Bits = b } : null, s => Int(s.Bits))
        { Alias = "-b", DefaultText = "4", IsInteger = true, Code = InvalidBits };

        public static readonly Setting ActivationBits = new Setting("ActivationBits", "--activation-bits", "activation_bits", "N|none",
            "Activation bit width, 2-8, or 'none' to leave activations in float (default: the same as --bits).",
            "a whole number from 2 to 8, or none",
            (s, t) => string.Equals(t, "none", StringComparison.OrdinalIgnoreCase) ? s with { ActivationBits = null }
                : TryBits(t, out int b) ? s with { ActivationBits = b } : null,
            s => s.ActivationBits is int a ? Int(a) : "none")
        { Code = InvalidBits };

        public static readonly Setting Method = Choice<CalibrationMethod>("Method", "--method", "method",
            "Calibration data: sadag (sharpness-aware generation, the paper), genie (Genie-D generation only), " +
            "gaussian (noise; a baseline), or real (images from --calibration-data).",
            (s, v) => s with { Method = v }, s => s.Method, alias: "-m");

        public static readonly Setting CalibrationData = new Setting("CalibrationData", "--calibration-data", "calibration_data", "path",
            "Labelled or unlabelled images for --method real: an IDX, tensor or image folder (docs/cli.md).", "a data folder",
            (s, t) => s with { CalibrationData = t }, s => s.CalibrationData)
        { Code = CalibrationDataInvalid };

        public static readonly Setting Samples = new Setting("Samples", "--samples", "samples", "N",
            "Number of calibration images (default: the profile's).", "a whole number of at least 1",
            (s, t) => TryInt(t, 1, out int n) ? s with { Samples = n } : null, s => Int(s.Samples))
        { IsInteger = true, Unset = "profile" };

        public static readonly Setting Profile = Choice<StepProfile>("Profile", "--profile", "profile",
            "Step budgets: quick (minutes on a CPU), default, or paper (the paper's budgets; meant for a GPU).",
            (s, v) => s with { Profile = v }, s => s.Profile);

        public static readonly Setting Seed = new Setting("Seed", "--seed", "seed", "N",
            "Random seed; the same seed, options and model give the same result.", "a whole number",
            (s, t) => int.TryParse(t, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int n) ? s with { Seed = n } : null,
            s => Int(s.Seed))
        { DefaultText = "0", IsInteger = true };

        public static readonly Setting Device = Choice<DeviceKind>("Device", "--device", "device",
            "Where to compute: auto (CUDA when available, else the CPU, said in one line), cpu, or cuda (an error when CUDA is missing).",
            (s, v) => s with { Device = v }, s => s.Device);

        public static readonly Setting InputShape = new Setting("InputShape", "--input-shape", "input_shape", "C,H,W",
            "The image size C,H,W to generate and calibrate at, for a model whose input leaves channels, height or " +
            "width free (e.g. [N,3,48,W]); the written model keeps them free.",
            "three whole numbers C,H,W (channels, height, width), each at least 1, e.g. 3,48,320",
            (s, t) => TryShape(t, out int[]? shape) ? s with { InputShape = shape } : null, s => Ints(s.InputShape))
        { Unset = "model" };

        public static readonly Setting InputRange = new Setting("InputRange", "--input-range", "input_range", "lo,hi",
            "What the model is fed: pixels in [0, 1] mapped onto [lo, hi] (x/255: 0,1; x/127.5-1: -1,1; raw bytes: 0,255). " +
            "Default: the model's sadg.input_mean/std metadata, else inferred from its first BatchNormalization node.",
            "two numbers lo,hi with lo < hi (e.g. 0,1 or -1,1 or 0,255)",
            (s, t) => NumberLists.TryParse(t, out float[]? v) && v!.Length == 2 && v[0] < v[1] ? s with { InputRange = v } : null,
            s => Floats(s.InputRange));

        public static readonly Setting InputMean = new Setting("InputMean", "--input-mean", "input_mean", "m[,m,m]",
            "What the model is fed: pixels in [0, 1] as (x - mean) / std; one value or one per channel (with --input-std).",
            "a number or a comma-separated list of numbers",
            (s, t) => NumberLists.TryParse(t, out float[]? v) ? s with { InputMean = v } : null, s => Floats(s.InputMean));

        public static readonly Setting InputStd = new Setting("InputStd", "--input-std", "input_std", "s[,s,s]",
            "The std of --input-mean's normalization; one value or one per channel.",
            "a positive number or a comma-separated list of positive numbers",
            (s, t) => NumberLists.TryParse(t, out float[]? v) && v!.All(x => x > 0) ? s with { InputStd = v } : null,
            s => Floats(s.InputStd));

        public static readonly Setting InputPrior = Choice<InputPriorMode>("InputPrior", "--input-prior", "input_prior",
            "The generation's input prior: auto (what --input-range/--input-mean state, else the metadata, else inferred), " +
            "off, or standardized (mean 0, std 1).",
            (s, v) => s with { InputPrior = v }, s => s.InputPrior);

        public static readonly Setting Neighbour = Choice<NeighbourMode>("Neighbour", "--neighbour", "neighbour",
            "SADAG's neighbour: random (default; what the paper's formula does in effect), paper (its formula), or raw " +
            "(the formula on unnormalized features, which has a real gradient).",
            (s, v) => s with { Neighbour = v }, s => s.Neighbour, defaultValue: NeighbourMode.Random);

        public static readonly Setting BiasCorrection = new Setting("BiasCorrection", "--bias-correction", "bias_correction", "depthwise|off",
            "After the reconstruction of a block that holds a depthwise convolution, correct the biases of its depthwise " +
            "convolutions and its last layer by the mean difference from the float model on the calibration images " +
            "(depthwise, the default), or leave every bias as it is (off).",
            "one of " + string.Join(", ", Names<BiasCorrectionMode>()),
            (s, t) => TryName(t, out BiasCorrectionMode m) ? s with { BiasCorrection = m } : null,
            s => s.BiasCorrection == BiasCorrectionMode.Depthwise ? null : Name(s.BiasCorrection))
        { DefaultText = Name(BiasCorrectionMode.Depthwise), Unset = Name(BiasCorrectionMode.Depthwise) };

        public static readonly Setting MinAgreement = new Setting("MinAgreement", "--min-agreement", "min_agreement", "P",
            "The accuracy gate: after quantizing, measure the quantized model's top-1 agreement with the FP32 model (both run " +
            "by ONNX Runtime) on held-out images (--validation-data, else synthetic images made with another seed) and fail " +
            "(SADG1405, nothing written) below P percent. Models that do not output class scores are gated on the output " +
            "cosine similarity x 100.",
            "a percentage: a number from 0 to 100",
            (s, t) => double.TryParse(t, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out double p) && p >= 0 && p <= 100
                ? s with { MinAgreement = p } : null,
            s => s.MinAgreement?.ToString("R", CultureInfo.InvariantCulture));

        public static readonly Setting ValidationData = new Setting("ValidationData", "--validation-data", "validation_data", "path",
            "Images to measure the agreement with the FP32 model on (the gate's, and the report's): an IDX, tensor or image " +
            "folder, as --calibration-data (labels are not needed). Default: held-out synthetic images.",
            "a data folder",
            (s, t) => s with { ValidationData = t }, s => s.ValidationData)
        { Code = DataNotFound };

        public static readonly Setting Resize = new Setting("Resize", "--resize", "resize", "N|model",
            "Resize the images of an image folder (--calibration-data, --validation-data) as they are read: N scales the " +
            "shorter side to N pixels keeping the aspect ratio (then --crop center cuts the model's HxW, e.g. 256 for 224); " +
            "model scales to exactly the model's HxW. High-quality SkiaSharp sampling. Default: no resize.",
            "a whole number of at least 1 (the shorter side in pixels), or model",
            (s, t) => ImageResize.TryParse(t, out ImageResize? r) ? s with { Resize = r } : null, s => s.Resize?.ToString());

        public static readonly Setting Crop = new Setting("Crop", "--crop", "crop", "none|center",
            "Crop the images of an image folder to the model's HxW after any --resize: center takes the centre (torchvision's " +
            "CenterCrop; images smaller than HxW are an error).",
            "one of " + string.Join(", ", Names<CropMode>()),
            (s, t) => TryName(t, out CropMode c) ? s with { Crop = c } : null,
            s => s.Crop == CropMode.None ? null : Name(s.Crop))
        { DefaultText = Name(CropMode.None) };

        public static readonly Setting ChannelOrder = new Setting("ChannelOrder", "--channel-order", "channel_order", "rgb|bgr",
            "The colour order the model takes, for the JPEG and PNG images of an image folder (--calibration-data, " +
            "--validation-data): rgb, or bgr (Caffe models, models trained on OpenCV-decoded images). Default: rgb.",
            "one of " + string.Join(", ", Names<ChannelOrder>()),
            (s, t) => TryName(t, out ChannelOrder c) ? s with { ChannelOrder = c } : null,
            s => s.ChannelOrder == Options.ChannelOrder.Rgb ? null : Name(s.ChannelOrder))
        { DefaultText = Name(Options.ChannelOrder.Rgb) };

        public static readonly Setting Exclude = new Setting("Exclude", "--exclude", "exclude", "layer[,layer…]",
            "Layers to leave in float (weights and inputs): node names as `sadg inspect` lists them, or op types (Conv, " +
            "Gemm, MatMul) for every layer of that type. Comma-separated.",
            "a comma-separated list of node names or op types",
            (s, t) => LayerLists.TryNames(t, out string[]? names) ? s with { Exclude = names } : null,
            s => s.Exclude is { Length: > 0 } e ? string.Join(",", e) : null);

        public static readonly Setting LayerBits = new Setting("LayerBits", "--layer-bits", "layer_bits", "layer=bits[,…]",
            "Weight bits (2-8) of single layers, by node name as `sadg inspect` lists them, e.g. conv1=8,fc=6; a layer's input " +
            "keeps the bits of its position (--activation-bits; 8 for the second and last layers unless --first-last-bits same).",
            "a comma-separated list of node=bits pairs, bits a whole number from 2 to 8",
            (s, t) => LayerLists.TryBits(t, out var bits) ? s with { LayerBits = bits } : null,
            s => s.LayerBits is { Count: > 0 } b ? string.Join(",", b.Select(kv => $"{kv.Key}={Int(kv.Value)}")) : null)
        { Code = InvalidBits };

        public static readonly Setting FirstLastBits = new Setting("FirstLastBits", "--first-last-bits", "first_last_bits", "8|same",
            "Bits of the first and last quantized layers: 8 (first layer W8 with a float input, second layer's input 8-bit, " +
            "last layer W8A8) or same (the run's --bits and --activation-bits; the image input stays float).",
            "8 or same",
            (s, t) => t == "8" ? s with { FirstLastSame = false }
                : string.Equals(t, "same", StringComparison.OrdinalIgnoreCase) ? s with { FirstLastSame = true } : null,
            s => s.FirstLastSame ? "same" : null)
        { DefaultText = "8", Unset = "8" };

        public static readonly Setting SizeBudget = new Setting("SizeBudget", "--size-budget", "size_budget", "ratio|NKiB|Wb",
            "Mixed precision: choose each layer's weight bits from 2, 3, 4 and 8 so that the quantized weights, counted at their " +
            "nominal bits (with their scales and zero points), fit the budget with the least measured error: a ratio of their FP32 " +
            "bytes (0.125), a size (600KiB), or the size of uniform b-bit weights (W3). Layers fixed by --first-last-bits 8 or " +
            "--layer-bits keep their bits; --bits is not used for the others. 2- and 3-bit weights are stored in 4-bit containers.",
            "a ratio greater than 0 and at most 1 (e.g. 0.125), a whole number of KiB (e.g. 600KiB), or W and a bit width from 2 to 8 (e.g. W3)",
            (s, t) => Options.SizeBudget.TryParse(t, out var b) ? s with { SizeBudget = b } : null, s => s.SizeBudget?.ToString());

        public static readonly Setting ReconstructionSteps = new Setting("ReconstructionSteps", "--reconstruction-steps", "reconstruction_steps", "N",
            "Internal: reconstruction steps per block (the profile's when not given).", "a whole number of at least 0",
            (s, t) => TryInt(t, 0, out int n) ? s with { ReconstructionSteps = n } : null, s => Int(s.ReconstructionSteps))
        { IsInteger = true, IsMetadata = false, Hidden = true, Unset = "profile" };

        public static readonly Setting GenerationSteps = new Setting("GenerationSteps", "--generation-steps", "generation_steps", "N",
            "Internal: warm-up and refinement steps per batch (the profile's when not given).", "a whole number of at least 0",
            (s, t) => TryInt(t, 0, out int n) ? s with { GenerationSteps = n } : null, s => Int(s.GenerationSteps))
        { IsInteger = true, IsMetadata = false, Hidden = true, Unset = "profile" };

        /// <summary>Every setting, in the order they are read, checked and passed on a command line.</summary>
        public static IReadOnlyList<Setting> All { get; } = new[]
        {
            Bits, ActivationBits, Method, CalibrationData, Samples, Profile, Seed, Device, InputShape,
            InputRange, InputMean, InputStd, InputPrior, Neighbour, BiasCorrection, MinAgreement, ValidationData, Resize, Crop, ChannelOrder, Exclude,
            LayerBits, FirstLastBits, SizeBudget, ReconstructionSteps, GenerationSteps,
        };

        /// <summary>The settings <c>sadg generate</c> reads (all but the bit widths and layer choices, the bias correction, the data read and the accuracy gate).</summary>
        public static IReadOnlyList<Setting> Generation { get; } =
            All.Where(s => s != Bits && s != ActivationBits && s != CalibrationData && s != MinAgreement && s != ValidationData
                && s != Resize && s != Crop && s != ChannelOrder && s != Exclude && s != LayerBits && s != FirstLastBits && s != SizeBudget
                && s != BiasCorrection).ToArray();

        /// <summary>An enum value's name as the tool and the metadata spell it: lower case.</summary>
        public static string Name<T>(T value) where T : struct, Enum => value.ToString().ToLowerInvariant();

        /// <summary>An enum's values as the tool and the metadata spell them.</summary>
        public static string[] Names<T>() where T : struct, Enum => Enum.GetNames(typeof(T)).Select(n => n.ToLowerInvariant()).ToArray();

        /// <summary>Reads an enum value by its name (any case; numbers are not names).</summary>
        public static bool TryName<T>(string text, out T value) where T : struct, Enum
        {
            value = default;
            foreach (T v in Enum.GetValues(typeof(T)))
                if (string.Equals(Name(v), text, StringComparison.OrdinalIgnoreCase))
                {
                    value = v;
                    return true;
                }
            return false;
        }

        static Setting Choice<T>(string name, string flag, string key, string description, Func<QuantizeSettings, T, QuantizeSettings> set,
            Func<QuantizeSettings, T> get, string? alias = null, T defaultValue = default) where T : struct, Enum =>
            new Setting(name, flag, key, string.Join("|", Names<T>()), description, "one of " + string.Join(", ", Names<T>()),
                (s, t) => TryName(t, out T v) ? set(s, v) : null, s => Name(get(s)))
            { Alias = alias, DefaultText = Name(defaultValue) };

        /// <summary>The bit widths Sadg quantizes to (weights and activations): 2 to 8.</summary>
        public static bool IsBits(int bits) => bits >= 2 && bits <= 8;

        /// <summary>Reads a whole number (digits only) that <see cref="IsBits"/> allows.</summary>
        internal static bool TryBits(string text, out int bits) =>
            int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out bits) && IsBits(bits);

        static bool TryInt(string text, int min, out int value) =>
            int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out value) && value >= min;

        /// <summary>C,H,W (also CxHxW): three whole numbers ≥ 1.</summary>
        public static bool TryShape(string text, out int[]? shape)
        {
            var parts = text.Split(',', 'x', 'X').Select(p => p.Trim()).ToArray();
            var dims = new int[parts.Length];
            bool ok = parts.Length == 3;
            for (int i = 0; ok && i < parts.Length; i++) ok = TryInt(parts[i], 1, out dims[i]);
            shape = ok ? dims : null;
            return ok;
        }

        static string? Int(int? value) => value?.ToString(CultureInfo.InvariantCulture);

        /// <summary>C,H,W as the canonical options and the command line hold it.</summary>
        public static string? Ints(IEnumerable<int>? values) =>
            values == null ? null : string.Join(",", values.Select(v => v.ToString(CultureInfo.InvariantCulture)));

        static string? Floats(IEnumerable<float>? values) =>
            values == null ? null : string.Join(",", values.Select(v => v.ToString("R", CultureInfo.InvariantCulture)));
    }

    /// <summary>
    /// The settings of a run that do not change the model (not in the cache key): each with the tool's flag and the
    /// MSBuild property that sets it for a build.
    /// </summary>
    public static class RunSchema
    {
        public static readonly RunSetting CacheDir = new RunSetting("--cache-dir", "SadgCacheDir", "dir",
            "Content-addressed cache folder: an unchanged model with the same options is not quantized again " +
            "(default: $SADG_CACHE_DIR, else $XDG_CACHE_HOME/sadg, else ~/.cache/sadg).");

        public static readonly RunSetting NoCache = new RunSetting("--no-cache", "SadgUseCache", null,
            "Neither read nor write the cache (a build passes it for SadgUseCache=false).");

        public static readonly RunSetting Report = new RunSetting("--report", "SadgReportDir", "dir",
            "Folder for the report (JSON, Markdown, plots); created if missing (a build: $(SadgReportDir)/<AccessorName>).");
    }

    /// <summary>A run setting: the tool's flag, the MSBuild property, the value's placeholder (null: a switch) and help text.</summary>
    public sealed class RunSetting
    {
        internal RunSetting(string flag, string property, string? helpName, string description)
        {
            Flag = flag;
            Property = property;
            HelpName = helpName;
            Description = description;
        }

        public string Flag { get; }
        public string Property { get; }
        public string? HelpName { get; }
        public string Description { get; }
    }

    /// <summary>
    /// Lists of layers as <c>--exclude</c> and <c>--layer-bits</c> give them: comma- or semicolon-separated, blanks around
    /// names ignored, duplicates dropped, sorted (ordinal) so that the order they are given in does not change the key.
    /// </summary>
    public static class LayerLists
    {
        /// <summary>At least one non-empty name.</summary>
        public static bool TryNames(string text, out string[]? names)
        {
            names = Split(text).Distinct(StringComparer.Ordinal).OrderBy(n => n, StringComparer.Ordinal).ToArray();
            if (names.Length == 0 || names.Any(n => n.Length == 0)) names = null;
            return names != null;
        }

        /// <summary><c>name=bits</c> pairs, bits 2–8, each name once.</summary>
        public static bool TryBits(string text, out SortedDictionary<string, int>? bits)
        {
            bits = new SortedDictionary<string, int>(StringComparer.Ordinal);
            foreach (var pair in Split(text))
            {
                int at = pair.LastIndexOf('=');
                string name = at < 0 ? "" : pair.Substring(0, at).Trim();
                if (name.Length == 0 || bits.ContainsKey(name)
                    || !QuantizeSchema.TryBits(pair.Substring(at + 1).Trim(), out int b))
                {
                    bits = null;
                    return false;
                }
                bits[name] = b;
            }
            if (bits.Count == 0) bits = null;
            return bits != null;
        }

        static string[] Split(string text) => text.Split(',', ';').Select(p => p.Trim()).ToArray();
    }

    /// <summary>Lists of numbers as settings, metadata and data headers give them: comma-, space- or semicolon-separated, invariant culture.</summary>
    public static class NumberLists
    {
        /// <summary>Finite numbers, at least one; false otherwise.</summary>
        public static bool TryParse(string? text, out float[]? values)
        {
            values = null;
            if (text == null) return false;
            var parts = text.Split(new[] { ',', ' ', ';' }, StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length == 0) return false;
            var result = new float[parts.Length];
            for (int i = 0; i < parts.Length; i++)
                if (!float.TryParse(parts[i], NumberStyles.Float, CultureInfo.InvariantCulture, out result[i])
                    || float.IsNaN(result[i]) || float.IsInfinity(result[i]))
                    return false;
            values = result;
            return true;
        }
    }
}
