using System.Diagnostics;
using MlNetBn.Modules;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetBn.Examples.Benchmark;

/// <summary>
/// Where a training step's time goes, measured so that a busy machine does not bias the comparison: the BN kinds
/// (and the layers) take turns in short alternating chunks, and each round's ratio is taken between neighbours.
/// Reports the raw loop's step time per BN kind, and forward+backward of each BN layer alone at LeNet's shapes.
/// </summary>
internal static class StepProfile
{
    public static int Run(Device device, int rounds, int stepsPerChunk, int batchSize, int seed)
    {
        TorchNative.EnsureLoaded();
        Console.WriteLine($"Step profile on {device}, {torch.get_num_threads()} torch threads, batch {batchSize}, {rounds} rounds of {stepsPerChunk} steps per kind; load average {LoadAverage.Read()}.");
        var generator = new Generator((ulong)seed);
        using var x = rand([batchSize * 8, 784], generator: generator).to(device);
        using var y = randint(0, 10, [batchSize * 8], generator: generator).to(device);
        var kinds = new[] { BatchNormKind.BuiltIn, BatchNormKind.Scratch, BatchNormKind.None };
        var networks = kinds.ToDictionary(k => k, k => new LeNetBnNetwork(new LeNetBnArchitecture { BatchNorm = k }, seed));
        var optimizers = new Dictionary<BatchNormKind, optim.Optimizer>();
        foreach (var (kind, network) in networks)
        {
            network.to(device);
            network.train();
            optimizers[kind] = optim.SGD(network.parameters(), 0.1);
        }

        var stepMs = kinds.ToDictionary(k => k, _ => new List<double>());
        int batches = 8;
        for (int round = -1; round < rounds; round++)
        {
            foreach (var kind in kinds)
            {
                var network = networks[kind];
                var optimizer = optimizers[kind];
                RawTrainingLoop.Synchronize(device);
                var clock = Stopwatch.StartNew();
                for (int step = 0; step < stepsPerChunk; step++)
                {
                    using var scope = NewDisposeScope();
                    int start = step % batches * batchSize;
                    optimizer.zero_grad();
                    nn.functional.cross_entropy(network.forward(x.narrow(0, start, batchSize)), y.narrow(0, start, batchSize)).backward();
                    optimizer.step();
                }
                RawTrainingLoop.Synchronize(device);
                if (round >= 0) stepMs[kind].Add(clock.Elapsed.TotalMilliseconds / stepsPerChunk);
            }
        }
        Console.WriteLine("Training step (ms), median over rounds [min]:");
        foreach (var kind in kinds)
            Console.WriteLine($"  {kind,-8} {Stats.Median(stepMs[kind]),8:F2} [{stepMs[kind].Min():F2}]  examples/s {batchSize * 1000 / Stats.Median(stepMs[kind]),9:N0}");
        var paired = stepMs[BatchNormKind.BuiltIn].Zip(stepMs[BatchNormKind.Scratch], (b, s) => b / s).ToList();
        Console.WriteLine($"  scratch ÷ built-in examples/s: median of paired rounds {Stats.Median(paired):F3} (rounds: {string.Join(", ", paired.Select(r => r.ToString("F3")))})");
        var bnShare = kinds.Take(2).Select(k => Stats.Median(stepMs[k]) - Stats.Median(stepMs[BatchNormKind.None])).ToList();
        Console.WriteLine($"  step time attributable to BN (kind − no BN): built-in {bnShare[0]:F2} ms, scratch {bnShare[1]:F2} ms");
        foreach (var n in networks.Values) n.Dispose();
        foreach (var o in optimizers.Values) o.Dispose();

        ProfileLayers(device, rounds, stepsPerChunk * 4, batchSize, generator);
        return 0;
    }

    /// <summary>Forward + backward of one BN layer alone, at each of LeNet-BN's four BN inputs, scratch vs built-in.</summary>
    private static void ProfileLayers(Device device, int rounds, int reps, int batchSize, Generator generator)
    {
        Console.WriteLine("BN layer alone, forward + backward (µs), median over rounds, scratch vs built-in:");
        (string Name, long[] Shape)[] shapes =
        [
            ("bn1 N×6×24×24", [batchSize, 6, 24, 24]),
            ("bn2 N×16×8×8", [batchSize, 16, 8, 8]),
            ("bn3 N×120", [batchSize, 120]),
            ("bn4 N×84", [batchSize, 84]),
        ];
        foreach (var (name, shape) in shapes)
        {
            bool conv = shape.Length == 4;
            long features = shape[1];
            using nn.Module<Tensor, Tensor> scratch = conv ? new ScratchBatchNorm2d(features) : new ScratchBatchNorm1d(features);
            using nn.Module<Tensor, Tensor> builtIn = conv ? nn.BatchNorm2d(features, momentum: 0.1) : nn.BatchNorm1d(features, momentum: 0.1);
            scratch.to(device);
            builtIn.to(device);
            using var input = randn(shape, generator: generator).to(device).requires_grad_(true);
            using var upstream = randn(shape, generator: generator).to(device);
            var times = new Dictionary<string, List<double>> { ["scratch"] = [], ["built-in"] = [] };
            for (int round = -1; round < rounds; round++)
            {
                foreach (var (label, layer) in new[] { ("scratch", scratch), ("built-in", builtIn) })
                {
                    RawTrainingLoop.Synchronize(device);
                    var clock = Stopwatch.StartNew();
                    for (int i = 0; i < reps; i++)
                    {
                        using var scope = NewDisposeScope();
                        input.grad?.zero_();
                        layer.forward(input).backward([upstream]);
                    }
                    RawTrainingLoop.Synchronize(device);
                    if (round >= 0) times[label].Add(clock.Elapsed.TotalMicroseconds / reps);
                }
            }
            double s = Stats.Median(times["scratch"]), b = Stats.Median(times["built-in"]);
            Console.WriteLine($"  {name,-16} scratch {s,9:F0}  built-in {b,9:F0}  scratch ÷ built-in time {s / b:F2}");
        }
    }
}
