using TorchSharp;
using static TorchSharp.torch;

namespace MlNetBn.Tests;

/// <summary>Tensor comparisons that report the largest difference when they fail.</summary>
internal static class TensorAssert
{
    public static void AreClose(Tensor expected, Tensor actual, double tolerance, string what)
    {
        using var scope = NewDisposeScope();
        CollectionAssert.AreEqual(expected.shape, actual.shape, $"{what}: shapes differ");
        double maxDiff = (expected.detach().to(ScalarType.Float64) - actual.detach().to(ScalarType.Float64)).abs().max().item<double>();
        Assert.IsLessThanOrEqualTo(tolerance, maxDiff, $"{what}: max |difference| {maxDiff:E3} exceeds {tolerance:E1}");
    }

    public static void AreClose(double[] expected, Tensor actual, double tolerance, string what)
    {
        using var t = tensor(expected);
        AreClose(t, actual, tolerance, what);
    }

    public static double[] ToDoubles(Tensor t)
    {
        using var scope = NewDisposeScope();
        return t.detach().cpu().to(ScalarType.Float64).contiguous().data<double>().ToArray();
    }
}
