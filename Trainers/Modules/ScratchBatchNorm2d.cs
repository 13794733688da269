namespace MlNetBn.Modules;

/// <summary>From-scratch batch normalization for convolutional input (N×C×H×W): statistics per channel over N·H·W.</summary>
public sealed class ScratchBatchNorm2d : ScratchBatchNorm
{
    /// <summary>Creates the layer.</summary>
    /// <param name="numChannels">Number of channels C.</param>
    /// <param name="options">Momentum, epsilon and moving-variance kind; defaults to Dive into Deep Learning's.</param>
    public ScratchBatchNorm2d(long numChannels, BatchNormOptions? options = null)
        : base(numChannels, options, nameof(ScratchBatchNorm2d)) { }

    /// <inheritdoc/>
    protected override int ExpectedRank => 4;
}
