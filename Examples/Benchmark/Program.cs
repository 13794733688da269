// LeNet-BN benchmark on one device: Fit through ML.NET against a raw TorchSharp loop, Transform and PredictionEngine
// throughput, accuracy, peak memory, prediction with BN folded against unfolded (JSON + markdown). Two more commands check that a model trained on one device
// loads and predicts the same on the CPU: export-model (train, save, record predictions) and verify-model. `onnx` times
// the same model exported to ONNX in ONNX Runtime against Transform and PredictionEngine.
using System.CommandLine;
using MlNetBn.Examples.Benchmark;
using MlNetBn.Modules;
using MlNetBn.Training;

var device = new Option<DeviceKind>("--device") { Description = "Where to train and predict: Cpu, Cuda or Auto (CUDA when available).", DefaultValueFactory = _ => DeviceKind.Cpu };
var epochs = new Option<int>("--epochs") { Description = "Epochs per BN kind, for Fit and for the raw loop alike (the first is reported apart as warm-up).", DefaultValueFactory = _ => 3 };
var trainCount = new Option<int?>("--train-count") { Description = "Train on this many images, balanced over the classes (default: all 60,000)." };
var testCount = new Option<int?>("--test-count") { Description = "Test on this many images, balanced over the classes (default: all 10,000)." };
var seed = new Option<int>("--seed") { Description = "Seed for initialization and shuffling (the same for Fit and the raw loop).", DefaultValueFactory = _ => 1 };
var outDir = new Option<string>("--out") { Description = "Folder for the JSON and markdown results.", DefaultValueFactory = _ => "benchmark-results" };
var dataDir = new Option<string?>("--data-dir") { Description = "Where Fashion-MNIST is cached (default: $MLNETBN_DATA_DIR/fashion-mnist or ~/.local/share/MlNetBn/fashion-mnist)." };
var batchNorms = new Option<BatchNormKind[]>("--batch-norm")
{
    Description = "BN kinds to measure, in this order.",
    DefaultValueFactory = _ => [BatchNormKind.BuiltIn, BatchNormKind.Scratch],
    AllowMultipleArgumentsPerToken = true,
};
var predictions = new Option<int>("--predictions") { Description = "Timed single PredictionEngine predictions (after warm-up).", DefaultValueFactory = _ => 2000 };
var transformRepeats = new Option<int>("--transform-repeats") { Description = "Timed passes of Transform over the test set (after one warm-up pass).", DefaultValueFactory = _ => 3 };
var foldRepeats = new Option<int>("--fold-repeats") { Description = "BN folding: timed runs per operation of the unfolded and the folded model, alternating (medians reported).", DefaultValueFactory = _ => 5 };
var foldMinSeconds = new Option<double>("--fold-min-seconds") { Description = "BN folding: each timed run repeats its operation for at least this long (0: once).", DefaultValueFactory = _ => 1.0 };
var threads = new Option<int?>("--threads") { Description = "TorchSharp intra-op threads (default: libtorch's, one per core); with 1, BN folding's thread CPU time is the whole work." };

var root = new RootCommand("Benchmark LeNet-BN on Fashion-MNIST on one device: ML.NET Fit vs a raw TorchSharp loop, Transform, PredictionEngine, accuracy, memory, BN folding.")
{
    device, epochs, trainCount, testCount, seed, outDir, dataDir, batchNorms, predictions, transformRepeats, foldRepeats, foldMinSeconds, threads,
};
root.SetAction(async (parse, cancel) =>
{
    var settings = new BenchmarkSettings(
        parse.GetValue(device), parse.GetValue(epochs), parse.GetValue(trainCount), parse.GetValue(testCount), parse.GetValue(seed),
        Path.GetFullPath(parse.GetValue(outDir)!), parse.GetValue(dataDir), parse.GetValue(batchNorms)!, parse.GetValue(predictions),
        parse.GetValue(transformRepeats), parse.GetValue(foldRepeats), parse.GetValue(foldMinSeconds), parse.GetValue(threads));
    settings.Validate();
    return await BenchmarkRun.RunAsync(settings, cancel);
});

// export-model / verify-model: the device-neutral save check (train on CUDA, load in a process without CUDA).
var exportDevice = new Option<DeviceKind>("--device") { Description = "Where to train: Cuda (the point of the check), Cpu or Auto.", DefaultValueFactory = _ => DeviceKind.Cuda };
var exportEpochs = new Option<int>("--epochs") { Description = "Training epochs.", DefaultValueFactory = _ => 1 };
var exportTrain = new Option<int?>("--train-count") { Description = "Train on this many images, balanced over the classes.", DefaultValueFactory = _ => 10_000 };
var checkRows = new Option<int>("--rows") { Description = "Test images whose predictions are recorded and compared.", DefaultValueFactory = _ => 512 };
var modelDir = new Option<string>("--dir") { Description = "Folder for the model zips and their recorded predictions.", DefaultValueFactory = _ => "model-check" };

