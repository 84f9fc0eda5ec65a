using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;
using Sadg.Options;

namespace Sadg.BuildTasks
{
    /// <summary>
    /// Checks every <c>QuantizeModel</c> item before any work (each problem is an error against the project file),
    /// fills in the defaults, names each item's outputs in the intermediate folder, and writes each item's stamp
    /// file — its canonical options — only when they changed, so that the quantize target redoes exactly the items
    /// whose model or options changed.
    /// </summary>
    public sealed class SadgPrepareModels : Task
    {

        /// <summary>The project file errors are reported against (<c>$(MSBuildProjectFullPath)</c>); the file that
        /// holds the task element when empty.</summary>
        public string ProjectFile { get; set; } = "";

        private string ProjectFileForErrors => ProjectLocation.ForErrors(ProjectFile, BuildEngine);
        /// <summary>The <c>QuantizeModel</c> items.</summary>
        [Required]
        public ITaskItem[] Models { get; set; } = Array.Empty<ITaskItem>();

        /// <summary>Folder for the quantized models and stamp files (created if missing).</summary>
        [Required]
        public string IntermediateDirectory { get; set; } = "";

        /// <summary>What identifies the tool (its path and version); part of every stamp.</summary>
        public string ToolIdentity { get; set; } = "";

        /// <summary>Folder the model paths are relative to; the project's folder by default.</summary>
        public string ProjectDirectory { get; set; } = "";

        /// <summary>The tool's extra arguments (<c>$(SadgExtraArguments)</c>); part of every stamp.</summary>
        public string ExtraArguments { get; set; } = "";

        /// <summary>
        /// <c>$(SadgReportDir)</c>: each item's report goes to its own subfolder, named by its AccessorName (unique
        /// per project). None when empty.
        /// </summary>
        public string ReportDirectory { get; set; } = "";

        /// <summary>
        /// One item per model (ItemSpec = the model's full path) with the checked metadata and <c>OutputFile</c>,
        /// <c>StampFile</c>, <c>ReportDirectory</c>, <c>LogicalName</c>, <c>AccessorName</c>, <c>Embed</c>,
        /// <c>Source</c> (the item as written).
        /// </summary>
        [Output]
        public ITaskItem[] PreparedModels { get; private set; } = Array.Empty<ITaskItem>();

        public override bool Execute()
        {
            string projectDir = ProjectDirectory.Length > 0 ? ProjectDirectory
                : Path.GetDirectoryName(ProjectFileForErrors) ?? "";
            var models = new List<ModelItem>();
            foreach (var item in Models)
            {
                var problems = new List<MetadataProblem>();
                var m = ModelItem.Read(item, projectDir, problems);
                ProjectLocation.LogProblems(Log, ProjectFileForErrors, m, problems);
                models.Add(m);
            }
            // Names that differ only in case are one file where Embed="false" copies them, on Windows and macOS.
            CheckUnique(models, m => m.LogicalName, "LogicalName", StringComparer.OrdinalIgnoreCase);
            CheckUnique(models, m => m.AccessorName, "AccessorName", StringComparer.Ordinal);
            CheckUnique(models, m => m.FullPath, "model file", StringComparer.Ordinal);
            if (Log.HasLoggedErrors) return false;

            string dir = Path.GetFullPath(IntermediateDirectory);
            Directory.CreateDirectory(dir);
            var prepared = new List<ITaskItem>();
            foreach (var m in models)
            {
                string report = ReportDirectory.Length == 0 ? ""
                    : Path.Combine(Path.GetFullPath(Path.Combine(projectDir, ReportDirectory)), m.AccessorName);
                string stem = Path.Combine(dir, m.OutputStem(ToolIdentity, ExtraArguments, report));
                string stamp = stem + ".options";
                var hashes = new InputHashes(stem + ".inputs");
                try { WriteIfDifferent(stamp, m.CanonicalOptions(ToolIdentity, ExtraArguments, report, hashes) + "\n"); }
                catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
                {
                    // Left as it was, the stamp would not say what changed, and the model made for its old content would be embedded.
                    ProjectLocation.LogProblems(Log, ProjectFileForErrors, m, new[]
                    {
                        new MetadataProblem(Codes.WriteFailed, $"QuantizeModel '{m.Spec}': its stamp '{stamp}' could not be written ({e.Message}). " +
                            "Close what holds it open, or delete the obj/sadg folder, and build again."),
                    });
                    continue;
                }
                DropUnrecordedOutput(stem + ".q.onnx", hashes);
                hashes.Save();
                var item = new TaskItem(m.FullPath);
                item.SetMetadata("Source", m.Spec);
                item.SetMetadata("OutputFile", stem + ".q.onnx");
                item.SetMetadata("StampFile", stamp);
                item.SetMetadata("ReportDirectory", report);
                // Every setting after defaults, as the schema writes it (what SadgQuantize reads back).
                foreach (var setting in QuantizeSchema.All.Where(x => x.IsMetadata))
                    item.SetMetadata(setting.Name, setting.Write(m.Settings) ?? "");
                item.SetMetadata("Embed", m.Embed ? "true" : "false");
                item.SetMetadata("LogicalName", m.LogicalName);
                item.SetMetadata("AccessorName", m.AccessorName);
                prepared.Add(item);
            }
            PreparedModels = prepared.ToArray();
            return !Log.HasLoggedErrors;
        }

