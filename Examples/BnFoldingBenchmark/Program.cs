// Prediction speed of LeNet-BN folded vs unfolded (docs/BENCHMARKS.md, "BN folding"), for each BN kind:
//   network only: one eval-mode forward pass of batch 1 and of batch 1,024, no ML.NET;
//   batched Transform: rows/s reading Score over the Fashion-MNIST test split;
//   PredictionEngine: latency of one Predict call.
// Unfolded and folded runs alternate, in both orders, so drifting machine load hits both alike; medians are reported.
// Run in Release: dotnet run -c Release --project Examples/BnFoldingBenchmark
using System.CommandLine;
using System.Diagnostics;
using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetBn;
using MlNetBn.Data;
using MlNetBn.Modules;
using MlNetBn.Training;
using TorchSharp;
using static TorchSharp.torch;

var trainPerClass = new Option<int>("--train-per-class") { Description = "Images per class to train on (one epoch): the BN statistics come from real data.", DefaultValueFactory = _ => 600 };
var testRows = new Option<int>("--test-rows") { Description = "Test images to score per batched Transform run (at most 10,000).", DefaultValueFactory = _ => 10_000 };
var repeats = new Option<int>("--repeats") { Description = "Timed runs of each measurement per model (the median is reported).", DefaultValueFactory = _ => 7 };
var engineCalls = new Option<int>("--engine-calls") { Description = "PredictionEngine.Predict calls per run.", DefaultValueFactory = _ => 1_000 };
var threads = new Option<int?>("--threads") { Description = "TorchSharp intra-op threads (default: libtorch's, one per core)." };
var dataDir = new Option<string?>("--data-dir") { Description = $"Where Fashion-MNIST is cached (default: ${FashionMnist.DataDirectoryEnvironmentVariable} or {FashionMnist.DefaultDirectory})." };

var root = new RootCommand("Measure LeNet-BN prediction with and without batch normalization folded into the conv/linear layers.")
{
    trainPerClass, testRows, repeats, engineCalls, threads, dataDir,
};
root.SetAction(async (parse, cancel) =>
{
    if (parse.GetValue(threads) is { } n)
        torch.set_num_threads(n);
    int runs = parse.GetValue(repeats);
    var directory = await FashionMnist.DownloadAsync(parse.GetValue(dataDir), Console.Error.WriteLine, cancel);
    var mlContext = new MLContext(seed: 1);
    var train = mlContext.Data.LoadFashionMnist(FashionMnistSplit.Train, directory, countPerClass: parse.GetValue(trainPerClass));
    var test = mlContext.Data.LoadFashionMnist(FashionMnistSplit.Test, directory, maxCount: parse.GetValue(testRows));
    var images = mlContext.Data.CreateEnumerable<Image>(test, reuseRowObject: false).ToList();

    Console.WriteLine($"CPU: {CpuName()}, {Environment.ProcessorCount} logical cores; TorchSharp {torch.get_num_threads()} intra-op threads; "
        + $"load average at start {LoadAverage()}; {(Debugger.IsAttached ? "debugger attached" : "no debugger")}, "
        + $"{(typeof(Program).Assembly.GetCustomAttributes(typeof(DebuggableAttribute), false).OfType<DebuggableAttribute>().Any(d => d.IsJITOptimizerDisabled) ? "Debug build" : "Release build")}.");
    Console.WriteLine($"Trained 1 epoch on {train.GetRowCount():N0} images; {images.Count:N0} test images; {runs} runs per measurement, medians.");
    Console.WriteLine();
    Console.WriteLine("| BN kind | Measurement | Unfolded | Folded | Speed-up |");
    Console.WriteLine("|---|---|---:|---:|---:|");

    foreach (var kind in new[] { BatchNormKind.Scratch, BatchNormKind.BuiltIn })
    {
        var options = new LeNetBnTrainer.Options { Epochs = 1, BatchNorm = kind, Seed = 1, Device = DeviceKind.Cpu, CancellationToken = cancel };
        using var unfolded = mlContext.MulticlassClassification.Trainers.LeNetBn(options).Fit(train);
        using var folded = unfolded.FoldBatchNorm();

        double maxDiff = MaxScoreDifference(mlContext, unfolded.Transform(test), folded.Transform(test));
        if (maxDiff > 1e-5)
            throw new InvalidOperationException($"{kind}: folded scores differ from unfolded ones by {maxDiff:E2}; not benchmarking a broken fold.");

        // Network only: the same trained weights are not reachable through the public transformer API, so a
        // network of the same architecture gets BN statistics from real images in training mode, then is folded.
        using (var network = new LeNetBnNetwork(new LeNetBnArchitecture { BatchNorm = kind }, seed: 1))
        {
            var pixels = images.SelectMany(i => i.Features).ToArray();
            using var all = tensor(pixels, [images.Count, 784]);
            network.train();
            using (no_grad())
                for (int start = 0; start + 256 <= images.Count; start += 256)
                {
                    using var scope = NewDisposeScope();
                    network.forward(all.narrow(0, start, 256));
                }
            network.eval();
            using var foldedNetwork = network.FoldBatchNorm();
            using var one = all.narrow(0, 0, 1).clone();
            using var batch = all.narrow(0, 0, Math.Min(1024, images.Count)).clone();
            var (u1, f1) = Alternate(runs, () => TimeForward(network, one, 2_000), () => TimeForward(foldedNetwork, one, 2_000));
            Row(kind, "network forward, batch 1 (µs)", u1, f1, lowerIsBetter: true);
            var (ub, fb) = Alternate(runs, () => TimeForward(network, batch, 20), () => TimeForward(foldedNetwork, batch, 20));
            Row(kind, $"network forward, batch {batch.shape[0]:N0} (ms)", ub / 1000, fb / 1000, lowerIsBetter: true);
        }

        var (ut, ft) = Alternate(runs, () => RowsPerSecond(unfolded.Transform(test)), () => RowsPerSecond(folded.Transform(test)));
        Row(kind, $"Transform, batch {unfolded.PredictionBatchSize:N0} (rows/s)", ut, ft, lowerIsBetter: false);

        using var unfoldedEngine = mlContext.Model.CreatePredictionEngine<Image, Prediction>(unfolded);
        using var foldedEngine = mlContext.Model.CreatePredictionEngine<Image, Prediction>(folded);
        int calls = parse.GetValue(engineCalls);
        var (ue, fe) = Alternate(runs, () => Latency(unfoldedEngine, images, calls), () => Latency(foldedEngine, images, calls));
        Row(kind, "PredictionEngine.Predict (µs/call)", ue, fe, lowerIsBetter: true);
        Console.Error.WriteLine($"{kind}: max |Δ score| folded vs unfolded over {images.Count:N0} test images: {maxDiff:E2}");
    }
    Console.WriteLine();
    Console.WriteLine($"Load average at end {LoadAverage()}.");
    return 0;
});
return await root.Parse(args).InvokeAsync();

