using MlNetBn.Modules;
using MlNetBn.Training;

namespace MlNetBn.Examples.Benchmark;

/// <summary>What the command line asked for.</summary>
internal sealed record BenchmarkSettings(
    DeviceKind Device, int Epochs, int? TrainCount, int? TestCount, int Seed, string OutDir, string? DataDir,
    IReadOnlyList<BatchNormKind> BatchNorms, int Predictions, int TransformRepeats, int FoldRepeats, double FoldMinSeconds, int? Threads)
{
    /// <summary>d2l's recipe, as the trainer's defaults have it; the benchmark measures exactly these.</summary>
    public int BatchSize => LeNetBnTrainer.Defaults.BatchSize;

    public double LearningRate => LeNetBnTrainer.Defaults.LearningRate;

    public void Validate()
    {
        static void Require(bool ok, string option, object? value, string rule)
        {
            if (!ok) throw new ArgumentOutOfRangeException(option, value, $"{option} = {value}: {rule}");
        }
        Require(Epochs >= 1, "--epochs", Epochs, "at least 1 (2 or more to separate the warm-up epoch).");
        Require(TrainCount is null or >= 20, "--train-count", TrainCount, "at least 20 images.");
        Require(TestCount is null or >= 10, "--test-count", TestCount, "at least 10 images.");
        Require(BatchNorms.Count > 0 && BatchNorms.Distinct().Count() == BatchNorms.Count, "--batch-norm", string.Join(",", BatchNorms), "one or more distinct kinds.");
        Require(Predictions >= 100, "--predictions", Predictions, "at least 100 (the p99 needs them).");
        Require(TransformRepeats >= 1, "--transform-repeats", TransformRepeats, "at least 1.");
        Require(FoldRepeats >= 1, "--fold-repeats", FoldRepeats, "at least 1.");
        Require(FoldMinSeconds >= 0, "--fold-min-seconds", FoldMinSeconds, "0 or more (0: one operation per run).");
        Require(Threads is null or >= 1, "--threads", Threads, "at least 1.");
    }
}

/// <summary>
/// One epoch: wall time, examples per second, and the process's CPU time over the epoch (user + system, all threads).
/// On a machine shared with other work the CPU time is the steadier measure of the work done: waiting for a core does
/// not count; spinning threads and cache contention still do.
/// </summary>
internal sealed record EpochTiming(int Epoch, double Seconds, double ExamplesPerSecond, double CpuSeconds);

/// <summary>CPU clocks, in seconds.</summary>
internal static class CpuClock
{
    /// <summary>The process's CPU time so far (user + system, all threads).</summary>
    public static double Now()
    {
        using var process = System.Diagnostics.Process.GetCurrentProcess();
        return process.TotalProcessorTime.TotalSeconds;
    }

    /// <summary>
    /// The calling thread's CPU time so far (Linux: CLOCK_THREAD_CPUTIME_ID); NaN elsewhere. Waiting for a busy
    /// machine's cores does not count; work on libtorch's other intra-op threads does not count either.
    /// </summary>
    public static double Thread()
    {
        if (!OperatingSystem.IsLinux())
            return double.NaN;
        if (clock_gettime(ThreadCpuTimeId, out var time) != 0)
            throw new InvalidOperationException("clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed.");
        return time.Seconds + time.Nanoseconds * 1e-9;
    }

    private const int ThreadCpuTimeId = 3; // CLOCK_THREAD_CPUTIME_ID

    private struct Timespec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "clock_gettime")]
    private static extern int clock_gettime(int clockId, out Timespec time);
}

