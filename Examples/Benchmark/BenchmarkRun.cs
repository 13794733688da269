using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetBn.Data;
using MlNetBn.Modules;
using MlNetBn.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetBn.Examples.Benchmark;

/// <summary>
/// One benchmark run on one device. For each BN kind, in order: a few untimed warm-up steps, the raw TorchSharp loop,
/// Fit through ML.NET (same seed: same initial weights and batches), batched Transform, PredictionEngine latency,
/// Evaluate on the training and test sets, and prediction with BN folded against unfolded (<see cref="BnFolding"/>);
/// each phase with its own peak memory.
/// </summary>
internal static class BenchmarkRun
{
    private const int WarmUpSteps = 5;
    private const int WarmUpPredictions = 200;

    public static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        Converters = { new JsonStringEnumConverter() },
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    public static async Task<int> RunAsync(BenchmarkSettings settings, CancellationToken cancel)
    {
        var total = Stopwatch.StartNew();
        var loadStart = LoadAverage.Read();
        string directory = await Data.EnsureFashionMnistAsync(settings.DataDir, cancel);
        var nativeInfo = TorchNative.EnsureLoaded();
        if (settings.Threads is { } threads)
            torch.set_num_threads(threads);
        var device = ResolveDevice(settings.Device);
        using var memory = MemoryMeter.Create(device.type == DeviceType.CUDA, device.index < 0 ? 0 : device.index);
        var machine = MachineFacts.Collect(device, nativeInfo.Description, memory.GpuName, loadStart);
        Console.WriteLine($"Device {device}; {machine.CpuModel}, {machine.LogicalCores} logical cores; {machine.DotNet}; TorchSharp {machine.TorchSharp} (libtorch {machine.LibTorchBuiltAgainst}); load average {loadStart}.");
        Console.WriteLine(nativeInfo.Description);

        var mlContext = new MLContext(seed: settings.Seed);
        var train = Data.Load(mlContext, FashionMnistSplit.Train, directory, settings.TrainCount);
        var test = Data.Load(mlContext, FashionMnistSplit.Test, directory, settings.TestCount);
        var (trainX, trainY) = Data.ReadAll(train);
        var (testX, testY) = Data.ReadAll(test);
        var dataFacts = new DataFacts(directory, ReadSource(directory), trainY.Length, testY.Length);
        Console.WriteLine($"Fashion-MNIST: {trainY.Length:N0} training and {testY.Length:N0} test images from {directory}.");

        var results = new List<KindResult>();
        foreach (var kind in settings.BatchNorms)
        {
            cancel.ThrowIfCancellationRequested();
            results.Add(RunKind(settings, kind, mlContext, train, test, trainX, trainY, testX, testY, device, memory, cancel));
        }

        var report = BuildReport(settings, machine with { LoadAverageEnd = LoadAverage.Read() }, dataFacts, results, memory, total.Elapsed.TotalSeconds);
        Directory.CreateDirectory(settings.OutDir);
        string name = $"benchmark-{(device.type == DeviceType.CUDA ? "cuda" : "cpu")}";
        string jsonPath = Path.Combine(settings.OutDir, name + ".json");
        string markdownPath = Path.Combine(settings.OutDir, name + ".md");
        await File.WriteAllTextAsync(jsonPath, JsonSerializer.Serialize(report, Json), cancel);
        string markdown = MarkdownReport.Write(report);
        await File.WriteAllTextAsync(markdownPath, markdown, cancel);
        Console.WriteLine();
        Console.WriteLine(markdown);
        Console.WriteLine($"Wrote {jsonPath} and {markdownPath}.");
        return 0;
    }

