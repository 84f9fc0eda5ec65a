using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Build.Framework;

namespace Sadg.BuildTasks
{
    /// <summary>One problem with a <c>QuantizeModel</c> item's metadata.</summary>
    internal sealed class MetadataProblem
    {
        public MetadataProblem(string code, string message)
        {
            Code = code;
            Message = message;
        }

        public string Code { get; }
        public string Message { get; }
    }

    /// <summary>
    /// A <c>QuantizeModel</c> item read and checked: every metadata value, its default, and the canonical option
    /// string that the stamp file holds (a change to it, and only to it, re-quantizes the item).
    /// </summary>
    internal sealed class ModelItem
    {
        public static readonly string[] Methods = { "sadag", "genie", "gaussian", "real" };
        public static readonly string[] Profiles = { "quick", "default", "paper" };
        public static readonly string[] Devices = { "auto", "cpu", "cuda" };

        private ModelItem(ITaskItem item, string projectDirectory)
        {
            Item = item;
            // Prepared items carry the item as the project wrote it in Source; messages use that.
            string source = item.GetMetadata("Source") ?? "";
            Spec = source.Length > 0 ? source : item.ItemSpec;
            FullPath = Path.GetFullPath(Path.Combine(projectDirectory, item.ItemSpec));
        }

        public ITaskItem Item { get; }
        public string Spec { get; }
        public string FullPath { get; }
        public int Bits { get; private set; } = 4;
        /// <summary>2–8, or null for float activations (<c>none</c>).</summary>
        public int? ActivationBits { get; private set; }
        public string Method { get; private set; } = "sadag";
        public int? Samples { get; private set; }
        public string? Profile { get; private set; }
        public int Seed { get; private set; }
        public string Device { get; private set; } = "auto";
        public string? CalibrationData { get; private set; }
        /// <summary><c>C,H,W</c> for a model whose input leaves some of them free (the tool's <c>--input-shape</c>); null: the model's.</summary>
        public string? InputShape { get; private set; }
        public bool Embed { get; private set; } = true;
        public string LogicalName { get; private set; } = "";
        public string AccessorName { get; private set; } = "";

