namespace MlNetBn.Training;

/// <summary>The validation metric early stopping watches.</summary>
public enum EarlyStoppingMetric
{
    /// <summary>Mean cross-entropy on the validation data (lower is better), Keras's default.</summary>
    ValidationLoss,

    /// <summary>Accuracy on the validation data (higher is better).</summary>
    ValidationAccuracy,
}

/// <summary>
/// Stop training once the validation metric has not improved for <see cref="Patience"/> epochs, and keep the best
/// epoch's weights (Keras's <c>EarlyStopping(restore_best_weights=True)</c>). Needs validation data:
/// <see cref="LeNetBnTrainer.Options.ValidationSet"/> or <see cref="LeNetBnTrainer.Options.ValidationFraction"/>.
/// </summary>
public sealed class EarlyStoppingOptions
{
    /// <summary>The default <see cref="Patience"/>.</summary>
    public const int DefaultPatience = 3;

    /// <summary>The metric to watch.</summary>
    public EarlyStoppingMetric Metric { get; init; } = EarlyStoppingMetric.ValidationLoss;

    /// <summary>Epochs without improvement after which training stops (at least 1).</summary>
    public int Patience { get; init; } = DefaultPatience;

    /// <summary>
    /// The smallest change that counts as an improvement: an epoch improves on the best only when it beats it by
    /// more than this (loss lower, accuracy higher). 0 counts any improvement.
    /// </summary>
    public double MinDelta { get; init; }

    /// <summary>"ValidationLoss, patience 3, min delta 0": for logs and messages.</summary>
    public override string ToString() => string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{Metric}, patience {Patience}, min delta {MinDelta:R}");
}

/// <summary>
/// The best epoch so far by one validation metric, with Keras's notion of improvement (better than the best by
/// more than a minimum delta). The first epoch with a value is always the best so far.
/// </summary>
internal sealed class BestEpoch(EarlyStoppingMetric metric, double minDelta)
{
    public EarlyStoppingMetric Metric { get; } = metric;

    /// <summary>One-based epoch of the best value; 0 before any.</summary>
    public int Epoch { get; private set; }

    /// <summary>The best value (NaN before any).</summary>
    public double Value { get; private set; } = double.NaN;

    /// <summary>Records <paramref name="metrics"/>; true when it is the new best.</summary>
    public bool Offer(LeNetBnEpochMetrics metrics)
    {
        double value = ValueOf(metrics);
        bool improved = Epoch == 0 || (Metric == EarlyStoppingMetric.ValidationLoss ? value < Value - minDelta : value > Value + minDelta);
        if (improved) Restore(metrics.Epoch, value);
        return improved;
    }

    /// <summary>Sets the best epoch read back from a checkpoint.</summary>
    public void Restore(int epoch, double value)
    {
        Epoch = epoch;
        Value = value;
    }

    public double ValueOf(LeNetBnEpochMetrics metrics) =>
        (Metric == EarlyStoppingMetric.ValidationLoss ? metrics.ValidationLoss : metrics.ValidationAccuracy)
        ?? throw new InvalidOperationException("The epoch has no validation metrics.");

    /// <summary>"validation loss 0.412 (epoch 3)".</summary>
    public override string ToString() =>
        $"{(Metric == EarlyStoppingMetric.ValidationLoss ? "validation loss" : "validation accuracy")} {Value:F4} (epoch {Epoch})";
}
