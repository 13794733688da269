using Microsoft.ML;
using MlNetBn.Data;
using MlNetBn.Modules;
using MlNetBn.Training;
using static TorchSharp.torch;

namespace MlNetBn.Examples.Benchmark;

/// <summary>
/// The two ratios of the targets (Fit ÷ raw loop, scratch ÷ built-in BN) measured on a machine shared with other
/// work: one epoch of each contender in turn, round after round, so that a change in the machine's load falls on
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
        Console.WriteLine($"Interleaved ratios on {device}, {y.Length:N0} images, {rounds} rounds (+1 warm-up) of one epoch per contender; load average {MachineFacts.LoadAverage()}.");
        using var raw = new RawTrainingLoop(x, y, FashionMnist.FeatureCount, device);
        var kinds = new[] { BatchNormKind.BuiltIn, BatchNormKind.Scratch };
        var fitOverRaw = kinds.ToDictionary(k => k, _ => new List<double>());
        var scratchOverBuiltIn = new List<double>();
        for (int round = -1; round < rounds; round++)
        {
            var fitRate = new Dictionary<BatchNormKind, double>();
            foreach (var kind in kinds)
            {
                var architecture = new LeNetBnArchitecture { BatchNorm = kind, NumClasses = FashionMnist.ClassCount };
                var (network, epochs) = raw.Train(architecture, 1, LeNetBnTrainer.Defaults.BatchSize, LeNetBnTrainer.Defaults.LearningRate, seed);
                network.Dispose();
                double rawRate = epochs[0].ExamplesPerSecond;
                double rate = 0;
                var options = new LeNetBnTrainer.Options { BatchNorm = kind, Epochs = 1, Seed = seed, Device = deviceKind, EpochEnded = m => rate = m.ExamplesPerSecond, CancellationToken = cancel };
                using (mlContext.MulticlassClassification.Trainers.LeNetBn(options).Fit(train)) { }
                fitRate[kind] = rate;
                if (round >= 0) fitOverRaw[kind].Add(rate / rawRate);
                Console.WriteLine($"  round {(round < 0 ? "warm-up" : (round + 1).ToString())}, {kind,-7}: raw {rawRate,9:N0}  Fit {rate,9:N0} examples/s  Fit ÷ raw {rate / rawRate:F3}");
            }
            if (round >= 0) scratchOverBuiltIn.Add(fitRate[BatchNormKind.Scratch] / fitRate[BatchNormKind.BuiltIn]);
        }
        foreach (var kind in kinds)
            Console.WriteLine($"Fit ÷ raw ({kind}): median {Stats.Median(fitOverRaw[kind]):F3} [{string.Join(", ", fitOverRaw[kind].Select(r => r.ToString("F3")))}]");
        Console.WriteLine($"Scratch ÷ built-in (Fit): median {Stats.Median(scratchOverBuiltIn):F3} [{string.Join(", ", scratchOverBuiltIn.Select(r => r.ToString("F3")))}]");
        Console.WriteLine($"Load average at the end: {MachineFacts.LoadAverage()}.");
        return 0;
    }
}
