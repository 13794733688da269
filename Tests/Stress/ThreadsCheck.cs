using System.Diagnostics;
using System.Runtime.InteropServices;
using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetBn.Data;

namespace MlNetBn.Tests.Stress;

/// <summary>
/// docs/THREADING.md at full size: <c>--threads</c> threads each score <c>--rows</c> rows through Transform and
/// as many through their own PredictionEngine, all at once, on one shared model; every score must equal the
/// single-threaded one to the bit. Prints rows per second both ways.
/// </summary>
internal sealed class ThreadsCheck(string directory, int threads, int rows)
{
    public int Run()
    {
        var mlContext = new MLContext(seed: 1);
        Console.WriteLine($"Threads check: {threads} threads × {rows:N0} rows, {Environment.ProcessorCount} cores, data {directory}");
        var train = mlContext.Data.LoadFashionMnist(FashionMnistSplit.Train, directory, countPerClass: 50);
        var options = new LeNetBnTrainer.Options { Epochs = 1, BatchSize = 32, LearningRate = 0.5, Seed = 1, Device = Training.DeviceKind.Cpu };
        using var model = mlContext.MulticlassClassification.Trainers.LeNetBn(options).Fit(train);
        var images = StressData.Cycled(mlContext, directory, rows);
        var data = mlContext.Data.LoadFromEnumerable(images);
        var notOwning = new PredictionEngineOptions { OwnsTransformer = false };

        var clock = Stopwatch.StartNew();
        var transformExpected = Scores(model.Transform(data));
        var transformSingle = clock.Elapsed;
        clock.Restart();
        float[][] engineExpected;
        using (var engine = mlContext.Model.CreatePredictionEngine<Image, Prediction>(model, notOwning))
            engineExpected = images.Select(i => engine.Predict(i).Score).ToArray();
        var engineSingle = clock.Elapsed;
        Console.WriteLine($"one thread:    Transform {Rate(rows, transformSingle)}, PredictionEngine {Rate(rows, engineSingle)}");

        int mismatches = 0;
        var transformTimes = new TimeSpan[threads];
        var engineTimes = new TimeSpan[threads];
        using var start = new Barrier(threads);
        clock.Restart();
        var workers = Enumerable.Range(0, threads).Select(t => Task.Factory.StartNew(() =>
        {
            start.SignalAndWait();
            // Half the threads begin with Transform and half with their engine, so both paths overlap.
            for (int pass = 0; pass < 2; pass++)
            {
                var watch = Stopwatch.StartNew();
                if ((t + pass) % 2 == 0)
                {
                    var actual = Scores(model.Transform(data));
                    transformTimes[t] = watch.Elapsed;
                    int bad = actual.Count == rows ? Enumerable.Range(0, rows).Count(i => !Bitwise(transformExpected[i], actual[i])) : rows;
                    Interlocked.Add(ref mismatches, bad);
                }
                else
                {
                    using var engine = mlContext.Model.CreatePredictionEngine<Image, Prediction>(model, notOwning);
                    var prediction = new Prediction();
                    int bad = 0;
                    for (int k = 0; k < rows; k++)
                    {
                        int row = (k + 997 * t) % rows; // threads at different rows at once
                        engine.Predict(images[row], ref prediction);
                        if (!Bitwise(engineExpected[row], prediction.Score)) bad++;
                    }
                    engineTimes[t] = watch.Elapsed;
                    Interlocked.Add(ref mismatches, bad);
                }
            }
        }, TaskCreationOptions.LongRunning)).ToArray();
        Task.WaitAll(workers);
        var total = clock.Elapsed;

        Console.WriteLine($"{threads} threads:     {2L * threads * rows:N0} rows in {total.TotalSeconds:F1} s ({2.0 * threads * rows / total.TotalSeconds:N0} rows/s in all); " +
            $"per thread Transform {Rate(rows, Average(transformTimes))}, PredictionEngine {Rate(rows, Average(engineTimes))}");
        Console.WriteLine($"Scores differing from one thread's, bit for bit: {mismatches} of {2L * threads * rows:N0}: {(mismatches == 0 ? "PASS" : "FAIL")}.");
        return mismatches == 0 ? 0 : 1;
    }

    private static List<float[]> Scores(IDataView scored)
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

    private static bool Bitwise(float[] expected, float[] actual) =>
        MemoryMarshal.AsBytes(expected.AsSpan()).SequenceEqual(MemoryMarshal.AsBytes(actual.AsSpan()));

    private static TimeSpan Average(TimeSpan[] times) => TimeSpan.FromTicks((long)times.Where(t => t > TimeSpan.Zero).Average(t => t.Ticks));

    private static string Rate(int count, TimeSpan time) => $"{count / time.TotalSeconds,8:N0} rows/s";
}
