namespace Sadg;

/// <summary>
/// Stable error codes. The number is part of the contract with users and the build task: never reuse or
/// renumber one. Each is documented in docs/errors.md.
/// </summary>
public enum SadgErrorCode
{
    // 1000–1099: reading a model file.
    ModelNotFound = 1001,
    ModelEmpty = 1002,
    ModelNotProtobuf = 1003,
    ModelNotOnnx = 1004,
    TensorTooLarge = 1005,
    ExternalDataOutsideModelFolder = 1006,
    ExternalDataMissing = 1007,
    TensorDataInvalid = 1008,
    UnsupportedDataType = 1009,

    // 1100–1199: building or running the graph.
    UnsupportedOperator = 1101,
    NoImageInput = 1102,
    InvalidGraph = 1103,
    InvalidNode = 1104,
    UnsupportedAttribute = 1105,
    DeviceUnavailable = 1106,
    InputShapeRequired = 1107,

    // 1200–1299: writing a model, the cache.
    WriteFailed = 1201,
    CacheEntryInvalid = 1202,
    CacheUnavailable = 1203,

    // 1300–1399: reading data sets.
    DataNotFound = 1301,
    DataInvalid = 1302,

    // 1400–1499: quantizing.
    NothingToQuantize = 1401,
    InvalidBits = 1402,
    CalibrationDataInvalid = 1403,
    MethodNotApplicable = 1404,
    AccuracyGateFailed = 1405,
    LayerNotFound = 1406,
    SizeBudgetTooSmall = 1407,

    // 1500–1599: the sadg command line.
    UsageError = 1501,
    InvalidOptionValue = 1502,
    OutputInvalid = 1503,

    // 1900–1999: Sadg itself.
    InternalError = 1901,

    // 2000–2099: warnings (the run goes on; MSBuild's NoWarn / WarningsAsErrors act on them by code).
    NoBatchNormStatistics = 2001,
    InputRangeAssumed = 2002,
    SyntheticValidation = 2003,
}

/// <summary>A warning for the user: a stable code (docs/errors.md) and a message that says what to do.</summary>
public sealed record SadgWarning(SadgErrorCode Code, string Message)
{
    /// <summary><c>path(0,0): warning SADGnnnn: message</c>, against <paramref name="file"/> (the model).</summary>
    public string ToDiagnostic(string? file) => SadgException.Format("warning", Code, Message, file);
}

/// <summary>
/// An error a user can act on: a stable code, the file it concerns, the node where one applies, and a message
/// that says what to do. <see cref="ToDiagnostic"/> formats it the way compilers do, so MSBuild can map it.
/// </summary>
public class SadgException : Exception
{
    public SadgException(SadgErrorCode code, string message, string? file = null, string? node = null, Exception? inner = null)
        : base(message, inner)
    {
        Code = code;
        File = file;
        Node = node;
    }

    public SadgErrorCode Code { get; }

    /// <summary>The file the error concerns, when there is one.</summary>
    public string? File { get; }

    /// <summary>The ONNX node (name, else op type and index) the error concerns, when there is one.</summary>
    public string? Node { get; }

    /// <summary>"SADG1001" etc.</summary>
    public string CodeText => Sadg.Options.DiagnosticFormat.Code((int)Code);

    /// <summary><c>path(0,0): error SADGnnnn: message</c>; line and column do not apply to binary models.</summary>
    public string ToDiagnostic() => Format("error", Code, Message, File);

    /// <summary>
    /// The one format of Sadg's diagnostics (<see cref="Sadg.Options.DiagnosticFormat"/>, shared with the build task,
    /// which reads the lines back): <c>path(0,0): error|warning SADGnnnn: message</c>, <c>sadg</c> when no file applies.
    /// </summary>
    public static string Format(string kind, SadgErrorCode code, string message, string? file) =>
        Sadg.Options.DiagnosticFormat.Format(kind == "warning", (int)code, message, file);
}
