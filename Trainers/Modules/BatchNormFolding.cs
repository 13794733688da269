using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetBn.Modules;

/// <summary>
/// Folds eval-mode batch normalization into the conv/linear layer before it, for prediction. Eval-mode BN is an
/// affine map per channel/feature, <c>y = s·z + (β − μ·s)</c> with <c>s = γ/√(σ² + ε)</c>, applied to
/// <c>z = W·x + b</c>; so <c>y = (W·s)·x + (b − μ)·s + β</c>, one conv/linear layer with scaled weights.
/// </summary>
internal static class BatchNormFolding
{
    /// <summary>Builds the folded copy of <paramref name="source"/> (see <see cref="LeNetBnNetwork.FoldBatchNorm"/>).</summary>
    public static LeNetBnNetwork Fold(LeNetBnNetwork source)
    {
        ArgumentNullException.ThrowIfNull(source);
        var architecture = source.Architecture;
        if (architecture.BatchNormFolded)
            throw new InvalidOperationException("The network's batch normalization is already folded into its conv/linear layers.");
        if (architecture.BatchNorm == BatchNormKind.None)
            throw new InvalidOperationException("The network has no batch normalization layers to fold (BatchNormKind.None).");

        var folded = new LeNetBnNetwork(architecture with { BatchNormFolded = true });
        try
        {
            // Moved before the scope opens: the scope must own only the temporary folded tensors.
            folded.to(source.parameters().First().device);
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            folded.load_state_dict(FoldedStateDict(source), strict: true);
            folded.eval();
            return folded;
        }
        catch
        {
            folded.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The folded network's state dict, by the source's layer names: each conv/linear layer's weight and bias,
    /// folded with the BN layer that directly follows it, if any.
    /// </summary>
    private static Dictionary<string, Tensor> FoldedStateDict(LeNetBnNetwork source)
    {
        var state = new Dictionary<string, Tensor>();
        string prefix = nameof(LeNetBnNetwork.Layers).ToLowerInvariant() + ".";
        (string Name, Tensor Weight, Tensor? Bias)? previous = null;
        foreach (var (name, module) in source.Layers.named_children())
        {
            switch (module)
            {
                case Conv2d conv:
                    previous = (name, conv.weight!, conv.bias);
                    state[prefix + name + ".weight"] = conv.weight!.detach();
                    state[prefix + name + ".bias"] = conv.bias?.detach() ?? zeros(conv.weight!.shape[0], device: conv.weight.device);
                    break;
                case Linear linear:
                    previous = (name, linear.weight!, linear.bias);
                    state[prefix + name + ".weight"] = linear.weight!.detach();
                    state[prefix + name + ".bias"] = linear.bias?.detach() ?? zeros(linear.weight!.shape[0], device: linear.weight.device);
                    break;
                case ScratchBatchNorm or BatchNorm:
                    if (previous is not { } layer)
                        throw new InvalidOperationException($"Batch normalization layer '{name}' does not directly follow a conv/linear layer, so it cannot be folded.");
                    var (weight, bias) = FoldInto(layer.Weight, layer.Bias, Statistics(name, module));
                    state[prefix + layer.Name + ".weight"] = weight;
                    state[prefix + layer.Name + ".bias"] = bias;
                    previous = null;
                    break;
                default:
                    // Activations, pooling and flatten hold no state; a BN layer after them could not be folded.
                    previous = null;
                    break;
            }
        }
        return state;
    }

    /// <summary>γ, β, μ, σ² and ε of one BN layer of either kind.</summary>
    private static (Tensor Gamma, Tensor Beta, Tensor Mean, Tensor Variance, double Epsilon) Statistics(string name, object module)
    {
        switch (module)
        {
            case ScratchBatchNorm bn:
                return (bn.Gamma, bn.Beta, bn.MovingMean, bn.MovingVariance, bn.Options.Epsilon);
            case BatchNorm bn:
                if (bn.running_mean is null || bn.running_var is null)
                    throw new InvalidOperationException($"Batch normalization layer '{name}' tracks no running statistics, so its eval-mode output depends on the batch and cannot be folded.");
                // Without affine parameters TorchSharp's layer scales by 1 and shifts by 0.
                var gamma = bn.weight is null ? ones_like(bn.running_mean) : (Tensor)bn.weight;
                var beta = bn.bias is null ? zeros_like(bn.running_mean) : (Tensor)bn.bias;
                return (gamma, beta, bn.running_mean, bn.running_var, bn.eps);
            default:
                throw new ArgumentException($"'{name}' is not a batch normalization layer.", nameof(module));
        }
    }

    /// <summary>W' = W·s per output channel/feature (dimension 0), b' = (b − μ)·s + β; computed in float64.</summary>
    private static (Tensor Weight, Tensor Bias) FoldInto(Tensor weight, Tensor? bias,
        (Tensor Gamma, Tensor Beta, Tensor Mean, Tensor Variance, double Epsilon) bn)
    {
        // Double precision so the folded weights are the float32 roundings of the exact products: the folded
        // network then differs from the unfolded one only by the order of float32 operations at run time.
        var dtype = weight.dtype;
        var (gamma, beta, mean, variance) = (bn.Gamma.detach().to(ScalarType.Float64), bn.Beta.detach().to(ScalarType.Float64),
            bn.Mean.detach().to(ScalarType.Float64), bn.Variance.detach().to(ScalarType.Float64));
        var scale = gamma * (variance + bn.Epsilon).rsqrt();
        var b = bias is null ? zeros_like(mean) : bias.detach().to(ScalarType.Float64);

        // s broadcast over everything but the output dimension: [out, 1, 1, 1] for conv, [out, 1] for linear.
        var perOutput = new long[weight.dim()];
        Array.Fill(perOutput, 1L);
        perOutput[0] = -1;
        var foldedWeight = (weight.detach().to(ScalarType.Float64) * scale.view(perOutput)).to(dtype);
        var foldedBias = ((b - mean) * scale + beta).to(dtype);
        return (foldedWeight, foldedBias);
    }
}
