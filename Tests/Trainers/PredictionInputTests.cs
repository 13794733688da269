using System.Collections;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace MlNetBn.Tests.Trainers;

/// <summary>
/// What prediction does with inputs that used to give wrong answers without an error: sources that can be read only
/// once or that reorder their rows, vectors of the wrong length, NaN pixels; and saving over a good file.
/// </summary>
[TestClass]
public sealed class PredictionInputTests
{
    private const int Rows = 300;

    private static MLContext s_mlContext = null!;
    private static LeNetBnTransformer s_model = null!;
    private static List<Image> s_images = null!;
    private static List<float[]> s_expected = null!;

    /// <summary>One model with small prediction batches (so 300 rows take several), and the scores of a list.</summary>
    [ClassInitialize]
    public static void TrainOnce(TestContext _)
    {
        s_mlContext = new MLContext(seed: 1);
        var options = TrainerTestData.QuickOptions(epochs: 1);
        options.PredictionBatchSize = 64;
        s_model = s_mlContext.MulticlassClassification.Trainers.LeNetBn(options).Fit(TrainerTestData.Train(s_mlContext, 5));
        s_images = s_mlContext.Data.CreateEnumerable<Image>(TrainerTestData.Test(s_mlContext, 30), reuseRowObject: false).ToList();
        Assert.HasCount(Rows, s_images);
        s_expected = Scores(s_mlContext.Data.LoadFromEnumerable(s_images));
    }

    [ClassCleanup]
    public static void DisposeModel() => s_model.Dispose();

    [TestMethod]
    public void ASourceThatCanBeEnumeratedOnce_GivesEveryRowItsScore()
    {
        var once = new EnumerableOnce<Image>(s_images);
        var scores = Scores(s_mlContext.Data.LoadFromEnumerable(once));
        Assert.AreEqual(1, once.Enumerations);
        AssertScores(s_expected, scores);
    }

    /// <summary>
    /// Each enumeration starts at another row: each row must still carry its own image's score (to float rounding:
    /// the rows fall into other batches, which changes the last bits; another image's score differs by far more).
    /// </summary>
    [TestMethod]
    public void ASourceThatReordersItsRows_GivesEveryRowItsOwnScore()
    {
        var rows = s_images.Select((image, id) => new NumberedImage { Id = id, Label = image.Label, Features = image.Features }).ToList();
        var rotating = new RotatingEnumerable<NumberedImage>(rows);
        var data = s_mlContext.Data.LoadFromEnumerable(rotating);
        var scored = s_mlContext.Data.CreateEnumerable<NumberedPrediction>(s_model.Transform(data), reuseRowObject: false).ToList();
        Assert.HasCount(Rows, scored);
        Assert.AreNotEqual(0, scored[0].Id, "the source started its enumeration elsewhere than at row 0");
        foreach (var row in scored)
            for (int c = 0; c < row.Score.Length; c++)
                Assert.AreEqual(s_expected[row.Id][c], row.Score[c], 1e-6f, $"image {row.Id}, class {c}");
    }

    /// <summary>Requested input columns come back from the rows they belong to, text and vectors included.</summary>
    [TestMethod]
    public void InputColumns_TravelWithTheirRows()
    {
        var rows = s_images.Select((image, id) => new NumberedImage { Id = id, Name = $"image {id}", Label = image.Label, Features = image.Features }).ToList();
        var scored = s_mlContext.Data.CreateEnumerable<NumberedPrediction>(s_model.Transform(s_mlContext.Data.LoadFromEnumerable(rows)), reuseRowObject: false).ToList();
        for (int i = 0; i < Rows; i++)
        {
            Assert.AreEqual(i, scored[i].Id);
            Assert.AreEqual($"image {i}", scored[i].Name);
            CollectionAssert.AreEqual(s_images[i].Features, scored[i].Features, $"row {i}");
            CollectionAssert.AreEqual(s_expected[i], scored[i].Score, $"row {i}");
        }
    }

    [TestMethod]
    [DataRow(700)]
    [DataRow(800)]
    public void AVectorOfAnotherLength_IsAnErrorNamingColumnRowAndLengths(int length)
    {
        var rows = s_images.Take(10).Select(i => new Image { Label = i.Label, Features = i.Features }).ToList();
        rows[3].Features = new float[length];
        string expected = $"Feature column 'Features' has {length} values at row 3; the model expects 784 (channels × height × width).";

        var transformed = s_model.Transform(s_mlContext.Data.LoadFromEnumerable(rows));
        var ex = Assert.ThrowsExactly<InvalidOperationException>(() => s_mlContext.Data.CreateEnumerable<Prediction>(transformed, reuseRowObject: false).ToList());
        Assert.AreEqual(expected, ex.Message);

        using var engine = s_mlContext.Model.CreatePredictionEngine<Image, Prediction>(s_model, new PredictionEngineOptions { OwnsTransformer = false });
        engine.Predict(rows[2]);
        var single = Assert.ThrowsExactly<InvalidOperationException>(() => engine.Predict(rows[3]));
        StringAssert.StartsWith(single.Message, $"Feature column 'Features' has {length} values at row ");
        StringAssert.EndsWith(single.Message, "; the model expects 784 (channels × height × width).");
    }