    private static KindResult RunKind(BenchmarkSettings settings, BatchNormKind kind, MLContext mlContext, IDataView train, IDataView test,
        float[] trainX, long[] trainY, float[] testX, long[] testY, Device device, MemoryMeter memory, CancellationToken cancel)
    {
        var architecture = new LeNetBnArchitecture { BatchNorm = kind, NumClasses = FashionMnist.ClassCount };
        Console.WriteLine();
        Console.WriteLine($"== {kind} BN ==");

        // 1. Warm-up, then the raw loop; its data tensors are gone before Fit, so each phase's memory is its own.
        LeNetBnNetwork rawNetwork;
        List<EpochTiming> rawEpochs;
        using (var raw = new RawTrainingLoop(trainX, trainY, FashionMnist.FeatureCount, device))
        {
            raw.WarmUp(architecture, settings.BatchSize, WarmUpSteps, settings.Seed);
            Collect();
            using (memory.Start("raw loop"))
                (rawNetwork, rawEpochs) = raw.Train(architecture, settings.Epochs, settings.BatchSize, settings.LearningRate, settings.Seed);
        }
        foreach (var e in rawEpochs)
            Console.WriteLine($"  raw  epoch {e.Epoch}: {e.ExamplesPerSecond,10:N0} examples/s ({e.Seconds:F2} s)");

        // 2. Fit through ML.NET with d2l's defaults.
        var fitEpochs = new List<LeNetBnEpochMetrics>();
        // CPU time between epoch callbacks; the first epoch's also holds reading the IDataView and set-up.
        var fitCpu = new List<double>();
        double cpuMark = 0;
        var options = new LeNetBnTrainer.Options
        {
            BatchNorm = kind,
            Epochs = settings.Epochs,
            BatchSize = settings.BatchSize,
            LearningRate = settings.LearningRate,
            Seed = settings.Seed,
            Device = settings.Device,
            EpochEnded = m =>
            {
                double now = CpuClock.Now();
                fitCpu.Add(now - cpuMark);
                cpuMark = now;
                fitEpochs.Add(m);
                Console.WriteLine($"  Fit  epoch {m.Epoch}: {m.ExamplesPerSecond,10:N0} examples/s ({m.Elapsed.TotalSeconds:F2} s), loss {m.Loss:F3}, train acc {m.TrainAccuracy:F3}");
            },
            CancellationToken = cancel,
        };
        var estimator = mlContext.MulticlassClassification.Trainers.LeNetBn(options);
        Collect();
        LeNetBnTransformer model;
        var fitClock = Stopwatch.StartNew();
        cpuMark = CpuClock.Now();
        using (memory.Start("fit"))
            model = estimator.Fit(train);
        double fitSeconds = fitClock.Elapsed.TotalSeconds;
        using var _ = model;
        var fitTiming = TrainingTiming.From(fitEpochs.Select((m, i) => new EpochTiming(m.Epoch, m.Elapsed.TotalSeconds, m.ExamplesPerSecond, fitCpu[i])).ToList());
        var fit = new FitResult(fitTiming, fitSeconds, fitSeconds - fitEpochs.Sum(m => m.Elapsed.TotalSeconds), fitEpochs[^1].Loss, fitEpochs[^1].TrainAccuracy);
        Console.WriteLine($"  Fit total {fitSeconds:F2} s ({fit.OutsideEpochsSeconds:F2} s outside the epochs: reading the IDataView, set-up, final checks).");

        double rawTestAccuracy = RawTrainingLoop.Accuracy(rawNetwork, testX, testY, FashionMnist.FeatureCount, device);
        double stateDifference = MaxDifference(rawNetwork.GetBatchNormStates(), model.GetBatchNormStates());
        var rawResult = new RawResult(TrainingTiming.From(rawEpochs), rawTestAccuracy, stateDifference);

        // 3. Batched Transform: rows/s through model.Transform and a cursor over Score.
        TransformResult transform;
        Collect();
        using (memory.Start("transform"))
            transform = MeasureTransform(model, test, settings.TransformRepeats);
        Console.WriteLine($"  Transform: {transform.MedianRowsPerSecond:N0} rows/s (median of {transform.PassRowsPerSecond.Count} passes over {transform.Rows:N0} rows)");

        // 4. PredictionEngine latency.
        LatencyResult latency;
        Collect();
        using (memory.Start("prediction engine"))
            latency = MeasurePredictionEngine(mlContext, model, testX, settings.Predictions);
        Console.WriteLine($"  PredictionEngine: p50 {latency.P50Microseconds:F0} µs, p99 {latency.P99Microseconds:F0} µs over {latency.Count:N0} predictions");

        // 5. Accuracy through ML.NET's evaluator.
        AccuracyResult accuracy;
        using (memory.Start("evaluate"))
        {
            var onTrain = mlContext.MulticlassClassification.Evaluate(model.Transform(train));
            var onTest = mlContext.MulticlassClassification.Evaluate(model.Transform(test));
            accuracy = new AccuracyResult(onTrain.MicroAccuracy, onTest.MicroAccuracy, onTest.MacroAccuracy, onTest.LogLoss);
        }
        Console.WriteLine($"  Accuracy: train {accuracy.Train:F4}, test {accuracy.Test:F4} (raw loop's network: test {rawTestAccuracy:F4}; max |BN state difference| Fit vs raw {stateDifference:G3})");

        // 6. BN folded into the conv/linear layers against the unfolded model, in alternating runs (none without BN).
        // The network-only part times the raw loop's network: Fit's weights (same seed, same steps) outside ML.NET.
        FoldResult? folding = null;
        if (kind != BatchNormKind.None)
        {
            Collect();
            using (memory.Start("bn folding"))
                folding = BnFolding.Measure(mlContext, model, rawNetwork, test, testX, device, settings.FoldRepeats, settings.FoldMinSeconds);
        }
        rawNetwork.Dispose();

        double ratio = fit.Timing.SteadyExamplesPerSecond / rawResult.Timing.SteadyExamplesPerSecond;
        double bestRatio = fit.Timing.BestExamplesPerSecond / rawResult.Timing.BestExamplesPerSecond;
        double cpuRatio = rawResult.Timing.SteadyCpuSecondsPerEpoch / fit.Timing.SteadyCpuSecondsPerEpoch;
        Console.WriteLine($"  Fit ÷ raw: {ratio:F3} (medians), {bestRatio:F3} (fastest epochs), {cpuRatio:F3} (CPU time per epoch)");
        return new KindResult(kind, fit, rawResult, ratio, bestRatio, cpuRatio, transform, latency, accuracy, folding, memory.TakePhases());
    }

