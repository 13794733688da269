using System.Diagnostics;
using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetBn.Data;

namespace MlNetBn.Tests.Stress;

/// <summary>
/// Runs each phase long enough that a leak per step, per prediction or per model would show, and compares the
/// process RSS after the phase's warm-up with its end, as it is and after a full GC and malloc_trim. Target: at
/// most <c>--max-growth-mb</c> per phase after GC and trim, and no more live tensors than after warm-up.
/// </summary>
internal sealed class MemoryCheck(string directory, int trainPerClass, int epochs, int predictions, int modelCycles, int fitCycles, double maxGrowthMb)
{
    private readonly MLContext _mlContext = new(seed: 1);
    private readonly List<Result> _results = [];

    /// <summary>A phase's readings after its warm-up and at its end, as the process has them and after a full GC.</summary>
    private sealed record Result(string Phase, MemoryReading Warm, MemoryReading WarmCollected, MemoryReading End, MemoryReading EndCollected, TimeSpan Time);

    public int Run()
    {
        Console.WriteLine($"Native memory check: {Environment.ProcessorCount} cores, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}, data {directory}");
        Console.WriteLine($"start:                   {MemoryReading.Now()}");
        var train = _mlContext.Data.LoadFashionMnist(FashionMnistSplit.Train, directory, countPerClass: trainPerClass);
        using var model = LongFit(train);
        var images = StressData.Cycled(_mlContext, directory, predictions);
        Predictions(model, images);
        Transform(model, images);
        SaveLoadCycles(model, train);
        FitCycles(train);

        Console.WriteLine();
        Console.WriteLine("| Phase | RSS after warm-up → end (MB) | Growth (MB) | After GC and trim: RSS warm-up → end (MB) | Growth (MB) | Managed heap after GC (MB) | Live tensors | Time (s) |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|---:|");
        bool pass = true;
        foreach (var r in _results)
        {
            double growth = r.End.RssMb - r.Warm.RssMb, collectedGrowth = r.EndCollected.RssMb - r.WarmCollected.RssMb;
            // Judged after GC and trim: the raw figure also moves with garbage the GC has not collected yet and
            // with blocks malloc keeps for reuse, by tens of MB either way, without anything leaking.
            pass &= collectedGrowth <= maxGrowthMb && r.End.LiveTensors <= r.Warm.LiveTensors;
            Console.WriteLine($"| {r.Phase} | {r.Warm.RssMb:F1} → {r.End.RssMb:F1} | {growth:+0.0;-0.0} | {r.WarmCollected.RssMb:F1} → {r.EndCollected.RssMb:F1} | {collectedGrowth:+0.0;-0.0} | " +
                $"{r.WarmCollected.ManagedMb:F1} → {r.EndCollected.ManagedMb:F1} | {r.Warm.LiveTensors} → {r.End.LiveTensors} | {r.Time.TotalSeconds:F0} |");
        }
        Console.WriteLine();
        Console.WriteLine($"Peak RSS {MemoryReading.Now().PeakRssMb:F1} MB. Target: in every phase, RSS after GC and trim grows ≤ {maxGrowthMb} MB after warm-up, and no tensor stays live: {(pass ? "PASS" : "FAIL")}.");
        return pass ? 0 : 1;
    }

    /// <summary>Several epochs of minibatch SGD with validation and best-epoch snapshots; warm-up is epoch 1.</summary>
    private LeNetBnTransformer LongFit(IDataView train)
    {
        MemoryReading warm = default, warmCollected = default, end = default, endCollected = default;
        var options = new LeNetBnTrainer.Options
        {
            Epochs = epochs,
            BatchSize = 32, // many steps per epoch: a leak per step shows
            LearningRate = 0.5,
            ValidationFraction = 0.1,
            RestoreBestEpoch = true,
            Seed = 1,
            Device = Training.DeviceKind.Cpu,
            EpochEnded = m =>
            {
                var (reading, collected) = (MemoryReading.Now(), MemoryReading.AfterFullCollection());
                if (m.Epoch == 1) (warm, warmCollected) = (reading, collected);
                (end, endCollected) = (reading, collected); // inside Fit: the training set is still held, as at warm-up
                Console.WriteLine($"  epoch {m.Epoch,2}/{m.Epochs}:          {reading} | after GC and trim: RSS {collected.RssMb,6:F1} MB, managed {collected.ManagedMb,5:F1} MB");
            },
        };
        Console.WriteLine($"Fit, {epochs} epochs of {trainPerClass * 9:N0} images in batches of 32 (10% held out for validation, best-epoch snapshots on):");
        var clock = Stopwatch.StartNew();
        var model = _mlContext.MulticlassClassification.Trainers.LeNetBn(options).Fit(train);
        _results.Add(new($"Fit: epochs 2–{epochs} of {trainPerClass * 9:N0} images", warm, warmCollected, end, endCollected, clock.Elapsed));
        Console.WriteLine($"  after Fit:           {MemoryReading.Now()} (the training set and the optimizer released)");
        return model;
    }