static void Row(BatchNormKind kind, string what, double unfolded, double folded, bool lowerIsBetter) =>
    Console.WriteLine($"| {kind} | {what} | {unfolded:N1} | {folded:N1} | {(lowerIsBetter ? unfolded / folded : folded / unfolded):F2}× |");

// One warm-up of each, then runs alternating in both orders; the median of each.
static (double Unfolded, double Folded) Alternate(int runs, Func<double> unfolded, Func<double> folded)
{
    unfolded(); folded();
    var u = new List<double>(); var f = new List<double>();
    for (int r = 0; r < runs; r++)
    {
        if (r % 2 == 0) { u.Add(unfolded()); f.Add(folded()); }
        else { f.Add(folded()); u.Add(unfolded()); }
    }
    return (Median(u), Median(f));
}

static double Median(List<double> values)
{
    values.Sort();
    return values.Count % 2 == 1 ? values[values.Count / 2] : (values[values.Count / 2 - 1] + values[values.Count / 2]) / 2;
}

// Microseconds per eval-mode forward pass, each in its own dispose scope as the transformer does.
static double TimeForward(LeNetBnNetwork network, Tensor input, int count)
{
    using var _ = no_grad();
    var clock = Stopwatch.StartNew();
    for (int i = 0; i < count; i++)
    {
        using var scope = NewDisposeScope();
        network.forward(input);
    }
    return clock.Elapsed.TotalMicroseconds / count;
}

// Rows per second reading only Score: the cost of scoring, not of the other columns.
static double RowsPerSecond(IDataView scored)
{
    var score = scored.Schema["Score"];
    var clock = Stopwatch.StartNew();
    long rows = 0;
    using (var cursor = scored.GetRowCursor([score]))
    {
        var getter = cursor.GetGetter<VBuffer<float>>(score);
        VBuffer<float> value = default;
        while (cursor.MoveNext())
        {
            getter(ref value);
            rows++;
        }
    }
    return rows / clock.Elapsed.TotalSeconds;
}

// Microseconds per Predict call over the first images, cycling.
static double Latency(PredictionEngine<Image, Prediction> engine, List<Image> images, int calls)
{
    var clock = Stopwatch.StartNew();
    for (int i = 0; i < calls; i++)
        engine.Predict(images[i % images.Count]);
    return clock.Elapsed.TotalMicroseconds / calls;
}

static double MaxScoreDifference(MLContext mlContext, IDataView a, IDataView b)
{
    var x = mlContext.Data.CreateEnumerable<Prediction>(a, reuseRowObject: false).Select(p => p.Score);
    var y = mlContext.Data.CreateEnumerable<Prediction>(b, reuseRowObject: false).Select(p => p.Score);
    return x.Zip(y).SelectMany(p => p.First.Zip(p.Second, (u, v) => Math.Abs((double)u - v))).DefaultIfEmpty().Max();
}

static string CpuName() =>
    File.Exists("/proc/cpuinfo")
        ? File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "unknown"
        : "unknown";

static string LoadAverage() =>
    File.Exists("/proc/loadavg") ? string.Join(" ", File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "n/a";

/// <summary>A test image as the prediction engine reads it.</summary>
internal sealed class Image
{
    [KeyType(10)]
    public uint Label { get; set; }

    [VectorType(784)]
    public float[] Features { get; set; } = [];
}

/// <summary>What the model returns.</summary>
internal sealed class Prediction
{
    public float[] Score { get; set; } = [];
}
