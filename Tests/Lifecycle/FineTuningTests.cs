using Microsoft.ML;
using MlNetBn.Modules;
using MlNetBn.Tests.Trainers;
using static MlNetBn.Tests.Lifecycle.LifecycleTestData;

namespace MlNetBn.Tests.Lifecycle;

/// <summary>Fit(data, model): training on from a trained model, and what it refuses.</summary>
[TestClass]
public sealed class FineTuningTests
{
    private static MLContext s_mlContext = null!;
    private static IDataView s_test = null!;
    private static LeNetBnTransformer s_firstHalf = null!;
    private static IDataView s_secondHalf = null!;

    /// <summary>A model trained on classes 0–4 only (the label still has all 10 key values).</summary>
    [ClassInitialize]
    public static void TrainOnHalfTheClasses(TestContext _)
    {
        s_mlContext = new MLContext(seed: 1);
        var images = TrainerTestData.Images(s_mlContext, 100);
        // Both halves keep all 10 classes as key values (keyData), as a label mapped once over the whole data would.
        var classes = s_mlContext.Data.LoadFromEnumerable(Enumerable.Range(0, 10).Select(i => new ClassRow { ClassIndex = (uint)i }));
        var toKey = s_mlContext.Transforms.Conversion.MapValueToKey("Label", nameof(ClassRow.ClassIndex),
            keyOrdinality: Microsoft.ML.Transforms.ValueToKeyMappingEstimator.KeyOrdinality.ByValue, keyData: classes);
        IDataView View(IEnumerable<TrainerTestData.EditableImage> rows)
        {
            var data = s_mlContext.Data.LoadFromEnumerable(rows);
            return toKey.Fit(data).Transform(data);
        }
        var firstHalf = View(images.Where(i => i.ClassIndex < 5));
        s_secondHalf = View(images.Where(i => i.ClassIndex >= 5));
        s_test = TrainerTestData.Test(s_mlContext);
        s_firstHalf = s_mlContext.MulticlassClassification.Trainers.LeNetBn(TrainerTestData.QuickOptions(epochs: 3)).Fit(firstHalf);
    }

    [ClassCleanup]
    public static void Cleanup() => s_firstHalf.Dispose();

    private static double Accuracy(ITransformer model) => s_mlContext.MulticlassClassification.Evaluate(model.Transform(s_test)).MicroAccuracy;

    private static uint[] Labels(IDataView data) =>
        [.. s_mlContext.Data.CreateEnumerable<Image>(data, reuseRowObject: false).Select(i => i.Label).Distinct().Order()];

    [TestMethod]
    public void FineTuningOnTheOtherClasses_BeatsTheStartingPoint_OnTheFullTestSet()
    {
        CollectionAssert.AreEqual(new uint[] { 6, 7, 8, 9, 10 }, Labels(s_secondHalf), "the second half holds classes 5–9 only");
        var options = TrainerTestData.QuickOptions(epochs: 2);
        options.LearningRate = 0.01;
        using var tuned = s_mlContext.MulticlassClassification.Trainers.LeNetBn(options).Fit(s_secondHalf, s_firstHalf);

        double before = Accuracy(s_firstHalf), after = Accuracy(tuned);
        Assert.IsLessThan(0.5, before, "trained on half the classes, it can get at most half of the test set right");
        Assert.IsGreaterThan(before + 0.03, after, $"fine-tuned: {after:F3}, from {before:F3}");
        Assert.AreNotSame(s_firstHalf, tuned);
        Assert.AreEqual(before, Accuracy(s_firstHalf), "the starting model is left unchanged");

        // A model loaded from a zip fine-tunes to the same weights, and the result saves and loads like any other.
        string start = Path.Combine(Path.GetTempPath(), $"mlnetbn-start-{Guid.NewGuid():N}.zip");
        string zip = Path.Combine(Path.GetTempPath(), $"mlnetbn-finetuned-{Guid.NewGuid():N}.zip");
        try
        {
            s_mlContext.Model.Save(s_firstHalf, s_test.Schema, start);
            using (var loadedStart = Load(new MLContext(), start))
            using (var fromLoaded = s_mlContext.MulticlassClassification.Trainers.LeNetBn(options).Fit(s_secondHalf, loadedStart))
                AssertSameWeights(tuned, fromLoaded, "fine-tuned from the model in memory and from its zip");

            s_mlContext.Model.Save(tuned, s_test.Schema, zip);
            using var loaded = Load(s_mlContext, zip);
            AssertSameWeights(tuned, loaded, "the fine-tuned model after a save and load");
            Assert.AreEqual(after, Accuracy(loaded));
        }
        finally
        {
            File.Delete(start);
            File.Delete(zip);
        }
    }

