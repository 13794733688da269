using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace MlNetBn.Tests.Trainers;

/// <summary>
/// What docs/THREADING.md promises: one transformer, many threads, each with its own cursor or PredictionEngine,
/// gives the single-threaded results to the bit; Dispose during predictions never reaches freed native memory.
/// The suite runs 8 threads on fewer rows; the full 8 threads × 10,000 rows run is <c>Tests/Stress threads</c> (docs/BENCHMARKS.md).
/// </summary>
[TestClass]
public sealed class LeNetBnThreadingTests
{
    private const int Threads = 8;

    private static MLContext s_mlContext = null!;
    private static LeNetBnTransformer s_model = null!;
    private static IDataView s_data = null!;
    private static List<Image> s_images = null!;

    public TestContext TestContext { get; set; } = null!;

    [ClassInitialize]
    public static void TrainOnce(TestContext _)
    {
        s_mlContext = new MLContext(seed: 1);
        var options = TrainerTestData.QuickOptions(epochs: 1);
        options.PredictionBatchSize = 64; // 500 rows: seven full batches and a short one per pass
        s_model = s_mlContext.MulticlassClassification.Trainers.LeNetBn(options).Fit(TrainerTestData.Train(s_mlContext, 5));
        s_data = TrainerTestData.Test(s_mlContext, 50);
        s_images = s_mlContext.Data.CreateEnumerable<Image>(s_data, reuseRowObject: false).ToList();
    }

    [ClassCleanup]
    public static void DisposeModel() => s_model.Dispose();

    [TestMethod]
    public void ConcurrentTransformCursorsAndPredictionEngines_GiveTheSingleThreadedResults_ToTheBit()
    {
        const int engineRows = 200;
        var transformExpected = ScoresByCursor(s_model.Transform(s_data));
        List<float[]> engineExpected;
        using (var engine = s_mlContext.Model.CreatePredictionEngine<Image, Prediction>(s_model, NotOwning))
            engineExpected = s_images.Take(engineRows).Select(i => engine.Predict(i).Score).ToList();

        var failures = new ConcurrentQueue<string>();
        using var start = new Barrier(Threads);
        var workers = Enumerable.Range(0, Threads).Select(t => Task.Factory.StartNew(() =>
        {
            start.SignalAndWait();
            // Half the threads start with Transform and half with engines, so both paths overlap.
            for (int pass = 0; pass < 2; pass++)
            {
                if ((t + pass) % 2 == 0)
                    Compare($"thread {t} Transform", transformExpected, ScoresByCursor(s_model.Transform(s_data)), failures);
                else
                {
                    using var engine = s_mlContext.Model.CreatePredictionEngine<Image, Prediction>(s_model, NotOwning);
                    // Each thread starts at another row, so that different images are in flight at once.
                    var actual = new float[engineRows][];
                    for (int k = 0; k < engineRows; k++)
                    {
                        int row = (k + 31 * t) % engineRows;
                        actual[row] = engine.Predict(s_images[row]).Score;
                    }
                    Compare($"thread {t} PredictionEngine", engineExpected, actual, failures);
                }
            }
        }, TaskCreationOptions.LongRunning)).ToArray();
        Task.WaitAll(workers);

        Assert.IsEmpty(failures, string.Join(Environment.NewLine, failures.Take(10)));
        Assert.AreEqual(500, transformExpected.Count);
    }

    /// <summary>ML.NET 5's default: a PredictionEngine owns, and disposes, the transformer it was made from.</summary>
    [TestMethod]
    public void DisposingAPredictionEngine_DisposesTheModel_UnlessItDoesNotOwnIt()
    {
        var mlContext = new MLContext(seed: 3);
        var model = mlContext.MulticlassClassification.Trainers.LeNetBn(TrainerTestData.QuickOptions(epochs: 1)).Fit(TrainerTestData.Train(mlContext, 2));
        using (var engine = mlContext.Model.CreatePredictionEngine<Image, Prediction>(model, NotOwning))
            engine.Predict(s_images[0]);
        Assert.HasCount(4, model.GetBatchNormStates(), "OwnsTransformer = false leaves the model usable");

        using (var engine = mlContext.Model.CreatePredictionEngine<Image, Prediction>(model))
            engine.Predict(s_images[0]);
        var ex = Assert.ThrowsExactly<ObjectDisposedException>(() => model.Transform(s_data));
        StringAssert.Contains(ex.ObjectName, nameof(LeNetBnTransformer));
    }

