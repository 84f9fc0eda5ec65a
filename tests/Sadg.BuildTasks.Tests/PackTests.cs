using System.IO.Compression;
using System.Text.RegularExpressions;

namespace Sadg.BuildTasks.Tests;

/// <summary>dotnet pack of Sadg.BuildTasks as a developer runs it: in the repository, with no version given.</summary>
[Collection("build")]
public sealed class PackTests(BuildFixture fixture)
{
    [Fact]
    public void PackLeavesTheWorkingTreeAsItWasAndGetsALocalVersion()
    {
        string before = GitStatus();
        string feed = Path.Combine(fixture.Root, "pack-feed");
        var pack = Dotnet.Run(BuildFixture.RepoRoot, "pack", Path.Combine("src", "Sadg.BuildTasks", "Sadg.BuildTasks.csproj"),
            "-c", "Release", "-o", feed, "-nodeReuse:false");
        Assert.True(pack.ExitCode == 0, pack.Output);
        Assert.Equal(before, GitStatus());
        Assert.False(File.Exists(Path.Combine(BuildFixture.RepoRoot, "src", "Sadg.BuildTasks", "Sadg.BuildTasks.version.props")));

        // A local pack is a -dev.<UTC time> prerelease: never a released version, never an earlier local pack.
        string nupkg = Assert.Single(Directory.GetFiles(feed, "*.nupkg"));
        var match = Regex.Match(Path.GetFileName(nupkg), @"^Sadg\.BuildTasks\.(\d+\.\d+\.\d+-dev\.(\d{14}))\.nupkg$");
        Assert.True(match.Success, nupkg);
        var stamp = DateTime.ParseExact(match.Groups[2].Value, "yyyyMMddHHmmss", null, System.Globalization.DateTimeStyles.AssumeUniversal | System.Globalization.DateTimeStyles.AdjustToUniversal);
        Assert.InRange(stamp, DateTime.UtcNow.AddMinutes(-10), DateTime.UtcNow.AddMinutes(1));
        // The package records its own version (the Sadg.Tool version it downloads).
        using var zip = ZipFile.OpenRead(nupkg);
        using var reader = new StreamReader(zip.GetEntry("build/Sadg.BuildTasks.version.props")!.Open());
        Assert.Contains($"<_SadgPackageVersion>{match.Groups[1].Value}</_SadgPackageVersion>", reader.ReadToEnd());
    }

    private static string GitStatus()
    {
        var status = new System.Diagnostics.ProcessStartInfo("git", ["-C", BuildFixture.RepoRoot, "status", "--porcelain", "--untracked-files=all"])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var git = System.Diagnostics.Process.Start(status)!;
        string output = git.StandardOutput.ReadToEnd();
        string error = git.StandardError.ReadToEnd();
        git.WaitForExit();
        Assert.True(git.ExitCode == 0, "git status failed (the test needs the repository's git checkout): " + error);
        return output;
    }
}
