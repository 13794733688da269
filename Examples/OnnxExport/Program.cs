// Trains LeNet-BN briefly (or loads a model zip) and exports it to ONNX with ML.NET's ConvertToOnnx, for
// Examples/OnnxClassify, which runs the file with ONNX Runtime alone. The graph's input is "Features" (N×784 floats,
// pixel / 255, as the IDX loader gives them); its outputs are "Score.output" (N×10 class probabilities),
// "PredictedLabel.output" (N×1 uint32: the 1-based class key, 0 for an image holding NaN or ±Infinity) and, when the
// model ends in MapKeyToValue, "PredictedClass.output" (N×1 class names).
using System.CommandLine;
using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetBn;
using MlNetBn.Data;
using MlNetBn.Training;

var modelPath = new Option<string?>("--model") { Description = "A model zip to export, e.g. the one Examples/FashionMnist saves. Without it a model is trained first." };
var outPath = new Option<string>("--out") { Description = "Where to write the ONNX file.", DefaultValueFactory = _ => "lenet-bn.onnx" };
var epochs = new Option<int>("--epochs") { Description = "Training epochs (without --model).", DefaultValueFactory = _ => 2 };
var trainPerClass = new Option<int?>("--train-per-class") { Description = "Train on the first N images of each class (without --model; default: all 6,000)." };
var seed = new Option<int>("--seed") { Description = "Seed for initialization and shuffling.", DefaultValueFactory = _ => 1 };
var dataDir = new Option<string?>("--data-dir") { Description = $"Where Fashion-MNIST is cached (default: ${FashionMnist.DataDirectoryEnvironmentVariable} or {FashionMnist.DefaultDirectory})." };

epochs.Validators.Add(r => { if (r.GetValueOrDefault<int>() < 1) r.AddError("--epochs must be at least 1."); });
trainPerClass.Validators.Add(r => { if (r.GetValueOrDefault<int?>() is < 1) r.AddError("--train-per-class must be at least 1."); });
modelPath.Validators.Add(r =>
{
    if (r.GetValueOrDefault<string?>() is { } path && !File.Exists(path))
        r.AddError($"--model: there is no file '{Path.GetFullPath(path)}'. Run Examples/FashionMnist to make one, or leave --model out to train here.");
});

var root = new RootCommand("Export a LeNet-BN model to ONNX (mlContext.Model.ConvertToOnnx) for ONNX Runtime.")
{
    modelPath, outPath, epochs, trainPerClass, seed, dataDir,
};
root.SetAction(async (parse, cancel) =>
{
    var mlContext = new MLContext(seed: parse.GetValue(seed));
    string directory = await FashionMnist.DownloadAsync(parse.GetValue(dataDir), Console.WriteLine, cancel);
    var test = mlContext.Data.LoadFashionMnist(FashionMnistSplit.Test, directory);

    ITransformer model;
    if (parse.GetValue(modelPath) is { } path)
    {
        model = mlContext.Model.Load(path, out _);
        Console.WriteLine($"Loaded {Path.GetFullPath(path)}.");
    }
    else
    {
        var train = mlContext.Data.LoadFashionMnist(FashionMnistSplit.Train, directory, countPerClass: parse.GetValue(trainPerClass));
        // The README's recommended recipe: cosine annealing from lr 0.1 with SGD momentum 0.9.
        var options = new LeNetBnTrainer.Options
        {
            Epochs = parse.GetValue(epochs),
            LearningRateSchedule = LearningRateSchedule.Cosine,
            LearningRate = 0.1,
            SgdMomentum = 0.9,
            Seed = parse.GetValue(seed),
        };
        Console.WriteLine($"Training LeNet-BN for {options.Epochs} epoch(s) on {train.GetRowCount():N0} images...");
        model = mlContext.MulticlassClassification.Trainers.LeNetBn(options)
            .Append(mlContext.Transforms.Conversion.MapKeyToValue("PredictedClass", "PredictedLabel"))
            .Fit(train);
    }

    try
    {
        var lenet = (model as IEnumerable<ITransformer>)?.FirstOrDefault() ?? model;
        if (lenet is not LeNetBnTransformer first)
        {
            Console.Error.WriteLine($"The model's first step is {lenet.GetType().Name}; this example exports models that start with LeNet-BN (features in), " +
                                    "as Examples/FashionMnist saves them.");
            return 1;
        }

        // The graph's inputs are the columns of the data ConvertToOnnx is given: the features alone, so that ONNX
        // Runtime is fed nothing else. Only the prediction columns are kept as outputs.
        var schema = SchemaDefinition.Create(typeof(ImageFeatures));
        schema[nameof(ImageFeatures.Features)].ColumnName = first.FeatureColumnName;
        schema[nameof(ImageFeatures.Features)].ColumnType = new VectorDataViewType(NumberDataViewType.Single, first.Architecture.Input.Size);
        var features = mlContext.Data.LoadFromEnumerable(Array.Empty<ImageFeatures>(), schema);
        string[] outputs = ["Score", "PredictedLabel", "PredictedClass"];
        outputs = outputs.Where(c => model.GetOutputSchema(features.Schema).GetColumnOrNull(c) is not null).ToArray();

        string onnxPath = Path.GetFullPath(parse.GetValue(outPath)!);
        using (var stream = File.Create(onnxPath))
            mlContext.Model.ConvertToOnnx(model, features, stream, outputs);
        Console.WriteLine($"Wrote {onnxPath} ({new FileInfo(onnxPath).Length / 1024.0:N0} KiB): input '{first.FeatureColumnName}' " +
                          $"(N×{first.Architecture.Input.Size} floats), outputs {string.Join(", ", outputs.Select(c => $"'{c}.output'"))}.");

        var metrics = mlContext.MulticlassClassification.Evaluate(model.Transform(test));
        Console.WriteLine($"Test accuracy in ML.NET: {metrics.MicroAccuracy:F4} on {test.GetRowCount():N0} images (Examples/OnnxClassify gives the same with ONNX Runtime).");
        return 0;
    }
    finally
    {
        (model as IDisposable)?.Dispose();
    }
});
return await root.Parse(args).InvokeAsync();

/// <summary>One image's features, as the ONNX graph's only input.</summary>
internal sealed class ImageFeatures
{
    public float[] Features { get; set; } = [];
}
