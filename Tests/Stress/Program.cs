// Reliability checks too slow for unit tests; each prints its figures and exits 1 when a target is missed.
//   memory: process RSS over several training epochs, 100,000 predictions, Transform, save/load and fit cycles.
//   threads: 8 threads × 10,000 rows through Transform and PredictionEngines, compared to one thread to the bit.
// Data: the committed 3,000/1,000-image subset by default; --data-dir takes the full Fashion-MNIST.
using System.CommandLine;
using MlNetBn.Tests.Stress;

var dataDir = new Option<string?>("--data-dir") { Description = "Fashion-MNIST folder (default: the committed 3,000/1,000-image subset next to this program)." };
var trainPerClass = new Option<int>("--train-per-class") { Description = "Training images per class.", DefaultValueFactory = _ => 300 };
var epochs = new Option<int>("--epochs") { Description = "Epochs of the long Fit.", DefaultValueFactory = _ => 8 };
var predictions = new Option<int>("--predictions") { Description = "PredictionEngine predictions (and Transform rows).", DefaultValueFactory = _ => 100_000 };
var modelCycles = new Option<int>("--model-cycles") { Description = "Save + Load + Dispose cycles.", DefaultValueFactory = _ => 100 };
var fitCycles = new Option<int>("--fit-cycles") { Description = "One-epoch Fit + Dispose cycles.", DefaultValueFactory = _ => 20 };
var maxGrowth = new Option<double>("--max-growth-mb") { Description = "Largest RSS growth after warm-up that passes, per phase.", DefaultValueFactory = _ => 50 };
var memory = new Command("memory", "Process RSS (native memory included) across training, prediction, save/load and fit cycles.")
{
    dataDir, trainPerClass, epochs, predictions, modelCycles, fitCycles, maxGrowth,
};
memory.SetAction(parse => new MemoryCheck(
    StressData.Directory(parse.GetValue(dataDir)), parse.GetValue(trainPerClass), parse.GetValue(epochs), parse.GetValue(predictions),
    parse.GetValue(modelCycles), parse.GetValue(fitCycles), parse.GetValue(maxGrowth)).Run());

var threadCount = new Option<int>("--threads") { Description = "Concurrent threads.", DefaultValueFactory = _ => 8 };
var rows = new Option<int>("--rows") { Description = "Rows per thread, for Transform and for the PredictionEngine each.", DefaultValueFactory = _ => 10_000 };
var threads = new Command("threads", "Concurrent Transform and one PredictionEngine per thread, bit for bit against one thread.")
{
    dataDir, threadCount, rows,
};
threads.SetAction(parse => new ThreadsCheck(StressData.Directory(parse.GetValue(dataDir)), parse.GetValue(threadCount), parse.GetValue(rows)).Run());

var root = new RootCommand("MlNetBn reliability checks (native memory, threads); see docs/BENCHMARKS.md.") { memory, threads };
return root.Parse(args).Invoke();
