using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Sadg;

/// <summary>
/// TorchSharp's Adam with its step rewritten to hold every <see cref="Scalar"/> for the native call it is passed to.
/// TorchSharp 0.107's <see cref="Adam.step"/> passes numbers (β₁, 1 − β₁, ε, the step size) as implicit Scalars that
/// a garbage collection started by another thread can free mid-call (README, Known issues; see
/// <see cref="TorchScalars"/>). The update is the same sequence of native operations with the same values, so the
/// results are identical; the options, the state and learning-rate schedulers are Adam's own.
/// </summary>
public sealed class HeldScalarAdam(IEnumerable<Parameter> parameters, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999,
    double eps = 1e-8, double weight_decay = 0, bool amsgrad = false, bool maximize = false)
    : Adam(parameters, lr, beta1, beta2, eps, weight_decay, amsgrad, maximize)
{
    /// <summary>
    /// Drops every parameter's gradient (PyTorch's <c>zero_grad(set_to_none=True)</c>; TorchSharp's
    /// <see cref="Optimizer.zero_grad"/> only zeroes them and keeps their memory). Called right after <see cref="step"/>,
    /// the gradients live only from the backward pass to the step, and a finished loop leaves none on its parameters: at
    /// 224² a generator's gradient is 103 MB. The next backward pass writes a fresh gradient where the old one would have
    /// been zeroed and added to, so the values are the same; the difference from zeroing is that a parameter that gets no
    /// gradient in a step is skipped by that step (as in PyTorch), so use it only where every parameter takes part in every
    /// step.
    /// </summary>
    public void ReleaseGradients()
    {
        foreach (var p in parameters()) p.grad = null;
    }

    public override Tensor step(Func<Tensor>? closure = null) => _step<ParamGroup>(group =>
    {
        var options = (Options)group.Options;
        double beta1 = options.beta1!.Value, beta2 = options.beta2!.Value, weightDecay = options.weight_decay!.Value;
        bool amsgrad = options.amsgrad!.Value, maximize = options.maximize!.Value;
        double eps = options.eps!.Value, lr = options.LearningRate!.Value;
        using var b1 = beta1.ToScalar();
        using var oneMinusB1 = (1 - beta1).ToScalar();
        using var b2 = beta2.ToScalar();
        using var oneMinusB2 = (1 - beta2).ToScalar();
        using var decay = weightDecay.ToScalar();

        foreach (var param in group.Parameters)
        {
            var state = (State)_state[param.Handle];
            var grad = param.grad;
            if (grad is null) continue;
            if (maximize) grad = -grad;

            state.step += 1;
            var biasCorrection1 = 1 - Math.Pow(beta1, state.step);
            var biasCorrection2 = 1 - Math.Pow(beta2, state.step);

            if (weightDecay != 0) grad = grad.add(param, decay);

            state.exp_avg.mul_(b1).add_(grad, oneMinusB1);
            state.exp_avg_sq.mul_(b2).addcmul_(grad, grad.conj(), oneMinusB2);

            Tensor denom;
            if (amsgrad)
            {
                var t0 = state.max_exp_avg_sq;
                state.max_exp_avg_sq = maximum(t0, state.exp_avg_sq).DetachFromDisposeScope();
                t0.Dispose();
                denom = state.max_exp_avg_sq.sqrt().Div(Math.Sqrt(biasCorrection2)).Add_(eps);
            }
            else
            {
                denom = state.exp_avg_sq.sqrt().Div(Math.Sqrt(biasCorrection2)).Add_(eps);
            }

            using var stepSize = (-(lr / biasCorrection1)).ToScalar();
            param.addcdiv_(state.exp_avg, denom, stepSize);
        }
    }, closure);
}
