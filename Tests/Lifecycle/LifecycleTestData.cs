using Microsoft.ML;
using MlNetBn.Tests.Trainers;
using MlNetBn.Training;

namespace MlNetBn.Tests.Lifecycle;

/// <summary>Shared pieces of the checkpoint, early-stopping and fine-tuning tests.</summary>
internal static class LifecycleTestData
{
    /// <summary>A 4-epoch run with everything a resume must restore: momentum buffers, a cosine schedule, a seeded validation split.</summary>
    public static LeNetBnTrainer.Options Options(string? checkpointDirectory, int epochs = 4)
    {
        var options = TrainerTestData.QuickOptions(epochs, seed: 3);
        options.LearningRateSchedule = LearningRateSchedule.Cosine;
        options.ValidationFraction = 0.1;
        options.CheckpointDirectory = checkpointDirectory;
        return options;
    }

    public static string NewDirectory(string what)
    {
        string path = Path.Combine(Path.GetTempPath(), $"mlnetbn-{what}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(path);
        return path;
    }

    /// <summary>Every parameter and BN statistic equal, bit for bit.</summary>
    public static void AssertSameWeights(LeNetBnTransformer expected, LeNetBnTransformer actual, string what)
    {
        var a = expected.NetworkForTests.state_dict();
        var b = actual.NetworkForTests.state_dict();
        CollectionAssert.AreEqual(a.Keys.ToList(), b.Keys.ToList(), $"{what}: state dict names");
        foreach (var (name, value) in a)
            TensorAssert.AreClose(value, b[name], 0, $"{what}: '{name}'");
    }

    /// <summary>The history without timings (which no two runs share).</summary>
    public static List<string> Figures(IEnumerable<LeNetBnEpochMetrics> history) =>
        [.. history.Select(m => FormattableString.Invariant($"{m.Epoch}/{m.Epochs} {m.Loss:R} {m.TrainAccuracy:R} {m.ValidationLoss:R} {m.ValidationAccuracy:R} {m.LearningRate:R}"))];

    /// <summary>Loads a model zip written by Model.Save of the transformer alone.</summary>
    public static LeNetBnTransformer Load(MLContext mlContext, string path) =>
        (LeNetBnTransformer)mlContext.Model.Load(path, out _);
}
