using System.Diagnostics;
using Microsoft.ML.Runtime;
using MlNetBn.Modules;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetBn.Training;

/// <summary>
/// The minibatch SGD loop: seeded shuffling every epoch, one dispose scope per step, metrics accumulated on the
/// device (one host synchronization per epoch), validation in eval mode, best-epoch restore, cancellation between
/// steps, and a check that nothing non-finite reaches the model.
/// </summary>
internal sealed class LeNetBnTrainingLoop
{
    private const int EvaluationBatchSize = 2048;

    private readonly LeNetBnTrainer.Options _options;
    private readonly IChannel _channel;
    private readonly Device _device;

    public LeNetBnTrainingLoop(LeNetBnTrainer.Options options, IChannel channel, Device device)
    {
        _options = options;
        _channel = channel;
        _device = device;
    }

    /// <summary>Trains a fresh network and returns it in eval mode, with the per-epoch history.</summary>
    public (LeNetBnNetwork Network, IReadOnlyList<LeNetBnEpochMetrics> History) Run(
        LeNetBnArchitecture architecture, TrainingSet train, TrainingSet? validation, int seed, Action throwIfCancelled)
    {
        var network = new LeNetBnNetwork(architecture, seed);
        try
        {
            network.to(_device);
            var history = Train(network, train, validation, seed, throwIfCancelled);
            network.eval();
            return (network, history);
        }
        catch
        {
            network.Dispose();
            throw;
        }
    }

    private List<LeNetBnEpochMetrics> Train(LeNetBnNetwork network, TrainingSet train, TrainingSet? validation, int seed, Action throwIfCancelled)
    {
        var o = _options;
        bool hasBatchNorm = o.BatchNorm != BatchNormKind.None;
        var history = new List<LeNetBnEpochMetrics>();

        // The whole training set lives in one tensor on the device (on the CPU, the very tensor Fit read the data
        // into); batches are index_select gathers of the set's rows from it. A validation split shares it.
        using var x = OnDevice(train.Features);
        using var y = tensor(train.Labels, device: _device);
        bool sharedValidation = validation is not null && ReferenceEquals(validation.Features, train.Features);
        using var validationX = validation is null || sharedValidation ? null : OnDevice(validation.Features);
        using var validationY = validation is null || sharedValidation ? null : tensor(validation.Labels, device: _device);
        using var validationRows = validation is null ? null : tensor(validation.Rows, device: _device);

        using var optimizer = optim.SGD(network.parameters(), o.LearningRate, momentum: o.SgdMomentum, weight_decay: o.WeightDecay);
        var shuffle = new Random(seed);
        var order = (long[])train.Rows.Clone();

        // A trailing batch of one example gives BN a single value per feature (undefined variance): drop it.
        int usable = hasBatchNorm && train.Count % o.BatchSize == 1 ? train.Count - 1 : train.Count;
        if (usable < train.Count)
            _channel.Info(MessageSensitivity.None, "Each epoch drops its last shuffled example: a batch of one gives batch normalization no variance.");

        int steps = 0;
        Dictionary<string, Tensor>? best = null;
        double bestAccuracy = double.NegativeInfinity;
        int bestEpoch = 0;
        try
        {
            for (int epoch = 0; epoch < o.Epochs; epoch++)
            {
                var clock = Stopwatch.StartNew();
                double rate = LearningRateSchedules.RateAt(o.LearningRateSchedule, o.LearningRate, epoch, o.Epochs, o.StepDecayEpochs, o.StepDecayFactor);
                foreach (var group in optimizer.ParamGroups) group.LearningRate = rate;

                shuffle.Shuffle(order);
                network.train();
                using var permutation = tensor(order, device: _device);
                using var lossSum = zeros(1, ScalarType.Float64, _device);
                using var correct = zeros(1, ScalarType.Int64, _device);
                for (int start = 0; start < usable; start += o.BatchSize)
                {
                    throwIfCancelled();
                    using var step = NewDisposeScope();
                    int size = Math.Min(o.BatchSize, usable - start);
                    var index = permutation.narrow(0, start, size);
                    var batchX = x.index_select(0, index);
                    var batchY = y.index_select(0, index);
                    optimizer.zero_grad();
                    var logits = network.forward(batchX);
                    var loss = nn.functional.cross_entropy(logits, batchY);
                    loss.backward();
                    optimizer.step();
                    // Accumulated on the device: no host synchronization per step.
                    using (no_grad())
                    {
                        lossSum.add_(loss.detach().to(ScalarType.Float64) * size);
                        correct.add_(logits.argmax(1).eq(batchY).sum());
                    }
                    o.StepEnded?.Invoke(++steps);
                }
                double meanLoss = lossSum.item<double>() / usable;
                double trainAccuracy = (double)correct.item<long>() / usable;
                double trainSeconds = clock.Elapsed.TotalSeconds;
                if (!double.IsFinite(meanLoss))
                    throw new InvalidOperationException(
                        $"Training diverged in epoch {epoch + 1}: the loss became {meanLoss}. Lower LearningRate (now {o.LearningRate}) or check the features' scale; no model was produced.");

                double? validationLoss = null, validationAccuracy = null;
                if (validationRows is not null)
                {
                    (validationLoss, validationAccuracy) = Evaluate(network, validationX ?? x, validationY ?? y, validationRows!, throwIfCancelled);
                    if (o.RestoreBestEpoch && validationAccuracy > bestAccuracy)
                    {
                        bestAccuracy = validationAccuracy.Value;
                        bestEpoch = epoch + 1;
                        DisposeAll(best);
                        best = Snapshot(network);
                    }
                }
                var metrics = new LeNetBnEpochMetrics(epoch + 1, o.Epochs, meanLoss, trainAccuracy, validationLoss, validationAccuracy,
                    rate, usable / trainSeconds, clock.Elapsed);
                history.Add(metrics);
                _channel.Info(MessageSensitivity.None, metrics.ToString());
                o.EpochEnded?.Invoke(metrics);
            }

            if (best is not null && bestEpoch != o.Epochs)
            {
                using (NewDisposeScope())
                    network.load_state_dict(best);
                _channel.Info(MessageSensitivity.None, $"Restored the weights of epoch {bestEpoch} (best validation accuracy {bestAccuracy:F3}).");
            }
        }
        finally
        {
            DisposeAll(best);
        }

        EnsureFinite(network);
        return history;
    }

