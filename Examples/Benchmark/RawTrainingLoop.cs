using System.Diagnostics;
using MlNetBn.Modules;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetBn.Examples.Benchmark;

/// <summary>
/// The reference the ML.NET Fit is measured against: the same network class (seeded the same), the same data as one
/// device tensor, the same seeded shuffling and index_select batching, plain SGD — and nothing else: no metrics,
/// no validation, no checks. One host synchronization per epoch so that epoch times are real on CUDA too.
/// </summary>
internal sealed class RawTrainingLoop : IDisposable
{
    private readonly Device _device;
    private readonly Tensor _x;
    private readonly Tensor _y;
    private readonly int _count;

    /// <summary>Puts the training data on the device once, as the trainer does.</summary>
    public RawTrainingLoop(float[] features, long[] labels, int featureSize, Device device)
    {
        _device = device;
        _count = labels.Length;
        _x = tensor(features, [_count, featureSize], device: device);
        _y = tensor(labels, device: device);
    }

    /// <summary>Trains a fresh network for <paramref name="epochs"/> epochs; returns it (on the device) and the epoch timings.</summary>
    public (LeNetBnNetwork Network, List<EpochTiming> Epochs) Train(LeNetBnArchitecture architecture, int epochs, int batchSize, double learningRate, int seed)
    {
        var network = new LeNetBnNetwork(architecture, seed);
        network.to(_device);
        network.train();
        using var optimizer = optim.SGD(network.parameters(), learningRate);
        var shuffle = new Random(seed);
        var order = Enumerable.Range(0, _count).Select(i => (long)i).ToArray();
        // The trainer's rule, so both loops take the same steps: a last batch of one gives BN no variance.
        int usable = architecture.BatchNorm != BatchNormKind.None && _count % batchSize == 1 ? _count - 1 : _count;
        var timings = new List<EpochTiming>(epochs);
        for (int epoch = 0; epoch < epochs; epoch++)
        {
            var clock = Stopwatch.StartNew();
            double cpu = CpuClock.Now();
            shuffle.Shuffle(order);
            using (var permutation = tensor(order, device: _device))
            {
                for (int start = 0; start < usable; start += batchSize)
                {
                    using var step = NewDisposeScope();
                    int size = Math.Min(batchSize, usable - start);
                    var index = permutation.narrow(0, start, size);
                    optimizer.zero_grad();
                    var loss = nn.functional.cross_entropy(network.forward(_x.index_select(0, index)), _y.index_select(0, index));
                    loss.backward();
                    optimizer.step();
                }
            }
            Synchronize(_device);
            double seconds = clock.Elapsed.TotalSeconds;
            timings.Add(new EpochTiming(epoch + 1, seconds, usable / seconds, CpuClock.Now() - cpu));
        }
        network.eval();
        return (network, timings);
    }

    /// <summary>A few untimed steps, so that one-time costs (kernel selection, first allocations, JIT) are paid before timing.</summary>
    public void WarmUp(LeNetBnArchitecture architecture, int batchSize, int steps, int seed)
    {
        using var network = new LeNetBnNetwork(architecture, seed);
        network.to(_device);
        using var optimizer = optim.SGD(network.parameters(), 0.1);
        for (int i = 0; i < steps; i++)
        {
            using var scope = NewDisposeScope();
            int size = Math.Min(batchSize, _count);
            optimizer.zero_grad();
            nn.functional.cross_entropy(network.forward(_x.narrow(0, 0, size)), _y.narrow(0, 0, size)).backward();
            optimizer.step();
        }
        Synchronize(_device);
    }

    /// <summary>Accuracy of <paramref name="network"/> (eval mode) on data given as arrays.</summary>
    public static double Accuracy(LeNetBnNetwork network, float[] features, long[] labels, int featureSize, Device device)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        network.eval();
        long correct = 0;
        const int chunk = 2048;
        for (int start = 0; start < labels.Length; start += chunk)
        {
            using var inner = NewDisposeScope();
            int size = Math.Min(chunk, labels.Length - start);
            var x = tensor(features.AsSpan(start * featureSize, size * featureSize).ToArray(), [size, featureSize], device: device);
            var y = tensor(labels.AsSpan(start, size).ToArray(), device: device);
            correct += network.forward(x).argmax(1).eq(y).sum().item<long>();
        }
        return (double)correct / labels.Length;
    }

    /// <summary>Waits for queued CUDA work; nothing to do on the CPU.</summary>
    public static void Synchronize(Device device)
    {
        if (device.type == DeviceType.CUDA)
            cuda.synchronize(device);
    }

    public void Dispose()
    {
        _x.Dispose();
        _y.Dispose();
    }
}
