namespace MlNetBn.Training;

/// <summary>What one training epoch achieved: the numbers Dive into Deep Learning prints, and a few more.</summary>
/// <param name="Epoch">One-based epoch number.</param>
/// <param name="Epochs">Total number of epochs.</param>
/// <param name="Loss">Mean cross-entropy over the epoch's training batches (train mode).</param>
/// <param name="TrainAccuracy">Accuracy on the epoch's training batches, as they were predicted during training.</param>
/// <param name="ValidationLoss">Mean cross-entropy on the validation set in eval mode, when one is given.</param>
/// <param name="ValidationAccuracy">Accuracy on the validation set in eval mode, when one is given.</param>
/// <param name="LearningRate">The learning rate used in this epoch.</param>
/// <param name="ExamplesPerSecond">Training examples processed per second of this epoch's training steps.</param>
/// <param name="Elapsed">Wall time of the epoch, validation included.</param>
public sealed record LeNetBnEpochMetrics(
    int Epoch,
    int Epochs,
    double Loss,
    double TrainAccuracy,
    double? ValidationLoss,
    double? ValidationAccuracy,
    double LearningRate,
    double ExamplesPerSecond,
    TimeSpan Elapsed)
{
    /// <summary>The d2l-style line: loss, train acc, validation acc, examples/s.</summary>
    public override string ToString() =>
        $"epoch {Epoch}/{Epochs}: loss {Loss:F3}, train acc {TrainAccuracy:F3}"
        + (ValidationAccuracy is { } v ? $", valid acc {v:F3}" : "")
        + $", lr {LearningRate:G3}, {ExamplesPerSecond:N0} examples/sec ({Elapsed.TotalSeconds:F1} s)";
}
