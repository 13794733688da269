// Fashion-MNIST with LeNet-BN, the Dive into Deep Learning way, through ML.NET:
// download → train (10 epochs, batch 256, SGD lr 1.0, test accuracy after every epoch) → evaluate → inspect BN
// → plot the curves → save → reload → predict. Spectre.Console draws the terminal output; when the output is
// redirected (CI logs, files) it writes plain text: no colours, no cursor movement, one line per epoch.
using System.CommandLine;
using System.Diagnostics;
using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetBn;
using MlNetBn.Data;
using MlNetBn.Examples.FashionMnist;
using MlNetBn.Modules;
using MlNetBn.Training;
using Spectre.Console;

var epochs = new Option<int>("--epochs") { Description = "Training epochs.", DefaultValueFactory = _ => LeNetBnTrainer.Defaults.Epochs };
var trainPerClass = new Option<int?>("--train-per-class") { Description = "Train on the first N images of each class (default: all 6,000)." };
var testPerClass = new Option<int?>("--test-per-class") { Description = "Evaluate on the first N test images of each class (default: all 1,000)." };
var batchNorm = new Option<BatchNormKind>("--batch-norm") { Description = "Scratch (the seed), BuiltIn or None.", DefaultValueFactory = _ => BatchNormKind.Scratch };
var schedule = new Option<LearningRateSchedule>("--schedule") { Description = "Learning-rate schedule: Constant (d2l), Cosine or StepDecay.", DefaultValueFactory = _ => LearningRateSchedule.Constant };
var learningRate = new Option<double>("--learning-rate") { Description = "SGD learning rate (d2l: 1.0).", DefaultValueFactory = _ => LeNetBnTrainer.Defaults.LearningRate };
var momentum = new Option<double>("--momentum") { Description = "SGD momentum (d2l: 0). The recommended recipe is --schedule Cosine --learning-rate 0.1 --momentum 0.9.", DefaultValueFactory = _ => 0 };
var validationFraction = new Option<double>("--validation-fraction")
{
    Description = "Hold out this fraction of the training images and report accuracy on them after every epoch (default 0: report test accuracy, as d2l does).",
    DefaultValueFactory = _ => 0,
};
var restoreBest = new Option<bool>("--restore-best") { Description = "Keep the epoch with the best validation accuracy (needs --validation-fraction)." };
var earlyStoppingPatience = new Option<int?>("--early-stopping-patience")
{
    Description = "Stop once validation loss has not improved for N epochs and keep the best epoch (needs --validation-fraction).",
};
var checkpointDir = new Option<string?>("--checkpoint-dir") { Description = "Write a checkpoint (a loadable model zip plus the training state) after every epoch into this folder." };
var resume = new Option<bool>("--resume") { Description = "Continue the run whose checkpoints are in --checkpoint-dir (after a crash or Ctrl+C)." };
var fineTune = new Option<string?>("--fine-tune") { Description = "Start from the weights of this model zip (saved by this example, or a checkpoint) instead of a fresh network." };
var seed = new Option<int>("--seed") { Description = "Seed for initialization and shuffling.", DefaultValueFactory = _ => 1 };
var dataDir = new Option<string?>("--data-dir") { Description = $"Where Fashion-MNIST is cached (default: ${FashionMnist.DataDirectoryEnvironmentVariable} or {FashionMnist.DefaultDirectory})." };
var modelPath = new Option<string>("--model") { Description = "Where to save the model zip.", DefaultValueFactory = _ => "lenet-bn-fashion-mnist.zip" };
var plotPath = new Option<string>("--plot") { Description = "Where to write the training curves (PNG).", DefaultValueFactory = _ => "lenet-bn-fashion-mnist-curves.png" };
var show = new Option<int>("--show") { Description = "Test images to draw in the terminal with the reloaded model's prediction.", DefaultValueFactory = _ => 8 };