        /// <summary>Reads and checks one item; every problem is added to <paramref name="problems"/>.</summary>
        public static ModelItem Read(ITaskItem item, string projectDirectory, List<MetadataProblem> problems)
        {
            var m = new ModelItem(item, projectDirectory);
            string name = m.Spec;
            string Meta(string key) => (item.GetMetadata(key) ?? "").Trim();

            if (!File.Exists(m.FullPath))
                problems.Add(new MetadataProblem(Codes.ModelNotFound,
                    $"QuantizeModel '{name}': the model file '{m.FullPath}' does not exist."));

            string bits = Meta("Bits");
            if (bits.Length == 0) m.Bits = 4;
            else if (TryBits(bits, out int b)) m.Bits = b;
            else
                problems.Add(new MetadataProblem(Codes.InvalidBits,
                    $"QuantizeModel '{name}': Bits=\"{bits}\" is not allowed; use a whole number from 2 to 8."));

            string act = Meta("ActivationBits");
            if (act.Length == 0) m.ActivationBits = m.Bits;
            else if (string.Equals(act, "none", StringComparison.OrdinalIgnoreCase)) m.ActivationBits = null;
            else if (TryBits(act, out int a)) m.ActivationBits = a;
            else
                problems.Add(new MetadataProblem(Codes.InvalidBits,
                    $"QuantizeModel '{name}': ActivationBits=\"{act}\" is not allowed; use a whole number from 2 to 8, or none."));

            string method = Meta("Method");
            if (method.Length == 0) m.Method = "sadag";
            else if (OneOf(method, Methods, out string? mm)) m.Method = mm!;
            else
                problems.Add(new MetadataProblem(Codes.InvalidOptionValue,
                    $"QuantizeModel '{name}': Method=\"{method}\" is not one of {string.Join(", ", Methods)}."));

            string samples = Meta("Samples");
            if (samples.Length > 0)
            {
                if (int.TryParse(samples, NumberStyles.None, CultureInfo.InvariantCulture, out int s) && s >= 1) m.Samples = s;
                else
                    problems.Add(new MetadataProblem(Codes.InvalidOptionValue,
                        $"QuantizeModel '{name}': Samples=\"{samples}\" is not allowed; use a whole number of at least 1."));
            }

            string profile = Meta("Profile");
            if (profile.Length > 0)
            {
                if (OneOf(profile, Profiles, out string? p)) m.Profile = p;
                else
                    problems.Add(new MetadataProblem(Codes.InvalidOptionValue,
                        $"QuantizeModel '{name}': Profile=\"{profile}\" is not one of {string.Join(", ", Profiles)}."));
            }

            string seed = Meta("Seed");
            if (seed.Length > 0)
            {
                if (int.TryParse(seed, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int sd)) m.Seed = sd;
                else
                    problems.Add(new MetadataProblem(Codes.InvalidOptionValue,
                        $"QuantizeModel '{name}': Seed=\"{seed}\" is not a whole number."));
            }

            string device = Meta("Device");
            if (device.Length > 0)
            {
                if (OneOf(device, Devices, out string? d)) m.Device = d!;
                else
                    problems.Add(new MetadataProblem(Codes.InvalidOptionValue,
                        $"QuantizeModel '{name}': Device=\"{device}\" is not one of {string.Join(", ", Devices)}."));
            }

            string data = Meta("CalibrationData");
            if (data.Length > 0)
            {
                m.CalibrationData = Path.GetFullPath(Path.Combine(projectDirectory, data));
                if (m.Method != "real")
                    problems.Add(new MetadataProblem(Codes.CalibrationDataInvalid,
                        $"QuantizeModel '{name}': CalibrationData is only used with Method=\"real\" (Method is \"{m.Method}\")."));
                else if (!Directory.Exists(m.CalibrationData) && !File.Exists(m.CalibrationData))
                    problems.Add(new MetadataProblem(Codes.CalibrationDataInvalid,
                        $"QuantizeModel '{name}': CalibrationData '{m.CalibrationData}' does not exist."));
            }
            else if (m.Method == "real")
                problems.Add(new MetadataProblem(Codes.CalibrationDataInvalid,
                    $"QuantizeModel '{name}': Method=\"real\" needs CalibrationData (a data folder; see docs/cli.md)."));

            string shape = Meta("InputShape");
            if (shape.Length > 0)
            {
                var dims = shape.Split(',', 'x', 'X').Select(d => d.Trim()).ToArray();
                if (dims.Length == 3 && dims.All(d => int.TryParse(d, NumberStyles.None, CultureInfo.InvariantCulture, out int v) && v >= 1))
                    m.InputShape = string.Join(",", dims.Select(d => int.Parse(d, CultureInfo.InvariantCulture).ToString(CultureInfo.InvariantCulture)));
                else
                    problems.Add(new MetadataProblem(Codes.InvalidOptionValue,
                        $"QuantizeModel '{name}': InputShape=\"{shape}\" is not allowed; give the image size as C,H,W (three whole numbers, e.g. 3,48,320)."));
            }

            string embed = Meta("Embed");
            if (embed.Length > 0)
            {
                if (bool.TryParse(embed, out bool e)) m.Embed = e;
                else
                    problems.Add(new MetadataProblem(Codes.InvalidOptionValue,
                        $"QuantizeModel '{name}': Embed=\"{embed}\" is not true or false."));
            }

            string fileName = Path.GetFileNameWithoutExtension(m.FullPath);
            string logical = Meta("LogicalName");
            m.LogicalName = logical.Length > 0 ? logical : DefaultLogicalName(fileName, m.Bits);
            string accessor = Meta("AccessorName");
            if (accessor.Length > 0)
            {
                if (IsIdentifier(accessor)) m.AccessorName = accessor;
                else
                    problems.Add(new MetadataProblem(Codes.InvalidOptionValue,
                        $"QuantizeModel '{name}': AccessorName=\"{accessor}\" is not a C# identifier."));
            }
            else m.AccessorName = DefaultAccessorName(fileName);
            return m;
        }

