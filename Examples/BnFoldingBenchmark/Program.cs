// Prediction speed of LeNet-BN folded vs unfolded (docs/BENCHMARKS.md, "BN folding"), for each BN kind:
//   network only: one eval-mode forward pass of batch 1 and of batch 1,024, no ML.NET;
//   batched Transform: rows/s reading Score over Fashion-MNIST test images;
//   PredictionEngine: latency of one Predict call.
// Each run repeats its operation for at least --min-seconds; unfolded and folded runs alternate, in both orders,
// so drifting machine load hits both alike; medians over --repeats runs are reported. Two clocks: wall time (what a
// caller waits) and, on Linux, the CPU time of the measuring thread, which waiting for a busy machine's cores does
// not inflate. With --threads 1 libtorch computes on the calling thread, so that CPU time is the whole work.
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
var testRows = new Option<int>("--test-rows") { Description = "Test images to score per batched Transform pass (at most 10,000).", DefaultValueFactory = _ => 5_120 };
var repeats = new Option<int>("--repeats") { Description = "Timed runs of each measurement per model (the median is reported).", DefaultValueFactory = _ => 5 };
var minSeconds = new Option<double>("--min-seconds") { Description = "Each timed run repeats its operation for at least this long.", DefaultValueFactory = _ => 1.0 };
var threads = new Option<int?>("--threads") { Description = "TorchSharp intra-op threads (default: libtorch's, one per core)." };
var dataDir = new Option<string?>("--data-dir") { Description = $"Where Fashion-MNIST is cached (default: ${FashionMnist.DataDirectoryEnvironmentVariable} or {FashionMnist.DefaultDirectory})." };

var root = new RootCommand("Measure LeNet-BN prediction with and without batch normalization folded into the conv/linear layers.")
{
    trainPerClass, testRows, repeats, minSeconds, threads, dataDir,
};
root.SetAction(async (parse, cancel) =>
{
    if (parse.GetValue(threads) is { } n)
        torch.set_num_threads(n);
    int runs = parse.GetValue(repeats);
    double seconds = parse.GetValue(minSeconds);
    var directory = await FashionMnist.DownloadAsync(parse.GetValue(dataDir), Console.Error.WriteLine, cancel);
    var mlContext = new MLContext(seed: 1);
    var train = mlContext.Data.LoadFashionMnist(FashionMnistSplit.Train, directory, countPerClass: parse.GetValue(trainPerClass));
    var test = mlContext.Data.LoadFashionMnist(FashionMnistSplit.Test, directory, maxCount: parse.GetValue(testRows));
    var images = mlContext.Data.CreateEnumerable<Image>(test, reuseRowObject: false).ToList();

    Console.WriteLine($"CPU: {CpuName()}, {Environment.ProcessorCount} logical cores; TorchSharp {torch.get_num_threads()} intra-op threads; "
        + $"load average at start {LoadAverage()}; {(Debugger.IsAttached ? "debugger attached" : "no debugger")}, "
        + $"{(typeof(Program).Assembly.GetCustomAttributes(typeof(DebuggableAttribute), false).OfType<DebuggableAttribute>().Any(d => d.IsJITOptimizerDisabled) ? "Debug build" : "Release build")}.");
    Console.WriteLine($"Trained 1 epoch on {train.GetRowCount():N0} images; {images.Count:N0} test images; {runs} runs of at least {seconds} s per measurement, medians.");
    Console.WriteLine();
    Console.WriteLine("| BN kind | Measurement | Unfolded, wall | Folded, wall | Speed-up, wall | Unfolded, thread CPU | Folded, thread CPU | Speed-up, thread CPU |");
    Console.WriteLine("|---|---|---:|---:|---:|---:|---:|---:|");

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
            var (u1, f1) = Alternate(runs, () => TimeForward(network, one, seconds), () => TimeForward(foldedNetwork, one, seconds));
            Row(kind, "network forward, batch 1 (µs)", u1, f1, v => v * 1e6);
            var (ub, fb) = Alternate(runs, () => TimeForward(network, batch, seconds), () => TimeForward(foldedNetwork, batch, seconds));
            Row(kind, $"network forward, batch {batch.shape[0]:N0} (ms)", ub, fb, v => v * 1e3);
        }

        var (ut, ft) = Alternate(runs, () => PerIteration(() => ReadScores(unfolded.Transform(test)), seconds), () => PerIteration(() => ReadScores(folded.Transform(test)), seconds));
        // Rows/s: a bigger number is better, and the speed-up column divides seconds per pass, so it stays unfolded/folded.
        Row(kind, $"Transform of {images.Count:N0} rows, batch {unfolded.PredictionBatchSize:N0} (rows/s)", ut, ft, v => images.Count / v);

        using var unfoldedEngine = mlContext.Model.CreatePredictionEngine<Image, Prediction>(unfolded);
        using var foldedEngine = mlContext.Model.CreatePredictionEngine<Image, Prediction>(folded);
        int next = 0;
        var (ue, fe) = Alternate(runs, () => PerIteration(() => unfoldedEngine.Predict(images[next++ % images.Count]), seconds),
            () => PerIteration(() => foldedEngine.Predict(images[next++ % images.Count]), seconds));
        Row(kind, "PredictionEngine.Predict (µs/call)", ue, fe, v => v * 1e6);
        Console.Error.WriteLine($"{kind}: max |Δ score| folded vs unfolded over {images.Count:N0} test images: {maxDiff:E2}");
    }
    Console.WriteLine();
    Console.WriteLine($"Load average at end {LoadAverage()}.");
    return 0;
});
return await root.Parse(args).InvokeAsync();

