using System.Text.Json;
using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetBn.Modules;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetBn.Tests.Trainers;

/// <summary>
/// Folded models after real training on the small Fashion-MNIST subset: same outputs as eval mode, through Transform
/// and PredictionEngine, after save and load, from the trainer option; and models of the format before folding.
/// </summary>
[TestClass]
public sealed class BatchNormFoldingTransformerTests
{
    private const double Tolerance = 1e-5;

    private static MLContext s_mlContext = null!;
    private static IDataView s_test = null!;
    private static float[] s_testFeatures = null!;
    private static LeNetBnTransformer s_scratch = null!;
    private static LeNetBnTransformer s_builtIn = null!;
    private string _zipPath = null!;

    /// <summary>One model per BN kind: one epoch on 1,000 real images, batch 32, so the moving statistics moved.</summary>
    [ClassInitialize]
    public static void TrainOnce(TestContext _)
    {
        s_mlContext = new MLContext(seed: 1);
        var train = TrainerTestData.Train(s_mlContext, 100);
        s_test = TrainerTestData.Test(s_mlContext, 20);
        s_testFeatures = s_mlContext.Data.CreateEnumerable<FeatureRow>(s_test, reuseRowObject: false).SelectMany(r => r.Features).ToArray();
        s_scratch = s_mlContext.MulticlassClassification.Trainers.LeNetBn(Options(BatchNormKind.Scratch)).Fit(train);
        s_builtIn = s_mlContext.MulticlassClassification.Trainers.LeNetBn(Options(BatchNormKind.BuiltIn)).Fit(train);
    }

    [ClassCleanup]
    public static void DisposeModels()
    {
        s_scratch.Dispose();
        s_builtIn.Dispose();
    }

    [TestInitialize]
    public void CreateZipPath() => _zipPath = Path.Combine(Path.GetTempPath(), $"mlnetbn-fold-{Guid.NewGuid():N}.zip");

    [TestCleanup]
    public void DeleteZip() => File.Delete(_zipPath);

    public static IEnumerable<object[]> Kinds => [[BatchNormKind.Scratch], [BatchNormKind.BuiltIn]];

    [TestMethod]
    [DynamicData(nameof(Kinds))]
    public void FoldedModel_GivesTheUnfoldedLogitsAndScores(BatchNormKind kind)
    {
        var model = Model(kind);
        foreach (var state in model.GetBatchNormStates())
        {
            // Otherwise folding would be close to the identity and prove little.
            Assert.IsTrue(state.MovingMean.Any(m => Math.Abs(m) > 1e-2), $"{state.Name}: moving mean trained");
            Assert.IsTrue(state.MovingVariance.Any(v => Math.Abs(v - 1) > 1e-2), $"{state.Name}: moving variance trained");
        }
        using var folded = model.FoldBatchNorm();

        using (var scope = NewDisposeScope())
        using (no_grad())
        {
            var x = tensor(s_testFeatures, [s_testFeatures.Length / 784, 784]);
            TensorAssert.AreClose(model.NetworkForTests.forward(x), folded.NetworkForTests.forward(x), Tolerance, $"{kind}: logits");
        }
        var expected = Scores(model.Transform(s_test));
        var actual = Scores(folded.Transform(s_test));
        AssertClose(expected, actual, Tolerance, $"{kind}: Transform scores");
        CollectionAssert.AreEqual(PredictedLabels(model.Transform(s_test)), PredictedLabels(folded.Transform(s_test)), $"{kind}: predicted labels");

        using var engine = s_mlContext.Model.CreatePredictionEngine<Image, Prediction>(folded);
        var images = s_mlContext.Data.CreateEnumerable<Image>(s_test, reuseRowObject: false).Take(10).ToList();
        AssertClose(expected.Take(10).ToList(), images.Select(i => engine.Predict(i).Score).ToList(), Tolerance, $"{kind}: PredictionEngine scores");
    }

