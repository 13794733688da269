using Microsoft.ML;
using MlNetBn.Tests.Trainers;
using MlNetBn.Training;
using static MlNetBn.Tests.Lifecycle.LifecycleTestData;

namespace MlNetBn.Tests.Lifecycle;

/// <summary>Checkpoints in one process: what is written and kept, cancellation, damaged files, and what resume refuses.</summary>
[TestClass]
public sealed class CheckpointTests
{
    private static MLContext s_mlContext = null!;
    private static IDataView s_train = null!;
    private static string s_straightDirectory = null!;
    private static LeNetBnTransformer s_straight = null!;
    private readonly List<string> _cleanup = [];

    /// <summary>The uninterrupted run every resumed one must equal: 4 epochs, a checkpoint after each, all kept.</summary>
    [ClassInitialize]
    public static void TrainStraight(TestContext _)
    {
        s_mlContext = new MLContext(seed: 1);
        s_train = TrainerTestData.Train(s_mlContext, 50);
        s_straightDirectory = NewDirectory("checkpoints-straight");
        var options = Options(s_straightDirectory);
        options.CheckpointsToKeep = 4;
        s_straight = s_mlContext.MulticlassClassification.Trainers.LeNetBn(options).Fit(s_train);
    }

    [ClassCleanup]
    public static void Cleanup()
    {
        s_straight.Dispose();
        Directory.Delete(s_straightDirectory, recursive: true);
    }

    [TestCleanup]
    public void DeleteDirectories()
    {
        foreach (var path in _cleanup) Directory.Delete(path, recursive: true);
    }

    private string Directory_(string what)
    {
        var path = NewDirectory(what);
        _cleanup.Add(path);
        return path;
    }

    private string CopyOfStraightRun()
    {
        var copy = Directory_("checkpoints-copy");
        foreach (var file in Directory.GetFiles(s_straightDirectory))
            File.Copy(file, Path.Combine(copy, Path.GetFileName(file)));
        return copy;
    }

    private LeNetBnTransformer Resume(string directory, List<string>? log = null, Action<LeNetBnTrainer.Options>? change = null, IDataView? data = null)
    {
        var mlContext = new MLContext(seed: 1);
        if (log is not null) mlContext.Log += (_, e) => log.Add(e.RawMessage);
        var options = Options(directory);
        options.ResumeFromCheckpoint = true;
        change?.Invoke(options);
        return mlContext.MulticlassClassification.Trainers.LeNetBn(options).Fit(data ?? s_train);
    }

    [TestMethod]
    public void EveryCheckpoint_IsAnOrdinaryModelZip_AndTheLastIsTheFinalModel()
    {
        var files = Directory.GetFiles(s_straightDirectory).Select(Path.GetFileName).Order().ToList();
        CollectionAssert.AreEqual(new[] { 1, 2, 3, 4 }.Select(LeNetBnCheckpoint.FileName).ToList(), files);
        Assert.AreEqual(Path.Combine(s_straightDirectory, "checkpoint-epoch-0004.zip"), LeNetBnCheckpoint.FindLatest(s_straightDirectory));
        using var last = Load(s_mlContext, Path.Combine(s_straightDirectory, "checkpoint-epoch-0004.zip"));
        AssertSameWeights(s_straight, last, "the last checkpoint");
        using var first = Load(s_mlContext, Path.Combine(s_straightDirectory, "checkpoint-epoch-0001.zip"));
        Assert.IsFalse(first.NetworkForTests.state_dict()["layers.conv1.weight"].equal(last.NetworkForTests.state_dict()["layers.conv1.weight"]).all().item<bool>(),
            "epoch 1's checkpoint holds epoch 1's weights");
    }

    [TestMethod]
    public void CheckpointEveryEpochs_AndCheckpointsToKeep_DecideWhichFilesStay()
    {
        var directory = Directory_("checkpoints-every");
        var options = Options(directory, epochs: 4);
        options.CheckpointEveryEpochs = 3;
        options.CheckpointsToKeep = 1;
        using var model = s_mlContext.MulticlassClassification.Trainers.LeNetBn(options).Fit(s_train);
        // Epoch 3 (every third) was written, then replaced by the last epoch's, which is always written.
        CollectionAssert.AreEqual(new[] { "checkpoint-epoch-0004.zip" }, Directory.GetFiles(directory).Select(Path.GetFileName).ToArray());
    }

    [TestMethod]
    public void CancelledFit_LeavesALoadableCheckpoint_AndResumingFinishesBitIdentical()
    {
        var directory = Directory_("checkpoints-cancel");
        using var cts = new CancellationTokenSource();
        var options = Options(directory);
        int epochs = 0;
        options.EpochEnded = m => epochs = m.Epoch;
        options.StepEnded = _ => { if (epochs == 2) cts.Cancel(); }; // in the first step of epoch 3
        options.CancellationToken = cts.Token;
        Assert.ThrowsExactly<OperationCanceledException>(() => s_mlContext.MulticlassClassification.Trainers.LeNetBn(options).Fit(s_train));

        string? latest = LeNetBnCheckpoint.FindLatest(directory);
        Assert.AreEqual(Path.Combine(directory, "checkpoint-epoch-0002.zip"), latest);
        using (var saved = Load(s_mlContext, latest!))
        {
            var scores = s_mlContext.Data.CreateEnumerable<ScoreRow>(saved.Transform(TrainerTestData.Test(s_mlContext, 5)), reuseRowObject: false).ToList();
            Assert.HasCount(50, scores);
            Assert.IsTrue(scores.All(r => r.Score.All(float.IsFinite) && Math.Abs(r.Score.Sum() - 1) < 1e-4), "the checkpoint predicts");
        }

        var log = new List<string>();
        using var resumed = Resume(directory, log);
        AssertSameWeights(s_straight, resumed, "resumed after cancellation");
        CollectionAssert.AreEqual(Figures(s_straight.TrainingHistory), Figures(resumed.TrainingHistory));
        Assert.IsTrue(log.Any(m => m.Contains($"Resumed from '{latest}': 2 of 4 epochs done.")), string.Join("\n", log));
    }

