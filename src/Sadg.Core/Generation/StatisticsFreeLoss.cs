using static TorchSharp.torch;

namespace Sadg.Generation;

/// <summary>
/// The objective used instead of L_BN when the model has no BatchNormalization layers (BN folded at export):
/// cross-entropy of the FP model's logits to random target classes, plus total-variation and L2 image priors.
/// Not part of the paper; weights in <see cref="GenerationOptions"/>.
/// </summary>
public static class StatisticsFreeLoss
{
    /// <summary>The notice given (once per generation) when a model has no BatchNormalization layers.</summary>
    public const string NoBatchNormWarning =
        "The model has no BatchNormalization layers, so there are no BN statistics to match; Sadg falls back to a " +
        "statistics-free objective (cross-entropy to random classes with total-variation and L2 image priors), which " +
        "can give much poorer calibration images (at W4A4 with the input range stated, quick profile: on a CIFAR-10 ResNet-8 " +
        "2 to 4 points of top-1 below the same model with BatchNorm kept, and as good at the default profile; on a " +
        "MobileNetV3-style model 12 to 14 points below; docs/benchmarks/resnet8.md, docs/benchmarks/zoo.md). " +
        "State what the model is fed (--input-range, or InputRange in the build) unless its metadata or its own input " +
        "normalization says it: without BN Sadg cannot infer it otherwise. Better, if the network has BatchNorm layers, " + KeepBatchNormAdvice;

    /// <summary>How to export a model with its BatchNormalization layers kept (where the warning and `inspect` give it).</summary>
    public const string KeepBatchNormAdvice =
        "export the model with BatchNormalization kept: in PyTorch, call " +
        "model.eval() and then torch.onnx.export(model, x, path, dynamo=False, training=torch.onnx.TrainingMode.PRESERVE). " +
        "The default (training=TrainingMode.EVAL) fuses every BatchNorm into the Conv before it, and " +
        "do_constant_folding=False alone does not prevent that.";

    /// <summary>Mean cross-entropy of <paramref name="logits"/> [N, K] to the class indices <paramref name="targets"/> [N].</summary>
    public static Tensor CrossEntropy(Tensor logits, Tensor targets) => nn.functional.cross_entropy(logits, targets);

    /// <summary>Anisotropic total variation: mean squared difference of neighbouring pixels along H and W.</summary>
    public static Tensor TotalVariation(Tensor images)
    {
        long h = images.shape[2], w = images.shape[3];
        var dy = images[.., .., TensorIndex.Slice(1, h), ..] - images[.., .., TensorIndex.Slice(0, h - 1), ..];
        var dx = images[.., .., .., TensorIndex.Slice(1, w)] - images[.., .., .., TensorIndex.Slice(0, w - 1)];
        return (h > 1 ? dy.Square().mean() : zeros([], device: images.device)).Add(w > 1 ? dx.Square().mean() : zeros([], device: images.device));
    }

    /// <summary>L2 prior: the mean squared pixel value.</summary>
    public static Tensor L2(Tensor images) => images.Square().mean();
}
