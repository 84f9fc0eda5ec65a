using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;
using Sadg.Options;

namespace Sadg.BuildTasks
{
    /// <summary>
    /// Quantizes one model by running <c>sadg quantize</c> as a child process: TorchSharp and ONNX Runtime load into
    /// that process, never into the MSBuild node. A tool given as a <c>.dll</c> runs under the dotnet host
    /// (<c>dotnet sadg.dll …</c>); anything else is run directly (tests use a fake tool that way). The tool's
    /// diagnostics, <c>path(line,col): error|warning SADGnnnn: message</c> (<see cref="DiagnosticFormat"/>), become
    /// MSBuild errors and warnings with that file, code and a help link, so NoWarn, WarningsAsErrors and
    /// WarningsNotAsErrors act on them; other lines go through MSBuild's own <c>LogMessageFromText</c>.
    /// </summary>
    public sealed class SadgQuantize : ToolTask
    {

        /// <summary>The project file errors are reported against (<c>$(MSBuildProjectFullPath)</c>); the file that
        /// holds the task element when empty.</summary>
        public string ProjectFile { get; set; } = "";

        private string ProjectFileForErrors => ProjectLocation.ForErrors(ProjectFile, BuildEngine);

        /// <summary>docs/errors.md as a URL: each diagnostic's help link is it plus <c>#sadgnnnn</c>. When empty, the
        /// errors.md packed in this package (a file URL), or no help link when there is none.</summary>
        public string ErrorsPage { get; set; } = "";

        private ModelItem? _model;

        /// <summary>The model: a <c>QuantizeModel</c> item with its metadata (Bits, ActivationBits, Method, …).</summary>
        [Required]
        public ITaskItem? Model { get; set; }

        /// <summary>Where the quantized model goes (the tool writes it atomically).</summary>
        [Required]
        public string OutputFile { get; set; } = "";

        /// <summary>The tool: <c>sadg.dll</c> (run under the dotnet host) or an executable.</summary>
        [Required]
        public string SadgTool { get; set; } = "";

        /// <summary>The dotnet host for a <c>.dll</c> tool; DOTNET_HOST_PATH, then <c>dotnet</c> on PATH, when empty.</summary>
        public string DotnetHostPath { get; set; } = "";

        /// <summary>The tool's content-addressed cache folder (<c>--cache-dir</c>); the tool's default when empty.</summary>
        public string CacheDirectory { get; set; } = "";

        /// <summary>false: <c>--no-cache</c> (the tool neither reads nor writes its cache).</summary>
        public bool UseCache { get; set; } = true;

        /// <summary>This item's report folder (<c>--report</c>; <c>%(ReportDirectory)</c> from SadgPrepareModels); none when empty.</summary>
        public string ReportDirectory { get; set; } = "";

        /// <summary>Folder the model path is relative to; the project's folder by default.</summary>
        public string ProjectDirectory { get; set; } = "";

        /// <summary>Extra arguments appended to the command line as they are.</summary>
        public string ExtraArguments { get; set; } = "";

        private bool ToolIsAssembly => SadgTool.EndsWith(".dll", StringComparison.OrdinalIgnoreCase);

        protected override string ToolName => ToolIsAssembly ? "dotnet" : Path.GetFileName(SadgTool);

        // Progress and information lines from the tool, and its results on stdout, are high-importance messages:
        // a quantization takes minutes, and minimal verbosity (dotnet build, dotnet run -v m) shows that it works.
        protected override MessageImportance StandardErrorLoggingImportance => MessageImportance.High;
        protected override MessageImportance StandardOutputLoggingImportance => MessageImportance.High;