    /// <summary>One PredictionEngine, one row at a time; warm-up is the first tenth.</summary>
    private void Predictions(LeNetBnTransformer model, List<Image> images)
    {
        Console.WriteLine($"PredictionEngine, {images.Count:N0} predictions:");
        using var engine = _mlContext.Model.CreatePredictionEngine<Image, Prediction>(model, new PredictionEngineOptions { OwnsTransformer = false });
        var prediction = new Prediction();
        _results.Add(Phase($"PredictionEngine: {images.Count:N0} predictions", images.Count, i => engine.Predict(images[i], ref prediction)));
    }

    /// <summary>Transform over as many rows, read through a cursor; warm-up is the first tenth.</summary>
    private void Transform(LeNetBnTransformer model, List<Image> images)
    {
        Console.WriteLine($"Transform, {images.Count:N0} rows in batches of {model.PredictionBatchSize}:");
        var scored = model.Transform(_mlContext.Data.LoadFromEnumerable(images));
        var score = scored.Schema["Score"];
        using var cursor = scored.GetRowCursor([score]);
        var getter = cursor.GetGetter<VBuffer<float>>(score);
        VBuffer<float> value = default;
        _results.Add(Phase($"Transform: {images.Count:N0} rows", images.Count, _ =>
        {
            cursor.MoveNext();
            getter(ref value);
        }));
    }

    /// <summary>Save to memory, load, score 1,000 rows, dispose; warm-up is the first tenth of the cycles.</summary>
    private void SaveLoadCycles(LeNetBnTransformer model, IDataView train)
    {
        int cycles = modelCycles;
        Console.WriteLine($"Save + Load + Transform + Dispose, {cycles} cycles:");
        var test = _mlContext.Data.LoadFashionMnist(FashionMnistSplit.Test, directory);
        _results.Add(Phase($"Save + Load + Dispose: {cycles} models", cycles, cycle =>
        {
            using var stream = new MemoryStream();
            _mlContext.Model.Save(model, train.Schema, stream);
            stream.Position = 0;
            var loaded = _mlContext.Model.Load(stream, out _);
            _ = loaded.Transform(test).GetColumn<VBuffer<float>>("Score").Count();
            ((IDisposable)loaded).Dispose();
        }));
    }

    /// <summary>One-epoch Fits, each model disposed; warm-up is the first two.</summary>
    private void FitCycles(IDataView train)
    {
        int cycles = fitCycles;
        Console.WriteLine($"Fit (1 epoch) + Dispose, {cycles} cycles:");
        var options = new LeNetBnTrainer.Options { Epochs = 1, BatchSize = 64, LearningRate = 0.5, Seed = 2, Device = Training.DeviceKind.Cpu };
        _results.Add(Phase($"Fit + Dispose: {cycles} models", cycles, cycle =>
        {
            using var fitted = _mlContext.MulticlassClassification.Trainers.LeNetBn(options).Fit(train);
        }, warmUp: 2));
    }

    /// <summary>Runs <paramref name="step"/> <paramref name="count"/> times, printing ten readings, and reads memory after warm-up and at the end.</summary>
    private static Result Phase(string name, int count, Action<int> step, int? warmUp = null)
    {
        int warmAt = warmUp ?? Math.Max(1, count / 10);
        int every = Math.Max(1, count / 10);
        MemoryReading warm = default, warmCollected = default;
        var work = TimeSpan.Zero;
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < count; i++)
        {
            step(i);
            int done = i + 1;
            if (done != warmAt && done % every != 0 && done != count)
                continue;
            work += clock.Elapsed;
            var (reading, collected) = (MemoryReading.Now(), MemoryReading.AfterFullCollection());
            if (done == warmAt) (warm, warmCollected) = (reading, collected);
            Console.WriteLine($"  {done,7:N0}/{count:N0}{(done == warmAt ? " (warm)" : "       ")}: {reading} | after GC and trim: RSS {collected.RssMb,6:F1} MB, managed {collected.ManagedMb,5:F1} MB");
            if (done == count)
                return new(name, warm, warmCollected, reading, collected, work);
            clock.Restart();
        }
        throw new InvalidOperationException("unreachable: the last step always reads");
    }
}
