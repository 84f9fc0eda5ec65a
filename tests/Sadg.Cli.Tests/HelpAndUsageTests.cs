namespace Sadg.Cli.Tests;

public class HelpAndUsageTests
{
    public static TheoryData<string> Verbs => new() { "quantize", "inspect", "generate", "evaluate" };

    [Fact]
    public async Task Root_help_lists_every_verb()
    {
        var r = await CliRunner.RunAsync("--help");
        Assert.Equal(0, r.ExitCode);
        foreach (var verb in new[] { "quantize", "inspect", "generate", "evaluate" }) Assert.Contains(verb, r.Out);
    }

    [Theory]
    [MemberData(nameof(Verbs))]
    public async Task Every_verb_has_help(string verb)
    {
        var r = await CliRunner.RunAsync(verb, "--help");
        Assert.Equal(0, r.ExitCode);
        Assert.Contains($" {verb} <", r.Out);
        Assert.Contains("--quiet", r.Out);
    }

    [Fact]
    public async Task Quantize_help_shows_every_option()
    {
        var r = await CliRunner.RunAsync("quantize", "--help");
        foreach (var option in new[] { "--output", "--bits", "--activation-bits", "--method", "--calibration-data", "--samples", "--profile", "--seed", "--device", "--cache-dir", "--report" })
            Assert.Contains(option, r.Out);
    }

    [Fact]
    public async Task Version_prints_the_version()
    {
        var r = await CliRunner.RunAsync("--version");
        Assert.Equal(0, r.ExitCode);
        Assert.StartsWith("0.1.0", r.Out.Trim());
    }

    [Theory]
    [InlineData("frobnicate")]
    [InlineData("inspect")]
    [InlineData("inspect", "a.onnx", "--no-such-option")]
    [InlineData("quantize", "a.onnx", "--bits", "four")]
    [InlineData("evaluate", "a.onnx")]
    public async Task Usage_errors_exit_2_with_a_diagnostic(params string[] args)
    {
        var r = await CliRunner.RunAsync(args);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("sadg(0,0): error SADG1501: ", r.Err);
    }

    [Fact]
    public void The_built_tool_runs_as_a_process()
    {
        var version = CliRunner.RunProcess("--version");
        Assert.Equal(0, version.ExitCode);
        Assert.StartsWith("0.1.0", version.Out.Trim());
        var missing = CliRunner.RunProcess("inspect", "no-such-model.onnx");
        Assert.Equal(1, missing.ExitCode);
        Assert.StartsWith("no-such-model.onnx(0,0): error SADG1001: ", missing.Err.Trim());
        var help = CliRunner.RunProcess("evaluate", "--help");
        Assert.Equal(0, help.ExitCode);
        Assert.Contains("--data", help.Out);
        Assert.Contains("sadg evaluate <models>", help.Out);
    }
}