        protected override string GenerateFullPathToTool()
        {
            if (!ToolIsAssembly) return Path.GetFullPath(SadgTool);
            if (DotnetHostPath.Length > 0) return DotnetHostPath;
            string? fromSdk = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
            if (!string.IsNullOrEmpty(fromSdk)) return fromSdk!;
            string exe = Path.DirectorySeparatorChar == '\\' ? "dotnet.exe" : "dotnet";
            foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator))
            {
                if (dir.Length == 0) continue;
                string candidate = Path.Combine(dir, exe);
                if (File.Exists(candidate)) return candidate;
            }
            return exe;
        }

        protected override bool ValidateParameters()
        {
            string projectDir = ProjectDirectory.Length > 0 ? ProjectDirectory
                : Path.GetDirectoryName(ProjectFileForErrors) ?? "";
            if (Model == null)
            {
                Log.LogError("SadgQuantize: Model is required.");
                return false;
            }
            var problems = new List<MetadataProblem>();
            _model = ModelItem.Read(Model, projectDir, problems);
            // Whether the output is the model itself (links resolved) is the tool's check (SADG1503).
            if (OutputFile.Length == 0)
                problems.Add(new MetadataProblem(Codes.InvalidOptionValue, $"QuantizeModel '{_model.Spec}': no output file was given."));
            ProjectLocation.LogProblems(Log, ProjectFileForErrors, _model, problems);

            if (SadgTool.Length == 0 || !File.Exists(SadgTool))
                Log.LogError(null, Codes.ToolNotFound, null, ProjectFileForErrors, 0, 0, 0, 0, "{0}",
                    $"The sadg tool was not found at '{SadgTool}'. It comes with the Sadg.Tool package for this machine " +
                    "(Sadg.Tool.<RID>), which the build downloads unless SadgRestoreTool=false, and which 'dotnet tool restore' " +
                    "puts in the same place when a local tool manifest lists Sadg.Tool; or set SadgToolPath to a sadg.dll.");
            return !Log.HasLoggedErrors;
        }

        protected override string GenerateCommandLineCommands()
        {
            var m = _model ?? ModelItem.Read(Model!, ProjectDirectory, new List<MetadataProblem>());
            var b = new CommandLineBuilder();
            if (ToolIsAssembly) b.AppendFileNameIfNotNull(Path.GetFullPath(SadgTool));
            b.AppendSwitch("quantize");
            b.AppendFileNameIfNotNull(m.FullPath);
            b.AppendSwitchIfNotNull("-o ", Path.GetFullPath(_toolOutput.Length > 0 ? _toolOutput : OutputFile));
            // Every setting that has a value, as the schema writes it: the tool reads it back with the same schema.
            foreach (var argument in m.Settings.Arguments()) b.AppendSwitchIfNotNull(argument.Key + " ", argument.Value);
            if (!UseCache) b.AppendSwitch(RunSchema.NoCache.Flag);
            else if (CacheDirectory.Length > 0) b.AppendSwitchIfNotNull(RunSchema.CacheDir.Flag + " ", Path.GetFullPath(CacheDirectory));
            if (ReportDirectory.Length > 0) b.AppendSwitchIfNotNull(RunSchema.Report.Flag + " ", Path.GetFullPath(ReportDirectory));
            if (ExtraArguments.Length > 0) b.AppendTextUnquoted(" " + ExtraArguments);
            return b.ToString();
        }

        /// <summary>One readable line at minimal verbosity; the full command line at normal verbosity.</summary>
        protected override void LogToolCommand(string message)
        {
            var m = _model;
            string what = m == null ? Model?.ItemSpec ?? "" :
                $"{m.Spec} (W{m.Settings.Bits}A{m.Settings.ActivationBits?.ToString(CultureInfo.InvariantCulture) ?? "-"}, {QuantizeSchema.Name(m.Settings.Method)})";
            Log.LogMessage(MessageImportance.High, "{0}", "sadg: quantizing " + what + " -> " + OutputFile);
            Log.LogMessage(MessageImportance.Normal, "{0}", message);
        }

        /// <summary>Turns the tool's diagnostic lines into MSBuild errors and warnings; other lines are messages.</summary>
        protected override void LogEventsFromTextOutput(string singleLine, MessageImportance messageImportance)
        {
            var d = DiagnosticFormat.TryParse(singleLine);
            if (d == null)
            {
                Log.LogMessageFromText(singleLine, messageImportance);
                return;
            }
            // Diagnostics that concern no file are written as 'sadg(0,0)': they belong to this model.
            string file = d.File.Length == 0 || d.File == DiagnosticFormat.NoFile ? _model?.FullPath ?? Model?.ItemSpec ?? "" : d.File;
            int line = d.Line, column = d.Column;
            string message = d.Message;
            if (d.Code == Codes.AccuracyGateFailed && _model != null)
            {
                // The gate is the item's MinAgreement metadata: report it where the project declares the item.
                file = ProjectFileForErrors;
                line = ProjectLocation.FindItemLine(file, _model.Spec);
                column = 0;
                message = "QuantizeModel '" + _model.Spec + "': " + message;
            }
            string? page = ResolvedErrorsPage();
            string? help = page == null ? null : DiagnosticFormat.HelpLink(page, d.Code);
            if (d.IsWarning)
                Log.LogWarning(null, d.Code, null, help, file, line, column, 0, 0, "{0}", message);
            else
                Log.LogError(null, d.Code, null, help, file, line, column, 0, 0, "{0}", message);
        }

        private string? ResolvedErrorsPage()
        {
            if (ErrorsPage.Length > 0) return ErrorsPage;
            // The package's layout: tasks/netstandard2.0/Sadg.BuildTasks.dll and docs/errors.md.
            string? dir = Path.GetDirectoryName(typeof(SadgQuantize).Assembly.Location);
            if (string.IsNullOrEmpty(dir)) return null;
            string packed = Path.GetFullPath(Path.Combine(dir, "..", "..", "docs", "errors.md"));
            return File.Exists(packed) ? new Uri(packed).AbsoluteUri : null;
        }

        /// <summary>Where the tool writes: a temporary sibling of <see cref="OutputFile"/>, moved there once recorded.</summary>
        private string _toolOutput = "";

        public override bool Execute()
        {
            _toolOutput = OutputFile.Length == 0 ? "" : OutputFile + "." + Guid.NewGuid().ToString("N").Substring(0, 8) + ".tmp.onnx";
            try
            {
                bool ok = base.Execute() && !Log.HasLoggedErrors && Publish();
                // A failed run leaves no model to embed: not the one the tool may have written before the build failed (a
                // warning that WarningsAsErrors turns into an error comes with a written model), nor an older one, which
                // its stamp no longer describes.
                if (!ok) DeleteOutput();
                return ok;
            }
            finally
            {
                try { if (_toolOutput.Length > 0 && File.Exists(_toolOutput)) File.Delete(_toolOutput); }
                catch (IOException) { }
                catch (UnauthorizedAccessException) { }
            }
        }

        /// <summary>
        /// Records the SHA-256 of the model the tool wrote (<see cref="SadgPrepareModels.RecordFile"/>), then moves it to
        /// <see cref="OutputFile"/> in one rename. SadgPrepareModels removes a model that does not match its record, so
        /// only what the tool wrote is ever embedded; the record goes first, so a build that checks meanwhile can find
        /// the old model not matching and remove it, never the new one.
        /// </summary>
        private bool Publish()
        {
            try
            {
                SadgPrepareModels.WriteIfDifferent(SadgPrepareModels.RecordFile(OutputFile), InputHashes.Sha256(_toolOutput) + "\n");
                for (int attempt = 0; ; attempt++)
                {
                    try
                    {
                        if (File.Exists(OutputFile)) File.Replace(_toolOutput, OutputFile, null);
                        else File.Move(_toolOutput, OutputFile);
                        return true;
                    }
                    catch (IOException) when (attempt < 3) { } // another build removed or put the model meanwhile
                }
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
                Log.LogError(null, Codes.WriteFailed, null, ProjectFileForErrors, 0, 0, 0, 0, "{0}",
                    $"The quantized model of '{Model?.ItemSpec}' could not be put at '{OutputFile}' ({e.Message}); build again, " +
                    "after deleting the obj/sadg folder if it happens again.");
                return false;
            }
        }

        private void DeleteOutput()
        {
            if (OutputFile.Length == 0) return;
            try
            {
                if (File.Exists(OutputFile)) File.Delete(OutputFile);
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
                Log.LogError(null, Codes.WriteFailed, null, ProjectFileForErrors, 0, 0, 0, 0, "{0}",
                    $"The quantization of '{Model?.ItemSpec}' failed, and its output '{OutputFile}' could not be removed ({e.Message}); " +
                    "delete it (or the obj/sadg folder) before building again.");
            }
        }

        /// <summary>For tests: the command line after validation.</summary>
        internal string CommandLineForTests()
        {
            if (!ValidateParameters()) return "";
            return GenerateFullPathToTool() + " " + GenerateCommandLineCommands();
        }
    }
}
