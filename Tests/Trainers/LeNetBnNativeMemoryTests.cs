using Microsoft.ML;
using Microsoft.ML.Data;
using TorchSharp;

namespace MlNetBn.Tests.Trainers;

/// <summary>
/// Every tensor MlNetBn creates is disposed by MlNetBn (a dispose scope, or its owner's Dispose), none is left to
/// TorchSharp's finalizers, whose timing the process's native memory would then depend on. TorchSharp counts, per
/// thread, the tensors created minus those disposed; a finalizer disposes on its own thread, so a tensor left to it
/// stays counted here. The process-RSS figures over 100,000 predictions are <c>Tests/Stress memory</c> (docs/BENCHMARKS.md).
/// </summary>
[TestClass]
public sealed class LeNetBnNativeMemoryTests
{
    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    public void FitPredictSaveLoadAndDispose_LeaveNoTensorToTheFinalizers()
    {
        var mlContext = new MLContext(seed: 1);
        var train = TrainerTestData.Train(mlContext, 5);
        var test = TrainerTestData.Test(mlContext, 3);
        var images = mlContext.Data.CreateEnumerable<Image>(test, reuseRowObject: false).ToList();
        var statistics = DisposeScopeManager.Statistics;

        void Cycle()
        {
            // Every path that makes tensors: training with validation and best-epoch restore, evaluation,
            // Transform in batches, PredictionEngine, BN states, Save, Load (weights check included).
            var options = TrainerTestData.QuickOptions(epochs: 2);
            options.ValidationFraction = 0.2;
            options.RestoreBestEpoch = true;
            options.PredictionBatchSize = 8;
            using var model = mlContext.MulticlassClassification.Trainers.LeNetBn(options).Fit(train);
            _ = model.Transform(test).GetColumn<VBuffer<float>>("Score").Count();
            using (var engine = mlContext.Model.CreatePredictionEngine<Image, Prediction>(model, new PredictionEngineOptions { OwnsTransformer = false }))
            {
                foreach (var image in images)
                    engine.Predict(image);
            }
            _ = model.GetBatchNormStates();
            using var stream = new MemoryStream();
            mlContext.Model.Save(model, train.Schema, stream);
            stream.Position = 0;
            var loaded = mlContext.Model.Load(stream, out _);
            _ = loaded.Transform(test).GetColumn<VBuffer<float>>("Score").Count();
            ((IDisposable)loaded).Dispose();
        }

        Cycle(); // warm-up: anything TorchSharp creates once per process
        long before = statistics.ThreadTotalLiveCount;
        long createdOutside = statistics.CreatedOutsideScopeCount, disposedOutside = statistics.DisposedOutsideScopeCount;
        Cycle();
        TestContext.WriteLine(statistics.ToString());
        Assert.AreEqual(before, statistics.ThreadTotalLiveCount,
            $"tensors left live after a full cycle (created outside scopes: {statistics.CreatedOutsideScopeCount - createdOutside}, disposed outside scopes: {statistics.DisposedOutsideScopeCount - disposedOutside})");
    }
}