    /// <summary>Dispose while other threads predict: in-flight passes finish, later ones throw, nothing crashes.</summary>
    [TestMethod]
    public void DisposeDuringConcurrentPredictions_WaitsForThemAndThenRefusesNewOnes()
    {
        var mlContext = new MLContext(seed: 4);
        var model = mlContext.MulticlassClassification.Trainers.LeNetBn(TrainerTestData.QuickOptions(epochs: 1)).Fit(TrainerTestData.Train(mlContext, 2));
        var expected = new List<float[]>();
        using (var engine = mlContext.Model.CreatePredictionEngine<Image, Prediction>(model, NotOwning))
            expected.AddRange(s_images.Take(50).Select(i => engine.Predict(i).Score));

        int predicted = 0;
        var failures = new ConcurrentQueue<string>();
        using var running = new CountdownEvent(Threads);
        var workers = Enumerable.Range(0, Threads).Select(t => Task.Factory.StartNew(() =>
        {
            using var engine = mlContext.Model.CreatePredictionEngine<Image, Prediction>(model, NotOwning);
            running.Signal();
            try
            {
                for (int k = 0; ; k++)
                {
                    var score = engine.Predict(s_images[k % 50]).Score;
                    if (!Bitwise(expected[k % 50], score))
                        failures.Enqueue($"thread {t}, prediction {k}: scores differ");
                    Interlocked.Increment(ref predicted);
                }
            }
            catch (ObjectDisposedException)
            {
                // The only way out of the loop.
            }
        }, TaskCreationOptions.LongRunning)).ToArray();
        running.Wait();
        SpinWait.SpinUntil(() => Volatile.Read(ref predicted) >= 4 * Threads);
        model.Dispose();
        Task.WaitAll(workers);

        Assert.IsEmpty(failures, string.Join(Environment.NewLine, failures.Take(10)));
        TestContext.WriteLine($"{predicted} predictions before Dispose stopped {Threads} threads");
        Assert.ThrowsExactly<ObjectDisposedException>(() => model.GetBatchNormStates());
    }

    /// <summary>Fits on other threads, each with its own MLContext, do not disturb a seeded Fit.</summary>
    [TestMethod]
    public void ConcurrentFits_WithTheSameSeed_GiveBitIdenticalWeights()
    {
        LeNetBnTransformer Fit(int? seed)
        {
            var mlContext = new MLContext(seed: 5);
            var options = TrainerTestData.QuickOptions(epochs: 1);
            options.Seed = seed;
            return mlContext.MulticlassClassification.Trainers.LeNetBn(options).Fit(TrainerTestData.Train(mlContext, 3));
        }
        using var reference = Fit(7);
        var expected = reference.NetworkForTests.state_dict();
        var models = new LeNetBnTransformer[4];
        Parallel.For(0, models.Length, new ParallelOptions { MaxDegreeOfParallelism = models.Length }, i => models[i] = Fit(i % 2 == 0 ? 7 : null));
        try
        {
            for (int i = 0; i < models.Length; i += 2)
            {
                foreach (var (name, value) in models[i].NetworkForTests.state_dict())
                    Assert.IsTrue(value.equal(expected[name]).all().item<bool>(), $"model {i}: {name} differs from the Fit with the same seed on one thread");
            }
        }
        finally
        {
            foreach (var model in models) model?.Dispose();
        }
    }

    private static readonly PredictionEngineOptions NotOwning = new() { OwnsTransformer = false };

    private static void Compare(string what, IReadOnlyList<float[]> expected, IReadOnlyList<float[]> actual, ConcurrentQueue<string> failures)
    {
        if (expected.Count != actual.Count)
        {
            failures.Enqueue($"{what}: {actual.Count} rows, expected {expected.Count}");
            return;
        }
        for (int i = 0; i < expected.Count; i++)
        {
            if (!Bitwise(expected[i], actual[i]))
            {
                failures.Enqueue($"{what}: row {i} differs from the single-threaded scores");
                return;
            }
        }
    }

    private static bool Bitwise(float[] expected, float[] actual) =>
        MemoryMarshal.AsBytes(expected.AsSpan()).SequenceEqual(MemoryMarshal.AsBytes(actual.AsSpan()));

    /// <summary>Reads Score with a plain cursor: no MLContext involved, so nothing but the transformer is shared.</summary>
    private static List<float[]> ScoresByCursor(IDataView scored)
    {
        var column = scored.Schema["Score"];
        using var cursor = scored.GetRowCursor([column]);
        var getter = cursor.GetGetter<VBuffer<float>>(column);
        VBuffer<float> value = default;
        var scores = new List<float[]>();
        while (cursor.MoveNext())
        {
            getter(ref value);
            scores.Add(value.DenseValues().ToArray());
        }
        return scores;
    }
}
