// Classifies image files with LeNet-BN through ML.NET's image transforms:
// image files → LoadImages → ResizeImages (28×28) → ConvertToGrayscale → ExtractPixels (/255) → LeNet-BN → class.
// With no image folder of its own it writes a few Fashion-MNIST test images as PNG files first; with no --model
// it trains one (or give it the zip Examples/FashionMnist saves).
using System.CommandLine;
using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetBn;
using MlNetBn.Data;
using MlNetBn.Examples.ImageFiles;
using Spectre.Console;

var images = new Option<string>("--images")
{
    Description = "Folder of image files to classify (PNG, JPEG, BMP, GIF, WebP; any size and colour depth). When it holds no file, the first --count Fashion-MNIST test images are written there as PNG files first.",
    DefaultValueFactory = _ => "fashion-mnist-png",
};
var count = new Option<int>("--count") { Description = "How many test images to write when the folder is empty (one of each class in turn).", DefaultValueFactory = _ => 10 };
var modelPath = new Option<string?>("--model") { Description = "A model zip to load, e.g. the one Examples/FashionMnist saves. Without it a model is trained first." };
var epochs = new Option<int>("--epochs") { Description = "Training epochs (without --model).", DefaultValueFactory = _ => LeNetBnTrainer.Defaults.Epochs };
var trainPerClass = new Option<int?>("--train-per-class") { Description = "Train on the first N images of each class (without --model; default: all 6,000)." };
var seed = new Option<int>("--seed") { Description = "Seed for initialization and shuffling.", DefaultValueFactory = _ => 1 };
var invert = new Option<bool>("--invert")
{
    Description = "Invert the pictures first. Fashion-MNIST shows light clothes on a black background: use this for dark clothes photographed on a light background.",
};
var dataDir = new Option<string?>("--data-dir") { Description = $"Where Fashion-MNIST is cached (default: ${FashionMnist.DataDirectoryEnvironmentVariable} or {FashionMnist.DefaultDirectory})." };

count.Validators.Add(r => { if (r.GetValueOrDefault<int>() is < 1 or > FashionMnist.TestCount) r.AddError($"--count must be between 1 and {FashionMnist.TestCount:N0}."); });
epochs.Validators.Add(r => { if (r.GetValueOrDefault<int>() < 1) r.AddError("--epochs must be at least 1."); });
trainPerClass.Validators.Add(r => { if (r.GetValueOrDefault<int?>() is < 1) r.AddError("--train-per-class must be at least 1."); });
modelPath.Validators.Add(r =>
{
    if (r.GetValueOrDefault<string?>() is { } path && !File.Exists(path))
        r.AddError($"--model: there is no file '{Path.GetFullPath(path)}'. Run Examples/FashionMnist to make one, or leave --model out to train here.");
});

var root = new RootCommand("Classify image files with LeNet-BN through ML.NET's image transforms.")
{
    images, count, modelPath, epochs, trainPerClass, seed, invert, dataDir,
};
root.SetAction(async (parse, cancel) =>
{
    var output = Console.Out;
    var mlContext = new MLContext(seed: parse.GetValue(seed));
    string folder = Path.GetFullPath(parse.GetValue(images)!);
    string? dataDirectory = null;
    async Task<string> Data() => dataDirectory ??= await FashionMnist.DownloadAsync(parse.GetValue(dataDir), output.WriteLine, cancel);

    string[] Files() => Directory.Exists(folder)
        // Every file but hidden ones: whatever is not an image the decoder reads is reported by name.
        ? Directory.EnumerateFiles(folder).Select(f => Path.GetFileName(f)).Where(f => !f.StartsWith('.'))
            .Order(StringComparer.Ordinal).ToArray()
        : [];
    var files = Files();
    if (files.Length == 0)
    {
        var test = FashionMnist.Read(FashionMnistSplit.Test, await Data());
        int n = parse.GetValue(count);
        var indices = test.SelectIndices(countPerClass: (n + FashionMnist.ClassCount - 1) / FashionMnist.ClassCount, maxCount: n);
        FashionImageFiles.WritePngs(test, indices, FashionMnist.ClassNames, folder);
        output.WriteLine($"Wrote {indices.Length} Fashion-MNIST test images as PNG files into {folder}.");
        files = Files();
    }

    ITransformer model;
    if (parse.GetValue(modelPath) is { } path)
    {
        model = mlContext.Model.Load(path, out _);
        output.WriteLine($"Loaded {Path.GetFullPath(path)}.");
    }
    else
    {
        var train = mlContext.Data.LoadFashionMnist(FashionMnistSplit.Train, await Data(), countPerClass: parse.GetValue(trainPerClass));
        output.WriteLine($"Training on {train.GetRowCount():N0} images (pass --model to use a saved model instead).");
        var options = new LeNetBnTrainer.Options
        {
            Epochs = parse.GetValue(epochs),
            Seed = parse.GetValue(seed),
            EpochEnded = m => output.WriteLine($"  {m}"),
            CancellationToken = cancel,
        };
        model = mlContext.MulticlassClassification.Trainers.LeNetBn(options)
            .Append(mlContext.Transforms.Conversion.MapKeyToValue("PredictedClass", "PredictedLabel"))
            .Fit(train);
    }

    var result = FashionImageFiles.Classify(mlContext, model, folder, files, parse.GetValue(invert));

    var table = new Table().Border(TableBorder.Rounded).Title($"Predictions for {result.Predictions.Count} image files");
    table.AddColumn("file");
    table.AddColumn("predicted class");
    table.AddColumn(new TableColumn("probability").RightAligned());
    table.AddColumn("class in file name");
    int known = 0, right = 0;
    foreach (var p in result.Predictions)
    {
        string? actual = FashionImageFiles.ClassFromFileName(p.ImagePath, FashionMnist.ClassNames);
        string verdict = actual is null ? "" : actual == p.PredictedClass ? "[green]right[/]" : "[red]wrong[/]";
        known += actual is null ? 0 : 1;
        right += actual == p.PredictedClass ? 1 : 0;
        table.AddRow(Markup.Escape(p.ImagePath), Markup.Escape(p.PredictedClass), $"{p.Score.Max() * 100:F1}%",
            actual is null ? "" : $"{Markup.Escape(actual)} ({verdict})");
    }
    AnsiConsole.Write(table);
    if (known > 0)
        output.WriteLine($"{right} of {known} files whose name gives the class were classified right.");
    foreach (var bad in result.Unreadable)
        Console.Error.WriteLine($"Could not read {Path.Combine(folder, bad.FileName)}: {bad.Reason}.");
    (model as IDisposable)?.Dispose();
    // Non-zero when any file could not be read, so scripts notice.
    return result.Unreadable.Count == 0 ? 0 : 1;
});
return await root.Parse(args).InvokeAsync();
