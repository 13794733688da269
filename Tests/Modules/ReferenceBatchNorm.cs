using MlNetBn.Modules;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetBn.Tests.Modules;

/// <summary>
/// The reference for the scratch layer's hand-written backward: Dive into Deep Learning's batch normalization written
/// as its equations and differentiated by autograd (what <c>BatchNormFunction</c> did before it had a backward).
/// </summary>
internal static class ReferenceBatchNorm
{
    public static Tensor Forward(Tensor X, Tensor gamma, Tensor beta, Tensor moving_mean, Tensor moving_var,
        bool training, BatchNormOptions options)
    {
        bool conv = X.dim() == 4;
        long[] reduced = conv ? [0, 2, 3] : [0];
        long[] perFeature = conv ? [1, -1, 1, 1] : [1, -1];

        Tensor mean, var;
        if (training)
        {
            mean = X.mean(reduced, keepdim: true);
            var = (X - mean).square().mean(reduced, keepdim: true);
            using (no_grad())
            {
                double keep = options.MovingAverageKeep;
                long n = X.numel() / X.shape[1];
                Tensor stored = options.MovingVariance == MovingVarianceKind.Unbiased ? var * ((double)n / (n - 1)) : var;
                moving_mean.mul_(keep).add_(mean.reshape(-1), alpha: 1 - keep);
                moving_var.mul_(keep).add_(stored.reshape(-1), alpha: 1 - keep);
            }
        }
        else
        {
            mean = moving_mean.view(perFeature);
            var = moving_var.view(perFeature);
        }

        Tensor X_hat = (X - mean) / (var + options.Epsilon).sqrt();
        return gamma.view(perFeature) * X_hat + beta.view(perFeature);
    }
}

/// <summary>A scratch layer whose math is <see cref="ReferenceBatchNorm"/>: same parameters, buffers and state-dict names.</summary>
internal sealed class ReferenceScratchBatchNorm : ScratchBatchNorm
{
    private readonly int _rank;

    public ReferenceScratchBatchNorm(long numFeatures, int rank, BatchNormOptions? options)
        : base(numFeatures, options, nameof(ReferenceScratchBatchNorm)) => _rank = rank;

    /// <summary>A reference layer with the state (parameters and buffers) of <paramref name="layer"/>.</summary>
    public static ReferenceScratchBatchNorm CopyOf(ScratchBatchNorm layer)
    {
        var copy = new ReferenceScratchBatchNorm(layer.NumFeatures, layer is ScratchBatchNorm2d ? 4 : 2, layer.Options);
        copy.to(layer.Gamma.dtype);
        using (no_grad())
        {
            copy.Gamma.copy_(layer.Gamma);
            copy.Beta.copy_(layer.Beta);
            copy.MovingMean.copy_(layer.MovingMean);
            copy.MovingVariance.copy_(layer.MovingVariance);
        }
        copy.train(layer.training);
        return copy;
    }

    protected override int ExpectedRank => _rank;

    public override Tensor forward(Tensor input) =>
        ReferenceBatchNorm.Forward(input, Gamma, Beta, MovingMean, MovingVariance, training, Options);
}
