using System.Globalization;

namespace Sadg.Cli.Output;

/// <summary>File sizes as the tool prints them.</summary>
public static class Sizes
{
    /// <summary>Bytes in B, KiB (one decimal), MiB or GiB (two decimals), invariant culture.</summary>
    public static string Format(long bytes) => bytes switch
    {
        >= 1 << 30 => (bytes / (double)(1 << 30)).ToString("0.00", CultureInfo.InvariantCulture) + " GiB",
        >= 1 << 20 => (bytes / (double)(1 << 20)).ToString("0.00", CultureInfo.InvariantCulture) + " MiB",
        >= 1 << 10 => (bytes / (double)(1 << 10)).ToString("0.0", CultureInfo.InvariantCulture) + " KiB",
        _ => bytes + " B",
    };
}
