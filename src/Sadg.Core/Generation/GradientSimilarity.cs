using static TorchSharp.torch;

namespace Sadg.Generation;

/// <summary>
/// SADAG's factorized gradient similarity. For the last layer f = W a + b and the loss ½‖f − q‖² (q fixed), the
/// per-sample weight gradient is e ⊗ a with e = f − q, so ⟨g_i, g_j⟩ = (a_i·a_j)(e_i·e_j) and the cosine
/// similarity of two samples' gradients is (â_i·â_j)(ê_i·ê_j) with â = a/‖a‖, ê = e/‖e‖: no weight gradient
/// is ever computed.
/// </summary>
public static class GradientSimilarity
{
    /// <summary>Each row divided by its L2 norm (rows of zeros stay zero).</summary>
    public static Tensor NormalizeRows(Tensor x) => x / x.norm(1, keepdim: true).ClampMin(1e-12);

    /// <summary>S_ij = (â_i·â'_j)(ê_i·ê'_j) for every pair of rows: [N, M].</summary>
    public static Tensor Matrix(Tensor aHat, Tensor eHat, Tensor otherAHat, Tensor otherEHat) =>
        aHat.matmul(otherAHat.t()) * eHat.matmul(otherEHat.t());

    /// <summary>s_i = (â_i·â'_i)(ê_i·ê'_i) for rows paired one to one: [N].</summary>
    public static Tensor Paired(Tensor aHat, Tensor eHat, Tensor otherAHat, Tensor otherEHat) =>
        (aHat * otherAHat).sum(1) * (eHat * otherEHat).sum(1);
}