    /// <summary>Mean loss and accuracy over the given rows in eval mode, in large no-grad batches.</summary>
    private (double Loss, double Accuracy) Evaluate(LeNetBnNetwork network, Tensor x, Tensor y, Tensor rows, Action throwIfCancelled)
    {
        network.eval();
        long count = rows.shape[0];
        using var lossSum = zeros(1, ScalarType.Float64, _device);
        using var correct = zeros(1, ScalarType.Int64, _device);
        using (no_grad())
        {
            for (long start = 0; start < count; start += EvaluationBatchSize)
            {
                throwIfCancelled();
                using var scope = NewDisposeScope();
                long size = Math.Min(EvaluationBatchSize, count - start);
                var index = rows.narrow(0, start, size);
                var logits = network.forward(x.index_select(0, index));
                var labels = y.index_select(0, index);
                lossSum.add_(nn.functional.cross_entropy(logits, labels, reduction: nn.Reduction.Sum).to(ScalarType.Float64));
                correct.add_(logits.argmax(1).eq(labels).sum());
            }
        }
        network.train();
        return (lossSum.item<double>() / count, (double)correct.item<long>() / count);
    }

    /// <summary>A handle to <paramref name="features"/> on the training device: a copy on a GPU, the same storage on the CPU.</summary>
    private Tensor OnDevice(Tensor features) => features.to(_device);

    private static Dictionary<string, Tensor> Snapshot(LeNetBnNetwork network)
    {
        // The scope takes the detached views; only the clones outlive it (disposed by DisposeAll).
        using var scope = NewDisposeScope();
        var copy = new Dictionary<string, Tensor>();
        foreach (var (name, value) in network.state_dict())
            copy[name] = value.detach().clone().DetachFromDisposeScope();
        return copy;
    }

    private static void DisposeAll(Dictionary<string, Tensor>? tensors)
    {
        if (tensors is null) return;
        foreach (var t in tensors.Values) t.Dispose();
    }

    /// <summary>Refuses to hand out a model with NaN or Infinity in any parameter or buffer.</summary>
    private static void EnsureFinite(LeNetBnNetwork network)
    {
        using var scope = NewDisposeScope();
        foreach (var (name, value) in network.state_dict())
        {
            if (value.is_floating_point() && !value.isfinite().all().item<bool>())
                throw new InvalidOperationException($"Training produced non-finite values in '{name}'; no model was produced. Lower LearningRate or check the features' scale.");
        }
    }
}
