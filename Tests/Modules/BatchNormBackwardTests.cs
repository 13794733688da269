using Microsoft.ML;
using MlNetBn.Modules;
using MlNetBn.Tests.Trainers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace MlNetBn.Tests.Modules;

/// <summary>
/// The scratch layer's hand-written training backward (<c>BatchNormFunction.Training</c>) against the same equations
/// differentiated by autograd (<see cref="ReferenceBatchNorm"/>): outputs, moving statistics and the three gradients,
/// to 1e-5 in float32 and 1e-10 in float64; a double backward; no tensor or graph node left behind; and one epoch of
/// LeNet-BN training that ends with the same weights.
/// </summary>
[TestClass]
public sealed class BatchNormBackwardTests
{
    public TestContext TestContext { get; set; } = null!;

    private static readonly BatchNormOptions[] OptionSets =
    [
        new(), // d2l: momentum 0.9 on the moving value, biased moving variance
        new() { Momentum = 0.1, Convention = MomentumConvention.BatchStatisticWeight, MovingVariance = MovingVarianceKind.Unbiased }, // PyTorch's
    ];

    [TestInitialize]
    public void Seed() => random.manual_seed(4321);

    private static double Tolerance(ScalarType dtype) => dtype == ScalarType.Float64 ? 1e-10 : 1e-5;

    [TestMethod]
    [DataRow(ScalarType.Float32, 2, true)]
    [DataRow(ScalarType.Float32, 4, true)]
    [DataRow(ScalarType.Float32, 2, false)]
    [DataRow(ScalarType.Float32, 4, false)]
    [DataRow(ScalarType.Float64, 2, true)]
    [DataRow(ScalarType.Float64, 4, true)]
    [DataRow(ScalarType.Float64, 2, false)]
    [DataRow(ScalarType.Float64, 4, false)]
    public void OutputsMovingStatisticsAndGradients_MatchAutogradReference(ScalarType dtype, int rank, bool training)
    {
        double tolerance = Tolerance(dtype);
        long[] shape = rank == 2 ? [32, 7] : [8, 6, 5, 5];
        foreach (var options in OptionSets)
        {
            using var scope = NewDisposeScope();
            var pair = Layers(shape, dtype, options, training);
            using var layer = pair.Layer;
            using var reference = pair.Reference;
            var data = randn(shape, dtype) * 2 + 0.5;
            var upstream = randn(shape, dtype);
            var x = data.clone().requires_grad_(true);
            var xReference = data.clone().requires_grad_(true);

            var y = layer.forward(x);
            var yReference = reference.forward(xReference);
            (y * upstream).sum().backward();
            (yReference * upstream).sum().backward();

            string what = $"{dtype} {rank}-D {(training ? "training" : "eval")} {options.Convention}/{options.MovingVariance}";
            Close(yReference, y, tolerance, $"{what}: output");
            Close(reference.MovingMean, layer.MovingMean, tolerance, $"{what}: moving mean");
            Close(reference.MovingVariance, layer.MovingVariance, tolerance, $"{what}: moving variance");
            Close(xReference.grad!, x.grad!, tolerance, $"{what}: dX");
            Close(reference.Gamma.grad!, layer.Gamma.grad!, tolerance, $"{what}: dgamma");
            Close(reference.Beta.grad!, layer.Beta.grad!, tolerance, $"{what}: dbeta");
        }
    }

