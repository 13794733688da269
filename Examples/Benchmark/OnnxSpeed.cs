using System.Globalization;
using System.Text;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.OnnxRuntime;
using MlNetBn.Data;
using MlNetBn.Modules;
using MlNetBn.Training;

namespace MlNetBn.Examples.Benchmark;

/// <summary>
/// The same model predicting through ONNX Runtime (CPU) and through ML.NET + TorchSharp, in one process and one run
/// (docs/BENCHMARKS.md, "ONNX Runtime"): batched rows/s (ORT session.Run on batches of the transformer's prediction
/// batch size, against Transform over the test set) and single-image latency (ORT session.Run on one row, against
/// PredictionEngine.Predict). Each run repeats its operation for at least a minimum time; after one warm-up run of
/// each, the four contenders take turns round after round, in an order that alternates, so that drifting load falls
/// on all alike; medians over rounds are reported, with the load average at the start and the end.
/// </summary>
internal static class OnnxSpeed
{
    public static async Task<int> RunAsync(int rounds, double minSeconds, int? trainCount, int? testCount, int epochs, BatchNormKind batchNorm,
        int seed, string? dataDir, string outDir, CancellationToken cancel)
    {
        string directory = await Data.EnsureFashionMnistAsync(dataDir, cancel);
        var loadStart = LoadAverage.Read();
        var mlContext = new MLContext(seed: seed);
        var train = Data.Load(mlContext, FashionMnistSplit.Train, directory, trainCount);
        var test = Data.Load(mlContext, FashionMnistSplit.Test, directory, testCount);
        var (testX, _) = Data.ReadAll(test);
        int rows = testX.Length / FashionMnist.FeatureCount;

        var options = new LeNetBnTrainer.Options { BatchNorm = batchNorm, Epochs = epochs, Seed = seed, Device = DeviceKind.Cpu, CancellationToken = cancel };
        using var model = mlContext.MulticlassClassification.Trainers.LeNetBn(options).Fit(train);
        byte[] onnx = Export(mlContext, model);
        using var session = new InferenceSession(onnx);
        int batchRows = Math.Min(model.PredictionBatchSize, rows);
        double maxDifference = MaxScoreDifference(mlContext, model, test, session, testX, batchRows);
        Console.WriteLine($"ONNX Runtime {OrtEnv.Instance().GetVersionString()} against Transform and PredictionEngine ({batchNorm} BN, {epochs} epoch(s) on {train.GetRowCount():N0} images); " +
                          $"{rows:N0} test images; max |Score difference| {maxDifference:G3}; {rounds} rounds of at least {minSeconds} s per contender; load average {loadStart}.");

        var inputs = Data.Inputs(testX, 4096);
        var output = new ScoreOutput();
        int next = 0, nextOrt = 0;
        using var engine = mlContext.Model.CreatePredictionEngine<ImageInput, ScoreOutput>(model, new PredictionEngineOptions { OwnsTransformer = false });
        using var runOptions = new RunOptions();
        var contenders = new (string Name, int Rows, Func<BnFolding.Timing> Run)[]
        {
            ($"Transform, batches of {model.PredictionBatchSize:N0}", rows, () => BnFolding.PerOperation(() => BenchmarkRun.ReadScores(model, test), minSeconds)),
            ($"ONNX Runtime, batches of {batchRows:N0}", rows, () => BnFolding.PerOperation(() => RunBatches(session, runOptions, testX, batchRows), minSeconds)),
            ("PredictionEngine.Predict, one image", 1, () => BnFolding.PerOperation(() => engine.Predict(inputs[next++ % inputs.Length], ref output), minSeconds)),
            ("ONNX Runtime, one image", 1, () => BnFolding.PerOperation(() => RunOne(session, runOptions, inputs[nextOrt++ % inputs.Length].Features), minSeconds)),
        };
        var timings = contenders.Select(_ => new List<double>()).ToArray();
        foreach (var contender in contenders)
            contender.Run(); // warm-up
        for (int round = 0; round < rounds; round++)
        {
            var order = Enumerable.Range(0, contenders.Length);
            foreach (int i in round % 2 == 0 ? order : order.Reverse())
                timings[i].Add(contenders[i].Run().Wall);
        }
        var loadEnd = LoadAverage.Read();

        var c = CultureInfo.InvariantCulture;
        var medians = timings.Select(t => Stats.Median(t)).ToArray();
        var text = new StringBuilder();
        text.AppendLine(string.Create(c, $"ONNX Runtime {OrtEnv.Instance().GetVersionString()} (CPU execution provider, default threads) against ML.NET + TorchSharp on the CPU ({Environment.ProcessorCount} logical cores), same model and run: {batchNorm} BN, {rows:N0} test images, {rounds} rounds, medians. Load average at start {loadStart}, at end {loadEnd}. Max |Score difference| ONNX Runtime vs Transform: {maxDifference:G3}."));
        text.AppendLine();
        text.AppendLine("| Operation | Time (median) | ONNX Runtime ÷ ML.NET speed |");
        text.AppendLine("|---|---:|---:|");
        for (int i = 0; i < contenders.Length; i++)
        {
            string ratio = i % 2 == 1 ? string.Create(c, $"{medians[i - 1] / medians[i]:F2}") : "";
            text.AppendLine($"| {contenders[i].Name} | {MarkdownReport.Duration(medians[i], contenders[i].Rows)} | {ratio} |");
        }
        Console.WriteLine();
        Console.Write(text);
        Directory.CreateDirectory(outDir);
        string path = Path.Combine(outDir, "onnx.md");
        File.WriteAllText(path, text.ToString());
        Console.WriteLine($"Written to {path}.{(loadStart?.OneMinute > Environment.ProcessorCount || loadEnd?.OneMinute > Environment.ProcessorCount ? " The load average exceeded the core count: the run is void; run benchmarks alone." : "")}");
        return 0;
    }

