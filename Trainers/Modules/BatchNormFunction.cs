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
            // Statistics without libtorch's fused var_mean over N·H·W: measured on a CPU (libtorch 2.10,
            // 256×6×24×24) it takes ~9 ms where mean over the same dimensions takes ~0.2 ms, several times the
            // built-in layer's whole forward pass. Convolutional input: the moments of each image's channel over H·W
            // (a reduction over the contiguous inner dimensions), combined over the batch by the law of total
            // variance (all groups have H·W values): mean = mean of the means, var = mean of the variances + variance
            // of the means — exact, and only N×C-sized tensors besides X. Fully connected input: d2l's two passes
            // (the mean, then the mean squared deviation), on tensors of N×F values.
            Tensor mean, var;
            if (conv)
            {
                (Tensor imageVar, Tensor imageMean) = X.var_mean([2, 3], unbiased: false, keepdim: true);
                mean = imageMean.mean([0], keepdim: true);
                var = imageVar.mean([0], keepdim: true) + (imageMean - mean).square().mean([0], keepdim: true);
            }
            else
            {
                mean = X.mean(reduced, keepdim: true);
                var = (X - mean).square().mean(reduced, keepdim: true);
            }
            using (no_grad())
            {
                // moving = keep·moving + (1−keep)·batch, in place so the registered buffers keep their identity.
                double keep = options.MovingAverageKeep;
                Tensor stored = options.MovingVariance == MovingVarianceKind.Unbiased ? var * ((double)n / (n - 1)) : var;
                moving_mean.mul_(keep).add_(mean.reshape(-1), alpha: 1 - keep);
                moving_var.mul_(keep).add_(stored.reshape(-1), alpha: 1 - keep);
            }

            // Y = gamma·(X − mean)/sqrt(var + eps) + beta = X·scale + shift with scale = gamma/sqrt(var + eps) and
            // shift = beta − mean·scale: per-feature work, then one multiply and one add over X, and no other
            // X-sized temporary (each one is an allocation the size of the activations, every step). torch.addcmul
            // with two broadcast operands measured ~3× slower than mul + add_ on the CPU. add_ works in place on mul's
            // fresh output, which mul's backward does not need.
            Tensor scale = gamma.view(perFeature) * (var + options.Epsilon).rsqrt();
            Tensor batchShift = beta.view(perFeature) - mean * scale;
            return X.mul(scale).add_(batchShift);
        }

        // Prediction: the moving statistics, folded into Y = X·scale + shift with scale = gamma/sqrt(var + eps) and
        // shift = beta − mean·scale: per-feature work, then one multiply and one add over X.
        Tensor movingScale = gamma.view(perFeature) * (moving_var.view(perFeature) + options.Epsilon).rsqrt();
        Tensor shift = beta.view(perFeature) - moving_mean.view(perFeature) * movingScale;
        return X.mul(movingScale).add_(shift);
    }
}
