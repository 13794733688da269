using System.Diagnostics;
using Microsoft.ML;
using MlNetBn.Data;
using MlNetBn.Modules;
using static TorchSharp.torch;

namespace MlNetBn.Examples.Benchmark;

/// <summary>
/// Prediction with batch normalization folded into the conv/linear layers (<c>FoldBatchNorm</c>) against the
/// unfolded model, in the same run (docs/BENCHMARKS.md, "BN folding"): one eval-mode forward pass of the network
/// alone (batch 1, and the batch Transform uses), batched Transform over the test set, one PredictionEngine.Predict.
/// Each run repeats its operation for at least a minimum time; after one warm-up run of each model, unfolded and
/// folded runs alternate, in both orders, so that drifting load hits both alike; the medians are reported. Two
/// clocks: wall time (what a caller waits) and the measuring thread's CPU time, which waiting for a busy machine's
/// cores does not inflate; with one torch thread (--threads 1) libtorch computes on the calling thread, so that CPU
/// time is the whole work.
/// </summary>
internal static class BnFolding
{
    /// <summary>
    /// Folds <paramref name="model"/> and <paramref name="network"/> (a network with the same weights, on
    /// <paramref name="device"/>) and times both pairs.
    /// </summary>
    public static FoldResult Measure(MLContext mlContext, LeNetBnTransformer model, LeNetBnNetwork network, IDataView test, float[] testX,
        Device device, int runs, double minSeconds)
    {
        using var folded = model.FoldBatchNorm();
        double maxDifference = MaxScoreDifference(mlContext, model, folded, test);
        Console.WriteLine($"  BN folding: max |Score difference| folded vs unfolded {maxDifference:G3}; {runs} runs of at least {minSeconds} s per model and operation");

        network.eval();
        using var foldedNetwork = network.FoldBatchNorm();
        int rows = testX.Length / FashionMnist.FeatureCount;
        int batchRows = Math.Min(model.PredictionBatchSize, rows);
        using var one = tensor(Data.Row(testX, 0), [1, FashionMnist.FeatureCount], device: device);
        using var batch = tensor(testX.AsSpan(0, batchRows * FashionMnist.FeatureCount).ToArray(), [batchRows, FashionMnist.FeatureCount], device: device);

        var inputs = Data.Inputs(testX, 4096);
        var output = new ScoreOutput();
        int next = 0;
        // OwnsTransformer = false: by default disposing the engine disposes the model too.
        using var engine = mlContext.Model.CreatePredictionEngine<ImageInput, ScoreOutput>(model, new PredictionEngineOptions { OwnsTransformer = false });
        using var foldedEngine = mlContext.Model.CreatePredictionEngine<ImageInput, ScoreOutput>(folded, new PredictionEngineOptions { OwnsTransformer = false });

        var measurements = new List<FoldMeasurement>
        {
            Compare("network forward, batch 1", 1, runs,
                () => Forward(network, one, device, minSeconds), () => Forward(foldedNetwork, one, device, minSeconds)),
            Compare($"network forward, batch {batchRows:N0}", batchRows, runs,
                () => Forward(network, batch, device, minSeconds), () => Forward(foldedNetwork, batch, device, minSeconds)),
            Compare($"Transform, {rows:N0} rows in batches of {model.PredictionBatchSize:N0}", rows, runs,
                () => PerOperation(() => BenchmarkRun.ReadScores(model, test), minSeconds), () => PerOperation(() => BenchmarkRun.ReadScores(folded, test), minSeconds)),
            Compare("PredictionEngine.Predict", 1, runs,
                () => PerOperation(() => engine.Predict(inputs[next++ % inputs.Length], ref output), minSeconds),
                () => PerOperation(() => foldedEngine.Predict(inputs[next++ % inputs.Length], ref output), minSeconds)),
        };
        return new FoldResult(maxDifference, runs, minSeconds, measurements);
    }

    /// <summary>Seconds per operation by the wall clock and by the measuring thread's CPU clock (NaN where there is none).</summary>
    internal readonly record struct Timing(double Wall, double ThreadCpu);

    /// <summary>One warm-up run of each, then runs alternating in both orders; the median of each clock.</summary>
    private static FoldMeasurement Compare(string operation, int rows, int runs, Func<Timing> unfolded, Func<Timing> folded)
    {
        unfolded();
        folded();
        var u = new List<Timing>(runs);
        var f = new List<Timing>(runs);
        for (int run = 0; run < runs; run++)
        {
            if (run % 2 == 0) { u.Add(unfolded()); f.Add(folded()); }
            else { f.Add(folded()); u.Add(unfolded()); }
        }
        static double? ThreadCpu(List<Timing> timings) => double.IsNaN(timings[0].ThreadCpu) ? null : Stats.Median(timings.Select(t => t.ThreadCpu));
        var result = new FoldMeasurement(operation, rows, Stats.Median(u.Select(t => t.Wall)), Stats.Median(f.Select(t => t.Wall)), ThreadCpu(u), ThreadCpu(f));
        Console.WriteLine($"    {operation}: {MarkdownReport.Duration(result.UnfoldedSeconds, rows)} unfolded, {MarkdownReport.Duration(result.FoldedSeconds, rows)} folded; " +
                          $"folded ÷ unfolded speed {result.FoldedOverUnfolded:F3} (wall), {result.FoldedOverUnfoldedThreadCpu:F3} (thread CPU)");
        return result;
    }

    /// <summary>Seconds per call of <paramref name="once"/>, repeated for at least <paramref name="minSeconds"/> of wall time (and at least once).</summary>
    internal static Timing PerOperation(Action once, double minSeconds)
    {
        double cpuStart = CpuClock.Thread();
        var clock = Stopwatch.StartNew();
        long count = 0;
        do
        {
            once();
            count++;
        }
        while (clock.Elapsed.TotalSeconds < minSeconds);
        double wall = clock.Elapsed.TotalSeconds, cpu = CpuClock.Thread() - cpuStart;
        return new Timing(wall / count, cpu / count);
    }

    /// <summary>Eval-mode forward passes, each in its own dispose scope as the transformer does, and waited for on CUDA.</summary>
    private static Timing Forward(LeNetBnNetwork network, Tensor input, Device device, double minSeconds)
    {
        using var _ = no_grad();
        return PerOperation(() =>
        {
            using var scope = NewDisposeScope();
            network.forward(input);
            RawTrainingLoop.Synchronize(device);
        }, minSeconds);
    }

    private static double MaxScoreDifference(MLContext mlContext, ITransformer a, ITransformer b, IDataView data)
    {
        var x = mlContext.Data.CreateEnumerable<ScoreOutput>(a.Transform(data), reuseRowObject: false).Select(p => p.Score);
        var y = mlContext.Data.CreateEnumerable<ScoreOutput>(b.Transform(data), reuseRowObject: false).Select(p => p.Score);
        return x.Zip(y).SelectMany(p => p.First.Zip(p.Second, (u, v) => Math.Abs((double)u - v))).DefaultIfEmpty().Max();
    }
}
