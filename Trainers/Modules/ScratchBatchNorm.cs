using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace MlNetBn.Modules;

/// <summary>
/// Batch normalization written from scratch (Dive into Deep Learning) as a TorchSharp module: learnable
/// <c>gamma</c> (init 1) and <c>beta</c> (init 0), moving mean (init 0) and moving variance (init 1) as registered
/// buffers so they travel with the state dict and with <c>to(device)</c>. The module's train/eval state picks
/// minibatch or moving statistics. The math lives in one function (<c>BatchNormFunction</c>); the leaf classes
/// <see cref="ScratchBatchNorm1d"/> and <see cref="ScratchBatchNorm2d"/> only validate the input rank.
/// </summary>
public abstract class ScratchBatchNorm : Module<Tensor, Tensor>
{
    // State-dict names follow the equation (d2l's gamma, beta, moving_mean, moving_var); TorchSharp moves the
    // fields by these names in to(device), so the attribute, not the C# field name, is what matters.
    [ComponentName(Name = "gamma")] private Parameter _gamma;
    [ComponentName(Name = "beta")] private Parameter _beta;
    [ComponentName(Name = "moving_mean")] private Tensor _movingMean;
    [ComponentName(Name = "moving_var")] private Tensor _movingVar;

    /// <summary>Creates the layer.</summary>
    /// <param name="numFeatures">Number of features (fully connected input) or channels (convolutional input).</param>
    /// <param name="options">Momentum, epsilon and moving-variance kind; defaults to Dive into Deep Learning's.</param>
    /// <param name="name">The module's name.</param>
    protected ScratchBatchNorm(long numFeatures, BatchNormOptions? options, string name) : base(name)
    {
        if (numFeatures <= 0)
            throw new ArgumentOutOfRangeException(nameof(numFeatures), numFeatures, "BatchNorm needs at least one feature.");
        Options = options ?? new BatchNormOptions();
        Options.Validate();
        NumFeatures = numFeatures;
        _gamma = new Parameter(ones(numFeatures));
        _beta = new Parameter(zeros(numFeatures));
        _movingMean = zeros(numFeatures);
        _movingVar = ones(numFeatures);
        RegisterComponents();
    }

    /// <summary>Number of features or channels normalized.</summary>
    public long NumFeatures { get; }

    /// <summary>Momentum, epsilon and moving-variance kind.</summary>
    public BatchNormOptions Options { get; }

    /// <summary>Learnable scale, one value per feature.</summary>
    public Parameter Gamma => _gamma;

    /// <summary>Learnable shift, one value per feature.</summary>
    public Parameter Beta => _beta;

    /// <summary>Moving mean used in prediction (eval mode).</summary>
    public Tensor MovingMean => _movingMean;

    /// <summary>Moving variance used in prediction (eval mode); biased or unbiased per <see cref="BatchNormOptions.MovingVariance"/>.</summary>
    public Tensor MovingVariance => _movingVar;

    /// <summary>The input rank this layer accepts: 2 (N×F) or 4 (N×C×H×W).</summary>
    protected abstract int ExpectedRank { get; }

    /// <inheritdoc/>
    public override Tensor forward(Tensor input)
    {
        if (input.dim() != ExpectedRank)
            throw new ArgumentException(
                $"{GetName()} expects {ExpectedRank}-D input ({(ExpectedRank == 2 ? "N×F" : "N×C×H×W")}), got {input.dim()}-D input of shape [{string.Join(", ", input.shape)}].",
                nameof(input));
        if (input.shape[1] != NumFeatures)
            throw new ArgumentException(
                $"{GetName()} was built for {NumFeatures} {(ExpectedRank == 2 ? "features" : "channels")}, got {input.shape[1]} (input shape [{string.Join(", ", input.shape)}]).",
                nameof(input));
        if (training && input.numel() / input.shape[1] < 2)
            // PyTorch raises here too; without this check the unbiased variance would divide by zero and NaN
            // would be written into the moving variance.
            throw new ArgumentException(
                $"{GetName()} cannot use minibatch statistics when the training batch gives a single value per {(ExpectedRank == 2 ? "feature" : "channel")} (input shape [{string.Join(", ", input.shape)}]); use a batch of at least 2 or switch to eval().",
                nameof(input));
        return BatchNormFunction.Forward(input, _gamma, _beta, _movingMean, _movingVar, training, Options);
    }
}