    /// <summary>
    /// A row with NaN or Infinity in its features has no meaningful prediction: its Score is all NaN and its
    /// PredictedLabel key 0 (missing), as ML.NET's own multiclass trainers give, never "class 1"; other rows of the
    /// same batch are unaffected.
    /// </summary>
    [TestMethod]
    public void NonFiniteFeatures_GiveNaNScoresAndAMissingLabel()
    {
        var rows = s_images.Take(3).Select(i => new Image { Label = i.Label, Features = (float[])i.Features.Clone() }).ToList();
        Array.Fill(rows[0].Features, float.NaN);
        rows[1].Features[400] = float.PositiveInfinity;

        var predictions = s_mlContext.Data.CreateEnumerable<Prediction>(s_model.Transform(s_mlContext.Data.LoadFromEnumerable(rows)), reuseRowObject: false).ToList();
        using var engine = s_mlContext.Model.CreatePredictionEngine<Image, Prediction>(s_model, new PredictionEngineOptions { OwnsTransformer = false });
        foreach (var prediction in new[] { predictions[0], predictions[1], engine.Predict(rows[0]), engine.Predict(rows[1]) })
        {
            Assert.IsTrue(prediction.Score.All(float.IsNaN), string.Join(", ", prediction.Score));
            Assert.AreEqual(0u, prediction.PredictedLabel);
        }
        Assert.AreNotEqual(0u, predictions[2].PredictedLabel);
        Assert.AreEqual(predictions[2].PredictedLabel, engine.Predict(rows[2]).PredictedLabel);
    }

    [TestMethod]
    public void SaveReplacing_KeepsThePreviousFile_WhenSavingFails()
    {
        string path = Path.Combine(Path.GetTempPath(), $"mlnetbn-save-{Guid.NewGuid():N}.zip");
        var schema = TrainerTestData.Train(s_mlContext, 1).Schema;
        try
        {
            s_mlContext.Model.SaveReplacing(s_model, schema, path);
            var good = File.ReadAllBytes(path);
            using (var loaded = (LeNetBnTransformer)s_mlContext.Model.Load(path, out _))
                AssertScores(s_expected, Scores(s_mlContext.Data.LoadFromEnumerable(s_images), loaded));

            var disposed = s_mlContext.MulticlassClassification.Trainers.LeNetBn(TrainerTestData.QuickOptions(epochs: 1)).Fit(TrainerTestData.Train(s_mlContext, 2));
            disposed.Dispose();
            Assert.ThrowsExactly<ObjectDisposedException>(() => s_mlContext.Model.SaveReplacing(disposed, schema, path));
            CollectionAssert.AreEqual(good, File.ReadAllBytes(path), "the previous model file is untouched");
            Assert.IsEmpty(Directory.GetFiles(Path.GetDirectoryName(path)!, $".{Path.GetFileName(path)}.*"), "no temporary file is left behind");

            // ML.NET's own Save opens the file first: the failure leaves a broken zip (documented next to Dispose).
            Assert.ThrowsExactly<ObjectDisposedException>(() => s_mlContext.Model.Save(disposed, schema, path));
            CollectionAssert.AreNotEqual(good, File.ReadAllBytes(path));
        }
        finally
        {
            File.Delete(path);
        }
    }

    private static List<float[]> Scores(IDataView data, ITransformer? model = null) =>
        s_mlContext.Data.CreateEnumerable<ScoreRow>((model ?? s_model).Transform(data), reuseRowObject: false).Select(r => r.Score).ToList();

    private static void AssertScores(List<float[]> expected, List<float[]> actual)
    {
        Assert.HasCount(expected.Count, actual);
        for (int i = 0; i < expected.Count; i++)
            CollectionAssert.AreEqual(expected[i], actual[i], $"row {i}");
    }

    public sealed class NumberedImage
    {
        public int Id { get; set; }

        public string Name { get; set; } = "";

        [KeyType(10)]
        public uint Label { get; set; }

        [VectorType(784)]
        public float[] Features { get; set; } = [];
    }

    public sealed class NumberedPrediction
    {
        public int Id { get; set; }

        public string Name { get; set; } = "";

        [VectorType(784)]
        public float[] Features { get; set; } = [];

        public float[] Score { get; set; } = [];
    }

    /// <summary>An enumerable whose second enumeration throws, as a network stream or a generator would.</summary>
    private sealed class EnumerableOnce<T>(IEnumerable<T> items) : IEnumerable<T>
    {
        public int Enumerations { get; private set; }

        public IEnumerator<T> GetEnumerator()
        {
            if (++Enumerations > 1)
                throw new InvalidOperationException("This sequence can be enumerated only once.");
            return items.GetEnumerator();
        }

        IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
    }

    /// <summary>An enumerable that starts each enumeration one row later than the previous one.</summary>
    private sealed class RotatingEnumerable<T>(IReadOnlyList<T> items) : IEnumerable<T>
    {
        private int _start;

        public IEnumerator<T> GetEnumerator()
        {
            int start = _start++;
            for (int i = 0; i < items.Count; i++)
                yield return items[(start + 1 + i) % items.Count];
        }

        IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
    }
}