    /// <summary>The model alone (LeNet-BN first), exported with the test features as its only input.</summary>
    private static byte[] Export(MLContext mlContext, LeNetBnTransformer model)
    {
        var features = mlContext.Data.LoadFromEnumerable(Array.Empty<ImageInput>());
        using var stream = new MemoryStream();
        mlContext.Model.ConvertToOnnx(model, features, stream, "Score", "PredictedLabel");
        return stream.ToArray();
    }

    private static void RunBatches(InferenceSession session, RunOptions runOptions, float[] features, int batchRows)
    {
        int rows = features.Length / FashionMnist.FeatureCount;
        for (int start = 0; start < rows; start += batchRows)
        {
            int n = Math.Min(batchRows, rows - start);
            using var outputs = Run(session, runOptions, features.AsMemory(start * FashionMnist.FeatureCount, n * FashionMnist.FeatureCount), n);
        }
    }

    private static void RunOne(InferenceSession session, RunOptions runOptions, float[] features)
    {
        using var outputs = Run(session, runOptions, features, 1);
    }

    private static IDisposableReadOnlyCollection<OrtValue> Run(InferenceSession session, RunOptions runOptions, Memory<float> features, int rows)
    {
        using var input = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, features, [rows, FashionMnist.FeatureCount]);
        return session.Run(runOptions, ["Features"], [input], ["Score.output", "PredictedLabel.output"]);
    }

    private static double MaxScoreDifference(MLContext mlContext, LeNetBnTransformer model, IDataView test, InferenceSession session, float[] features, int batchRows)
    {
        var expected = mlContext.Data.CreateEnumerable<ScoreOutput>(model.Transform(test), reuseRowObject: false).SelectMany(p => p.Score).ToArray();
        using var runOptions = new RunOptions();
        var actual = new List<float>();
        int rows = features.Length / FashionMnist.FeatureCount;
        for (int start = 0; start < rows; start += batchRows)
        {
            int n = Math.Min(batchRows, rows - start);
            using var outputs = Run(session, runOptions, features.AsMemory(start * FashionMnist.FeatureCount, n * FashionMnist.FeatureCount), n);
            actual.AddRange(outputs[0].GetTensorDataAsSpan<float>().ToArray());
        }
        return expected.Zip(actual, (u, v) => Math.Abs((double)u - v)).DefaultIfEmpty().Max();
    }
}