/// <summary>
/// Epoch timings summarised: the first epoch apart (it pays one-time costs); "steady" = the epochs after it (or the
/// only epoch when there is one), as their median and as the fastest one. On a machine shared with other work the
/// fastest epoch is the least disturbed one, the better estimate of what the code costs; on a quiet machine both agree.
/// </summary>
internal sealed record TrainingTiming(
    IReadOnlyList<EpochTiming> Epochs, double SteadyEpochSeconds, double SteadyExamplesPerSecond, double BestEpochSeconds, double BestExamplesPerSecond,
    double FirstEpochSeconds, double SteadyCpuSecondsPerEpoch)
{
    public static TrainingTiming From(IReadOnlyList<EpochTiming> epochs)
    {
        var steady = epochs.Count > 1 ? epochs.Skip(1).ToList() : epochs.ToList();
        var best = steady.MaxBy(e => e.ExamplesPerSecond)!;
        return new TrainingTiming(epochs, Stats.Median(steady.Select(e => e.Seconds)), Stats.Median(steady.Select(e => e.ExamplesPerSecond)),
            best.Seconds, best.ExamplesPerSecond, epochs[0].Seconds, Stats.Median(steady.Select(e => e.CpuSeconds)));
    }
}

/// <summary>Fit through the ML.NET pipeline: the trainer's own per-epoch metrics plus the whole call's wall time.</summary>
/// <param name="Timing">From <c>LeNetBnEpochMetrics</c> (Options.EpochEnded).</param>
/// <param name="TotalSeconds">Wall time of <c>estimator.Fit(data)</c>: reading the IDataView, building the network, every epoch, final checks.</param>
/// <param name="OutsideEpochsSeconds">TotalSeconds minus the epochs' wall times: mostly reading the IDataView.</param>
/// <param name="FinalLoss">Mean training loss of the last epoch.</param>
/// <param name="FinalTrainAccuracyDuringTraining">Training accuracy of the last epoch, as predicted during training (train mode).</param>
internal sealed record FitResult(TrainingTiming Timing, double TotalSeconds, double OutsideEpochsSeconds, double FinalLoss, double FinalTrainAccuracyDuringTraining);

/// <summary>The raw TorchSharp loop on the same data.</summary>
/// <param name="Timing">Its epoch timings.</param>
/// <param name="TestAccuracy">Test accuracy of the raw loop's network (eval mode), to see that both loops trained the same model.</param>
/// <param name="MaxBatchNormStateDifference">Largest |difference| between the raw network's and Fit's BN gamma, beta and moving statistics.</param>
internal sealed record RawResult(TrainingTiming Timing, double TestAccuracy, double MaxBatchNormStateDifference);

/// <summary>Batched Transform: rows per second through model.Transform and a cursor reading Score.</summary>
internal sealed record TransformResult(int Rows, IReadOnlyList<double> PassRowsPerSecond, double MedianRowsPerSecond);

/// <summary>PredictionEngine latency over single predictions, in microseconds.</summary>
internal sealed record LatencyResult(int Count, int WarmUp, double P50Microseconds, double P99Microseconds, double MeanMicroseconds, double MaxMicroseconds);

/// <summary>Accuracy from mlContext.MulticlassClassification.Evaluate.</summary>
internal sealed record AccuracyResult(double Train, double Test, double TestMacroAccuracy, double TestLogLoss);

/// <summary>Peak memory of one phase: process peak RSS (VmHWM) and, on CUDA, device memory in use (NVML, device-wide).</summary>
internal sealed record PhaseMemory(string Phase, double? PeakRssMiB, double? GpuPeakUsedMiB);

/// <summary>Everything measured for one BN kind.</summary>
/// <param name="BatchNorm">The BN kind.</param>
/// <param name="Fit">Fit through ML.NET.</param>
/// <param name="Raw">The raw TorchSharp loop.</param>
/// <param name="FitOverRaw">Fit's examples/s ÷ the raw loop's, steady medians.</param>
/// <param name="FitOverRawBest">The same from the fastest steady epoch of each.</param>
/// <param name="FitOverRawCpu">Raw loop's CPU seconds per steady epoch ÷ Fit's (above 1: Fit did the epoch with less CPU time).</param>
/// <param name="Transform">Batched Transform throughput.</param>
/// <param name="PredictionEngine">Single-prediction latency.</param>
/// <param name="Accuracy">Train and test accuracy of Fit's model.</param>
/// <param name="Folding">Prediction with BN folded against unfolded, same run; null without BN (BatchNormKind.None).</param>
/// <param name="Memory">Peak memory per phase.</param>
internal sealed record KindResult(
    BatchNormKind BatchNorm, FitResult Fit, RawResult Raw, double FitOverRaw, double FitOverRawBest, double FitOverRawCpu, TransformResult Transform, LatencyResult PredictionEngine,
    AccuracyResult Accuracy, FoldResult? Folding, IReadOnlyList<PhaseMemory> Memory);

