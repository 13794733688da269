using MlNetBn.Modules;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetBn.Tests.Modules;

/// <summary>Folding BN into the conv/linear layers, on networks whose BN statistics were moved by hand.</summary>
[TestClass]
public sealed class BatchNormFoldingTests
{
    public static IEnumerable<object[]> Kinds =>
    [
        // A large epsilon makes a fold that ignored the layer's own epsilon visibly wrong.
        [BatchNormKind.Scratch, 0.05],
        [BatchNormKind.Scratch, BatchNormOptions.DefaultEpsilon],
        [BatchNormKind.BuiltIn, 0.05],
    ];

    [TestMethod]
    [DynamicData(nameof(Kinds))]
    public void FoldedNetwork_GivesTheEvalModeLogits(BatchNormKind kind, double epsilon)
    {
        using var scope = NewDisposeScope();
        using var net = NetworkWithNonTrivialStatistics(kind, epsilon, seed: 21);
        using var folded = net.FoldBatchNorm();

        var x = rand(32, 1, 28, 28, generator: new Generator(22));
        using (no_grad())
            TensorAssert.AreClose(net.forward(x), folded.forward(x), 1e-5, $"{kind} (ε = {epsilon}) folded vs eval-mode logits");
        Assert.IsFalse(folded.training, "the folded network is for prediction: eval mode");
    }

    [TestMethod]
    [DynamicData(nameof(Kinds))]
    public void FoldedNetwork_HasNoBatchNormLayers_AndSaysFolded(BatchNormKind kind, double epsilon)
    {
        using var net = NetworkWithNonTrivialStatistics(kind, epsilon, seed: 23);
        using var folded = net.FoldBatchNorm();

        CollectionAssert.AreEqual(
            new[] { "conv1", "act1", "pool1", "conv2", "act2", "pool2", "flatten", "fc1", "act3", "fc2", "act4", "fc3" },
            folded.Layers.named_children().Select(c => c.name).ToArray());
        Assert.IsEmpty(folded.GetBatchNormStates(), "a folded network has no BN states to report");
        Assert.IsTrue(folded.Architecture.BatchNormFolded);
        Assert.AreEqual(kind, folded.Architecture.BatchNorm, "the architecture records which BN was folded");
        Assert.AreEqual(epsilon, folded.Architecture.BatchNormOptions.Epsilon);
        Assert.IsFalse(folded.state_dict().Keys.Any(k => k.Contains("bn", StringComparison.Ordinal)), string.Join(", ", folded.state_dict().Keys));
    }

    [TestMethod]
    public void FoldedWeights_AreTheFormula()
    {
        using var scope = NewDisposeScope();
        using var net = NetworkWithNonTrivialStatistics(BatchNormKind.Scratch, 0.05, seed: 24);
        using var folded = net.FoldBatchNorm();
        var bn = (ScratchBatchNorm)net.Layers.named_children().Single(c => c.name == "bn3").module;
        var fc1 = (Linear)net.Layers.named_children().Single(c => c.name == "fc1").module;
        var foldedFc1 = (Linear)folded.Layers.named_children().Single(c => c.name == "fc1").module;

        // s = γ/√(σ² + ε); W' = W·s per output feature (row); b' = (b − μ)·s + β.
        var s = bn.Gamma / (bn.MovingVariance + 0.05).sqrt();
        TensorAssert.AreClose(fc1.weight! * s.unsqueeze(1), foldedFc1.weight!, 1e-6, "fc1 weight");
        TensorAssert.AreClose((fc1.bias! - bn.MovingMean) * s + bn.Beta, foldedFc1.bias!, 1e-6, "fc1 bias");
        // fc3 has no BN after it: copied as is.
        TensorAssert.AreClose(net.state_dict()["layers.fc3.weight"], folded.state_dict()["layers.fc3.weight"], 0, "fc3 weight");
    }

    [TestMethod]
    public void Folding_LeavesTheSourceUnchanged()
    {
        using var scope = NewDisposeScope();
        using var net = NetworkWithNonTrivialStatistics(BatchNormKind.BuiltIn, BatchNormOptions.DefaultEpsilon, seed: 25);
        var before = net.state_dict().ToDictionary(p => p.Key, p => p.Value.clone());
        using (var folded = net.FoldBatchNorm()) { }
        foreach (var (name, value) in net.state_dict())
            TensorAssert.AreClose(before[name], value, 0, name);
        Assert.HasCount(4, net.GetBatchNormStates());
    }

    [TestMethod]
    public void NothingToFold_IsAClearError()
    {
        using var plain = new LeNetBnNetwork(new LeNetBnArchitecture { BatchNorm = BatchNormKind.None });
        var ex = Assert.ThrowsExactly<InvalidOperationException>(() => plain.FoldBatchNorm());
        StringAssert.Contains(ex.Message, "no batch normalization");

        using var net = new LeNetBnNetwork(new LeNetBnArchitecture());
        using var folded = net.FoldBatchNorm();
        ex = Assert.ThrowsExactly<InvalidOperationException>(() => folded.FoldBatchNorm());
        StringAssert.Contains(ex.Message, "already folded");

        var arg = Assert.ThrowsExactly<ArgumentException>(() => new LeNetBnNetwork(new LeNetBnArchitecture { BatchNorm = BatchNormKind.None, BatchNormFolded = true }));
        StringAssert.Contains(arg.Message, "BatchNormFolded");
    }

    /// <summary>
    /// A network whose BN layers hold values far from their initial ones: γ and β drawn at random, moving
    /// statistics from a few training-mode passes over shifted, scaled inputs. Returned in eval mode.
    /// </summary>
    private static LeNetBnNetwork NetworkWithNonTrivialStatistics(BatchNormKind kind, double epsilon, long seed)
    {
        var architecture = new LeNetBnArchitecture
        {
            BatchNorm = kind,
            // Momentum 0.5 (of the old value): five passes move the statistics nearly all the way.
            BatchNormOptions = new() { Epsilon = epsilon, Momentum = 0.5 },
        };
        var net = new LeNetBnNetwork(architecture, seed);
        using var scope = NewDisposeScope();
        var generator = new Generator((ulong)seed);
        using (no_grad())
        {
            foreach (var (name, p) in net.named_parameters())
            {
                if (name.EndsWith(".gamma", StringComparison.Ordinal) || (name.Contains(".bn", StringComparison.Ordinal) && name.EndsWith(".weight", StringComparison.Ordinal)))
                    p.copy_(rand(p.shape, generator: generator) * 2 + 0.2);
                else if (name.EndsWith(".beta", StringComparison.Ordinal) || (name.Contains(".bn", StringComparison.Ordinal) && name.EndsWith(".bias", StringComparison.Ordinal)))
                    p.copy_(randn(p.shape, generator: generator));
            }
            net.train();
            for (int i = 0; i < 5; i++)
                net.forward(rand(16, 1, 28, 28, generator: generator) * 3 + 0.5);
        }
        net.eval();
        foreach (var state in net.GetBatchNormStates())
        {
            Assert.IsTrue(state.MovingMean.Any(m => Math.Abs(m) > 1e-2), $"{state.Name}: moving mean moved");
            Assert.IsTrue(state.MovingVariance.Any(v => Math.Abs(v - 1) > 1e-2), $"{state.Name}: moving variance moved");
            Assert.IsTrue(state.Gamma.Any(g => Math.Abs(g - 1) > 1e-2), $"{state.Name}: gamma set");
        }
        return net;
    }
}
