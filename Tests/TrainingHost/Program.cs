// usage: dotnet MlNetBn.Tests.TrainingHost.dll <data-dir> <checkpoint-dir> <output-dir> [--resume] [--pause-in-epoch K | --pause-at-checkpoint K:STAGE]
// Trains a fixed 4-epoch recipe (SGD momentum, cosine schedule, held-out validation) on the small Fashion-MNIST
// subset with checkpoints after every epoch. With a pause point it prints "paused" when it gets there and waits to
// be killed. Otherwise it writes <output-dir>/model.zip and <output-dir>/history.txt (one line per epoch, round-trip
// doubles; no timings) and prints "done".
using System.Globalization;
using Microsoft.ML;
using MlNetBn;
using MlNetBn.Data;
using MlNetBn.Training;

if (args.Length < 3)
{
    Console.Error.WriteLine("usage: <data-dir> <checkpoint-dir> <output-dir> [--resume] [--pause-in-epoch K | --pause-at-checkpoint K:STAGE]");
    return 2;
}
string dataDirectory = args[0], checkpoints = args[1], output = args[2];
bool resume = args.Contains("--resume");
int pauseEpoch = Option("--pause-in-epoch") is { } k ? int.Parse(k, CultureInfo.InvariantCulture) : 0;
string? pauseCheckpoint = Option("--pause-at-checkpoint");

string? Option(string name) => Array.IndexOf(args, name) is var i and >= 0 ? args[i + 1] : null;

static void PauseUntilKilled()
{
    Console.WriteLine("paused");
    Console.Out.Flush();
    Thread.Sleep(Timeout.Infinite);
}

var mlContext = new MLContext(seed: 0);
var data = mlContext.Data.LoadFashionMnist(FashionMnistSplit.Train, dataDirectory, countPerClass: 100);
int stepsPerEpoch = 0, epochsDone = 0;
var options = new LeNetBnTrainer.Options
{
    Epochs = 4,
    BatchSize = 32,
    LearningRate = 0.05,
    SgdMomentum = 0.9,
    LearningRateSchedule = LearningRateSchedule.Cosine,
    ValidationFraction = 0.1,
    Seed = 7,
    Device = DeviceKind.Cpu,
    CheckpointDirectory = checkpoints,
    CheckpointsToKeep = 2,
    ResumeFromCheckpoint = resume,
    EpochEnded = m => epochsDone = m.Epoch,
};
options.StepEnded = step =>
{
    if (epochsDone == 1 && stepsPerEpoch == 0) stepsPerEpoch = step - 1;
    // In epoch K: halfway through it (epoch 1: its fifth step, before the steps per epoch are known).
    if (pauseEpoch == 1 && step == 5 || pauseEpoch > 1 && stepsPerEpoch > 0 && step == (pauseEpoch - 1) * stepsPerEpoch + stepsPerEpoch / 2)
        PauseUntilKilled();
};
options.CheckpointStageReached = stage =>
{
    if (pauseCheckpoint == $"{epochsDone}:{stage}")
        PauseUntilKilled();
};

using var model = mlContext.MulticlassClassification.Trainers.LeNetBn(options).Fit(data);
Directory.CreateDirectory(output);
mlContext.Model.Save(model, data.Schema, Path.Combine(output, "model.zip"));
File.WriteAllLines(Path.Combine(output, "history.txt"), model.TrainingHistory.Select(m => string.Join(' ',
    m.Epoch, m.Loss.ToString("R", CultureInfo.InvariantCulture), m.TrainAccuracy.ToString("R", CultureInfo.InvariantCulture),
    m.ValidationLoss?.ToString("R", CultureInfo.InvariantCulture), m.ValidationAccuracy?.ToString("R", CultureInfo.InvariantCulture),
    m.LearningRate.ToString("R", CultureInfo.InvariantCulture))));
Console.WriteLine("done");
return 0;
