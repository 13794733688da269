// Trains LeNet-BN for one epoch on a few Fashion-MNIST images, saves the model zip, loads it in a new MLContext
// and predicts, printing key=value lines that Tests/Packaging/ConsumerAppChecks checks (built through the package by
// PackageTests, through project references by ProjectReferenceTests).
// Usage: ConsumerApp <fashion-mnist directory> <model zip path>
using System.Globalization;
using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetBn;
using MlNetBn.Data;
using MlNetBn.Training;

string dataDirectory = args[0];
string modelPath = args[1];
CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;

var mlContext = new MLContext(seed: 1);
IDataView train = mlContext.Data.LoadFashionMnist(FashionMnistSplit.Train, dataDirectory, countPerClass: 4);
IDataView test = mlContext.Data.LoadFashionMnist(FashionMnistSplit.Test, dataDirectory, countPerClass: 1);

var options = new LeNetBnTrainer.Options { Epochs = 1, BatchSize = 8, Seed = 1, Device = DeviceKind.Cpu };
var pipeline = mlContext.MulticlassClassification.Trainers.LeNetBn(options)
    .Append(mlContext.Transforms.Conversion.MapKeyToValue("PredictedClass", "PredictedLabel"));
using var model = pipeline.Fit(train);
Prediction[] trained = mlContext.Data.CreateEnumerable<Prediction>(model.Transform(test), reuseRowObject: false).ToArray();

mlContext.Model.Save(model, train.Schema, modelPath);
var loadContext = new MLContext();
ITransformer loaded = loadContext.Model.Load(modelPath, out _);
Prediction[] reloaded = loadContext.Data.CreateEnumerable<Prediction>(loaded.Transform(test), reuseRowObject: false).ToArray();
var engine = loadContext.Model.CreatePredictionEngine<Image, Prediction>(loaded);
Prediction[] single = loadContext.Data.CreateEnumerable<Image>(test, reuseRowObject: false).Select(engine.Predict).ToArray();

Console.WriteLine($"train_rows={train.GetRowCount()}");
Console.WriteLine($"test_rows={trained.Length}");
Console.WriteLine($"epochs_trained={((LeNetBnTransformer)model.First()).TrainingHistory.Count}");
Console.WriteLine($"max_score_difference_after_reload={trained.Zip(reloaded).Max(p => p.First.Score.Zip(p.Second.Score).Max(s => Math.Abs(s.First - s.Second))):R}");
Console.WriteLine($"max_score_difference_prediction_engine={reloaded.Zip(single).Max(p => p.First.Score.Zip(p.Second.Score).Max(s => Math.Abs(s.First - s.Second))):R}");
Console.WriteLine($"score_sums={string.Join(',', reloaded.Select(p => p.Score.Sum().ToString("F4")))}");
Console.WriteLine($"predicted={string.Join(',', single.Select(p => p.PredictedClass))}");
Console.WriteLine($"model_bytes={new FileInfo(modelPath).Length}");
// Which native glue the process loaded (Linux): the path tells the test it is the copy from this app's output.
if (File.Exists("/proc/self/maps"))
{
    string? glue = File.ReadLines("/proc/self/maps").Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries))
        .Where(f => f.Length >= 6 && f[5].EndsWith("/libLibTorchSharp.so", StringComparison.Ordinal)).Select(f => f[5]).FirstOrDefault();
    Console.WriteLine($"loaded_libLibTorchSharp={glue}");
}

/// <summary>An input row, as the prediction engine reads it.</summary>
internal sealed class Image
{
    [KeyType(10)]
    public uint Label { get; set; }

    [VectorType(784)]
    public float[] Features { get; set; } = [];
}

/// <summary>An output row of the model.</summary>
internal sealed class Prediction
{
    public string PredictedClass { get; set; } = "";

    public float[] Score { get; set; } = [];
}