// Each value is seconds per operation; shown converted (µs, ms, or rows/s for a pass over rows).
static void Row(BatchNormKind kind, string what, Timing unfolded, Timing folded, Func<double, double> show)
{
    static string SpeedUp(double u, double f) => double.IsNaN(u) ? "n/a" : $"{u / f:F2}×";
    static string Show(double v, Func<double, double> show) => double.IsNaN(v) ? "n/a" : show(v).ToString("N1");
    Console.WriteLine($"| {kind} | {what} | {Show(unfolded.Wall, show)} | {Show(folded.Wall, show)} | {SpeedUp(unfolded.Wall, folded.Wall)} "
        + $"| {Show(unfolded.Cpu, show)} | {Show(folded.Cpu, show)} | {SpeedUp(unfolded.Cpu, folded.Cpu)} |");
}

// One warm-up of each, then runs alternating in both orders; the median of each clock.
static (Timing Unfolded, Timing Folded) Alternate(int runs, Func<Timing> unfolded, Func<Timing> folded)
{
    unfolded(); folded();
    var u = new List<Timing>(); var f = new List<Timing>();
    for (int r = 0; r < runs; r++)
    {
        if (r % 2 == 0) { u.Add(unfolded()); f.Add(folded()); }
        else { f.Add(folded()); u.Add(unfolded()); }
    }
    return (new(Median(u.Select(t => t.Wall)), Median(u.Select(t => t.Cpu))), new(Median(f.Select(t => t.Wall)), Median(f.Select(t => t.Cpu))));
}

static double Median(IEnumerable<double> source)
{
    var values = source.Order().ToList();
    return values.Count % 2 == 1 ? values[values.Count / 2] : (values[values.Count / 2 - 1] + values[values.Count / 2]) / 2;
}

// Seconds per call of once (wall and thread CPU), repeated for at least minSeconds of wall time (and at least once).
static Timing PerIteration(Action once, double minSeconds)
{
    double cpuStart = ThreadCpuSeconds();
    var clock = Stopwatch.StartNew();
    long count = 0;
    do
    {
        once();
        count++;
    }
    while (clock.Elapsed.TotalSeconds < minSeconds);
    double wall = clock.Elapsed.TotalSeconds, cpu = ThreadCpuSeconds() - cpuStart;
    return new(wall / count, cpu / count);
}

// CPU time of the calling thread (Linux CLOCK_THREAD_CPUTIME_ID); NaN elsewhere.
static double ThreadCpuSeconds()
{
    if (!OperatingSystem.IsLinux())
        return double.NaN;
    if (NativeClock.clock_gettime(NativeClock.ThreadCpuTimeId, out var t) != 0)
        throw new InvalidOperationException("clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed.");
    return t.Seconds + t.Nanoseconds * 1e-9;
}

// Seconds per eval-mode forward pass, each in its own dispose scope as the transformer does.
static Timing TimeForward(LeNetBnNetwork network, Tensor input, double minSeconds)
{
    using var _ = no_grad();
    return PerIteration(() =>
    {
        using var scope = NewDisposeScope();
        network.forward(input);
    }, minSeconds);
}

// Reads only Score through a cursor: the cost of scoring, not of the other columns.
static void ReadScores(IDataView scored)
{
    var score = scored.Schema["Score"];
    using var cursor = scored.GetRowCursor([score]);
    var getter = cursor.GetGetter<VBuffer<float>>(score);
    VBuffer<float> value = default;
    while (cursor.MoveNext())
        getter(ref value);
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

/// <summary>Seconds per operation by the wall clock and by the measuring thread's CPU clock.</summary>
internal readonly record struct Timing(double Wall, double Cpu);

/// <summary>The thread CPU clock of Linux's C library.</summary>
internal static class NativeClock
{
    public const int ThreadCpuTimeId = 3; // CLOCK_THREAD_CPUTIME_ID

    [System.Runtime.InteropServices.StructLayout(System.Runtime.InteropServices.LayoutKind.Sequential)]
    public struct Timespec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "clock_gettime")]
    public static extern int clock_gettime(int clockId, out Timespec time);
}

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