    [TestMethod]
    [DynamicData(nameof(Kinds))]
    public void FoldedModel_DescribesItself_AndLeavesTheOriginalUsable(BatchNormKind kind)
    {
        var model = Model(kind);
        var before = Scores(model.Transform(s_test));
        var folded = model.FoldBatchNorm();
        Assert.IsTrue(folded.Architecture.BatchNormFolded);
        Assert.AreEqual(kind, folded.Architecture.BatchNorm);
        Assert.IsEmpty(folded.GetBatchNormStates(), "folded: the statistics live in the conv/linear weights");
        Assert.AreEqual(model.FeatureColumnName, folded.FeatureColumnName);
        CollectionAssert.AreEqual(model.ClassNames!.ToArray(), folded.ClassNames!.ToArray());
        Assert.AreEqual(model.PredictionBatchSize, folded.PredictionBatchSize);
        Assert.HasCount(model.TrainingHistory.Count, folded.TrainingHistory);

        var ex = Assert.ThrowsExactly<InvalidOperationException>(() => folded.FoldBatchNorm());
        StringAssert.Contains(ex.Message, "already folded");
        folded.Dispose();
        Assert.IsFalse(model.Architecture.BatchNormFolded);
        Assert.HasCount(4, model.GetBatchNormStates());
        AssertClose(before, Scores(model.Transform(s_test)), 0, "the original after its folded copy was disposed");
    }

    [TestMethod]
    [DynamicData(nameof(Kinds))]
    public void FoldedModel_SavesAndLoads(BatchNormKind kind)
    {
        using var folded = Model(kind).FoldBatchNorm();
        s_mlContext.Model.Save(folded, s_test.Schema, _zipPath);
        var loaded = (LeNetBnTransformer)new MLContext(seed: 5).Model.Load(_zipPath, out _);
        try
        {
            Assert.IsTrue(loaded.Architecture.BatchNormFolded, "the zip says folded");
            // Records: shape, classes, BN kind and options, activation, pooling and the folded flag.
            Assert.AreEqual(folded.Architecture, loaded.Architecture);
            Assert.IsEmpty(loaded.GetBatchNormStates());
            AssertClose(Scores(folded.Transform(s_test)), Scores(loaded.Transform(s_test)), 0, $"{kind}: folded scores after save and load");
        }
        finally
        {
            loaded.Dispose();
        }
    }

    [TestMethod]
    public void FoldOption_ReturnsTheFoldedModel()
    {
        // Same seed and data as s_scratch: the same training, then folded (training on CPU is deterministic).
        var log = new List<string>();
        var mlContext = new MLContext(seed: 1);
        mlContext.Log += (_, e) => { if (e.Kind == Microsoft.ML.Runtime.ChannelMessageKind.Info) log.Add(e.RawMessage); };
        var options = Options(BatchNormKind.Scratch);
        options.FoldBatchNorm = true;
        using var folded = mlContext.MulticlassClassification.Trainers.LeNetBn(options).Fit(TrainerTestData.Train(mlContext, 100));
        Assert.IsTrue(folded.Architecture.BatchNormFolded);
        Assert.IsEmpty(folded.GetBatchNormStates());
        Assert.HasCount(1, folded.TrainingHistory);
        CollectionAssert.Contains(log, "Folded batch normalization into the conv/linear layers for prediction.");
        AssertClose(Scores(s_scratch.Transform(s_test)), Scores(folded.Transform(s_test)), Tolerance, "Fit with FoldBatchNorm vs Fit then eval mode");
    }

