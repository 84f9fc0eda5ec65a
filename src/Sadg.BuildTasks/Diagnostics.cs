namespace Sadg.BuildTasks
{
    /// <summary>The SADG error codes the build tasks report (the same numbering as the tool; see docs/errors.md).</summary>
    internal static class Codes
    {
        public const string ModelNotFound = "SADG1001";
        public const string WriteFailed = "SADG1201";
        public const string InvalidBits = "SADG1402";
        public const string CalibrationDataInvalid = "SADG1403";
        public const string AccuracyGateFailed = "SADG1405";
        public const string InvalidOptionValue = "SADG1502";
        public const string ToolNotFound = "SADG1601";
        public const string DuplicateModelName = "SADG1602";
    }
}
