using MlNetBn.Modules;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetBn.Tests.Modules;

/// <summary>
/// The from-scratch batch normalization against TorchSharp's built-in layers and against statistics computed
/// independently in plain C# doubles.
/// </summary>
[TestClass]
public sealed class BatchNormTests
{
    private const double Tolerance = 1e-5;

    [TestInitialize]
    public void Seed() => random.manual_seed(1234);

    [TestMethod]
    public void Training2D_MatchesBuiltInAndReference()
    {
        using var scope = NewDisposeScope();
        var x = randn(32, 7) * 3 + 1.5;
        using var scratch = new ScratchBatchNorm1d(7, new BatchNormOptions { MovingVariance = MovingVarianceKind.Unbiased });
        using var builtIn = nn.BatchNorm1d(7, eps: 1e-5, momentum: 0.1);
        scratch.train(); builtIn.train();

        var y = scratch.forward(x);
        TensorAssert.AreClose(builtIn.forward(x), y, Tolerance, "output");
        TensorAssert.AreClose(builtIn.running_mean!, scratch.MovingMean, Tolerance, "moving mean");
        TensorAssert.AreClose(builtIn.running_var!, scratch.MovingVariance, Tolerance, "moving variance (unbiased)");

        // Independent reference: per-feature mean and biased variance over the batch, in doubles.
        var (mean, biasedVar) = ReferenceStats(x);
        var xs = TensorAssert.ToDoubles(x);
        var expectedY = new double[xs.Length];
        for (int i = 0; i < xs.Length; i++)
        {
            int f = i % 7;
            expectedY[i] = (xs[i] - mean[f]) / Math.Sqrt(biasedVar[f] + 1e-5);
        }
        TensorAssert.AreClose(expectedY, y.flatten(), Tolerance, "output vs reference");
        TensorAssert.AreClose(mean.Select(m => 0.1 * m).ToArray(), scratch.MovingMean, Tolerance, "moving mean vs reference");
    }

    [TestMethod]
    public void Training4D_UsesPerChannelStatisticsOverNHW()
    {
        using var scope = NewDisposeScope();
        var x = randn(8, 3, 5, 4) * 2 - 0.5;
        using var scratch = new ScratchBatchNorm2d(3);
        using var builtIn = nn.BatchNorm2d(3, eps: 1e-5, momentum: 0.1);
        scratch.train(); builtIn.train();

        TensorAssert.AreClose(builtIn.forward(x), scratch.forward(x), Tolerance, "output");
        TensorAssert.AreClose(builtIn.running_mean!, scratch.MovingMean, Tolerance, "moving mean");

        // The seed's default stores the biased variance: moving = 0.9·1 + 0.1·var_biased, with var over N·H·W = 160 values.
        var (mean, biasedVar) = ReferenceStats(x);
        TensorAssert.AreClose(biasedVar.Select(v => 0.9 + 0.1 * v).ToArray(), scratch.MovingVariance, Tolerance, "moving variance (biased)");
        TensorAssert.AreClose(mean.Select(m => 0.1 * m).ToArray(), scratch.MovingMean, Tolerance, "moving mean vs reference");
        // And the built-in's unbiased one differs by exactly n/(n−1).
        TensorAssert.AreClose(biasedVar.Select(v => 0.9 + 0.1 * v * 160 / 159).ToArray(), builtIn.running_var!, Tolerance, "built-in moving variance (unbiased)");
    }