    [TestMethod]
    public void FoldOption_WithoutBatchNorm_IsRejectedUpFront()
    {
        var options = Options(BatchNormKind.None);
        options.FoldBatchNorm = true;
        var ex = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => s_mlContext.MulticlassClassification.Trainers.LeNetBn(options));
        Assert.AreEqual(nameof(LeNetBnTrainer.Options.FoldBatchNorm), ex.ParamName);
        StringAssert.Contains(ex.Message, "no batch normalization to fold");
    }

    /// <summary>
    /// A model file saved by earlier code (see Fixtures/README.md) still loads, predicts as it did then, and can be
    /// folded, saved and reloaded.
    /// </summary>
    [TestMethod]
    public void TheCommittedModelFile_LoadsPredictsAndFolds()
    {
        string fixtures = Path.Combine(AppContext.BaseDirectory, "Trainers", "Fixtures");
        var expected = JsonSerializer.Deserialize<FixtureScores>(File.ReadAllText(Path.Combine(fixtures, "lenet-bn-model.expected.json")))!;
        var mlContext = new MLContext(seed: 1);
        var old = (LeNetBnTransformer)mlContext.Model.Load(Path.Combine(fixtures, "lenet-bn-model.zip"), out _);
        try
        {
            var a = old.Architecture;
            Assert.IsFalse(a.BatchNormFolded);
            Assert.AreEqual(new ImageShape(1, 16, 16), a.Input);
            Assert.AreEqual(BatchNormKind.Scratch, a.BatchNorm);
            Assert.AreEqual(new BatchNormOptions { Epsilon = 1e-3, Momentum = 0.2, Convention = MomentumConvention.BatchStatisticWeight, MovingVariance = MovingVarianceKind.Unbiased }, a.BatchNormOptions);
            Assert.AreEqual(7, old.PredictionBatchSize);
            CollectionAssert.AreEqual(new[] { "top", "bottom" }, old.ClassNames!.ToArray());
            Assert.HasCount(4, old.GetBatchNormStates());

            var data = mlContext.Data.LoadFromEnumerable(expected.Features.Select(f => new SmallImage { Features = f }));
            var scores = mlContext.Data.CreateEnumerable<ScoreRow>(old.Transform(data), reuseRowObject: false).Select(p => p.Score).ToList();
            AssertClose(expected.Scores.ToList(), scores, 1e-6, "scores of the committed model");

            using var folded = old.FoldBatchNorm();
            mlContext.Model.Save(folded, data.Schema, _zipPath);
            using var reloaded = (LeNetBnTransformer)mlContext.Model.Load(_zipPath, out _);
            Assert.IsTrue(reloaded.Architecture.BatchNormFolded);
            var foldedScores = mlContext.Data.CreateEnumerable<ScoreRow>(reloaded.Transform(data), reuseRowObject: false).Select(p => p.Score).ToList();
            AssertClose(expected.Scores.ToList(), foldedScores, Tolerance, "the committed model folded, saved and reloaded");
        }
        finally
        {
            old.Dispose();
        }
    }

    private static LeNetBnTrainer.Options Options(BatchNormKind kind)
    {
        var options = TrainerTestData.QuickOptions(epochs: 1);
        options.BatchNorm = kind;
        return options;
    }

    private static LeNetBnTransformer Model(BatchNormKind kind) => kind == BatchNormKind.Scratch ? s_scratch : s_builtIn;

    private static List<float[]> Scores(IDataView data) =>
        s_mlContext.Data.CreateEnumerable<Prediction>(data, reuseRowObject: false).Select(p => p.Score).ToList();

    private static List<uint> PredictedLabels(IDataView data) =>
        s_mlContext.Data.CreateEnumerable<Prediction>(data, reuseRowObject: false).Select(p => p.PredictedLabel).ToList();

    private static void AssertClose(IReadOnlyList<float[]> expected, IReadOnlyList<float[]> actual, double tolerance, string what)
    {
        Assert.HasCount(expected.Count, actual, what);
        double worst = 0;
        for (int i = 0; i < expected.Count; i++)
        {
            Assert.HasCount(expected[i].Length, actual[i], $"{what}: row {i}");
            for (int c = 0; c < expected[i].Length; c++)
                worst = Math.Max(worst, Math.Abs((double)expected[i][c] - actual[i][c]));
        }
        Assert.IsLessThanOrEqualTo(tolerance, worst, $"{what}: max |difference| {worst:E3} exceeds {tolerance:E1}");
    }

    private sealed class FixtureScores
    {
        [System.Text.Json.Serialization.JsonPropertyName("features")]
        public float[][] Features { get; set; } = [];

        [System.Text.Json.Serialization.JsonPropertyName("scores")]
        public float[][] Scores { get; set; } = [];
    }

    private sealed class SmallImage
    {
        [VectorType(256)]
        public float[] Features { get; set; } = [];
    }
}
