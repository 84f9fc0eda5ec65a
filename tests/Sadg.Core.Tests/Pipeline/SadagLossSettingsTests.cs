using Sadg.Generation;
using Sadg.Pipeline;

namespace Sadg.Tests.Pipeline;

/// <summary>SADAG's loss settings for experiments: they reach the generation and, only when set, the canonical options.</summary>
public class SadagLossSettingsTests
{
    [Fact]
    public void Set_values_replace_the_methods_and_enter_the_canonical_options()
    {
        var plain = new PipelineOptions { Method = CalibrationMethod.Sadag };
        var method = GenerationOptions.Profile(plain.Profile);
        var g = plain.Generation();
        Assert.Equal((method.Rho, method.Zeta, method.LambdaDiv, method.LambdaBn), (g.Rho, g.Zeta, g.LambdaDiv, g.LambdaBn));
        Assert.DoesNotContain("sadag_", plain.Canonical());

        var zeta = plain with { SadagLoss = new SadagLossSettings(Zeta: 0.25) };
        g = zeta.Generation();
        Assert.Equal((method.Rho, 0.25, method.LambdaDiv, method.LambdaBn), (g.Rho, g.Zeta, g.LambdaDiv, g.LambdaBn));
        Assert.Contains("sadag_zeta=0.25", zeta.Canonical());
        Assert.DoesNotContain("sadag_rho", zeta.Canonical());
        Assert.NotEqual(plain.OptionsHash(), zeta.OptionsHash());

        var all = plain with { SadagLoss = new SadagLossSettings(2, 0.1, 0.5, 0.25) };
        g = all.Generation();
        Assert.Equal((2.0, 0.1, 0.5, 0.25), (g.Rho, g.Zeta, g.LambdaDiv, g.LambdaBn));
        Assert.Contains("sadag_lambda_bn=0.25\nsadag_lambda_div=0.5\nsadag_rho=2\nsadag_zeta=0.1", all.Canonical());
    }

    /// <summary>The refinement's BN weight by profile (docs/method.md, "SADAG's refinement without the BN term").</summary>
    [Theory]
    [InlineData(StepProfile.Quick, 0.0)]
    [InlineData(StepProfile.Default, 0.0)]
    [InlineData(StepProfile.Paper, 1.0)]
    public void The_CPU_profiles_refine_without_the_BN_term_and_the_paper_profile_with_it(StepProfile profile, double lambdaBn)
    {
        var options = new PipelineOptions { Method = CalibrationMethod.Sadag, Profile = profile };
        Assert.Equal(lambdaBn, options.Generation().LambdaBn);
        Assert.Equal(1.0, (options with { SadagLoss = new SadagLossSettings(LambdaBn: 1) }).Generation().LambdaBn);
    }
}
