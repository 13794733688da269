// Fashion-MNIST with LeNet-BN, the Dive into Deep Learning way, through ML.NET:
// download → train (10 epochs, batch 256, SGD lr 1.0) → evaluate → inspect BN → save → reload → predict.
using System.CommandLine;
using System.Diagnostics;
using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetBn;
using MlNetBn.Data;
using MlNetBn.Modules;
using MlNetBn.Training;

var epochs = new Option<int>("--epochs") { Description = "Training epochs.", DefaultValueFactory = _ => LeNetBnTrainer.Defaults.Epochs };
var trainPerClass = new Option<int?>("--train-per-class") { Description = "Train on the first N images of each class (default: all 6,000)." };
var testPerClass = new Option<int?>("--test-per-class") { Description = "Evaluate on the first N test images of each class (default: all 1,000)." };
var batchNorm = new Option<BatchNormKind>("--batch-norm") { Description = "Scratch (the seed), BuiltIn or None.", DefaultValueFactory = _ => BatchNormKind.Scratch };
var schedule = new Option<LearningRateSchedule>("--schedule") { Description = "Learning-rate schedule: Constant (d2l), Cosine or StepDecay.", DefaultValueFactory = _ => LearningRateSchedule.Constant };
var validationFraction = new Option<double>("--validation-fraction") { Description = "Hold out this fraction of the training images for validation (0: none).", DefaultValueFactory = _ => 0 };
var restoreBest = new Option<bool>("--restore-best") { Description = "Keep the epoch with the best validation accuracy (needs --validation-fraction)." };
var seed = new Option<int>("--seed") { Description = "Seed for initialization and shuffling.", DefaultValueFactory = _ => 1 };
var dataDir = new Option<string?>("--data-dir") { Description = $"Where Fashion-MNIST is cached (default: ${FashionMnist.DataDirectoryEnvironmentVariable} or {FashionMnist.DefaultDirectory})." };
var modelPath = new Option<string>("--model") { Description = "Where to save the model zip.", DefaultValueFactory = _ => "lenet-bn-fashion-mnist.zip" };

var root = new RootCommand("Train LeNet with batch normalization on Fashion-MNIST through ML.NET and TorchSharp.")
{
    epochs, trainPerClass, testPerClass, batchNorm, schedule, validationFraction, restoreBest, seed, dataDir, modelPath,
};
root.SetAction(async (parse, cancel) =>
{
    var directory = await FashionMnist.DownloadAsync(parse.GetValue(dataDir), Console.WriteLine, cancel);
    var mlContext = new MLContext(seed: parse.GetValue(seed));
    var train = mlContext.Data.LoadFashionMnist(FashionMnistSplit.Train, directory, countPerClass: parse.GetValue(trainPerClass));
    var test = mlContext.Data.LoadFashionMnist(FashionMnistSplit.Test, directory, countPerClass: parse.GetValue(testPerClass));

    mlContext.Log += (_, e) =>
    {
        // Our trainer's own lines (device choice, summary, restored epoch); epoch lines come from the callback below.
        if (e.Kind is Microsoft.ML.Runtime.ChannelMessageKind.Info or Microsoft.ML.Runtime.ChannelMessageKind.Warning
            && e.Source.StartsWith(nameof(LeNetBnTrainer), StringComparison.Ordinal)
            && !e.RawMessage.StartsWith("epoch ", StringComparison.Ordinal) && !e.RawMessage.StartsWith("Channel ", StringComparison.Ordinal))
            Console.WriteLine($"  {e.RawMessage}");
    };
    var options = new LeNetBnTrainer.Options
    {
        Epochs = parse.GetValue(epochs),
        BatchNorm = parse.GetValue(batchNorm),
        LearningRateSchedule = parse.GetValue(schedule),
        ValidationFraction = parse.GetValue(validationFraction),
        RestoreBestEpoch = parse.GetValue(restoreBest),
        Seed = parse.GetValue(seed),
        EpochEnded = m => Console.WriteLine($"  {m}"),
        CancellationToken = cancel,
    };
    var pipeline = mlContext.MulticlassClassification.Trainers.LeNetBn(options)
        .Append(mlContext.Transforms.Conversion.MapKeyToValue("PredictedClass", "PredictedLabel"));

    Console.WriteLine($"Training on {train.GetRowCount():N0} images, testing on {test.GetRowCount():N0}.");
    var clock = Stopwatch.StartNew();
    using var chain = pipeline.Fit(train);
    Console.WriteLine($"Trained in {clock.Elapsed.TotalSeconds:F1} s.");

    var metrics = mlContext.MulticlassClassification.Evaluate(chain.Transform(test));
    Console.WriteLine($"Test accuracy {metrics.MicroAccuracy:F4}, macro accuracy {metrics.MacroAccuracy:F4}, log-loss {metrics.LogLoss:F4}");
    Console.WriteLine(metrics.ConfusionMatrix.GetFormattedConfusionTable());

    var lenet = (LeNetBnTransformer)chain.First();
    var first = lenet.GetBatchNormStates().FirstOrDefault();
    if (first is not null)
    {
        Console.WriteLine($"First BN layer ({first.Name}) gamma: [{string.Join(", ", first.Gamma.Select(v => v.ToString("F4")))}]");
        Console.WriteLine($"First BN layer ({first.Name}) beta:  [{string.Join(", ", first.Beta.Select(v => v.ToString("F4")))}]");
    }

    string path = Path.GetFullPath(parse.GetValue(modelPath)!);
    mlContext.Model.Save(chain, train.Schema, path);
    Console.WriteLine($"Saved {path} ({new FileInfo(path).Length / 1024.0:F0} KiB).");

    var reloaded = new MLContext().Model.Load(path, out _);
    var engine = mlContext.Model.CreatePredictionEngine<FashionImage, FashionPrediction>(reloaded);
    Console.WriteLine("Reloaded; predictions on the first test images:");
    foreach (var image in mlContext.Data.CreateEnumerable<FashionImage>(test, reuseRowObject: false).Take(5))
    {
        var prediction = engine.Predict(image);
        Console.WriteLine($"  predicted {prediction.PredictedClass,-12} ({prediction.Score.Max():P1})  actual {FashionMnist.ClassNames[(int)image.Label - 1]}");
    }
    (reloaded as IDisposable)?.Dispose();
    return 0;
});
return await root.Parse(args).InvokeAsync();

/// <summary>A test image as the prediction engine reads it.</summary>
internal sealed class FashionImage
{
    [KeyType(10)]
    public uint Label { get; set; }

    [VectorType(784)]
    public float[] Features { get; set; } = [];
}

/// <summary>What the reloaded model returns.</summary>
internal sealed class FashionPrediction
{
    public string PredictedClass { get; set; } = "";

    public float[] Score { get; set; } = [];
}