var export = new Command("export-model", "Train each BN kind briefly on --device, save the zips, and record the model's own predictions on test images.")
{
    exportDevice, exportEpochs, exportTrain, seed, modelDir, dataDir, checkRows, batchNorms,
};
export.SetAction(async (parse, cancel) =>
{
    string directory = await Data.EnsureFashionMnistAsync(parse.GetValue(dataDir), cancel);
    return ModelCheck.Export(parse.GetValue(exportDevice), parse.GetValue(exportEpochs), parse.GetValue(exportTrain), parse.GetValue(seed),
        Path.GetFullPath(parse.GetValue(modelDir)!), directory, parse.GetValue(checkRows), parse.GetValue(batchNorms)!);
});

var verify = new Command("verify-model", "Load the zips export-model wrote, on the CPU, and compare weights and predictions (run it with CUDA hidden).")
{
    modelDir, dataDir,
};
verify.SetAction(async (parse, cancel) =>
{
    string directory = await Data.EnsureFashionMnistAsync(parse.GetValue(dataDir), cancel);
    return ModelCheck.Verify(Path.GetFullPath(parse.GetValue(modelDir)!), directory);
});

// steps: the per-step cost of each BN kind and of the BN layers alone, measured in alternating chunks (robust to a busy machine).
var rounds = new Option<int>("--rounds") { Description = "Alternating rounds (each kind takes a turn per round).", DefaultValueFactory = _ => 7 };
var chunk = new Option<int>("--steps") { Description = "Training steps per kind per round.", DefaultValueFactory = _ => 20 };
var steps = new Command("steps", "Profile a training step per BN kind, and each BN layer alone, in alternating chunks.")
{
    device, rounds, chunk, seed,
};
steps.SetAction(parse => StepProfile.Run(BenchmarkRun.ResolveDevice(parse.GetValue(device)), parse.GetValue(rounds), parse.GetValue(chunk),
    MlNetBn.LeNetBnTrainer.Defaults.BatchSize, parse.GetValue(seed)));

// ratios: Fit ÷ raw and scratch ÷ built-in from alternating one-epoch rounds (robust to a busy machine).
var ratioRounds = new Option<int>("--rounds") { Description = "Alternating rounds after a warm-up round.", DefaultValueFactory = _ => 5 };
var ratioTrain = new Option<int?>("--train-count") { Description = "Images per epoch, balanced over the classes.", DefaultValueFactory = _ => 10_000 };
var ratios = new Command("ratios", "Fit ÷ raw loop and scratch ÷ built-in BN from interleaved one-epoch rounds.")
{
    device, ratioRounds, ratioTrain, seed, dataDir,
};
ratios.SetAction((parse, cancel) => InterleavedRatios.RunAsync(parse.GetValue(device), parse.GetValue(ratioRounds), parse.GetValue(ratioTrain),
    parse.GetValue(seed), parse.GetValue(dataDir), cancel));

// onnx: the same model through ONNX Runtime against Transform and PredictionEngine, interleaved rounds.
var onnxRounds = new Option<int>("--rounds") { Description = "Rounds after a warm-up; the four contenders take turns in each.", DefaultValueFactory = _ => 7 };
var onnxMinSeconds = new Option<double>("--min-seconds") { Description = "Each timed run repeats its operation for at least this long.", DefaultValueFactory = _ => 1.0 };
var onnxTrain = new Option<int?>("--train-count") { Description = "Train the model on this many images, balanced over the classes.", DefaultValueFactory = _ => 10_000 };
var onnxEpochs = new Option<int>("--epochs") { Description = "Training epochs (the model's accuracy does not change the speeds).", DefaultValueFactory = _ => 1 };
var onnxBatchNorm = new Option<BatchNormKind>("--batch-norm") { Description = "BN kind of the model.", DefaultValueFactory = _ => BatchNormKind.Scratch };
var onnx = new Command("onnx", "ONNX Runtime (CPU) against Transform and PredictionEngine: batched rows/s and single-image latency, same model, same run.")
{
    onnxRounds, onnxMinSeconds, onnxTrain, testCount, onnxEpochs, onnxBatchNorm, seed, dataDir, outDir,
};
onnx.SetAction((parse, cancel) => OnnxSpeed.RunAsync(parse.GetValue(onnxRounds), parse.GetValue(onnxMinSeconds), parse.GetValue(onnxTrain),
    parse.GetValue(testCount), parse.GetValue(onnxEpochs), parse.GetValue(onnxBatchNorm), parse.GetValue(seed), parse.GetValue(dataDir),
    Path.GetFullPath(parse.GetValue(outDir)!), cancel));

root.Subcommands.Add(ratios);
root.Subcommands.Add(onnx);
root.Subcommands.Add(steps);
root.Subcommands.Add(export);
root.Subcommands.Add(verify);
return await root.Parse(args).InvokeAsync();
