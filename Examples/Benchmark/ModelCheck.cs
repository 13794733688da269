using System.Text.Json;
using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetBn.Data;
using MlNetBn.Modules;
using MlNetBn.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetBn.Examples.Benchmark;

/// <summary>
/// Train on one device, load on the CPU: <see cref="Export"/> trains each BN kind briefly (on CUDA, normally), saves
/// the zip and records the model's own predictions on test images and its BN state; <see cref="Verify"/>, run in
/// another process (with CUDA hidden, or not), loads each zip and checks that the model lives on the CPU, that the
/// BN state is bit-for-bit the saved one, and that the predictions match.
/// </summary>
internal static class ModelCheck
{
    /// <summary>
    /// Largest difference allowed between a probability predicted on the training device and on the CPU. Both run
    /// float32 with TF32 off; the kernels still sum in different orders (cuDNN vs oneDNN), which moves probabilities
    /// by ~1e-6. A wrong or missing weight moves them by far more.
    /// </summary>
    private const double Tolerance = 1e-4;

    /// <summary>When TF32 could not be turned off on the training device: its 10-bit mantissas move probabilities by ~1e-3.</summary>
    private const double Tf32Tolerance = 5e-3;

    private sealed record Expected(
        BatchNormKind BatchNorm, string TrainedOn, int Rows, int Epochs, int TrainRows, bool? Tf32DisabledForPredictions,
        float[][] Scores, IReadOnlyList<BatchNormLayerState> BatchNormStates, string TorchNative);

    private sealed record Outcome(
        BatchNormKind BatchNorm, string TrainedOn, string LoadedOn, bool LoadedOnCpu, bool BatchNormStatesIdentical,
        double MaxProbabilityDifference, double Tolerance, int ArgmaxDisagreements, int Rows, bool Passed, string? Error);

    public static int Export(DeviceKind deviceKind, int epochs, int? trainCount, int seed, string directory, string dataDirectory, int rows,
        IReadOnlyList<BatchNormKind> kinds)
    {
        var native = TorchNative.EnsureLoaded();
        var device = BenchmarkRun.ResolveDevice(deviceKind);
        Directory.CreateDirectory(directory);
        var mlContext = new MLContext(seed: seed);
        var train = Data.Load(mlContext, FashionMnistSplit.Train, dataDirectory, trainCount);
        var test = Data.Load(mlContext, FashionMnistSplit.Test, dataDirectory, rows);
        int trainRows = checked((int)train.GetRowCount()!.Value);
        foreach (var kind in kinds)
        {
            var options = new LeNetBnTrainer.Options { BatchNorm = kind, Epochs = epochs, Seed = seed, Device = deviceKind };
            using var model = mlContext.MulticlassClassification.Trainers.LeNetBn(options).Fit(train);
            string zip = Path.Combine(directory, $"model-{kind}.zip");
            mlContext.Model.Save(model, train.Schema, zip);

            bool? tf32Off = null;
            if (device.type == DeviceType.CUDA)
            {
                // TF32 (on by default for cuDNN convolutions) rounds to 10-bit mantissas; the CPU has no such mode.
                // Turned off only now, after the zip is saved: these switches changed API after libtorch 2.9.
                try
                {
                    backends.cudnn.allow_tf32 = false;
                    backends.cuda.matmul.allow_tf32 = false;
                    tf32Off = true;
                }
                catch (Exception e) when (e is System.Runtime.InteropServices.ExternalException or EntryPointNotFoundException)
                {
                    Console.WriteLine($"Could not turn TF32 off ({e.Message}); the recorded predictions may differ from the CPU's by TF32 rounding.");
                    tf32Off = false;
                }
            }
            var expected = new Expected(kind, model.Device, rows, epochs, trainRows, tf32Off, Scores(model, test), model.GetBatchNormStates(), native.Description);
            File.WriteAllText(Path.Combine(directory, $"model-{kind}.expected.json"), JsonSerializer.Serialize(expected, BenchmarkRun.Json));
            Console.WriteLine($"{kind} BN: trained on {model.Device} ({epochs} epoch(s), {trainRows:N0} images), saved {zip} ({new FileInfo(zip).Length / 1024.0:F0} KiB) and its predictions on {rows} test images.");
        }
        return 0;
    }

