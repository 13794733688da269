// Reliability checks too slow for unit tests; each prints its figures and exits 1 when a target is missed.
//   memory: process RSS over several training epochs, 100,000 predictions, Transform, save/load and fit cycles.
//   threads: 8 threads × 10,000 rows through Transform and PredictionEngines, compared to one thread to the bit.
//   serve-load: Examples/Serve in-process on 127.0.0.1, concurrent clients POSTing /predict: requests/s, latency, RSS, scores.
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

var model = new Option<string?>("--model") { Description = "Model zip to serve (default: train one epoch on --train-per-class images per class of the data)." };
var clients = new Option<int>("--clients") { Description = "Concurrent clients.", DefaultValueFactory = _ => 16 };
var seconds = new Option<double>("--seconds") { Description = "Longest run, in seconds.", DefaultValueFactory = _ => 30 };
var maxRequests = new Option<int>("--max-requests") { Description = "Most requests, over all clients.", DefaultValueFactory = _ => 1_000_000 };
var port = new Option<int>("--port") { Description = "Loopback port (127.0.0.1 only); 0 picks a free one.", DefaultValueFactory = _ => 0 };
var serveTrainPerClass = new Option<int>("--train-per-class") { Description = "Training images per class when no --model is given.", DefaultValueFactory = _ => 100 };
var serveMaxGrowth = new Option<double>("--max-growth-mb") { Description = "Largest RSS growth over the run that passes.", DefaultValueFactory = _ => 50 };
var serveLoad = new Command("serve-load", "Examples/Serve in-process on 127.0.0.1 under concurrent POST /predict: requests/s, p50/p99 latency, errors, RSS, scores against one PredictionEngine.")
{
    dataDir, model, serveTrainPerClass, clients, seconds, maxRequests, port, serveMaxGrowth,
};
serveLoad.SetAction(parse => new ServeLoadCheck(
    StressData.Directory(parse.GetValue(dataDir)), parse.GetValue(model), parse.GetValue(serveTrainPerClass), parse.GetValue(clients),
    parse.GetValue(seconds), parse.GetValue(maxRequests), parse.GetValue(port), parse.GetValue(serveMaxGrowth)).Run());

var root = new RootCommand("MlNetBn reliability checks (native memory, threads, the HTTP service under load); see docs/BENCHMARKS.md.") { memory, threads, serveLoad };
return root.Parse(args).Invoke();