    /// <summary>
    /// A managed exception cannot leave the custom function's backward (libtorch calls it), so a double backward is
    /// supported rather than refused: its second-order gradients must be autograd's.
    /// </summary>
    [TestMethod]
    [DataRow(2)]
    [DataRow(4)]
    public void DoubleBackward_MatchesAutogradReference(int rank)
    {
        var dtype = ScalarType.Float64;
        long[] shape = rank == 2 ? [16, 5] : [4, 5, 3, 3];
        using var scope = NewDisposeScope();
        var pair = Layers(shape, dtype, new BatchNormOptions(), training: true);
        using var layer = pair.Layer;
        using var reference = pair.Reference;
        var data = randn(shape, dtype) * 2 + 0.5;
        var upstreamData = randn(shape, dtype);
        var weights = randn(shape[1], dtype);

        (Tensor dX, Tensor dGamma, Tensor dUpstream) SecondOrder(ScratchBatchNorm bn)
        {
            var x = data.clone().requires_grad_(true);
            var upstream = upstreamData.clone().requires_grad_(true);
            var y = bn.forward(x);
            var first = autograd.grad([(y * upstream).sum()], [x, bn.Gamma], retain_graph: true, create_graph: true);
            // Any differentiable function of the first-order gradients: their squared norm and a weighted sum.
            (first[0].square().sum() + (first[1] * weights).sum()).backward();
            return (x.grad!, bn.Gamma.grad!, upstream.grad!);
        }

        var actual = SecondOrder(layer);
        var expected = SecondOrder(reference);
        string what = $"{rank}-D double backward";
        Close(expected.dX, actual.dX, 1e-10, $"{what}: d/dX");
        Close(expected.dGamma, actual.dGamma, 1e-10, $"{what}: d/dgamma");
        Close(expected.dUpstream, actual.dUpstream, 1e-10, $"{what}: d/dY");
    }

    /// <summary>
    /// Each training step's graph, with the tensors the custom function saved, goes with the step's dispose scope:
    /// no tensor left counted, and TorchSharp's list of live custom-function nodes back to its size.
    /// </summary>
    [TestMethod]
    public void TrainingSteps_LeaveNoTensorOrGraphNodeBehind()
    {
        using var layer = new ScratchBatchNorm2d(3);
        var statistics = DisposeScopeManager.Statistics;
        void Step(bool withGrad)
        {
            using var scope = NewDisposeScope();
            var x = (randn(4, 3, 5, 5) * 2).requires_grad_(true);
            using (withGrad ? null : no_grad())
            {
                var y = layer.forward(x);
                if (withGrad)
                    (y * y).sum().backward();
            }
        }

        Step(true); // warm-up: anything TorchSharp creates once per process
        long before = statistics.ThreadTotalLiveCount;
        int? nodesBefore = LiveCustomFunctionNodes();
        for (int i = 0; i < 3; i++)
        {
            Step(true);
            Step(false); // training mode without autograd (statistics recalibration): no node kept either
        }
        Assert.AreEqual(before, statistics.ThreadTotalLiveCount, "tensors left live after the steps' scopes ended");
        if (nodesBefore is null)
            Assert.Inconclusive("TorchSharp's list of live custom-function nodes was not found (TorchSharp internals changed); the tensor count passed.");
        Assert.AreEqual(nodesBefore, LiveCustomFunctionNodes(), "custom-function graph nodes left alive after the steps' scopes ended");
    }

    /// <summary>
    /// One epoch of LeNet-BN (sigmoid, scratch BN) on 500 Fashion-MNIST images, SGD with momentum, batch 32, built
    /// twice from the same seed: with the hand-written backward and with the autograd reference in its BN layers.
    /// Every weight and moving statistic ends the same, to float rounding.
    /// </summary>
    [TestMethod]
    [DataRow(ScalarType.Float32, 1e-5)]
    [DataRow(ScalarType.Float64, 1e-10)]
    public void OneEpochOfLeNetBn_EndsWithTheReferenceWeights(ScalarType dtype, double tolerance)
    {
        var images = TrainerTestData.Images(new MLContext(seed: 1), perClass: 50);
        using var scope = NewDisposeScope();
        var x = tensor(images.SelectMany(i => i.Features).ToArray()).view(-1, 1, 28, 28).to(dtype);
        var labels = tensor(images.Select(i => (long)i.ClassIndex).ToArray());

        var architecture = new LeNetBnArchitecture();
        using var network = new LeNetBnNetwork(architecture, seed: 7);
        using var twin = new LeNetBnNetwork(architecture, seed: 7);
        network.to(dtype);
        twin.to(dtype);
        // The twin's layers, with its BN layers replaced by reference layers holding the same state.
        var referenceLayers = new List<(string, Module<Tensor, Tensor>)>();
        foreach (var (name, module) in twin.Layers.named_children())
            referenceLayers.Add((name, module is ScratchBatchNorm bn ? ReferenceScratchBatchNorm.CopyOf(bn) : (Module<Tensor, Tensor>)module));
        // Disposed before the twin (it disposes the shared layers once more: a no-op) and with the reference BN layers.
        using var reference = Sequential(referenceLayers);
        Assert.AreEqual(4, reference.modules().OfType<ReferenceScratchBatchNorm>().Count());

        TrainOneEpoch(network.Layers, x, labels);
        TrainOneEpoch(reference, x, labels);

        var expected = reference.state_dict();
        var actual = network.Layers.state_dict();
        CollectionAssert.AreEqual(expected.Keys.ToArray(), actual.Keys.ToArray());
        double largest = 0;
        foreach (var (name, value) in expected)
            largest = Math.Max(largest, Close(value, actual[name], tolerance, $"{dtype} {name} after one epoch", log: false));
        TestContext.WriteLine($"{dtype} one epoch: largest |difference| over all weights and statistics {largest:E3}");
    }