        /// <summary>The default resource name: the file name without extension, <c>.q</c>, the bits, <c>.onnx</c>.</summary>
        public static string DefaultLogicalName(string fileNameWithoutExtension, int bits) =>
            fileNameWithoutExtension + ".q" + bits.ToString(CultureInfo.InvariantCulture) + ".onnx";

        /// <summary>
        /// The default accessor property: the file name in PascalCase with everything but letters and digits dropped
        /// (<c>resnet20</c> → <c>Resnet20</c>, <c>my-model.v2</c> → <c>MyModelV2</c>), prefixed with <c>Model</c> when it
        /// would start with a digit.
        /// </summary>
        public static string DefaultAccessorName(string fileNameWithoutExtension)
        {
            var sb = new StringBuilder();
            bool upper = true;
            foreach (char c in fileNameWithoutExtension)
            {
                if (char.IsLetterOrDigit(c) && c < 128)
                {
                    sb.Append(upper ? char.ToUpperInvariant(c) : c);
                    upper = false;
                }
                else upper = true;
            }
            if (sb.Length == 0 || char.IsDigit(sb[0])) sb.Insert(0, "Model");
            return sb.ToString();
        }

        /// <summary>
        /// Everything that changes the quantized model, in a fixed order and form: every option after defaults, the
        /// content hashes of the model and the calibration data, the extra arguments, the report folder and the
        /// tool's identity. The stamp file holds it; any change re-quantizes this item.
        /// </summary>
        public string CanonicalOptions(string toolIdentity, string extraArguments, string reportDirectory, InputHashes hashes) => string.Join("\n", new[]
        {
            "sadg-options/2",
            "model=" + FullPath,
            "model-sha256=" + (File.Exists(FullPath) ? hashes.OfFile(FullPath) : "missing"),
            "bits=" + Bits.ToString(CultureInfo.InvariantCulture),
            "activation-bits=" + (ActivationBits?.ToString(CultureInfo.InvariantCulture) ?? "none"),
            "method=" + Method,
            "samples=" + (Samples?.ToString(CultureInfo.InvariantCulture) ?? ""),
            "profile=" + (Profile ?? ""),
            "seed=" + Seed.ToString(CultureInfo.InvariantCulture),
            "device=" + Device,
            "calibration-data=" + (CalibrationData ?? ""),
            "input-shape=" + (InputShape ?? ""),
            "calibration-data-sha256=" + (CalibrationData == null ? "" : hashes.Tree(CalibrationData)),
            "extra-arguments=" + extraArguments.Trim(),
            "report=" + reportDirectory,
            "tool=" + toolIdentity,
        });

        /// <summary>The file name stem of this item's outputs in the intermediate folder: unique per model path.</summary>
        public string OutputStem()
        {
            using var sha = SHA256.Create();
            byte[] hash = sha.ComputeHash(Encoding.UTF8.GetBytes(FullPath));
            string hex = string.Concat(hash.Take(4).Select(x => x.ToString("x2", CultureInfo.InvariantCulture)));
            return Path.GetFileNameWithoutExtension(FullPath) + "." + hex;
        }

        private static bool TryBits(string text, out int bits) =>
            int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out bits) && bits >= 2 && bits <= 8;

        private static bool OneOf(string text, string[] allowed, out string? value)
        {
            value = allowed.FirstOrDefault(a => string.Equals(a, text, StringComparison.OrdinalIgnoreCase));
            return value != null;
        }

        internal static bool IsIdentifier(string text) =>
            text.Length > 0 && (char.IsLetter(text[0]) || text[0] == '_') && text.All(c => char.IsLetterOrDigit(c) || c == '_');
    }
}
