using System.Globalization;
using System.Text;

namespace MlNetBn.Examples.Benchmark;

/// <summary>The human-readable side of a report: machine facts, the main table, BN folding, the targets.</summary>
internal static class MarkdownReport
{
    /// <summary>The report as markdown.</summary>
    public static string Write(BenchmarkReport report)
    {
        var c = CultureInfo.InvariantCulture;
        var m = report.Machine;
        var text = new StringBuilder();
        text.AppendLine($"### {(m.IsVoid ? "VOID: " : "")}LeNet-BN on Fashion-MNIST, {m.Device}, {m.DateUtc}").AppendLine();
        if (m.IsVoid)
            text.AppendLine(string.Create(c, $"**VOID: the 1-minute load average exceeded the {m.LogicalCores} logical cores ({m.LoadAverageStart?.OneMinute:F2} at the start, " +
                                             $"{m.LoadAverageEnd?.OneMinute:F2} at the end). Benchmarks run alone; these numbers do not count.**")).AppendLine();
        text.AppendLine($"- Machine: {m.CpuModel}, {m.LogicalCores} logical cores, {Format(m.MemoryGiB, "F1")} GiB; {m.Os}");
        if (m.GpuName is not null)
            text.AppendLine($"- GPU: {m.GpuName} (CUDA_VISIBLE_DEVICES={m.CudaVisibleDevices ?? "unset"}; TF32 left at libtorch's defaults)");
        text.AppendLine($"- Software: {m.DotNet}; TorchSharp {m.TorchSharp} (built against libtorch {m.LibTorchBuiltAgainst}); {m.LibTorchRuntime ?? "libtorch from the application's libtorch-cpu package"}; {m.TorchThreads} torch threads (OMP_WAIT_POLICY={m.OmpWaitPolicy ?? "unset"}); benchmark {m.Benchmark}");
        text.AppendLine($"- Load average (1/5/15 min): {m.LoadAverageStart?.ToString() ?? "?"} at the start, {m.LoadAverageEnd?.ToString() ?? "?"} at the end, " +
                        $"on {m.LogicalCores} logical cores ({(m.IsVoid ? "the 1-minute figure exceeded the cores: **void**" : m.LoadAverageStart is null || m.LoadAverageEnd is null ? "not checked: no /proc/loadavg" : "within the cores")})");
        text.AppendLine($"- Data: {report.Data.TrainRows:N0} training, {report.Data.TestRows:N0} test images ({report.Data.Source ?? report.Data.Directory})");
        text.AppendLine($"- Recipe: d2l's defaults (batch 256, SGD lr 1.0, sigmoid, average pooling), {FirstKindEpochs(report)} epochs per BN kind for Fit and for the raw loop; " +
                        "examples/s and epoch time: median of the epochs after the first, and (after the slash) the fastest of them; the first epoch pays one-time costs and is shown apart; " +
                        "\"CPU time\": the same ratio from the process's CPU seconds per steady epoch, steadier on a busy machine");
        text.AppendLine();
        text.AppendLine("| BN | Fit examples/s | Fit epoch (s) | Fit 1st epoch (s) | Fit total (s) | Raw examples/s | Raw epoch (s) | Fit ÷ raw | Fit ÷ raw, CPU time | Transform rows/s | PredictionEngine p50 / p99 (µs) | Train acc | Test acc | Peak RSS fit (MiB) | GPU peak fit (MiB) |");
        text.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var r in report.Results)
        {
            var fitMemory = r.Memory.FirstOrDefault(p => p.Phase == "fit");
            text.AppendLine(string.Create(c,
                $"| {r.BatchNorm} | {r.Fit.Timing.SteadyExamplesPerSecond:N0} / {r.Fit.Timing.BestExamplesPerSecond:N0} | {r.Fit.Timing.SteadyEpochSeconds:F2} / {r.Fit.Timing.BestEpochSeconds:F2} " +
                $"| {r.Fit.Timing.FirstEpochSeconds:F2} | {r.Fit.TotalSeconds:F2} " +
                $"| {r.Raw.Timing.SteadyExamplesPerSecond:N0} / {r.Raw.Timing.BestExamplesPerSecond:N0} | {r.Raw.Timing.SteadyEpochSeconds:F2} / {r.Raw.Timing.BestEpochSeconds:F2} | {r.FitOverRaw:F3} / {r.FitOverRawBest:F3} | {r.FitOverRawCpu:F3} " +
                $"| {r.Transform.MedianRowsPerSecond:N0} | {r.PredictionEngine.P50Microseconds:F0} / {r.PredictionEngine.P99Microseconds:F0} " +
                $"| {r.Accuracy.Train:F4} | {r.Accuracy.Test:F4} | {Format(fitMemory?.PeakRssMiB, "F0")} | {Format(fitMemory?.GpuPeakUsedMiB, "F0")} |"));
        }
        text.AppendLine();
        WriteFolding(text, report.Results);
        if (report.ScratchOverBuiltIn is { } ratio)
            text.AppendLine(string.Create(c, $"Scratch ÷ built-in BN (Fit examples/s): {ratio:F3} (medians), {report.ScratchOverBuiltInBest:F3} (fastest epochs), {report.ScratchOverBuiltInCpu:F3} (CPU time per epoch).")).AppendLine();
        text.AppendLine("| Target | Required | Measured | Met |");
        text.AppendLine("|---|---:|---:|---|");
        foreach (var t in report.Targets)
            text.AppendLine(string.Create(c, $"| {t.Target} | {t.Required:G} | {Format(t.Measured, t.Required >= 1000 ? "N0" : "F3")} | {(t.Met is null ? "n/a" : t.Met.Value ? "yes" : "no")} |"));
        text.AppendLine();
        text.AppendLine(string.Create(c, $"Process peak RSS {Format(report.ProcessPeakRssMiB, "F0")} MiB; GPU peak {Format(report.ProcessGpuPeakUsedMiB, "F0")} MiB. {report.GpuMemoryNote}"));
        text.AppendLine();
        text.AppendLine("Per phase (peak RSS MiB / GPU MiB): " + string.Join("; ", report.Results.Select(r =>
            $"{r.BatchNorm}: " + string.Join(", ", r.Memory.Select(p => $"{p.Phase} {Format(p.PeakRssMiB, "F0")}/{Format(p.GpuPeakUsedMiB, "F0")}")))));
        text.AppendLine();
        text.AppendLine("Sanity (same seed, same batches): " + string.Join("; ", report.Results.Select(r => string.Create(c,
            $"{r.BatchNorm}: raw loop's test acc {r.Raw.TestAccuracy:F4} vs Fit's {r.Accuracy.Test:F4}, max |BN state difference| {r.Raw.MaxBatchNormStateDifference:G3}"))) + ".");
        text.AppendLine(string.Create(c, $"Run time {report.TotalSeconds:F0} s."));
        return text.ToString();
    }

