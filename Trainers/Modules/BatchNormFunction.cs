using TorchSharp;
using static TorchSharp.torch;

namespace MlNetBn.Modules;

/// <summary>
/// The batch normalization equations (Dive into Deep Learning, "Batch Normalization"), as one function the scratch
/// layers call, with the training forward's gradient written out by hand. The layers only validate shapes and keep
/// the parameters and buffers.
/// </summary>
/// <remarks>
/// <para>Per feature (N×F input) or channel (N×C×H×W input), over its m values (m = N, or N·H·W):</para>
/// <code>
/// forward   mean = Σ X / m      var = Σ (X − mean)² / m      inv_std = 1 / √(var + ε)
///           X_hat = (X − mean) · inv_std                      Y = gamma · X_hat + beta
/// backward  dbeta = Σ dY        dgamma = Σ dY · X_hat
///           dX = gamma · inv_std / m · (m · dY − dbeta − X_hat · dgamma)
/// </code>
/// <para>
/// Training runs as one autograd node (<see cref="Training"/>): the forward records no graph, keeps X_hat and
/// inv_std, and the backward is the closed form above, two reductions and a few elementwise passes. Autograd through
/// the forward's dozen small operations was most of what the scratch layer cost beyond the built-in one
/// (docs/BENCHMARKS.md). The equations are tested against that autograd version (<c>Tests/Modules/BatchNormBackwardTests.cs</c>).
/// </para>
/// <para>
/// A rewrite of the forward as X·scale + shift from per-image moments was no faster in Fit on a 2-core CPU (median
/// epoch 6.6 s against 6.35 s, 8 interleaved rounds, 2026-12-02).
/// </para>
/// </remarks>
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
        if (training)
            return Training.apply(X, gamma, beta, moving_mean, moving_var, options);

        // Prediction normalizes with constants (the moving averages): plain autograd, whose graph is a few elementwise
        // operations here, off the training hot path, and differentiable to any order for free.
        long[] perFeature = PerFeatureShape(X);
        Tensor X_hat = (X - moving_mean.view(perFeature)) / (moving_var.view(perFeature) + options.Epsilon).sqrt();
        return gamma.view(perFeature) * X_hat + beta.view(perFeature);
    }

    /// <summary>
    /// The training-mode forward and its closed-form backward, as a TorchSharp custom autograd function: one graph
    /// node per call. Apply with <c>Training.apply(X, gamma, beta, moving_mean, moving_var, options)</c>.
    /// </summary>
    /// <remarks>
    /// TorchSharp keeps one instance for every call, so all per-call state lives in the context: the saved tensors
    /// (held by libtorch until the node is freed with the graph, at the end of the training step) and epsilon.
    /// On the CPU libtorch calls <c>backward</c> on the thread that called <c>backward()</c>, inside the step's dispose
    /// scope. On a GPU it calls it on its own device thread, where no scope is open: the gradients handed back (and
    /// TorchSharp's wrapper of dY) are then left to the finalizer. Not measured: no GPU was at hand.
    /// </remarks>
    internal sealed class Training : autograd.SingleTensorFunction<Training>
    {
        private const string EpsilonKey = "eps";

        /// <inheritdoc/>
        public override string Name => nameof(ScratchBatchNorm);

        /// <inheritdoc/>
        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            // apply runs this with autograd off: nothing below records a graph.
            var (X, gamma, beta) = ((Tensor)vars[0], (Tensor)vars[1], (Tensor)vars[2]);
            var (moving_mean, moving_var, options) = ((Tensor)vars[3], (Tensor)vars[4], (BatchNormOptions)vars[5]);

            // The step's dispose scope would keep the intermediates until the step ends; free them here instead.
            using var scope = NewDisposeScope();
            var (mean, var, inv_std, X_hat) = Normalize(X, options.Epsilon);
            UpdateMovingAverages(moving_mean, moving_var, mean, var, X, options);
            long[] perFeature = PerFeatureShape(X);
            // Y = gamma·X_hat + beta. Not one addcmul: libtorch's CPU loop is not vectorized with two broadcast operands.
            Tensor Y = (X_hat * gamma.view(perFeature)).add_(beta.view(perFeature));

            // X is kept only for a double backward (see backward); saving it copies nothing.
            ctx.save_for_backward([X_hat, inv_std, gamma, X]);
            ctx.save_data(EpsilonKey, options.Epsilon);
            // TorchSharp hands the saved tensors to libtorch after this returns: they must outlive the scope, as Y.
            scope.MoveToOuter(X_hat, inv_std, Y);
            return Y;
        }

        /// <inheritdoc/>
        public override List<Tensor?> backward(autograd.AutogradContext ctx, Tensor dY)
        {
            using var scope = NewDisposeScope();
            var saved = ctx.get_saved_variables();
            var (X_hat, inv_std, gamma, X) = (saved[0], saved[1], saved[2], saved[3]);
            if (is_grad_enabled())
            {
                // A backward with create_graph: the gradients must themselves be differentiable. The saved X_hat and
                // inv_std are constants to autograd (the forward recorded no graph), so take them again from X, with
                // autograd on; the same closed form then differentiates correctly. A managed exception cannot be
                // thrown from here to refuse (it would cross libtorch's native frames), so this path is supported.
                var (_, _, recomputedInvStd, recomputedXHat) = Normalize(X, (double)ctx.get_data(EpsilonKey));
                (X_hat, inv_std) = (recomputedXHat, recomputedInvStd);
            }
            var (dX, dgamma, dbeta) = Gradients(dY, X_hat, inv_std, gamma);
            // libtorch copies the gradients after this returns: they must outlive the scope.
            scope.MoveToOuter(dX, dgamma, dbeta);
            // No gradient for the moving averages and the options.
            return [dX, dgamma, dbeta, null, null, null];
        }
    }

    /// <summary>The minibatch's mean and biased variance, inv_std = 1/√(var + ε) and X_hat = (X − mean)·inv_std, per feature.</summary>
    private static (Tensor mean, Tensor var, Tensor inv_std, Tensor X_hat) Normalize(Tensor X, double eps)
    {
        long[] reduced = ReducedDimensions(X);
        Tensor mean = X.mean(reduced, keepdim: true);
        // X − mean once, for the variance and for X_hat.
        Tensor X_centered = X - mean;
        Tensor var = X_centered.square().mean(reduced, keepdim: true);
        Tensor inv_std = (var + eps).rsqrt();
        // In place when autograd is off (the forward: one activation-sized tensor less); a double backward's
        // recomputation records a graph that still needs X_centered.
        Tensor X_hat = is_grad_enabled() ? X_centered * inv_std : X_centered.mul_(inv_std);
        return (mean, var, inv_std, X_hat);
    }

    /// <summary>moving = keep·moving + (1−keep)·batch, in place so the registered buffers keep their identity.</summary>
    private static void UpdateMovingAverages(Tensor moving_mean, Tensor moving_var, Tensor mean, Tensor var, Tensor X,
        BatchNormOptions options)
    {
        using var _ = no_grad();
        double keep = options.MovingAverageKeep;
        long m = X.numel() / X.shape[1];
        Tensor stored = options.MovingVariance == MovingVarianceKind.Unbiased ? var * ((double)m / (m - 1)) : var;
        moving_mean.mul_(keep).add_(mean.reshape(-1), alpha: 1 - keep);
        moving_var.mul_(keep).add_(stored.reshape(-1), alpha: 1 - keep);
    }

    /// <summary>The closed-form gradients of Y = gamma·X_hat + beta with respect to X, gamma and beta.</summary>
    private static (Tensor dX, Tensor dgamma, Tensor dbeta) Gradients(Tensor dY, Tensor X_hat, Tensor inv_std, Tensor gamma)
    {
        long[] reduced = ReducedDimensions(dY);
        long m = dY.numel() / dY.shape[1];
        // dbeta = Σ dY;  dgamma = Σ dY·X_hat (kept as 1×F or 1×C×1×1 to broadcast against dY).
        Tensor dbeta = dY.sum(reduced, keepdim: true);
        Tensor dgamma = (dY * X_hat).sum(reduced, keepdim: true);
        // dX = gamma·inv_std/m · (m·dY − dbeta − X_hat·dgamma), divided through by m: three passes over the data
        // (a fused multiply-add, then two in-place ops on its result) instead of five.
        Tensor dX = dY.addcmul(X_hat, dgamma, -1.0 / m).sub_(dbeta / m).mul_(gamma.view(PerFeatureShape(dY)) * inv_std);
        return (dX, dgamma.reshape(-1), dbeta.reshape(-1));
    }

    // Statistics are taken over every dimension but the feature one: N for N×F, N·H·W for N×C×H×W.
    private static long[] ReducedDimensions(Tensor X) => X.dim() == 4 ? [0, 2, 3] : [0];

    // Per-feature vectors are viewed as 1×F or 1×C×1×1 so they broadcast against X.
    private static long[] PerFeatureShape(Tensor X) => X.dim() == 4 ? [1, -1, 1, 1] : [1, -1];
}
