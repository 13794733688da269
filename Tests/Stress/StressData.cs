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