    private static TransformResult MeasureTransform(LeNetBnTransformer model, IDataView data, int repeats)
    {
        int rows = 0;
        double Pass()
        {
            var clock = Stopwatch.StartNew();
            rows = ReadScores(model, data);
            return rows / clock.Elapsed.TotalSeconds;
        }
        Pass(); // warm-up
        var passes = Enumerable.Range(0, repeats).Select(_ => Pass()).ToList();
        return new TransformResult(rows, passes, Stats.Median(passes));
    }

    /// <summary>Scores <paramref name="data"/> and reads only Score through a cursor (the cost of scoring, not of other columns); returns the rows read.</summary>
    public static int ReadScores(ITransformer model, IDataView data)
    {
        var scored = model.Transform(data);
        var score = scored.Schema["Score"];
        using var cursor = scored.GetRowCursor([score]);
        var getScore = cursor.GetGetter<VBuffer<float>>(score);
        VBuffer<float> value = default;
        int count = 0;
        while (cursor.MoveNext())
        {
            getScore(ref value);
            count++;
        }
        return count;
    }

    private static LatencyResult MeasurePredictionEngine(MLContext mlContext, LeNetBnTransformer model, float[] testX, int count)
    {
        // OwnsTransformer = false: by default disposing the engine disposes the model too, and the model is used after.
        using var engine = mlContext.Model.CreatePredictionEngine<ImageInput, ScoreOutput>(model, new PredictionEngineOptions { OwnsTransformer = false });
        var inputs = Data.Inputs(testX, 4096);
        var output = new ScoreOutput();
        for (int i = 0; i < WarmUpPredictions; i++)
            engine.Predict(inputs[i % inputs.Length], ref output);
        var micros = new double[count];
        for (int i = 0; i < count; i++)
        {
            long start = Stopwatch.GetTimestamp();
            engine.Predict(inputs[i % inputs.Length], ref output);
            micros[i] = Stopwatch.GetElapsedTime(start).TotalMicroseconds;
        }
        return new LatencyResult(count, WarmUpPredictions, Stats.Percentile(micros, 0.5), Stats.Percentile(micros, 0.99), micros.Average(), micros.Max());
    }

