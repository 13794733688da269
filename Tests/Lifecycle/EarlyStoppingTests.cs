using Microsoft.ML;
using MlNetBn.Modules;
using MlNetBn.Tests.Trainers;
using MlNetBn.Training;
using static MlNetBn.Tests.Lifecycle.LifecycleTestData;

namespace MlNetBn.Tests.Lifecycle;

/// <summary>Early stopping, StopTraining and the Fit overload with validation data.</summary>
[TestClass]
public sealed class EarlyStoppingTests
{
    private static readonly MLContext s_mlContext = new(seed: 1);

    /// <summary>
    /// A run crafted to plateau: after epoch 2 the step decay divides the learning rate by 10⁹, so no later epoch
    /// can improve by the minimum delta, and training must stop <c>Patience</c> epochs after the best one, with
    /// that epoch's weights (compared with its checkpoint).
    /// </summary>
    [TestMethod]
    [DataRow(EarlyStoppingMetric.ValidationLoss)]
    [DataRow(EarlyStoppingMetric.ValidationAccuracy)]
    public void StopsWhereTheRuleSays_AndKeepsTheBestEpochsWeights(EarlyStoppingMetric metric)
    {
        string directory = NewDirectory("early-stopping");
        try
        {
            var log = new List<string>();
            var mlContext = new MLContext(seed: 1);
            mlContext.Log += (_, e) => log.Add(e.RawMessage);
            var options = TrainerTestData.QuickOptions(epochs: 10);
            options.BatchNorm = BatchNormKind.None;
            options.Activation = ActivationKind.ReLU;
            options.LearningRateSchedule = LearningRateSchedule.StepDecay;
            options.StepDecayEpochs = 2;
            options.StepDecayFactor = 1e-9;
            options.ValidationFraction = 0.2;
            options.EarlyStopping = new EarlyStoppingOptions { Metric = metric, Patience = 2, MinDelta = 1e-4 };
            options.CheckpointDirectory = directory;
            options.CheckpointsToKeep = 10;
            using var model = mlContext.MulticlassClassification.Trainers.LeNetBn(options).Fit(TrainerTestData.Train(mlContext, 50));

            // The rule, applied to the history by hand: the best is the first epoch, then any that beats it by more than MinDelta.
            var history = model.TrainingHistory;
            double Value(LeNetBnEpochMetrics m) => metric == EarlyStoppingMetric.ValidationLoss ? -m.ValidationLoss!.Value : m.ValidationAccuracy!.Value;
            int best = 1, stop = 0;
            for (int e = 2; e <= 10 && stop == 0; e++)
            {
                if (Value(history[e - 1]) > Value(history[best - 1]) + 1e-4) best = e;
                if (e - best >= 2) stop = e;
            }
            Assert.IsTrue(stop is > 0 and <= 4, $"the plateau starts after epoch 2, so training stops by epoch 4 (stopped at {stop})");
            Assert.HasCount(stop, history, "training ran exactly to the stop epoch");
            using var bestCheckpoint = Load(mlContext, Path.Combine(directory, LeNetBnCheckpoint.FileName(best)));
            AssertSameWeights(bestCheckpoint, model, $"the returned model and epoch {best}'s checkpoint");
            string watched = metric == EarlyStoppingMetric.ValidationLoss ? "validation loss" : "validation accuracy";
            double bestValue = metric == EarlyStoppingMetric.ValidationLoss ? history[best - 1].ValidationLoss!.Value : history[best - 1].ValidationAccuracy!.Value;
            Assert.Contains($"Early stopping after epoch {stop}: no improvement over {watched} {bestValue:F4} (epoch {best}) by more than 0.0001 in 2 epoch(s).", log);
            if (best != stop)
                Assert.IsTrue(log.Any(m => m.StartsWith($"Restored the weights of the best epoch: {watched} ") && m.EndsWith($"(epoch {best}).")), string.Join("\n", log));
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [TestMethod]
    public void StopTraining_EndsFitAfterThatEpoch_WithThatEpochsWeights()
    {
        var data = TrainerTestData.Train(s_mlContext, 30);
        var log = new List<string>();
        var mlContext = new MLContext(seed: 1);
        mlContext.Log += (_, e) => log.Add(e.RawMessage);
        var options = TrainerTestData.QuickOptions(epochs: 4);
        options.StopTraining = m => m.Epoch == 2;
        using var stopped = mlContext.MulticlassClassification.Trainers.LeNetBn(options).Fit(data);
        using var twoEpochs = s_mlContext.MulticlassClassification.Trainers.LeNetBn(TrainerTestData.QuickOptions(epochs: 2)).Fit(data);

        Assert.HasCount(2, stopped.TrainingHistory);
        AssertSameWeights(twoEpochs, stopped, "stopped after epoch 2 and trained for 2 epochs");
        Assert.Contains("Stopping after epoch 2: StopTraining asked to.", log);
    }

    [TestMethod]
    public void EarlyStopping_NeedsValidationData_AndSaneOptions()
    {
        var trainers = s_mlContext.MulticlassClassification.Trainers;
        var options = TrainerTestData.QuickOptions();
        options.EarlyStopping = new EarlyStoppingOptions();
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => trainers.LeNetBn(options).Fit(TrainerTestData.Train(s_mlContext, 5)));
        Assert.AreEqual("EarlyStopping", e.ParamName);
        StringAssert.StartsWith(e.Message,
            "LeNetBn option EarlyStopping = ValidationLoss, patience 3, min delta 0: needs validation data: set ValidationSet or ValidationFraction, or pass validation data to Fit.");
        Assert.AreEqual("EarlyStopping.Patience", Assert.Throws<ArgumentOutOfRangeException>(() => trainers.LeNetBn(new LeNetBnTrainer.Options { EarlyStopping = new() { Patience = 0 } })).ParamName);
        Assert.AreEqual("EarlyStopping.MinDelta", Assert.Throws<ArgumentOutOfRangeException>(() => trainers.LeNetBn(new LeNetBnTrainer.Options { EarlyStopping = new() { MinDelta = -1 } })).ParamName);
    }

    [TestMethod]
    public void FitWithValidationData_EqualsTheValidationSetOption()
    {
        var train = TrainerTestData.Train(s_mlContext, 20);
        var validation = TrainerTestData.Test(s_mlContext, 10);
        var options = TrainerTestData.QuickOptions(epochs: 1);
        using var viaFit = s_mlContext.MulticlassClassification.Trainers.LeNetBn(options).Fit(train, validation);
        options.ValidationSet = validation;
        using var viaOption = s_mlContext.MulticlassClassification.Trainers.LeNetBn(options).Fit(train);
        Assert.IsNotNull(viaFit.TrainingHistory[0].ValidationLoss);
        CollectionAssert.AreEqual(Figures(viaOption.TrainingHistory), Figures(viaFit.TrainingHistory));
        AssertSameWeights(viaOption, viaFit, "validation data given to Fit or as an option");
    }
}
