using MlNetBn.Modules;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetBn.Tests.Modules;

[TestClass]
public sealed class LeNetBnNetworkTests
{
    [TestMethod]
    public void FashionMnistShape_Gives256FlattenAndTenLogits()
    {
        using var scope = NewDisposeScope();
        using var net = new LeNetBnNetwork(new LeNetBnArchitecture(), seed: 1);
        Assert.AreEqual(256, net.FlattenSize);
        CollectionAssert.AreEqual(new long[] { 4, 10 }, net.forward(rand(4, 1, 28, 28)).shape);
        // ML.NET hands flat feature vectors; they are viewed as images.
        CollectionAssert.AreEqual(new long[] { 3, 10 }, net.forward(rand(3, 784)).shape);
    }

    /// <summary>
    /// The seed goes through libtorch's process-wide generator, so networks built at once on other threads (seeded
    /// or not: a model being loaded draws from it too) must not interleave with a seeded build.
    /// </summary>
    [TestMethod]
    public void SeededBuilds_AreReproducible_WhileOtherThreadsBuildNetworks()
    {
        var architecture = new LeNetBnArchitecture();
        Tensor Weights(LeNetBnNetwork net) => torch.cat(net.parameters().Select(p => p.detach().flatten()).ToList(), 0);
        using var reference = new LeNetBnNetwork(architecture, seed: 42);
        using var expected = Weights(reference);
        int mismatches = 0;
        var workers = Enumerable.Range(0, 4).Select(t => Task.Factory.StartNew(() =>
        {
            for (int i = 0; i < 15; i++)
            {
                using var scope = NewDisposeScope();
                using var net = (t + i) % 2 == 0 ? new LeNetBnNetwork(architecture, seed: 42) : new LeNetBnNetwork(architecture);
                if ((t + i) % 2 == 0 && !Weights(net).equal(expected).all().item<bool>())
                    Interlocked.Increment(ref mismatches);
            }
        }, TaskCreationOptions.LongRunning)).ToArray();
        Task.WaitAll(workers);
        Assert.AreEqual(0, mismatches, "seeded networks built beside other builds got other weights");
    }

    [TestMethod]
    public void OtherInputShape_ComputesFlattenSize()
    {
        using var scope = NewDisposeScope();
        var architecture = new LeNetBnArchitecture { Input = new ImageShape(3, 32, 36), NumClasses = 7 };
        using var net = new LeNetBnNetwork(architecture, seed: 1);
        // 32→28→14→10→5 and 36→32→16→12→6: 16·5·6.
        Assert.AreEqual(16 * 5 * 6, net.FlattenSize);
        CollectionAssert.AreEqual(new long[] { 2, 7 }, net.forward(rand(2, 3, 32, 36)).shape);
    }

    [TestMethod]
    public void Layers_FollowTheSeedOrder()
    {
        using var net = new LeNetBnNetwork(new LeNetBnArchitecture(), seed: 1);
        var names = net.Layers.named_children().Select(c => c.name).ToArray();
        CollectionAssert.AreEqual(
            new[] { "conv1", "bn1", "act1", "pool1", "conv2", "bn2", "act2", "pool2", "flatten", "fc1", "bn3", "act3", "fc2", "bn4", "act4", "fc3" },
            names);
        var kinds = net.Layers.named_children().Select(c => c.module.GetType().Name).ToArray();
        CollectionAssert.AreEqual(
            new[] { "Conv2d", "ScratchBatchNorm2d", "Sigmoid", "AvgPool2d", "Conv2d", "ScratchBatchNorm2d", "Sigmoid", "AvgPool2d", "Flatten", "Linear", "ScratchBatchNorm1d", "Sigmoid", "Linear", "ScratchBatchNorm1d", "Sigmoid", "Linear" },
            kinds);
    }

    [TestMethod]
    public void Options_SelectBatchNormActivationAndPooling()
    {
        using var builtIn = new LeNetBnNetwork(new LeNetBnArchitecture { BatchNorm = BatchNormKind.BuiltIn, Activation = ActivationKind.ReLU, Pooling = PoolingKind.Max });
        var kinds = builtIn.Layers.named_children().Select(c => c.module.GetType().Name).ToList();
        CollectionAssert.Contains(kinds, "BatchNorm2d");
        CollectionAssert.Contains(kinds, "BatchNorm1d");
        CollectionAssert.Contains(kinds, "ReLU");
        CollectionAssert.Contains(kinds, "MaxPool2d");
        CollectionAssert.DoesNotContain(kinds, "Sigmoid");

        using var plain = new LeNetBnNetwork(new LeNetBnArchitecture { BatchNorm = BatchNormKind.None });
        Assert.AreEqual(0, plain.GetBatchNormStates().Count);
        Assert.AreEqual(12, plain.Layers.named_children().Count());
    }

    [TestMethod]
    public void BatchNormStates_AreReadableForEveryLayer()
    {
        foreach (var kind in new[] { BatchNormKind.Scratch, BatchNormKind.BuiltIn })
        {
            using var net = new LeNetBnNetwork(new LeNetBnArchitecture { BatchNorm = kind }, seed: 3);
            var states = net.GetBatchNormStates();
            CollectionAssert.AreEqual(new[] { "bn1", "bn2", "bn3", "bn4" }, states.Select(s => s.Name).ToArray());
            CollectionAssert.AreEqual(new[] { 6, 16, 120, 84 }, states.Select(s => s.Gamma.Length).ToArray());
            Assert.IsTrue(states.All(s => s.Kind == kind));
            // Initial values: gamma 1, beta 0, moving mean 0, moving variance 1.
            Assert.IsTrue(states.All(s => s.Gamma.All(v => v == 1) && s.Beta.All(v => v == 0) && s.MovingMean.All(v => v == 0) && s.MovingVariance.All(v => v == 1)));
        }
    }

