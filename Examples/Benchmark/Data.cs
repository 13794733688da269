using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetBn.Data;

namespace MlNetBn.Examples.Benchmark;

/// <summary>Fashion-MNIST as the benchmark uses it: ML.NET data views, and the same rows as plain arrays.</summary>
internal static class Data
{
    /// <summary>The cached files (downloaded once when missing; on an offline machine they must already be there).</summary>
    public static Task<string> EnsureFashionMnistAsync(string? directory, CancellationToken cancel) =>
        FashionMnist.DownloadAsync(directory, message => Console.WriteLine(message), cancel);

    /// <summary>
    /// A split, or <paramref name="count"/> images of it balanced over the classes: the first count/10 of each class
    /// (the cached training file may be sorted by class, so "the first N" would be one class).
    /// </summary>
    public static IDataView Load(MLContext mlContext, FashionMnistSplit split, string directory, int? count) =>
        count is { } n
            ? mlContext.Data.LoadFashionMnist(split, directory, countPerClass: (n + FashionMnist.ClassCount - 1) / FashionMnist.ClassCount, maxCount: n)
            : mlContext.Data.LoadFashionMnist(split, directory);

    /// <summary>Reads every row of a loaded view, in order: N×784 features and zero-based labels.</summary>
    public static (float[] Features, long[] Labels) ReadAll(IDataView data)
    {
        var features = data.Schema[FashionMnist.FeaturesColumnName];
        var label = data.Schema[FashionMnist.LabelColumnName];
        int count = checked((int)(data.GetRowCount() ?? throw new InvalidOperationException("The Fashion-MNIST view has no row count.")));
        var x = new float[checked(count * FashionMnist.FeatureCount)];
        var y = new long[count];
        using var cursor = data.GetRowCursor([features, label]);
        var getFeatures = cursor.GetGetter<VBuffer<float>>(features);
        var getLabel = cursor.GetGetter<uint>(label);
        VBuffer<float> row = default;
        uint key = 0;
        int i = 0;
        while (cursor.MoveNext())
        {
            getFeatures(ref row);
            row.CopyTo(x.AsSpan(i * FashionMnist.FeatureCount, FashionMnist.FeatureCount));
            getLabel(ref key);
            y[i++] = key - 1;
        }
        if (i != count)
            throw new InvalidOperationException($"The Fashion-MNIST view said {count} rows and gave {i}.");
        return (x, y);
    }

    /// <summary>Row <paramref name="index"/> of row-major features.</summary>
    public static float[] Row(float[] features, int index) =>
        features.AsSpan(index * FashionMnist.FeatureCount, FashionMnist.FeatureCount).ToArray();

    /// <summary>The first <paramref name="max"/> rows of row-major features (or all, if fewer) as PredictionEngine inputs.</summary>
    public static ImageInput[] Inputs(float[] features, int max) =>
        Enumerable.Range(0, Math.Min(features.Length / FashionMnist.FeatureCount, max)).Select(i => new ImageInput { Features = Row(features, i) }).ToArray();
}

/// <summary>One image as the PredictionEngine reads it.</summary>
internal sealed class ImageInput
{
    [VectorType(FashionMnist.FeatureCount)]
    public float[] Features { get; set; } = [];
}

/// <summary>What the PredictionEngine returns.</summary>
internal sealed class ScoreOutput
{
    public float[] Score { get; set; } = [];
}