    [TestMethod]
    public void EvalMode_NormalizesWithMovingStatistics()
    {
        using var scope = NewDisposeScope();
        using var scratch = new ScratchBatchNorm2d(4, new BatchNormOptions { MovingVariance = MovingVarianceKind.Unbiased });
        using var builtIn = nn.BatchNorm2d(4, eps: 1e-5, momentum: 0.1);
        for (int step = 0; step < 5; step++)
        {
            var batch = randn(6, 4, 3, 3) * (step + 1) + step;
            scratch.forward(batch);
            builtIn.forward(batch);
        }
        scratch.eval(); builtIn.eval();
        var x = randn(2, 4, 3, 3);
        var y = scratch.forward(x);
        TensorAssert.AreClose(builtIn.forward(x), y, Tolerance, "eval output");

        var mm = TensorAssert.ToDoubles(scratch.MovingMean);
        var mv = TensorAssert.ToDoubles(scratch.MovingVariance);
        var xs = TensorAssert.ToDoubles(x);
        var expected = xs.Select((v, i) => { int c = i / 9 % 4; return (v - mm[c]) / Math.Sqrt(mv[c] + 1e-5); }).ToArray();
        TensorAssert.AreClose(expected, y.flatten(), Tolerance, "eval output vs moving statistics");

        // Eval mode must not touch the moving statistics, and accepts a single example.
        var before = scratch.MovingMean.clone();
        scratch.forward(randn(1, 4, 1, 1));
        TensorAssert.AreClose(before, scratch.MovingMean, 0, "moving mean after eval forward");
    }

    [TestMethod]
    public void Gradients_MatchBuiltIn()
    {
        using var scope = NewDisposeScope();
        foreach (var shape in new long[][] { [16, 5], [4, 5, 3, 3] })
        {
            var data = randn(shape) * 2 + 1;
            var upstream = randn(shape);
            using var scratch = shape.Length == 2 ? (ScratchBatchNorm)new ScratchBatchNorm1d(5) : new ScratchBatchNorm2d(5);
            using var builtIn = shape.Length == 2 ? (nn.Module<Tensor, Tensor>)nn.BatchNorm1d(5) : nn.BatchNorm2d(5);
            // Non-trivial gamma and beta, identical in both.
            using (no_grad())
            {
                var g = rand(5) + 0.5; var b = randn(5);
                scratch.Gamma.copy_(g); scratch.Beta.copy_(b);
                var bn = (TorchSharp.Modules.BatchNorm)builtIn;
                bn.weight!.copy_(g); bn.bias!.copy_(b);
            }
            var x1 = data.clone().requires_grad_(true);
            var x2 = data.clone().requires_grad_(true);
            (scratch.forward(x1) * upstream).sum().backward();
            (builtIn.forward(x2) * upstream).sum().backward();
            var bnBuiltIn = (TorchSharp.Modules.BatchNorm)builtIn;
            string rank = $"{shape.Length}-D";
            TensorAssert.AreClose(x2.grad!, x1.grad!, 1e-4, $"{rank} input gradient");
            TensorAssert.AreClose(bnBuiltIn.weight!.grad!, scratch.Gamma.grad!, 1e-4, $"{rank} gamma gradient");
            TensorAssert.AreClose(bnBuiltIn.bias!.grad!, scratch.Beta.grad!, 1e-4, $"{rank} beta gradient");
        }
    }

    [TestMethod]
    public void StateDict_HoldsParametersAndBuffers_AndRoundTrips()
    {
        using var scope = NewDisposeScope();
        using var trained = new ScratchBatchNorm2d(3);
        using (no_grad()) { trained.Gamma.mul_(2); trained.Beta.add_(0.5); }
        trained.forward(randn(4, 3, 2, 2) * 3 + 2);
        CollectionAssert.AreEquivalent(new[] { "gamma", "beta", "moving_mean", "moving_var" }, trained.state_dict().Keys.ToArray());
        CollectionAssert.AreEquivalent(new[] { "moving_mean", "moving_var" }, trained.named_buffers().Select(b => b.name).ToArray());

        string path = Path.GetTempFileName();
        try
        {
            trained.save(path);
            using var restored = new ScratchBatchNorm2d(3);
            restored.load(path);
            foreach (var (name, value) in trained.state_dict())
                TensorAssert.AreClose(value, restored.state_dict()[name], 0, name);
            trained.eval(); restored.eval();
            var x = randn(2, 3, 2, 2);
            TensorAssert.AreClose(trained.forward(x), restored.forward(x), 0, "eval output after reload");
        }
        finally { File.Delete(path); }
    }