    [TestMethod]
    public void ScratchAndBuiltInNetworks_AgreeInTrainingAndEval()
    {
        using var scope = NewDisposeScope();
        using var scratch = new LeNetBnNetwork(new LeNetBnArchitecture { BatchNormOptions = new() { MovingVariance = MovingVarianceKind.Unbiased } }, seed: 42);
        using var builtIn = new LeNetBnNetwork(new LeNetBnArchitecture { BatchNorm = BatchNormKind.BuiltIn }, seed: 42);
        var x = rand(16, 1, 28, 28);
        scratch.train(); builtIn.train();
        TensorAssert.AreClose(builtIn.forward(x), scratch.forward(x), 1e-4, "training-mode logits");
        var s = scratch.GetBatchNormStates();
        var b = builtIn.GetBatchNormStates();
        for (int i = 0; i < s.Count; i++)
        {
            TensorAssert.AreClose(tensor(b[i].MovingMean), tensor(s[i].MovingMean), 1e-5, $"{s[i].Name} moving mean");
            TensorAssert.AreClose(tensor(b[i].MovingVariance), tensor(s[i].MovingVariance), 1e-5, $"{s[i].Name} moving variance");
        }
        scratch.eval(); builtIn.eval();
        TensorAssert.AreClose(builtIn.forward(x), scratch.forward(x), 1e-4, "eval-mode logits");
    }

    [TestMethod]
    public void SameSeed_SameInitialWeights()
    {
        using var a = new LeNetBnNetwork(new LeNetBnArchitecture(), seed: 7);
        using var b = new LeNetBnNetwork(new LeNetBnArchitecture(), seed: 7);
        using var c = new LeNetBnNetwork(new LeNetBnArchitecture(), seed: 8);
        foreach (var (name, value) in a.state_dict())
            TensorAssert.AreClose(value, b.state_dict()[name], 0, name);
        Assert.IsGreaterThan(0.0, (a.state_dict()["layers.conv1.weight"] - c.state_dict()["layers.conv1.weight"]).abs().max().item<float>(), "another seed gives other weights");
    }

    [TestMethod]
    public void XavierUniformInit_StaysWithinTheGlorotBound()
    {
        using var net = new LeNetBnNetwork(new LeNetBnArchitecture(), seed: 5);
        // Glorot bound sqrt(6/(fan_in+fan_out)); fc1: 256 in, 120 out.
        double bound = Math.Sqrt(6.0 / (256 + 120));
        var w = net.state_dict()["layers.fc1.weight"];
        Assert.IsLessThanOrEqualTo(bound, w.abs().max().item<float>());
        Assert.IsGreaterThan(0.9 * bound, w.abs().max().item<float>(), "uniform over the whole bound");
    }

    [TestMethod]
    public void RejectsBadArchitectureAndInput()
    {
        var ex = Assert.ThrowsExactly<ArgumentException>(() => new LeNetBnNetwork(new LeNetBnArchitecture { Input = new ImageShape(1, 12, 28) }));
        StringAssert.Contains(ex.Message, "too small");
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new LeNetBnNetwork(new LeNetBnArchitecture { NumClasses = 1 }));
        ex = Assert.ThrowsExactly<ArgumentException>(() => new LeNetBnNetwork(new LeNetBnArchitecture
        {
            BatchNorm = BatchNormKind.BuiltIn,
            BatchNormOptions = new() { MovingVariance = MovingVarianceKind.Biased },
        }));
        StringAssert.Contains(ex.Message, "unbiased");

        using var net = new LeNetBnNetwork(new LeNetBnArchitecture());
        ex = Assert.ThrowsExactly<ArgumentException>(() => net.forward(rand(2, 1, 32, 32)));
        StringAssert.Contains(ex.Message, "built for 1×28×28 images");
    }

    [TestMethod]
    public void ShortTraining_LowersTheLoss()
    {
        using var scope = NewDisposeScope();
        random.manual_seed(11);
        // Ten synthetic classes: each a fixed random template plus noise, so a few SGD steps can separate them.
        var templates = rand(10, 1, 28, 28);
        var labels = arange(256).remainder(10);
        var images = templates.index_select(0, labels) + 0.3 * randn(256, 1, 28, 28);

        using var net = new LeNetBnNetwork(new LeNetBnArchitecture(), seed: 11);
        net.train();
        using var sgd = optim.SGD(net.parameters(), learningRate: 1.0);
        var losses = new List<double>();
        for (int step = 0; step < 30; step++)
        {
            using var stepScope = NewDisposeScope();
            var batch = arange(step * 64 % 256, step * 64 % 256 + 64);
            sgd.zero_grad();
            var loss = nn.functional.cross_entropy(net.forward(images.index_select(0, batch)), labels.index_select(0, batch));
            loss.backward();
            sgd.step();
            losses.Add(loss.item<float>());
        }
        double first = losses.Take(4).Average(), last = losses.TakeLast(4).Average();
        Assert.IsLessThan(first * 0.5, last, $"loss should at least halve: first {first:F3}, last {last:F3}");
        Assert.IsTrue(losses.All(double.IsFinite));
    }
}