    [TestMethod]
    public void DamagedCheckpoints_AreReportedAndSkipped_ForTheOneBefore()
    {
        var directory = CopyOfStraightRun();
        string fourth = Path.Combine(directory, "checkpoint-epoch-0004.zip"), third = Path.Combine(directory, "checkpoint-epoch-0003.zip");
        var bytes = File.ReadAllBytes(fourth);
        bytes[bytes.Length / 2] ^= 0x5A;
        File.WriteAllBytes(fourth, bytes);
        using (var file = new FileStream(third, FileMode.Open)) file.SetLength(file.Length / 2);

        Assert.AreEqual(Path.Combine(directory, "checkpoint-epoch-0002.zip"), LeNetBnCheckpoint.FindLatest(directory));
        var log = new List<string>();
        using var resumed = Resume(directory, log);
        Assert.IsTrue(log.Any(m => m.StartsWith($"The checkpoint '{fourth}' is damaged: ") && m.EndsWith(" Skipping it for the checkpoint before it.")), string.Join("\n", log));
        Assert.IsTrue(log.Any(m => m.StartsWith($"The checkpoint '{third}' is damaged: ")), string.Join("\n", log));
        Assert.IsTrue(log.Any(m => m.Contains("Resumed from '") && m.Contains("checkpoint-epoch-0002.zip': 2 of 4 epochs done.")), string.Join("\n", log));
        AssertSameWeights(s_straight, resumed, "resumed from epoch 2");
        CollectionAssert.AreEqual(Figures(s_straight.TrainingHistory), Figures(resumed.TrainingHistory));
        using var rewritten = Load(s_mlContext, fourth);
        AssertSameWeights(s_straight, rewritten, "the damaged checkpoint, written again");
    }

    [TestMethod]
    public void ResumingAFinishedRun_TrainsNothing_AndGivesTheSameModel()
    {
        int epochs = 0;
        using var resumed = Resume(CopyOfStraightRun(), change: o => o.EpochEnded = _ => epochs++);
        Assert.AreEqual(0, epochs);
        AssertSameWeights(s_straight, resumed, "a finished run resumed");
        CollectionAssert.AreEqual(Figures(s_straight.TrainingHistory), Figures(resumed.TrainingHistory));
    }

    [TestMethod]
    public void ResumeWithAnEmptyFolder_StartsAfresh()
    {
        using var model = Resume(Directory_("checkpoints-empty"));
        AssertSameWeights(s_straight, model, "a resume with nothing to resume");
    }

    [TestMethod]
    public void Resume_RefusesACheckpointOfOtherOptions()
    {
        var directory = CopyOfStraightRun();
        var e = Assert.ThrowsExactly<InvalidOperationException>(() => Resume(directory, change: o => { o.LearningRate = 0.06; o.Seed = 4; }));
        Assert.AreEqual(
            $"The checkpoint '{Path.Combine(directory, "checkpoint-epoch-0004.zip")}' was made with other options: LearningRate was 0.05, is 0.06 now; Seed was 3, is 4 now. "
            + "Resume with the options it was made with, or use another CheckpointDirectory.", e.Message);
    }

    [TestMethod]
    public void Resume_RefusesACheckpointOfOtherData()
    {
        var directory = CopyOfStraightRun();
        var e = Assert.ThrowsExactly<InvalidOperationException>(() => Resume(directory, data: TrainerTestData.Train(s_mlContext, 49)));
        StringAssert.StartsWith(e.Message, $"The checkpoint '{Path.Combine(directory, "checkpoint-epoch-0004.zip")}' was made from other data: it trained on 500 rows read with 0 validation rows, fingerprint ");
        StringAssert.Contains(e.Message, "; this Fit has 490 and 0, fingerprint ");
    }

    [TestMethod]
    public void AFolderWithCheckpoints_IsRefusedWithoutResume()
    {
        var e = Assert.ThrowsExactly<InvalidOperationException>(() => s_mlContext.MulticlassClassification.Trainers.LeNetBn(Options(s_straightDirectory)).Fit(s_train));
        Assert.AreEqual(
            $"The checkpoint folder '{s_straightDirectory}' already holds checkpoints (checkpoint-epoch-0004.zip). Set ResumeFromCheckpoint to continue that run, or choose an empty folder.",
            e.Message);
    }

    [TestMethod]
    public void CheckpointOptions_AreValidatedByName()
    {
        var trainers = s_mlContext.MulticlassClassification.Trainers;
        Assert.AreEqual("CheckpointEveryEpochs", Assert.Throws<ArgumentOutOfRangeException>(() => trainers.LeNetBn(new LeNetBnTrainer.Options { CheckpointDirectory = "c", CheckpointEveryEpochs = 0 })).ParamName);
        Assert.AreEqual("CheckpointsToKeep", Assert.Throws<ArgumentOutOfRangeException>(() => trainers.LeNetBn(new LeNetBnTrainer.Options { CheckpointDirectory = "c", CheckpointsToKeep = 0 })).ParamName);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => trainers.LeNetBn(new LeNetBnTrainer.Options { ResumeFromCheckpoint = true }));
        Assert.AreEqual("ResumeFromCheckpoint", e.ParamName);
        StringAssert.StartsWith(e.Message, "LeNetBn option ResumeFromCheckpoint = True: needs CheckpointDirectory, the folder to resume from.");
    }
}