    [TestMethod]
    public void MomentumConventions_DescribeTheSameAverage()
    {
        using var scope = NewDisposeScope();
        using var d2l = new ScratchBatchNorm1d(3, new BatchNormOptions { Momentum = 0.9 });
        using var pytorch = new ScratchBatchNorm1d(3, new BatchNormOptions { Momentum = 0.1, Convention = MomentumConvention.BatchStatisticWeight });
        using var slow = new ScratchBatchNorm1d(3, new BatchNormOptions { Momentum = 0.99 });
        var x = randn(10, 3) + 4;
        d2l.forward(x); pytorch.forward(x); slow.forward(x);
        TensorAssert.AreClose(d2l.MovingMean, pytorch.MovingMean, 0, "moving mean");
        TensorAssert.AreClose(d2l.MovingVariance, pytorch.MovingVariance, 0, "moving variance");
        TensorAssert.AreClose(d2l.MovingMean / 10, slow.MovingMean, Tolerance, "momentum 0.99 moves a tenth as far");
    }

    [TestMethod]
    public void RejectsWrongRank()
    {
        using var bn = new ScratchBatchNorm1d(4);
        var ex = Assert.ThrowsExactly<ArgumentException>(() => bn.forward(randn(2, 4, 3)));
        StringAssert.Contains(ex.Message, "expects 2-D input (N×F), got 3-D input of shape [2, 4, 3]");
        using var bn2 = new ScratchBatchNorm2d(4);
        ex = Assert.ThrowsExactly<ArgumentException>(() => bn2.forward(randn(2, 4)));
        StringAssert.Contains(ex.Message, "expects 4-D input (N×C×H×W), got 2-D");
    }

    [TestMethod]
    public void RejectsChannelMismatch()
    {
        using var bn = new ScratchBatchNorm2d(6);
        var ex = Assert.ThrowsExactly<ArgumentException>(() => bn.forward(randn(2, 5, 3, 3)));
        StringAssert.Contains(ex.Message, "built for 6 channels, got 5");
    }

    [TestMethod]
    public void RejectsSingleValuePerChannelInTraining_ButNotInEval()
    {
        using var fc = new ScratchBatchNorm1d(4);
        var ex = Assert.ThrowsExactly<ArgumentException>(() => fc.forward(randn(1, 4)));
        StringAssert.Contains(ex.Message, "single value per feature");
        using var conv = new ScratchBatchNorm2d(4);
        ex = Assert.ThrowsExactly<ArgumentException>(() => conv.forward(randn(1, 4, 1, 1)));
        StringAssert.Contains(ex.Message, "single value per channel");
        Assert.IsFalse(conv.MovingVariance.isnan().any().item<bool>(), "a rejected batch must not write into the moving variance");

        conv.eval();
        Assert.AreEqual(4L, conv.forward(randn(1, 4, 1, 1)).numel());
    }

    [TestMethod]
    public void RejectsOutOfRangeOptions()
    {
        var ex = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new ScratchBatchNorm1d(3, new BatchNormOptions { Momentum = 1.5 }));
        Assert.AreEqual("Momentum", ex.ParamName);
        ex = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new ScratchBatchNorm1d(3, new BatchNormOptions { Epsilon = 0 }));
        Assert.AreEqual("Epsilon", ex.ParamName);
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new ScratchBatchNorm1d(0));
    }

    /// <summary>Mean and biased variance of each dimension-1 slice (a feature, or a channel over N·H·W), in doubles.</summary>
    private static (double[] Mean, double[] BiasedVar) ReferenceStats(Tensor x)
    {
        long features = x.shape[1];
        // Move the feature dimension first, then every row holds one feature's values.
        using var perFeature = x.dim() == 2 ? x.t().contiguous() : x.transpose(0, 1).contiguous().view(features, -1);
        var values = TensorAssert.ToDoubles(perFeature);
        int n = values.Length / (int)features;
        var mean = new double[features];
        var variance = new double[features];
        for (int f = 0; f < features; f++)
        {
            var row = values.AsSpan(f * n, n);
            double m = 0; foreach (var v in row) m += v; m /= n;
            double s = 0; foreach (var v in row) s += (v - m) * (v - m);
            mean[f] = m; variance[f] = s / n;
        }
        return (mean, variance);
    }
}