epochs.Validators.Add(r => { if (r.GetValueOrDefault<int>() < 1) r.AddError("--epochs must be at least 1."); });
trainPerClass.Validators.Add(r => { if (r.GetValueOrDefault<int?>() is < 1) r.AddError("--train-per-class must be at least 1."); });
testPerClass.Validators.Add(r => { if (r.GetValueOrDefault<int?>() is < 1) r.AddError("--test-per-class must be at least 1."); });
validationFraction.Validators.Add(r => { if (r.GetValueOrDefault<double>() is < 0 or >= 1) r.AddError("--validation-fraction must be in [0, 1)."); });
show.Validators.Add(r => { if (r.GetValueOrDefault<int>() < 0) r.AddError("--show must not be negative."); });
earlyStoppingPatience.Validators.Add(r => { if (r.GetValueOrDefault<int?>() is < 1) r.AddError("--early-stopping-patience must be at least 1."); });

var root = new RootCommand("Train LeNet with batch normalization on Fashion-MNIST through ML.NET and TorchSharp.")
{
    epochs, trainPerClass, testPerClass, batchNorm, schedule, learningRate, momentum, validationFraction, restoreBest, earlyStoppingPatience,
    checkpointDir, resume, fineTune, seed, dataDir, modelPath, plotPath, show,
};
root.Validators.Add(r =>
{
    // Picking the epoch by test accuracy would make the reported test accuracy optimistic.
    if (r.GetValue(restoreBest) && r.GetValue(validationFraction) == 0)
        r.AddError("--restore-best needs --validation-fraction: the best epoch must be chosen on held-out training images, not on the test set.");
    if (r.GetValue(earlyStoppingPatience) is not null && r.GetValue(validationFraction) == 0)
        r.AddError("--early-stopping-patience needs --validation-fraction: when to stop must be decided on held-out training images, not on the test set.");
    if (r.GetValue(resume) && r.GetValue(checkpointDir) is null)
        r.AddError("--resume needs --checkpoint-dir, the folder of the run to continue.");
});
root.SetAction(async (parse, cancel) =>
{
    var console = AnsiConsole.Console;
    // Sentences go straight to Spectre's writer: Spectre would wrap them at the console width (80 when redirected),
    // which breaks long log lines apart in CI logs; the terminal wraps them anyway.
    var output = console.Profile.Out.Writer;
    console.Write(new Rule("LeNet-BN on Fashion-MNIST").LeftJustified());
    var directory = await FashionMnist.DownloadAsync(parse.GetValue(dataDir), output.WriteLine, cancel);
    var mlContext = new MLContext(seed: parse.GetValue(seed));
    var train = mlContext.Data.LoadFashionMnist(FashionMnistSplit.Train, directory, countPerClass: parse.GetValue(trainPerClass));
    var test = mlContext.Data.LoadFashionMnist(FashionMnistSplit.Test, directory, countPerClass: parse.GetValue(testPerClass));

    // d2l reports test accuracy after every epoch; with --validation-fraction the held-out images take its place.
    double fraction = parse.GetValue(validationFraction);
    string heldOutLabel = fraction > 0 ? "valid acc" : "test acc";
    var learningRateSchedule = parse.GetValue(schedule);
    var display = new TrainingDisplay(console, parse.GetValue(epochs), heldOutLabel, showLearningRate: learningRateSchedule != LearningRateSchedule.Constant);
    mlContext.Log += (_, e) =>
    {
        // Our trainer's own lines (device choice, summary, restored epoch); epoch lines come from the display.
        if (e.Kind is Microsoft.ML.Runtime.ChannelMessageKind.Info or Microsoft.ML.Runtime.ChannelMessageKind.Warning
            && e.Source.StartsWith(nameof(LeNetBnTrainer), StringComparison.Ordinal)
            && !e.RawMessage.StartsWith("epoch ", StringComparison.Ordinal) && !e.RawMessage.StartsWith("Channel ", StringComparison.Ordinal))
            display.Log(e.RawMessage);
    };
    var options = new LeNetBnTrainer.Options
    {
        Epochs = parse.GetValue(epochs),
        BatchNorm = parse.GetValue(batchNorm),
        LearningRateSchedule = learningRateSchedule,
        LearningRate = parse.GetValue(learningRate),
        SgdMomentum = parse.GetValue(momentum),
        ValidationSet = fraction > 0 ? null : test,
        ValidationFraction = fraction,
        RestoreBestEpoch = parse.GetValue(restoreBest),
        EarlyStopping = parse.GetValue(earlyStoppingPatience) is { } patience ? new EarlyStoppingOptions { Patience = patience } : null,
        CheckpointDirectory = parse.GetValue(checkpointDir),
        ResumeFromCheckpoint = parse.GetValue(resume),
        Seed = parse.GetValue(seed),
        EpochEnded = display.EpochEnded,
        CancellationToken = cancel,
    };
    var trainer = mlContext.MulticlassClassification.Trainers.LeNetBn(options);
    using var initial = parse.GetValue(fineTune) is { } fineTunePath ? LoadLeNetBn(mlContext, fineTunePath) : null;

    output.WriteLine($"{(initial is null ? "Training" : "Fine-tuning")} on {train.GetRowCount():N0} images, testing on {test.GetRowCount():N0}.");
    var clock = Stopwatch.StartNew();
    var lenet = display.Run(() => initial is null ? trainer.Fit(train) : trainer.Fit(train, initial));
    output.WriteLine($"Trained in {clock.Elapsed.TotalSeconds:F1} s.");
    using var chain = new TransformerChain<ITransformer>(lenet,
        mlContext.Transforms.Conversion.MapKeyToValue("PredictedClass", "PredictedLabel").Fit(lenet.Transform(train)));

    string plot = Path.GetFullPath(parse.GetValue(plotPath)!);
    // The model's history: with --resume it also holds the epochs trained before the restart.
    TrainingCurves.SavePng(lenet.TrainingHistory, heldOutLabel, $"LeNet-BN ({options.BatchNorm} BN) on Fashion-MNIST", plot);
    output.WriteLine($"Training curves: {plot}");

    var classNames = lenet.ClassNames ?? FashionMnist.ClassNames;
    var metrics = mlContext.MulticlassClassification.Evaluate(chain.Transform(test));
    console.Write(ResultTables.Metrics(metrics, test.GetRowCount() ?? 0));
    console.Write(ResultTables.ConfusionMatrix(metrics.ConfusionMatrix, classNames));
    if (lenet.GetBatchNormStates().FirstOrDefault() is { } first)
        console.Write(ResultTables.BatchNorm(first));

    string path = Path.GetFullPath(parse.GetValue(modelPath)!);
    mlContext.Model.SaveReplacing(chain, train.Schema, path); // a failed save never destroys an earlier model file
    output.WriteLine($"Saved {path} ({new FileInfo(path).Length / 1024.0:F0} KiB).");

    var reloaded = new MLContext().Model.Load(path, out _);
    var engine = mlContext.Model.CreatePredictionEngine<FashionImage, FashionPrediction>(reloaded);
    int count = parse.GetValue(show);
    if (count > 0)
    {
        var predictions = mlContext.Data.CreateEnumerable<FashionImage>(test, reuseRowObject: false).Take(count).Select(image =>
        {
            var prediction = engine.Predict(image);
            return (image.Features, prediction.PredictedClass, prediction.Score.Max(), classNames[(int)image.Label - 1]);
        }).ToList();
        output.WriteLine($"Reloaded; predictions on the first {predictions.Count} test images:");
        console.Write(ResultTables.Predictions(predictions, FashionMnist.ImageRows, FashionMnist.ImageColumns, console.Profile.Capabilities));
        output.WriteLine();
    }
    (reloaded as IDisposable)?.Dispose();
    return 0;
});
return await root.Parse(args).InvokeAsync();

// The LeNet-BN transformer of a model zip: this example's (LeNet-BN, then MapKeyToValue) or a checkpoint (LeNet-BN alone).
static LeNetBnTransformer LoadLeNetBn(MLContext mlContext, string path)
{
    var model = mlContext.Model.Load(path, out _);
    return model as LeNetBnTransformer
        ?? (model as IEnumerable<ITransformer>)?.OfType<LeNetBnTransformer>().FirstOrDefault()
        ?? throw new InvalidDataException($"'{path}' holds no LeNet-BN model to fine-tune (it holds a {model.GetType().Name}).");
}

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