    private static BenchmarkReport BuildReport(BenchmarkSettings settings, MachineFacts machine, DataFacts data, List<KindResult> results, MemoryMeter memory, double seconds)
    {
        bool cuda = machine.Device.StartsWith("cuda", StringComparison.OrdinalIgnoreCase);
        var builtIn = results.FirstOrDefault(r => r.BatchNorm == BatchNormKind.BuiltIn);
        var scratch = results.FirstOrDefault(r => r.BatchNorm == BatchNormKind.Scratch);
        double? scratchOverBuiltIn = builtIn is not null && scratch is not null
            ? scratch.Fit.Timing.SteadyExamplesPerSecond / builtIn.Fit.Timing.SteadyExamplesPerSecond : null;
        double? scratchOverBuiltInBest = builtIn is not null && scratch is not null
            ? scratch.Fit.Timing.BestExamplesPerSecond / builtIn.Fit.Timing.BestExamplesPerSecond : null;
        double? scratchOverBuiltInCpu = builtIn is not null && scratch is not null
            ? builtIn.Fit.Timing.SteadyCpuSecondsPerEpoch / scratch.Fit.Timing.SteadyCpuSecondsPerEpoch : null;

        var targets = new List<TargetCheck>();
        if (!cuda)
        {
            foreach (var r in results)
                targets.Add(Check($"CPU: Fit ≥ 0.9× the raw loop ({r.BatchNorm} BN)", 0.9, r.FitOverRawBest, $"fastest steady epochs, Fit ÷ raw (medians: {r.FitOverRaw:F3}; CPU time: {r.FitOverRawCpu:F3})"));
        }
        targets.Add(Check("Scratch BN ≥ 0.8× built-in BN (Fit)", 0.8, scratchOverBuiltInBest, $"fastest steady epochs, scratch ÷ built-in (medians: {scratchOverBuiltIn:F3}; CPU time: {scratchOverBuiltInCpu:F3})"));
        if (cuda)
        {
            bool hopper = (machine.GpuName ?? "").Contains("H100", StringComparison.OrdinalIgnoreCase) || (machine.GpuName ?? "").Contains("H200", StringComparison.OrdinalIgnoreCase);
            targets.Add(Check("GPU: Fit ≥ 100,000 examples/s with built-in BN (H100/H200)", 100_000, builtIn?.Fit.Timing.SteadyExamplesPerSecond,
                (hopper ? "median steady-epoch examples/s" : $"median steady-epoch examples/s; the target is for H100/H200, this GPU is {machine.GpuName ?? "unknown"}")
                + $" (fastest epoch: {builtIn?.Fit.Timing.BestExamplesPerSecond:N0})"));
            foreach (var r in results)
                targets.Add(Check($"GPU: Fit vs the raw loop ({r.BatchNorm} BN), for information", 0.9, r.FitOverRawBest, $"fastest steady epochs, Fit ÷ raw (medians: {r.FitOverRaw:F3})"));
        }

        var shownSettings = new
        {
            settings.Device,
            settings.Epochs,
            TrainCount = settings.TrainCount ?? data.TrainRows,
            TestCount = settings.TestCount ?? data.TestRows,
            settings.Seed,
            settings.BatchSize,
            settings.LearningRate,
            Activation = ActivationKind.Sigmoid,
            Pooling = PoolingKind.Average,
            Optimizer = "SGD (no momentum, no weight decay)",
            settings.BatchNorms,
            settings.Predictions,
            settings.TransformRepeats,
            settings.FoldRepeats,
            settings.FoldMinSeconds,
            settings.Threads,
            WarmUpSteps,
            WarmUpPredictions,
        };
        return new BenchmarkReport(machine, shownSettings, data, results, scratchOverBuiltIn, scratchOverBuiltInBest, scratchOverBuiltInCpu, targets, memory.ProcessPeakRssMiB, memory.ProcessPeakGpuMiB, memory.GpuNote, seconds);
    }

    private static TargetCheck Check(string target, double required, double? measured, string note) =>
        new(target, required, measured, measured is null ? null : measured >= required, note);

    /// <summary>The training device, as the trainer chooses it for the same option (Auto: CUDA when available).</summary>
    internal static Device ResolveDevice(DeviceKind kind)
    {
        // Before any TorchSharp use: with MLNETBN_TORCH_LIB, libtorch must be preloaded before TorchSharp starts.
        TorchNative.EnsureLoaded();
        bool available = kind != DeviceKind.Cpu && cuda.is_available();
        return kind switch
        {
            DeviceKind.Cpu => CPU,
            DeviceKind.Auto => available ? new Device(DeviceType.CUDA, 0) : CPU,
            _ when available => new Device(DeviceType.CUDA, 0),
            _ => throw new InvalidOperationException(
                "--device Cuda: CUDA is not available (no GPU, or a CPU-only libtorch: set MLNETBN_TORCH_LIB to a CUDA PyTorch's torch/lib with a -p:TorchBackend=external build)."),
        };
    }

    private static double MaxDifference(IReadOnlyList<BatchNormLayerState> a, IReadOnlyList<BatchNormLayerState> b)
    {
        double max = 0;
        foreach (var (x, y) in a.Zip(b))
        {
            foreach (var (u, v) in new[] { (x.Gamma, y.Gamma), (x.Beta, y.Beta), (x.MovingMean, y.MovingMean), (x.MovingVariance, y.MovingVariance) })
                for (int i = 0; i < u.Length; i++)
                    max = Math.Max(max, Math.Abs(u[i] - v[i]));
        }
        return max;
    }

    private static string? ReadSource(string directory)
    {
        try
        {
            using var document = JsonDocument.Parse(File.ReadAllText(Path.Combine(directory, "manifest.json")));
            return document.RootElement.TryGetProperty("source", out var source) ? source.GetString() : null;
        }
        catch (Exception e) when (e is IOException or JsonException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>Levels the field between phases: no garbage from one phase collected during the next one's timing.</summary>
    private static void Collect()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
    }
}
