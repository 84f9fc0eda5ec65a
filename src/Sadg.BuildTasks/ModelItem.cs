using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Build.Framework;
using Sadg.Options;

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
        /// <summary>The quantization settings (<see cref="QuantizeSchema"/>), CalibrationData as a full path.</summary>
        public QuantizeSettings Settings { get; private set; } = new QuantizeSettings();
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

            // Every setting of the schema that metadata carries, checked by the schema (the tool reads the same way).
            var settingProblems = new List<OptionProblem>();
            var settings = QuantizeSettings.Parse(s => s.IsMetadata ? Meta(s.Name) : null, settingProblems);
            if (settings.CalibrationData != null)
            {
                settings = settings with { CalibrationData = Path.GetFullPath(Path.Combine(projectDirectory, settings.CalibrationData)) };
                if (settings.Method == CalibrationMethod.Real && !Directory.Exists(settings.CalibrationData) && !File.Exists(settings.CalibrationData))
                    settingProblems.Add(new OptionProblem(QuantizeSchema.CalibrationData, QuantizeSchema.CalibrationData.Code,
                        $"{QuantizeSchema.CalibrationData.Label} '{settings.CalibrationData}' does not exist."));
            }
            if (settings.ValidationData != null)
            {
                settings = settings with { ValidationData = Path.GetFullPath(Path.Combine(projectDirectory, settings.ValidationData)) };
                if (!Directory.Exists(settings.ValidationData) && !File.Exists(settings.ValidationData))
                    settingProblems.Add(new OptionProblem(QuantizeSchema.ValidationData, QuantizeSchema.ValidationData.Code,
                        $"{QuantizeSchema.ValidationData.Label} '{settings.ValidationData}' does not exist."));
            }
            m.Settings = settings;
            foreach (var p in settingProblems) problems.Add(new MetadataProblem(p.Code, $"QuantizeModel '{name}': {p.Message}"));

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
            m.LogicalName = logical.Length > 0 ? logical : DefaultLogicalName(fileName, m.Settings.Bits);
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
        /// content hashes of the model, of the external-data files it names and of the calibration data, the extra arguments, the report folder and the
        /// tool's identity. The stamp file holds it; any change re-quantizes this item.
        /// </summary>
        public string CanonicalOptions(string toolIdentity, string extraArguments, string reportDirectory, InputHashes hashes)
        {
            var lines = new List<string>
            {
                "sadg-options/3",
                "model=" + FullPath,
                "model-sha256=" + (File.Exists(FullPath) ? hashes.OfFile(FullPath) : "missing"),
                "model-external-data-sha256=" + hashes.ExternalData(FullPath),
            };
            lines.AddRange(Settings.Canonical().Select(kv => kv.Key + "=" + kv.Value));
            lines.Add("calibration-data-sha256=" + (Settings.CalibrationData == null ? "" : hashes.Tree(Settings.CalibrationData)));
            lines.Add("validation-data-sha256=" + (Settings.ValidationData == null ? "" : hashes.Tree(Settings.ValidationData)));
            lines.AddRange(RunLines(toolIdentity, extraArguments, reportDirectory));
            return string.Join("\n", lines);
        }

        private static IEnumerable<string> RunLines(string toolIdentity, string extraArguments, string reportDirectory) => new[]
        {
            "extra-arguments=" + extraArguments.Trim(),
            "report=" + reportDirectory,
            "tool=" + toolIdentity,
        };

        /// <summary>
        /// The file name stem of this item's outputs (quantized model, stamp, hash memo) in the intermediate folder:
        /// the model's name, a hash of its path and a hash of its options, extra arguments, report folder and tool
        /// (<see cref="CanonicalOptions"/> without the content hashes). Builds of one model with different options —
        /// configurations or target frameworks that set other metadata, two builds at once — never share a file: none
        /// can leave its model under a stamp that another build wrote, and switching back to options built before
        /// finds their model up to date.
        /// </summary>
        public string OutputStem(string toolIdentity, string extraArguments, string reportDirectory)
        {
            var options = Settings.Canonical().Select(kv => kv.Key + "=" + kv.Value).Concat(RunLines(toolIdentity, extraArguments, reportDirectory));
            return Path.GetFileNameWithoutExtension(FullPath) + "." + ShortHash(FullPath) + "." + ShortHash(string.Join("\n", options));
        }

        private static string ShortHash(string text)
        {
            using var sha = SHA256.Create();
            return InputHashes.Hex(sha.ComputeHash(Encoding.UTF8.GetBytes(text)).Take(4));
        }

        internal static bool IsIdentifier(string text) =>
            text.Length > 0 && (char.IsLetter(text[0]) || text[0] == '_') && text.All(c => char.IsLetterOrDigit(c) || c == '_');
    }
}