    /// <summary>
    /// With BN momentum 1 (moving = 1·moving + 0·batch) and a learning rate below float resolution, fine-tuning
    /// changes nothing: the weights and moving statistics it starts from are the model's, not a fresh network's.
    /// </summary>
    [TestMethod]
    public void FineTuning_StartsFromTheModelsWeightsAndMovingStatistics()
    {
        var options = TrainerTestData.QuickOptions(epochs: 1, seed: 99);
        options.LearningRate = 1e-30;
        options.SgdMomentum = 0;
        options.BatchNormMomentum = 1;
        using var tuned = s_mlContext.MulticlassClassification.Trainers.LeNetBn(options).Fit(s_secondHalf, s_firstHalf);
        AssertSameWeights(s_firstHalf, tuned, "a fine-tune that cannot move anything");
        Assert.AreEqual(1, tuned.TrainingHistory.Count);
    }

    [TestMethod]
    public void AModelOfAnotherShapeOrClassCount_IsRefused_NamingEachDifference()
    {
        // Other class count: the label of this data has the 3 key values its rows hold.
        var threeClasses = TrainerTestData.FromImages(s_mlContext, TrainerTestData.Images(s_mlContext, 5).Where(i => i.ClassIndex < 3));
        var e = Assert.ThrowsExactly<ArgumentException>(() => s_mlContext.MulticlassClassification.Trainers.LeNetBn(TrainerTestData.QuickOptions()).Fit(threeClasses, s_firstHalf));
        Assert.AreEqual("initialModel", e.ParamName);
        StringAssert.StartsWith(e.Message,
            "The model to fine-tune does not match this Fit: class count (key values of label column 'Label'): the model's is 10, this Fit's 3.");

        // Other image shape and activation, on data of the options' shape.
        var random = new Random(5);
        var big = s_mlContext.Data.LoadFromEnumerable(Enumerable.Range(0, 20).Select(i => new Big
        {
            Label = (uint)(i % 10 + 1),
            Features = [.. Enumerable.Range(0, 1024).Select(_ => (float)random.NextDouble())],
        }));
        var options = TrainerTestData.QuickOptions();
        options.ImageShape = new ImageShape(1, 32, 32);
        options.Activation = ActivationKind.ReLU;
        e = Assert.ThrowsExactly<ArgumentException>(() => s_mlContext.MulticlassClassification.Trainers.LeNetBn(options).Fit(big, s_firstHalf));
        StringAssert.StartsWith(e.Message,
            "The model to fine-tune does not match this Fit: image shape (ImageShape): the model's is 1×28×28, this Fit's 1×32×32; activation (Activation): the model's is Sigmoid, this Fit's ReLU.");

        using var folded = s_firstHalf.FoldBatchNorm();
        e = Assert.ThrowsExactly<ArgumentException>(() => s_mlContext.MulticlassClassification.Trainers.LeNetBn(TrainerTestData.QuickOptions()).Fit(s_secondHalf, folded));
        StringAssert.StartsWith(e.Message, "The model to fine-tune has its batch normalization folded into the conv/linear weights (FoldBatchNorm)");
    }

    private sealed class ClassRow
    {
        public uint ClassIndex { get; set; }
    }

    private sealed class Big
    {
        [Microsoft.ML.Data.KeyType(10)]
        public uint Label { get; set; }

        [Microsoft.ML.Data.VectorType(1024)]
        public float[] Features { get; set; } = [];
    }
}