    private static void WriteFolding(StringBuilder text, IReadOnlyList<KindResult> results)
    {
        var c = CultureInfo.InvariantCulture;
        var folded = results.Where(r => r.Folding is not null).ToList();
        if (folded.Count == 0)
            return;
        var first = folded[0].Folding!;
        text.AppendLine(string.Create(c, $"BN folded into the conv/linear layers vs unfolded, same run: time per operation, median of {first.Runs} runs of at least {first.MinSecondsPerRun} s each, ") +
                        "unfolded and folded runs alternating in both orders; folded ÷ unfolded is the speed ratio (above 1: folding is faster); " +
                        "thread CPU: the measuring thread's CPU time (the whole work only with --threads 1).");
        text.AppendLine();
        text.AppendLine("| BN | Operation | Unfolded, wall | Folded, wall | Folded ÷ unfolded, wall | Unfolded, thread CPU | Folded, thread CPU | Folded ÷ unfolded, thread CPU |");
        text.AppendLine("|---|---|---:|---:|---:|---:|---:|---:|");
        foreach (var r in folded)
            foreach (var f in r.Folding!.Measurements)
                text.AppendLine(string.Create(c,
                    $"| {r.BatchNorm} | {f.Operation} | {Duration(f.UnfoldedSeconds, f.RowsPerOperation)} | {Duration(f.FoldedSeconds, f.RowsPerOperation)} | {f.FoldedOverUnfolded:F3} " +
                    $"| {Duration(f.UnfoldedThreadCpuSeconds, f.RowsPerOperation)} | {Duration(f.FoldedThreadCpuSeconds, f.RowsPerOperation)} | {Format(f.FoldedOverUnfoldedThreadCpu, "F3")} |"));
        text.AppendLine();
        text.AppendLine("Folded scores vs unfolded, max |difference| over the test set: " +
                        string.Join("; ", folded.Select(r => string.Create(c, $"{r.BatchNorm} {r.Folding!.MaxScoreDifference:G3}"))) + ".");
        text.AppendLine();
    }

    /// <summary>A time per operation in µs, ms or s; with the rows/s it makes when an operation covers more than one row.</summary>
    public static string Duration(double? seconds, int rows = 1)
    {
        if (seconds is not { } s)
            return "–";
        var c = CultureInfo.InvariantCulture;
        string time = s < 1e-3 ? string.Create(c, $"{s * 1e6:N1} µs") : s < 1 ? string.Create(c, $"{s * 1e3:N2} ms") : string.Create(c, $"{s:N2} s");
        return rows > 1 ? string.Create(c, $"{time} ({rows / s:N0} rows/s)") : time;
    }

    private static int FirstKindEpochs(BenchmarkReport report) => report.Results.FirstOrDefault()?.Fit.Timing.Epochs.Count ?? 0;

    private static string Format(double? value, string format) =>
        value is { } v ? v.ToString(format, CultureInfo.InvariantCulture) : "–";
}