/// <summary>
/// One prediction operation timed on the unfolded model and on its folded copy in the same run: medians over the
/// alternating runs of the seconds per operation, by the wall clock and by the measuring thread's CPU clock (null
/// where there is none), and the same-run ratios.
/// </summary>
/// <param name="Operation">What was timed, e.g. "network forward, batch 1".</param>
/// <param name="RowsPerOperation">Images per operation (rows/s = this ÷ seconds per operation).</param>
/// <param name="UnfoldedSeconds">Wall seconds per operation, unfolded model.</param>
/// <param name="FoldedSeconds">Wall seconds per operation, folded model.</param>
/// <param name="UnfoldedThreadCpuSeconds">The measuring thread's CPU seconds per operation, unfolded model.</param>
/// <param name="FoldedThreadCpuSeconds">The measuring thread's CPU seconds per operation, folded model.</param>
internal sealed record FoldMeasurement(string Operation, int RowsPerOperation, double UnfoldedSeconds, double FoldedSeconds,
    double? UnfoldedThreadCpuSeconds, double? FoldedThreadCpuSeconds)
{
    /// <summary>Folded ÷ unfolded speed (operations per second; unfolded ÷ folded seconds): above 1, folding is faster.</summary>
    public double FoldedOverUnfolded => UnfoldedSeconds / FoldedSeconds;

    /// <summary>The same by the measuring thread's CPU time.</summary>
    public double? FoldedOverUnfoldedThreadCpu => UnfoldedThreadCpuSeconds / FoldedThreadCpuSeconds;
}

/// <summary>BN folding for one kind.</summary>
/// <param name="MaxScoreDifference">Largest |Score difference| of the folded model from the unfolded one over the test set.</param>
/// <param name="Runs">Timed runs per operation and model (after one warm-up run of each).</param>
/// <param name="MinSecondsPerRun">Each run repeats its operation for at least this long.</param>
/// <param name="Measurements">Network forward (batch 1 and the Transform batch), batched Transform, PredictionEngine.Predict.</param>
internal sealed record FoldResult(double MaxScoreDifference, int Runs, double MinSecondsPerRun, IReadOnlyList<FoldMeasurement> Measurements);

/// <summary>The targets of the issue, and whether this run meets them.</summary>
internal sealed record TargetCheck(string Target, double Required, double? Measured, bool? Met, string Note);

/// <summary>The whole report.</summary>
internal sealed record BenchmarkReport(
    MachineFacts Machine, object Settings, DataFacts Data, IReadOnlyList<KindResult> Results, double? ScratchOverBuiltIn, double? ScratchOverBuiltInBest,
    double? ScratchOverBuiltInCpu,
    IReadOnlyList<TargetCheck> Targets, double? ProcessPeakRssMiB, double? ProcessGpuPeakUsedMiB, string GpuMemoryNote, double TotalSeconds);

/// <summary>What was trained and tested on.</summary>
internal sealed record DataFacts(string Directory, string? Source, int TrainRows, int TestRows);

/// <summary>Small statistics.</summary>
internal static class Stats
{
    public static double Median(IEnumerable<double> values) => Percentile(values, 0.5);

    /// <summary>Linear interpolation between closest ranks (numpy's default).</summary>
    public static double Percentile(IEnumerable<double> values, double p)
    {
        var sorted = values.Order().ToArray();
        if (sorted.Length == 0) return double.NaN;
        double rank = p * (sorted.Length - 1);
        int low = (int)Math.Floor(rank), high = (int)Math.Ceiling(rank);
        return sorted[low] + (sorted[high] - sorted[low]) * (rank - low);
    }
}
