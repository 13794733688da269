using Microsoft.ML;
using Microsoft.ML.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetBn.Tests.Trainers;

[TestClass]
public sealed class LeNetBnTransformerTests
{
    [TestMethod]
    public void Transform_EqualsEvalModeForwardOfTheNetwork()
    {
        var mlContext = new MLContext(seed: 1);
        using var model = mlContext.MulticlassClassification.Trainers.LeNetBn(TrainerTestData.QuickOptions(epochs: 1)).Fit(TrainerTestData.Train(mlContext, 50));
        var test = TrainerTestData.Test(mlContext, 10);
        var scores = mlContext.Data.CreateEnumerable<ScoreRow>(model.Transform(test), reuseRowObject: false).Select(r => r.Score).ToArray();
        var features = mlContext.Data.CreateEnumerable<FeatureRow>(test, reuseRowObject: false).SelectMany(r => r.Features).ToArray();

        using var scope = NewDisposeScope();
        var network = model.NetworkForTests;
        network.eval();
        using var _ = no_grad();
        var expected = nn.functional.softmax(network.forward(tensor(features, [scores.Length, 784])), 1);
        TensorAssert.AreClose(expected, tensor(scores.SelectMany(s => s).ToArray(), [scores.Length, 10]), 1e-6, "Transform scores");
    }
}