    private static void TrainOneEpoch(Module<Tensor, Tensor> model, Tensor x, Tensor labels)
    {
        model.train();
        using var optimizer = optim.SGD(model.parameters(), 0.05, momentum: 0.9);
        var order = Enumerable.Range(0, (int)x.shape[0]).Select(i => (long)i).ToArray();
        new Random(1).Shuffle(order);
        using var permutation = tensor(order);
        for (int start = 0; start < order.Length; start += 32)
        {
            using var step = NewDisposeScope();
            var index = permutation.narrow(0, start, Math.Min(32, order.Length - start));
            optimizer.zero_grad();
            functional.cross_entropy(model.forward(x.index_select(0, index)), labels.index_select(0, index)).backward();
            optimizer.step();
        }
    }

    /// <summary>A scratch layer with non-trivial state and a reference layer with the same state, both in the given mode.</summary>
    private static (ScratchBatchNorm Layer, ReferenceScratchBatchNorm Reference) Layers(long[] shape, ScalarType dtype, BatchNormOptions options, bool training)
    {
        long features = shape[1];
        ScratchBatchNorm layer = shape.Length == 2 ? new ScratchBatchNorm1d(features, options) : new ScratchBatchNorm2d(features, options);
        layer.to(dtype);
        using (no_grad())
        {
            layer.Gamma.copy_(rand(features, dtype) + 0.5);
            layer.Beta.copy_(randn(features, dtype));
            layer.MovingMean.copy_(randn(features, dtype) * 0.3);
            layer.MovingVariance.copy_(rand(features, dtype) + 0.5);
        }
        layer.train(training);
        return (layer, ReferenceScratchBatchNorm.CopyOf(layer));
    }

    /// <summary>Asserts the largest difference is within <paramref name="tolerance"/>, logs and returns it.</summary>
    private double Close(Tensor expected, Tensor actual, double tolerance, string what, bool log = true)
    {
        using var scope = NewDisposeScope();
        double largest = (expected.detach().to(ScalarType.Float64) - actual.detach().to(ScalarType.Float64)).abs().max().item<double>();
        if (log)
            TestContext.WriteLine($"{what}: largest |difference| {largest:E3}");
        TensorAssert.AreClose(expected, actual, tolerance, what);
        return largest;
    }

    /// <summary>
    /// The size of TorchSharp's private list of custom-function graph nodes alive in libtorch (a node leaves it when
    /// libtorch frees it, with the graph); null when TorchSharp no longer has it.
    /// </summary>
    private static int? LiveCustomFunctionNodes()
    {
        var nodeType = typeof(torch.autograd).GetNestedType("Node", System.Reflection.BindingFlags.NonPublic);
        var field = nodeType?.GetField("AliveNodes", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static);
        if (field?.GetValue(null) is not System.Collections.ICollection nodes)
            return null;
        lock (nodes) return nodes.Count;
    }
}
