using System;
using System.IO;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

namespace Sadg.BuildTasks
{
    /// <summary>Reports metadata problems against the project file, on the line that declares the item when it can.</summary>
    internal static class ProjectLocation
    {
        /// <summary>The file a task reports errors against: its ProjectFile parameter, else the file holding the task element.</summary>
        public static string ForErrors(string projectFile, IBuildEngine? engine) =>
            projectFile.Length > 0 ? projectFile : engine?.ProjectFileOfTaskNode ?? "";

        public static void LogProblems(TaskLoggingHelper log, string project, ModelItem model,
            System.Collections.Generic.IEnumerable<MetadataProblem> problems)
        {
            int line = FindItemLine(project, model.Spec);
            foreach (var p in problems)
                log.LogError(subcategory: null, errorCode: p.Code, helpKeyword: null, file: project,
                    lineNumber: line, columnNumber: 0, endLineNumber: 0, endColumnNumber: 0, message: "{0}", p.Message);
        }

        /// <summary>The 1-based line of the first <c>Include="spec"</c> in the project file, or 0.</summary>
        public static int FindItemLine(string projectFile, string spec)
        {
            try
            {
                if (projectFile.Length == 0 || !File.Exists(projectFile)) return 0;
                string[] lines = File.ReadAllLines(projectFile);
                string[] needles = { "Include=\"" + spec + "\"", "Include='" + spec + "'" };
                for (int i = 0; i < lines.Length; i++)
                    foreach (string n in needles)
                        if (lines[i].IndexOf(n, StringComparison.OrdinalIgnoreCase) >= 0) return i + 1;
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
            return 0;
        }
    }
}
