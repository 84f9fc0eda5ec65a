using Sadg.Cli.Data;
using Sadg.Cli.Output;
using Sadg.Cli.Pipeline;
using Sadg.Onnx;
using Sadg.Tests.Support;

namespace Sadg.Cli.Tests;

public class QuantizeTests
{
    [Theory]
    [InlineData("--bits", "12", 1402)]
    [InlineData("--bits", "1", 1402)]
    [InlineData("--activation-bits", "9", 1402)]
    [InlineData("--profile", "fastest", 1502)]
    [InlineData("--method", "magic", 1502)]
    [InlineData("--device", "tpu", 1502)]
    [InlineData("--samples", "0", 1502)]
    [InlineData("--method", "real", 1403)]
    public async Task Invalid_options_are_sadg_errors(string option, string value, int code)
    {
        using var folder = new TempFolder();
        string model = Models.Save(Models.Tiny(1), folder, "m.onnx");
        var r = await CliRunner.RunAsync("quantize", model, option, value);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains($"(0,0): error SADG{code}: ", r.Err);
        Assert.False(File.Exists(folder.File("m.q4.onnx")));
    }

    [Fact]
    public async Task Missing_model_is_SADG1001()
    {
        var r = await CliRunner.RunAsync("quantize", "nowhere/m.onnx", "-o", "out.onnx");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("nowhere/m.onnx(0,0): error SADG1001: ", r.Err);
    }

    sealed class EchoPipeline : IQuantizationPipeline
    {
        public QuantizationRequest? Request { get; private set; }

        public async Task<QuantizationResult> RunAsync(QuantizationRequest request, CliConsole console, CancellationToken cancellationToken)
        {
            Request = request;
            using (var stage = console.Stage("reconstruction", 3))
                for (int i = 1; i <= 3; i++) { await Task.Yield(); stage.Report(i); }
            return new QuantizationResult(request.Model.Proto, ["summary line"]);
        }
    }

    sealed class BlockingPipeline(TaskCompletionSource started) : IQuantizationPipeline
    {
        public async Task<QuantizationResult> RunAsync(QuantizationRequest request, CliConsole console, CancellationToken cancellationToken)
        {
            started.SetResult();
            await Task.Delay(Timeout.Infinite, cancellationToken);
            throw new InvalidOperationException("unreachable");
        }
    }

    [Fact]
    public async Task A_pipeline_result_is_written_and_options_reach_it()
    {
        using var folder = new TempFolder();
        string model = Models.Save(Models.Tiny(1), folder, "m.onnx");
        var pipeline = new EchoPipeline();
        var services = new CliServices(TextWriter.Null, TextWriter.Null) { Quantization = pipeline, Interactive = false };
        var r = await CliRunner.RunAsync(["quantize", model, "--bits", "3", "--activation-bits", "none", "--profile", "quick",
            "--seed", "7", "--device", "cpu", "--report", folder.File("report")], services);
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.True(File.Exists(folder.File("m.q3.onnx")));
        OnnxModel.Load(folder.File("m.q3.onnx"));
        Assert.Contains("summary line", r.Out);
        Assert.Contains("reconstruction: 0% (0/3)", r.Err);
        Assert.Contains("reconstruction: done", r.Err);
        var q = pipeline.Request!;
        Assert.Equal((3, (int?)null, StepProfile.Quick, 7, CalibrationMethod.Sadag), (q.Settings.Bits, q.Settings.ActivationBits, q.Settings.Profile, q.Settings.Seed, q.Settings.Method));
        Assert.True(Directory.Exists(folder.File("report")));
    }

    [Fact]
    public async Task Real_method_reads_calibration_data()
    {
        using var folder = new TempFolder();
        string model = Models.Save(Models.Tiny(1), folder, "m.onnx");
        new ImageSet(new float[5 * 64], [5, 1, 8, 8], new int[5], "test").Save(folder.File("calib"));
        var pipeline = new EchoPipeline();
        var services = new CliServices(TextWriter.Null, TextWriter.Null) { Quantization = pipeline };
        var r = await CliRunner.RunAsync(["quantize", model, "--method", "real", "--calibration-data", folder.File("calib"), "--device", "cpu", "-o", folder.File("q.onnx")], services);
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.Equal(5, pipeline.Request!.CalibrationData!.Count);
    }

    [Fact]
    public async Task Cancelling_a_running_pipeline_exits_130_and_leaves_nothing()
    {
        using var folder = new TempFolder();
        string model = Models.Save(Models.Tiny(1), folder, "m.onnx");
        var started = new TaskCompletionSource();
        var services = new CliServices(TextWriter.Null, TextWriter.Null) { Quantization = new BlockingPipeline(started) };
        using var cancellation = new CancellationTokenSource();
        var run = CliRunner.RunAsync(["quantize", model, "--device", "cpu", "--report", folder.File("report")], services, cancellation.Token);
        await started.Task.WaitAsync(TimeSpan.FromSeconds(60));
        cancellation.Cancel();
        var r = await run.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(130, r.ExitCode);
        Assert.Equal(["m.onnx"], Directory.GetFileSystemEntries(folder.Path).Select(Path.GetFileName));
    }

    [Fact]
    public async Task Output_must_not_be_the_input()
    {
        using var folder = new TempFolder();
        string model = Models.Save(Models.Tiny(1), folder, "m.onnx");
        var r = await CliRunner.RunAsync("quantize", model, "-o", model);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("error SADG1503: ", r.Err);
    }

    [Fact]
    public async Task Generate_checks_its_options()
    {
        using var folder = new TempFolder();
        string model = Models.Save(Models.Tiny(1), folder, "m.onnx");
        var bad = await CliRunner.RunAsync("generate", model, "-o", folder.File("data"), "--method", "real");
        Assert.Equal(1, bad.ExitCode);
        Assert.Contains("error SADG1502: ", bad.Err);
        Assert.False(Directory.Exists(folder.File("data")));
    }

    [Fact]
    public async Task Device_cuda_without_the_CUDA_backend_names_the_package()
    {
        using var folder = new TempFolder();
        string model = Models.Save(Models.Tiny(1), folder, "m.onnx");
        if (TorchSharp.torch.cuda.is_available()) return; // would quantize
        var r = await CliRunner.RunAsync("quantize", model, "--device", "cuda");
        {
            Assert.Equal(1, r.ExitCode);
            Assert.Contains("error SADG1106: ", r.Err);
            Assert.Contains("TorchSharp-cuda-linux", r.Err);
            Assert.Contains("Sadg.Tool.Cuda", r.Err);
        }
    }
}
