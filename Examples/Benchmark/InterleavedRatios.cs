using Microsoft.ML;
using MlNetBn.Data;
using MlNetBn.Modules;
using MlNetBn.Training;
using static TorchSharp.torch;

namespace MlNetBn.Examples.Benchmark;

/// <summary>
/// The two ratios of the targets (Fit ÷ raw loop, scratch ÷ built-in BN) measured on a machine shared with other
/// work: one epoch of each contender in turn, round after round (two epochs each, the second compared, by wall time and by the process's CPU time), so that a change in the machine's load falls on
/// neighbours alike, and the ratio of each round is taken between neighbours (median over rounds). Per-epoch cost is
/// linear in the number of images, so a subset gives the same ratios as the full set in a fraction of the time.
/// </summary>
internal static class InterleavedRatios
{
    public static async Task<int> RunAsync(DeviceKind deviceKind, int rounds, int? trainCount, int seed, string? dataDir, CancellationToken cancel)
    {
        string directory = await Data.EnsureFashionMnistAsync(dataDir, cancel);
        var device = BenchmarkRun.ResolveDevice(deviceKind);
        var mlContext = new MLContext(seed: seed);
        var train = Data.Load(mlContext, FashionMnistSplit.Train, directory, trainCount);
        var (x, y) = Data.ReadAll(train);
        Console.WriteLine($"Interleaved ratios on {device}, {y.Length:N0} images, {rounds} rounds (+1 warm-up) of one epoch per contender; load average {LoadAverage.Read()}.");
        using var raw = new RawTrainingLoop(x, y, FashionMnist.FeatureCount, device);
        var kinds = new[] { BatchNormKind.BuiltIn, BatchNormKind.Scratch };
        var fitOverRaw = kinds.ToDictionary(k => k, _ => new List<double>());
        var fitOverRawCpu = kinds.ToDictionary(k => k, _ => new List<double>());
        var scratchOverBuiltIn = new List<double>();
        var scratchOverBuiltInCpu = new List<double>();
        for (int round = -1; round < rounds; round++)
        {
            var fitRate = new Dictionary<BatchNormKind, double>();
            var fitCpu = new Dictionary<BatchNormKind, double>();
            foreach (var kind in kinds)
            {
                // Two epochs each; the second is compared (the first of a Fit also reads the IDataView).
                var architecture = new LeNetBnArchitecture { BatchNorm = kind, NumClasses = FashionMnist.ClassCount };
                var (network, epochs) = raw.Train(architecture, 2, LeNetBnTrainer.Defaults.BatchSize, LeNetBnTrainer.Defaults.LearningRate, seed);
                network.Dispose();
                var rawEpoch = epochs[1];
                double rate = 0, cpu = 0, mark = 0;
                var options = new LeNetBnTrainer.Options
                {
                    BatchNorm = kind, Epochs = 2, Seed = seed, Device = deviceKind, CancellationToken = cancel,
                    EpochEnded = m =>
                    {
                        double now = CpuClock.Now();
                        (rate, cpu, mark) = (m.ExamplesPerSecond, now - mark, now);
                    },
                };
                using (mlContext.MulticlassClassification.Trainers.LeNetBn(options).Fit(train)) { }
                fitRate[kind] = rate;
                fitCpu[kind] = cpu;
                if (round >= 0)
                {
                    fitOverRaw[kind].Add(rate / rawEpoch.ExamplesPerSecond);
                    fitOverRawCpu[kind].Add(rawEpoch.CpuSeconds / cpu);
                }
                Console.WriteLine($"  round {(round < 0 ? "warm-up" : (round + 1).ToString())}, {kind,-7}: raw {rawEpoch.ExamplesPerSecond,9:N0}  Fit {rate,9:N0} examples/s  Fit ÷ raw {rate / rawEpoch.ExamplesPerSecond:F3}; CPU s/epoch raw {rawEpoch.CpuSeconds:F2}  Fit {cpu:F2}  ratio {rawEpoch.CpuSeconds / cpu:F3}");
            }
            if (round >= 0)
            {
                scratchOverBuiltIn.Add(fitRate[BatchNormKind.Scratch] / fitRate[BatchNormKind.BuiltIn]);
                scratchOverBuiltInCpu.Add(fitCpu[BatchNormKind.BuiltIn] / fitCpu[BatchNormKind.Scratch]);
            }
        }
        static string List(List<double> values) => $"median {Stats.Median(values):F3} [{string.Join(", ", values.Select(r => r.ToString("F3")))}]";
        foreach (var kind in kinds)
            Console.WriteLine($"Fit ÷ raw ({kind}): wall {List(fitOverRaw[kind])}; CPU time {List(fitOverRawCpu[kind])}");
        Console.WriteLine($"Scratch ÷ built-in (Fit): wall {List(scratchOverBuiltIn)}; CPU time {List(scratchOverBuiltInCpu)}");
        Console.WriteLine($"Load average at the end: {LoadAverage.Read()}.");
        return 0;
    }
}
