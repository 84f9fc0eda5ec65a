using System.Globalization;
using System.Text.RegularExpressions;

namespace Sadg.Options
{
    /// <summary>One diagnostic line of the tool, read back: what <see cref="DiagnosticFormat.Format"/> wrote.</summary>
    public sealed class ToolDiagnostic
    {
        public ToolDiagnostic(string file, int line, int column, bool isWarning, string code, string message)
        {
            File = file;
            Line = line;
            Column = column;
            IsWarning = isWarning;
            Code = code;
            Message = message;
        }

        /// <summary>The file it concerns; <see cref="DiagnosticFormat.NoFile"/> when none applies.</summary>
        public string File { get; }
        public int Line { get; }
        public int Column { get; }
        public bool IsWarning { get; }

        /// <summary>"SADG2001" etc.</summary>
        public string Code { get; }
        public string Message { get; }
    }

    /// <summary>
    /// The one format of Sadg's diagnostics, the canonical compiler format MSBuild and editors read:
    /// <c>path(0,0): error|warning SADGnnnn: message</c> (line and column are 0: models are binary files;
    /// <c>sadg</c> in place of the path when no file applies). The tool writes it, the build task reads it back
    /// (as an MSBuild error or warning with the code, so NoWarn, WarningsAsErrors and WarningsNotAsErrors act on
    /// it, and a help link to docs/errors.md#sadgnnnn).
    /// </summary>
    public static class DiagnosticFormat
    {
        /// <summary>The origin written when no file applies.</summary>
        public const string NoFile = "sadg";

        private static readonly Regex Line = new Regex(
            @"^\s*(?<file>.*?)\((?<line>\d+),(?<col>\d+)\)\s*:\s*(?<kind>error|warning)\s+(?<code>SADG\d{4})\s*:\s*(?<msg>.*)$",
            RegexOptions.CultureInvariant);

        /// <summary>"SADG1001" for 1001.</summary>
        public static string Code(int number) => "SADG" + number.ToString("D4", CultureInfo.InvariantCulture);

        /// <summary>The anchor of a code's row in docs/errors.md ("sadg2001").</summary>
        public static string Anchor(string code) => code.ToLowerInvariant();

        /// <summary><paramref name="errorsPage"/> (docs/errors.md, wherever it is published) with the code's anchor.</summary>
        public static string HelpLink(string errorsPage, string code) => errorsPage + "#" + Anchor(code);

        public static string Format(bool isWarning, int code, string message, string? file) =>
            $"{(string.IsNullOrEmpty(file) ? NoFile : file)}(0,0): {(isWarning ? "warning" : "error")} {Code(code)}: {message}";

        /// <summary>The diagnostic a line of the tool's output holds, or null when it holds none.</summary>
        public static ToolDiagnostic? TryParse(string line)
        {
            var m = Line.Match(line);
            if (!m.Success) return null;
            return new ToolDiagnostic(m.Groups["file"].Value.Trim(),
                int.Parse(m.Groups["line"].Value, CultureInfo.InvariantCulture), int.Parse(m.Groups["col"].Value, CultureInfo.InvariantCulture),
                m.Groups["kind"].Value == "warning", m.Groups["code"].Value, m.Groups["msg"].Value);
        }
    }
}