        /// <summary>The file beside a quantized model that holds the SHA-256 SadgQuantize recorded when it put the model there.</summary>
        internal static string RecordFile(string outputFile) => outputFile + ".sha256";

        /// <summary>
        /// Removes a quantized model whose content is not what SadgQuantize recorded when it put it there (edited, replaced
        /// or damaged since, or left by an older Sadg), so that the quantize target runs the tool again (usually a cache
        /// hit) instead of embedding it. Its hash is remembered by size and last write time, as the inputs' are.
        /// </summary>
        private static void DropUnrecordedOutput(string output, InputHashes hashes)
        {
            if (!File.Exists(output)) return;
            string record = RecordFile(output);
            string? recorded = null;
            try { if (File.Exists(record)) recorded = File.ReadAllText(record, Encoding.UTF8).Trim(); }
            catch (IOException) { }
            if (recorded != null && recorded == hashes.OfFile(output)) return;
            File.Delete(output);
        }

        private void CheckUnique(List<ModelItem> models, Func<ModelItem, string> key, string what, StringComparer comparer)
        {
            foreach (var group in models.GroupBy(key, comparer).Where(g => g.Count() > 1))
            {
                var first = group.First();
                ProjectLocation.LogProblems(Log, ProjectFileForErrors, first, new[]
                {
                    new MetadataProblem(Codes.DuplicateModelName,
                        $"QuantizeModel items {string.Join(", ", group.Select(g => "'" + g.Spec + "'"))} have the same {what} '{group.Key}'; " +
                        "give each a distinct LogicalName and AccessorName, and list each model once."),
                });
            }
        }

        /// <summary>Writes the file only when its content differs, so its timestamp moves only on a real change.</summary>
        internal static bool WriteIfDifferent(string path, string content)
        {
            if (File.Exists(path) && File.ReadAllText(path, Encoding.UTF8) == content) return false;
            string tmp = path + "." + Guid.NewGuid().ToString("N").Substring(0, 8) + ".tmp";
            File.WriteAllText(tmp, content, new UTF8Encoding(false));
            try
            {
                // Renamed over the old file in one step: a concurrent build never finds the stamp missing.
                if (File.Exists(path)) File.Replace(tmp, path, null);
                else File.Move(tmp, path);
            }
            catch (IOException)
            {
                try { File.Delete(tmp); }
                catch (IOException) { }
                // A concurrent build may have written the same content first; anything else is an error, not a success.
                if (!(File.Exists(path) && File.ReadAllText(path, Encoding.UTF8) == content)) throw;
            }
            return true;
        }
    }
}
