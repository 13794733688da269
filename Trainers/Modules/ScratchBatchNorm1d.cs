namespace MlNetBn.Modules;

/// <summary>From-scratch batch normalization for fully connected input (N×F): statistics per feature over the batch.</summary>
public sealed class ScratchBatchNorm1d : ScratchBatchNorm
{
    /// <summary>Creates the layer.</summary>
    /// <param name="numFeatures">Number of features F.</param>
    /// <param name="options">Momentum, epsilon and moving-variance kind; defaults to Dive into Deep Learning's.</param>
    public ScratchBatchNorm1d(long numFeatures, BatchNormOptions? options = null)
        : base(numFeatures, options, nameof(ScratchBatchNorm1d)) { }

    /// <inheritdoc/>
    protected override int ExpectedRank => 2;
}
