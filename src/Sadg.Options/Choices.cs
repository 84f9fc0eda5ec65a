namespace Sadg.Options
{
    /// <summary>Where the calibration images come from (<c>--method</c> / <c>Method</c>).</summary>
    public enum CalibrationMethod
    {
        /// <summary>Genie-D warm-up, warm-up quantized model Q₀, SADAG refinement against Q₀ (the paper).</summary>
        Sadag,

        /// <summary>Genie-D warm-up only.</summary>
        Genie,

        /// <summary>Images of N(0, 1) noise (a baseline).</summary>
        Gaussian,

        /// <summary>Real images given by the caller.</summary>
        Real,
    }

    /// <summary>The step budgets of generation and reconstruction (<c>--profile</c> / <c>Profile</c>).</summary>
    public enum StepProfile
    {
        /// <summary>Minutes on a CPU: for builds and CI.</summary>
        Quick,

        /// <summary>The CPU default.</summary>
        Default,

        /// <summary>The paper's budgets; meant for a GPU.</summary>
        Paper,
    }

    /// <summary>Where to compute (<c>--device</c> / <c>Device</c>).</summary>
    public enum DeviceKind
    {
        /// <summary>CUDA when available, else the CPU.</summary>
        Auto,

        Cpu,

        /// <summary>CUDA; an error when it is missing.</summary>
        Cuda,
    }

    /// <summary>Where the input prior of generation (the per-image mean and std the images are pulled towards) comes from.</summary>
    public enum InputPriorMode
    {
        /// <summary>
        /// What the user states (input range, or input mean and std), else the model's sadg.input_mean/std metadata,
        /// else a fit to the model's first BatchNormalization node.
        /// </summary>
        Auto,

        /// <summary>No input prior term.</summary>
        Off,

        /// <summary>Mean 0 and std 1 whatever the model expects (standardized inputs assumed).</summary>
        Standardized,
    }

    /// <summary>How SADAG picks the neighbour z − δ at which the gradient of the quantized model is matched.</summary>
    public enum NeighbourMode
    {
        /// <summary>
        /// Exactly the paper's formula: s = mean_i (â_i·sg(â_i))(ê_i·sg(ê_i)), δ = ρ·rownormalize(∂s/∂z). With unit
        /// vectors ∂(â·sg(â))/∂a = (I − ââᵀ)â/‖a‖ = 0, so ∂s/∂z is zero up to rounding and the normalized δ is in
        /// effect a random direction (rounding noise).
        /// </summary>
        Paper,

        /// <summary>A seeded random unit direction per sample: what <see cref="Paper"/> does in effect, honestly named.</summary>
        Random,

        /// <summary>s computed on the unnormalized a and e, which has a real gradient with respect to z.</summary>
        Raw,
    }

    /// <summary>Which biases the reconstruction corrects after each block (<c>--bias-correction</c> / <c>BiasCorrection</c>).</summary>
    public enum BiasCorrectionMode
    {
        /// <summary>
        /// After a block that holds a depthwise convolution is reconstructed, its depthwise convolutions and its last
        /// quantized operator each add to their bias the per-channel mean of (float − quantized output) on the calibration
        /// images (docs/method.md). Blocks without one keep their biases.
        /// </summary>
        Depthwise,

        /// <summary>No bias correction: every bias stays the float model's.</summary>
        Off,
    }

    /// <summary>How images of an image folder are cropped to the model's height and width (<c>--crop</c> / <c>Crop</c>).</summary>
    public enum CropMode
    {
        /// <summary>No crop: the images (after any resize) must be the model's size.</summary>
        None,

        /// <summary>The centre H×W of each image (after any resize), as torchvision's CenterCrop.</summary>
        Center,
    }

    /// <summary>
    /// The order of the colour channels a model takes (<c>--channel-order</c> / <c>ChannelOrder</c>), for the images
    /// decoded from JPEG or PNG files of an image folder.
    /// </summary>
    public enum ChannelOrder
    {
        /// <summary>Red, green, blue (PyTorch, Keras and most exports).</summary>
        Rgb,

        /// <summary>Blue, green, red (Caffe models, and models trained on OpenCV-decoded images).</summary>
        Bgr,
    }

    /// <summary>
    /// How images of an image folder are resized before any crop (<c>--resize</c> / <c>Resize</c>): the shorter side
    /// to <see cref="ShorterSide"/> pixels keeping the aspect ratio (torchvision's <c>Resize(N)</c>), or, when it is
    /// null, to exactly the model's height and width.
    /// </summary>
    public sealed record ImageResize(int? ShorterSide)
    {
        /// <summary>To exactly the model's height and width (<c>model</c>; the aspect ratio is not kept).</summary>
        public static ImageResize ToModel { get; } = new ImageResize((int?)null);

        /// <summary><c>N</c>, or <c>model</c>.</summary>
        public override string ToString() =>
            ShorterSide?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "model";

        /// <summary>Reads <c>N</c> (a whole number of at least 1) or <c>model</c> (any case).</summary>
        public static bool TryParse(string text, out ImageResize? resize)
        {
            resize = null;
            if (string.Equals(text, "model", System.StringComparison.OrdinalIgnoreCase)) resize = ToModel;
            else if (int.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int n) && n >= 1)
                resize = new ImageResize(n);
            return resize != null;
        }
    }
    /// <summary>
    /// The size budget of mixed precision (<c>--size-budget</c> / <c>SizeBudget</c>): the most bytes the quantized
    /// layers' weights may take at their nominal bit widths (b bits a weight, plus a float32 scale and a b-bit zero point
    /// per output channel), as HAWQ and ZeroQ count model size. Exactly one form is set: a <see cref="Ratio"/> of the same
    /// weights' FP32 bytes (<c>0.125</c>), <see cref="KiB"/> (<c>600KiB</c>; 1 KiB = 1024 bytes), or the size of the model
    /// at uniform <see cref="Bits"/> under the same first/last and per-layer policy (<c>W3</c>).
    /// </summary>
    public sealed record SizeBudget(double? Ratio, long? KiB, int? Bits = null)
    {
        /// <summary>
        /// The budget in bytes for weights of <paramref name="fp32Bytes"/> FP32 bytes (a ratio is rounded down);
        /// <paramref name="uniformBytes"/> gives the nominal bytes at uniform b bits for the <c>W</c> form.
        /// </summary>
        public long Bytes(long fp32Bytes, System.Func<int, long> uniformBytes) =>
            KiB is long k ? k * 1024 : Bits is int b ? uniformBytes(b) : (long)System.Math.Floor(Ratio!.Value * fp32Bytes);

        /// <summary><c>0.125</c>, <c>600KiB</c> or <c>W3</c>: what <see cref="TryParse"/> reads back.</summary>
        public override string ToString() => KiB is long k
            ? k.ToString(System.Globalization.CultureInfo.InvariantCulture) + "KiB"
            : Bits is int b ? "W" + b.ToString(System.Globalization.CultureInfo.InvariantCulture)
            : Ratio!.Value.ToString("R", System.Globalization.CultureInfo.InvariantCulture);

        /// <summary>
        /// Reads a ratio, a number greater than 0 and at most 1 (<c>0.125</c>), a whole number of at least 1 followed
        /// by <c>KiB</c> (any case, blanks allowed before it: <c>600KiB</c>, <c>600 kib</c>), or <c>W</c> and a bit width
        /// that <see cref="QuantizeSchema.TryBits(string, out int)"/> reads (<c>W3</c>, any case).
        /// </summary>
        public static bool TryParse(string text, out SizeBudget? budget)
        {
            budget = null;
            text = text.Trim();
            var styles = System.Globalization.NumberStyles.None;
            var culture = System.Globalization.CultureInfo.InvariantCulture;
            if (text.EndsWith("KiB", System.StringComparison.OrdinalIgnoreCase))
            {
                if (long.TryParse(text.Substring(0, text.Length - 3).TrimEnd(), styles, culture, out long k) && k >= 1 && k <= long.MaxValue / 1024)
                    budget = new SizeBudget(null, k);
            }
            else if (text.StartsWith("W", System.StringComparison.OrdinalIgnoreCase))
            {
                if (QuantizeSchema.TryBits(text.Substring(1), out int b))
                    budget = new SizeBudget(null, null, b);
            }
            else if (double.TryParse(text, System.Globalization.NumberStyles.AllowDecimalPoint, culture, out double r) && r > 0 && r <= 1)
                budget = new SizeBudget(r, null);
            return budget != null;
        }
    }
}

namespace System.Runtime.CompilerServices
{
    /// <summary>Lets netstandard2.0 compile init-only setters and records.</summary>
    internal static class IsExternalInit { }
}
