namespace MlNetBn.Modules;

/// <summary>How <see cref="BatchNormOptions.Momentum"/> weighs the moving averages.</summary>
/// <remarks>
/// Both conventions describe the same exponential moving average; they differ only in which term the number
/// multiplies. Dive into Deep Learning writes <c>moving = momentum·moving + (1−momentum)·batch</c> with momentum 0.9;
/// PyTorch (and TorchSharp) write <c>running = (1−momentum)·running + momentum·batch</c> with momentum 0.1.
/// </remarks>
public enum MomentumConvention
{
    /// <summary>Momentum is the weight of the old moving value (Dive into Deep Learning; 0.9).</summary>
    MovingAverageWeight,

    /// <summary>Momentum is the weight of the new batch statistic (PyTorch's <c>momentum</c>; 0.1).</summary>
    BatchStatisticWeight,
}

/// <summary>Which variance estimate of the minibatch is folded into the moving variance.</summary>
/// <remarks>
/// Training always normalizes with the biased (population, divide by n) variance of the minibatch. What is stored
/// for prediction differs: Dive into Deep Learning stores that same biased variance; PyTorch stores the unbiased
/// (divide by n−1) estimate. With n = N·H·W in the thousands for convolutional layers the two barely differ; for a
/// fully connected layer with batch 256 they differ by a factor 256/255.
/// </remarks>
public enum MovingVarianceKind
{
    /// <summary>Divide by n, as Dive into Deep Learning (the seed).</summary>
    Biased,

    /// <summary>Divide by n−1, as PyTorch's <c>running_var</c>.</summary>
    Unbiased,
}

/// <summary>Hyper-parameters of a batch normalization layer.</summary>
public sealed record BatchNormOptions
{
    /// <summary>The default momentum, in the <see cref="MomentumConvention.MovingAverageWeight"/> convention.</summary>
    public const double DefaultMomentum = 0.9;

    /// <summary>The default epsilon added to the variance before the square root.</summary>
    public const double DefaultEpsilon = 1e-5;

    /// <summary>Momentum of the moving averages, read according to <see cref="Convention"/>. Must be in [0, 1].</summary>
    public double Momentum { get; init; } = DefaultMomentum;

    /// <summary>How <see cref="Momentum"/> is read. Defaults to Dive into Deep Learning's.</summary>
    public MomentumConvention Convention { get; init; } = MomentumConvention.MovingAverageWeight;

    /// <summary>Small positive number added to the variance for numerical stability.</summary>
    public double Epsilon { get; init; } = DefaultEpsilon;

    /// <summary>
    /// The variance estimate stored in the moving variance. Null (the default) means the layer's own: biased for the
    /// from-scratch layer, as the seed; unbiased for TorchSharp's built-in layer, which cannot store anything else.
    /// </summary>
    public MovingVarianceKind? MovingVariance { get; init; }

    /// <summary>The weight of the old moving value in <c>moving = keep·moving + (1−keep)·batch</c>.</summary>
    public double MovingAverageKeep => Convention == MomentumConvention.MovingAverageWeight ? Momentum : 1 - Momentum;

    /// <summary>Throws when a value is out of range, naming the option.</summary>
    public void Validate()
    {
        if (!(Momentum >= 0 && Momentum <= 1))
            throw new ArgumentOutOfRangeException(nameof(Momentum), Momentum, "BatchNorm momentum must be in [0, 1].");
        if (!(Epsilon > 0) || double.IsInfinity(Epsilon))
            throw new ArgumentOutOfRangeException(nameof(Epsilon), Epsilon, "BatchNorm epsilon must be a positive, finite number.");
        if (!Enum.IsDefined(Convention))
            throw new ArgumentOutOfRangeException(nameof(Convention), Convention, "Unknown momentum convention.");
        if (MovingVariance is { } kind && !Enum.IsDefined(kind))
            throw new ArgumentOutOfRangeException(nameof(MovingVariance), MovingVariance, "Unknown moving-variance kind.");
    }
}
