using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetBn.Data;

namespace MlNetBn.Tests.Stress;

/// <summary>The data the checks use and the row types they predict with.</summary>
internal static class StressData
{
    public static string Directory(string? option) =>
        Path.GetFullPath(option ?? Path.Combine(AppContext.BaseDirectory, "Data", "fashion-mnist-small"));

    /// <summary>The test images, cycled to <paramref name="count"/> rows (the same objects repeated).</summary>
    public static List<Image> Cycled(MLContext mlContext, string directory, int count)
    {
        var images = mlContext.Data.CreateEnumerable<Image>(mlContext.Data.LoadFashionMnist(FashionMnistSplit.Test, directory), reuseRowObject: false).ToList();
        return Enumerable.Range(0, count).Select(i => images[i % images.Count]).ToList();
    }
}

/// <summary>One image, as ML.NET's LoadFashionMnist gives it.</summary>
internal sealed class Image
{
    [KeyType(10)]
    public uint Label { get; set; }

    [VectorType(784)]
    public float[] Features { get; set; } = [];
}

/// <summary>What the checks read back.</summary>
internal sealed class Prediction
{
    public float[] Score { get; set; } = [];
}
