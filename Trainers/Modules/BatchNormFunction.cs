using TorchSharp;
using static TorchSharp.torch;

namespace MlNetBn.Modules;

/// <summary>
/// The batch normalization equations (Dive into Deep Learning, "Batch Normalization"), as one function the scratch
/// layers call. The layers only validate shapes and keep the parameters and buffers.
/// </summary>
internal static class BatchNormFunction
{
    /// <summary>
    /// Normalizes <paramref name="X"/> per feature (N×F input) or per channel (N×C×H×W input), then scales by
    /// <paramref name="gamma"/> and shifts by <paramref name="beta"/>. In training it uses the minibatch's mean and
    /// biased variance and updates the moving averages in place; in prediction it uses the moving averages.
    /// </summary>
    /// <param name="X">Input of rank 2 or 4 whose dimension 1 is the feature/channel dimension (validated by the caller).</param>
    /// <param name="gamma">Scale, one value per feature.</param>
    /// <param name="beta">Shift, one value per feature.</param>
    /// <param name="moving_mean">Moving mean buffer, updated in place when <paramref name="training"/>.</param>
    /// <param name="moving_var">Moving variance buffer, updated in place when <paramref name="training"/>.</param>
    /// <param name="training">Use minibatch statistics (true) or the moving averages (false).</param>
    /// <param name="options">Epsilon, momentum and the moving-variance kind.</param>
    public static Tensor Forward(Tensor X, Tensor gamma, Tensor beta, Tensor moving_mean, Tensor moving_var,
        bool training, BatchNormOptions options)
    {
        // Statistics are taken over every dimension but the feature one: N for N×F, N·H·W for N×C×H×W.
        // The per-feature vectors are viewed as 1×F or 1×C×1×1 so they broadcast against X.
        bool conv = X.dim() == 4;
        long[] reduced = conv ? [0, 2, 3] : [0];
        long[] perFeature = conv ? [1, -1, 1, 1] : [1, -1];

        if (training)
        {
            long n = X.numel() / X.shape[1];
            // d2l's two-pass statistics: the mean, then the mean squared deviation from it (the biased variance, which
            // training normalizes with). Not X.var_mean: measured on a CPU (libtorch 2.10, 256×6×24×24) its fused
            // reduction over N·H·W takes ~9 ms where mean over the same dimensions takes ~0.2 ms, and it made the
            // scratch layer's forward pass several times the built-in layer's.
            Tensor mean = X.mean(reduced, keepdim: true);
            Tensor centered = X - mean;
            Tensor var = centered.square().mean(reduced, keepdim: true);
            using (no_grad())
            {
                // moving = keep·moving + (1−keep)·batch, in place so the registered buffers keep their identity.
                double keep = options.MovingAverageKeep;
                Tensor stored = options.MovingVariance == MovingVarianceKind.Unbiased ? var * ((double)n / (n - 1)) : var;
                moving_mean.mul_(keep).add_(mean.reshape(-1), alpha: 1 - keep);
                moving_var.mul_(keep).add_(stored.reshape(-1), alpha: 1 - keep);
            }

            // Y = gamma·(X − mean)/sqrt(var + eps) + beta, with the per-feature factor gamma/sqrt(var + eps) computed
            // once: one multiply and one add over X. (torch.addcmul with two broadcast operands measured ~3× slower
            // than mul + add_ on the CPU.) add_ works in place on mul's fresh output, which mul's backward does not need.
            Tensor scale = gamma.view(perFeature) * (var + options.Epsilon).rsqrt();
            return centered.mul(scale).add_(beta.view(perFeature));
        }

        // Prediction: the moving statistics, folded into Y = X·scale + shift with scale = gamma/sqrt(var + eps) and
        // shift = beta − mean·scale: per-feature work, then one multiply and one add over X.
        Tensor movingScale = gamma.view(perFeature) * (moving_var.view(perFeature) + options.Epsilon).rsqrt();
        Tensor shift = beta.view(perFeature) - moving_mean.view(perFeature) * movingScale;
        return X.mul(movingScale).add_(shift);
    }
}
