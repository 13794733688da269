namespace MlNetBn.Training;

/// <summary>Finds the checkpoints <see cref="LeNetBnTrainer.Options.CheckpointDirectory"/> holds.</summary>
public static class LeNetBnCheckpoint
{
    /// <summary>
    /// The path of the newest checkpoint in <paramref name="directory"/> that reads back whole (model and training
    /// state), or null when there is none; damaged ones are skipped. It is an ordinary model zip of the LeNet-BN
    /// transformer: open it with <c>mlContext.Model.Load</c>, e.g. after a cancelled or crashed Fit.
    /// </summary>
    public static string? FindLatest(string directory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        var latest = new CheckpointFolder(directory).FindLatest(channel: null);
        latest?.Model.Dispose();
        return latest?.Path;
    }

    /// <summary>The file name of the checkpoint written after <paramref name="epoch"/> (one-based): <c>checkpoint-epoch-0003.zip</c>.</summary>
    public static string FileName(int epoch)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(epoch, 1);
        return CheckpointFolder.FileName(epoch);
    }
}
