using System.Diagnostics;
using Microsoft.ML.Runtime;
using MlNetBn.Modules;
using MlNetBn.Transform;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetBn.Training;

/// <summary>
/// The minibatch SGD loop: seeded shuffling every epoch, one dispose scope per step, metrics accumulated on the
/// device (one host synchronization per epoch), validation in eval mode, the best epoch kept and early stopping,
/// checkpoints and resuming from one, cancellation between steps, and a check that nothing non-finite reaches
/// the model.
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

    /// <summary>
    /// Trains a network (fresh, or starting from <paramref name="initialModel"/>'s weights, or continuing a
    /// checkpoint) and returns it in eval mode, with the per-epoch history of the whole run.
    /// </summary>
    public (LeNetBnNetwork Network, IReadOnlyList<LeNetBnEpochMetrics> History) Run(LeNetBnArchitecture architecture, TrainingSet train,
        TrainingSet? validation, int seed, LeNetBnTransformer? initialModel, CheckpointPlan? checkpoints, Action throwIfCancelled)
    {
        var network = new LeNetBnNetwork(architecture, seed);
        try
        {
            network.to(_device);
            initialModel?.CopyWeightsTo(network);
            var history = Train(network, train, validation, seed, checkpoints, throwIfCancelled);
            network.eval();
            return (network, history);
        }
        catch
        {
            network.Dispose();
            throw;
        }
    }

    private List<LeNetBnEpochMetrics> Train(LeNetBnNetwork network, TrainingSet train, TrainingSet? validation, int seed,
        CheckpointPlan? checkpoints, Action throwIfCancelled)
    {
        var o = _options;
        bool hasBatchNorm = o.BatchNorm != BatchNormKind.None;

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

        // Early stopping watches its metric; RestoreBestEpoch alone keeps the best validation accuracy.
        var best = o.EarlyStopping is { } rule ? new BestEpoch(rule.Metric, rule.MinDelta)
            : o.RestoreBestEpoch ? new BestEpoch(EarlyStoppingMetric.ValidationAccuracy, 0) : null;
        var history = new List<LeNetBnEpochMetrics>();
        var run = new RunState();
        try
        {
            if (checkpoints?.Resume is { } resume)
                Restore(resume, network, optimizer, shuffle, order, history, best, run);

            for (int epoch = history.Count; epoch < o.Epochs && run.Stop == TrainingStop.None; epoch++)
            {
                var clock = Stopwatch.StartNew();
                double rate = LearningRateSchedules.RateAt(o.LearningRateSchedule, o.LearningRate, epoch, o.Epochs, o.StepDecayEpochs, o.StepDecayFactor);
                foreach (var group in optimizer.ParamGroups) group.LearningRate = rate;
                shuffle.Shuffle(order);
                var (meanLoss, trainAccuracy) = TrainEpoch(network, optimizer, x, y, order, usable, run, throwIfCancelled);
                double trainSeconds = clock.Elapsed.TotalSeconds;
                if (!double.IsFinite(meanLoss))
                    throw new InvalidOperationException(
                        $"Training diverged in epoch {epoch + 1}: the loss became {meanLoss}. Lower LearningRate (now {o.LearningRate}) or check the features' scale; no model was produced.");

                double? validationLoss = null, validationAccuracy = null;
                if (validationRows is not null)
                    (validationLoss, validationAccuracy) = Evaluate(network, validationX ?? x, validationY ?? y, validationRows, throwIfCancelled);
                var metrics = new LeNetBnEpochMetrics(epoch + 1, o.Epochs, meanLoss, trainAccuracy, validationLoss, validationAccuracy,
                    rate, usable / trainSeconds, clock.Elapsed);
                history.Add(metrics);
                _channel.Info(MessageSensitivity.None, metrics.ToString());
                o.EpochEnded?.Invoke(metrics);

                if (best is not null && best.Offer(metrics))
                {
                    DisposeAll(run.BestWeights);
                    run.BestWeights = Snapshot(network);
                }
                if (o.EarlyStopping is { } stopping && metrics.Epoch - best!.Epoch >= stopping.Patience)
                {
                    run.Stop = TrainingStop.EarlyStopping;
                    _channel.Info(MessageSensitivity.None,
                        $"Early stopping after epoch {metrics.Epoch}: no improvement over {best} by more than {stopping.MinDelta:G} in {stopping.Patience} epoch(s).");
                }
                else if (o.StopTraining?.Invoke(metrics) == true)
                {
                    run.Stop = TrainingStop.Callback;
                    _channel.Info(MessageSensitivity.None, $"Stopping after epoch {metrics.Epoch}: StopTraining asked to.");
                }

                if (checkpoints is not null && (metrics.Epoch % checkpoints.EveryEpochs == 0 || metrics.Epoch == o.Epochs || run.Stop != TrainingStop.None))
                    WriteCheckpoint(checkpoints, network, optimizer, order, seed, history, best, run);
            }

            if (run.BestWeights is not null && best!.Epoch != history.Count)
            {
                using (NewDisposeScope())
                    network.load_state_dict(run.BestWeights);
                _channel.Info(MessageSensitivity.None, $"Restored the weights of the best epoch: {best}.");
            }
        }
        finally
        {
            DisposeAll(run.BestWeights);
        }

        EnsureFinite(network);
        return history;
    }

    /// <summary>What changes over a run besides the network, the optimizer and the shuffled order.</summary>
    private sealed class RunState
    {
        public int Steps;
        public TrainingStop Stop;
        public Dictionary<string, Tensor>? BestWeights;
    }

    /// <summary>One pass over the shuffled rows in train mode; returns the mean loss and the accuracy of its batches.</summary>
    private (double Loss, double Accuracy) TrainEpoch(LeNetBnNetwork network, TorchSharp.Modules.SGD optimizer, Tensor x, Tensor y, long[] order,
        int usable, RunState run, Action throwIfCancelled)
    {
        int batchSize = _options.BatchSize;
        network.train();
        using var permutation = tensor(order, device: _device);
        using var lossSum = zeros(1, ScalarType.Float64, _device);
        using var correct = zeros(1, ScalarType.Int64, _device);
        for (int start = 0; start < usable; start += batchSize)
        {
            throwIfCancelled();
            using var step = NewDisposeScope();
            int size = Math.Min(batchSize, usable - start);
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
            _options.StepEnded?.Invoke(++run.Steps);
        }
        return (lossSum.item<double>() / usable, (double)correct.item<long>() / usable);
    }

    /// <summary>
    /// Puts the run where the checkpoint left it: weights and BN statistics, momentum buffers, the shuffling RNG
    /// (replayed: <see cref="Random"/>'s state cannot be saved, so the checkpoint stores the permutation's hash and
    /// the replay must reproduce it), the best epoch and its weights, the history.
    /// </summary>
    private void Restore(CheckpointFolder.Loaded resume, LeNetBnNetwork network, TorchSharp.Modules.SGD optimizer, Random shuffle, long[] order,
        List<LeNetBnEpochMetrics> history, BestEpoch? best, RunState run)
    {
        var state = resume.State;
        resume.Model.CopyWeightsTo(network);
        // TorchSharp puts each momentum buffer on its parameter's device.
        using (var reader = new BinaryReader(new MemoryStream(state.OptimizerState, writable: false)))
            optimizer.load_state_dict(reader);
        for (int epoch = 0; epoch < state.EpochsDone; epoch++)
            shuffle.Shuffle(order);
        if (!TrainingState.HashOrder(order).AsSpan().SequenceEqual(state.OrderHash))
            throw new InvalidOperationException(
                $"The checkpoint '{resume.Path}' cannot be continued exactly: replaying {state.EpochsDone} shuffles with seed {state.Seed} gives another row order "
                + "than the run that wrote it (a .NET whose System.Random differs). Fine-tune from its model instead: Fit(data, model).");
        history.AddRange(state.History);
        run.Steps = state.StepsDone;
        run.Stop = state.Stop;
        if (best is not null && state.BestEpoch > 0)
        {
            best.Restore(state.BestEpoch, state.BestValue);
            run.BestWeights = ReadSnapshot(network.Architecture, state.BestWeights, resume.Path);
        }
        _channel.Info(MessageSensitivity.None,
            $"Resumed from '{resume.Path}': {state.EpochsDone} of {_options.Epochs} epochs done"
            + (state.Stop != TrainingStop.None ? $", training had stopped ({state.Stop})" : "") + ".");
    }

    private void WriteCheckpoint(CheckpointPlan plan, LeNetBnNetwork network, TorchSharp.Modules.SGD optimizer, long[] order, int seed,
        List<LeNetBnEpochMetrics> history, BestEpoch? best, RunState run)
    {
        var clock = Stopwatch.StartNew();
        using var optimizerBytes = new MemoryStream();
        using (var writer = new BinaryWriter(optimizerBytes, System.Text.Encoding.UTF8, leaveOpen: true))
            optimizer.save_state_dict(writer);
        var state = new TrainingState
        {
            Options = plan.Options,
            DataFingerprint = plan.DataFingerprint,
            TrainingRows = plan.TrainingRows,
            ValidationRows = plan.ValidationRows,
            Seed = seed,
            EpochsDone = history.Count,
            StepsDone = run.Steps,
            OrderHash = TrainingState.HashOrder(order),
            Stop = run.Stop,
            BestEpoch = run.BestWeights is null ? 0 : best!.Epoch,
            BestValue = run.BestWeights is null ? 0 : best!.Value,
            BestWeights = run.BestWeights is null ? [] : WriteSnapshot(run.BestWeights),
            OptimizerState = optimizerBytes.ToArray(),
            History = history,
        };
        string path = plan.Folder.Write(state, stream => plan.SaveModel(network, stream), plan.Keep, plan.StageReached);
        _channel.Info(MessageSensitivity.None, $"Checkpoint after epoch {state.EpochsDone}: {path} ({new FileInfo(path).Length / 1024.0:N0} KiB, {clock.Elapsed.TotalMilliseconds:N0} ms).");
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

    private static byte[] WriteSnapshot(Dictionary<string, Tensor> weights)
    {
        using var bytes = new MemoryStream();
        using (var writer = new BinaryWriter(bytes))
            ModelWeights.Write(writer, weights);
        return bytes.ToArray();
    }

    private Dictionary<string, Tensor> ReadSnapshot(LeNetBnArchitecture architecture, byte[] bytes, string checkpoint)
    {
        using var holder = new LeNetBnNetwork(architecture);
        using (var reader = new BinaryReader(new MemoryStream(bytes, writable: false)))
            ModelWeights.Read(reader, holder, $"{checkpoint}: best weights");
        holder.to(_device);
        return Snapshot(holder);
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