    public static int Verify(string directory, string dataDirectory)
    {
        var files = Directory.Exists(directory) ? Directory.GetFiles(directory, "model-*.expected.json").Order().ToArray() : [];
        if (files.Length == 0)
        {
            Console.Error.WriteLine($"No model-*.expected.json in '{directory}': run export-model first.");
            return 2;
        }
        string? hidden = Environment.GetEnvironmentVariable("CUDA_VISIBLE_DEVICES");
        var native = TorchNative.EnsureLoaded();
        var outcomes = new List<Outcome>();
        foreach (var file in files)
        {
            var expected = JsonSerializer.Deserialize<Expected>(File.ReadAllText(file), BenchmarkRun.Json)
                ?? throw new InvalidDataException($"'{file}' is empty.");
            string zip = Path.Combine(directory, $"model-{expected.BatchNorm}.zip");
            try
            {
                outcomes.Add(VerifyOne(expected, zip, dataDirectory));
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                outcomes.Add(new Outcome(expected.BatchNorm, expected.TrainedOn, "?", false, false, double.NaN, double.NaN, -1, expected.Rows, false, e.ToString()));
            }
        }

        bool passed = outcomes.All(o => o.Passed);
        var report = new
        {
            Passed = passed,
            CudaVisibleDevices = hidden,
            TorchNative = native.Description,
            Outcomes = outcomes,
        };
        string name = hidden is "" ? "model-check-cuda-hidden.json" : "model-check.json";
        File.WriteAllText(Path.Combine(directory, name), JsonSerializer.Serialize(report, BenchmarkRun.Json));
        foreach (var o in outcomes)
        {
            Console.WriteLine($"{o.BatchNorm} BN: trained on {o.TrainedOn}, loaded on {o.LoadedOn}; BN state identical: {o.BatchNormStatesIdentical}; " +
                              $"max |Δp| {o.MaxProbabilityDifference:G3} over {o.Rows} images (≤ {o.Tolerance:G}), argmax disagreements {o.ArgmaxDisagreements} → {(o.Passed ? "PASS" : "FAIL")}");
            if (o.Error is not null) Console.WriteLine($"  error: {o.Error}");
        }
        Console.WriteLine($"model check (CUDA_VISIBLE_DEVICES={(hidden is null ? "unset" : $"'{hidden}'")}): {(passed ? "PASS" : "FAIL")}; wrote {Path.Combine(directory, name)}");
        return passed ? 0 : 1;
    }

    private static Outcome VerifyOne(Expected expected, string zip, string dataDirectory)
    {
        var mlContext = new MLContext(seed: 0);
        var loaded = mlContext.Model.Load(zip, out _);
        using var model = loaded as LeNetBnTransformer
            ?? throw new InvalidDataException($"'{zip}' holds a {loaded.GetType().Name}, not a LeNetBnTransformer.");
        var test = Data.Load(mlContext, FashionMnistSplit.Test, dataDirectory, expected.Rows);
        var scores = Scores(model, test);
        bool onCpu = string.Equals(model.Device, "cpu", StringComparison.OrdinalIgnoreCase);

        var states = model.GetBatchNormStates();
        bool identical = states.Count == expected.BatchNormStates.Count && states.Zip(expected.BatchNormStates).All(p =>
            p.First.Name == p.Second.Name && p.First.Gamma.SequenceEqual(p.Second.Gamma) && p.First.Beta.SequenceEqual(p.Second.Beta)
            && p.First.MovingMean.SequenceEqual(p.Second.MovingMean) && p.First.MovingVariance.SequenceEqual(p.Second.MovingVariance));

        if (scores.Length != expected.Scores.Length)
            throw new InvalidDataException($"{scores.Length} test rows scored here, {expected.Scores.Length} recorded.");
        double max = 0;
        int disagreements = 0;
        for (int i = 0; i < scores.Length; i++)
        {
            for (int c = 0; c < scores[i].Length; c++)
                max = Math.Max(max, Math.Abs(scores[i][c] - expected.Scores[i][c]));
            if (Argmax(scores[i]) != Argmax(expected.Scores[i])) disagreements++;
        }
        double tolerance = expected.Tf32DisabledForPredictions == false ? Tf32Tolerance : Tolerance;
        bool passed = onCpu && identical && max <= tolerance;
        return new Outcome(expected.BatchNorm, expected.TrainedOn, model.Device, onCpu, identical, max, tolerance, disagreements, scores.Length, passed, null);
    }

    /// <summary>The model's class probabilities for every row, through Transform.</summary>
    private static float[][] Scores(ITransformer model, IDataView data)
    {
        var scored = model.Transform(data);
        var column = scored.Schema["Score"];
        using var cursor = scored.GetRowCursor([column]);
        var get = cursor.GetGetter<VBuffer<float>>(column);
        VBuffer<float> value = default;
        var rows = new List<float[]>();
        while (cursor.MoveNext())
        {
            get(ref value);
            rows.Add(value.DenseValues().ToArray());
        }
        return [.. rows];
    }

    private static int Argmax(float[] values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++)
            if (values[i] > values[best]) best = i;
        return best;
    }
}
