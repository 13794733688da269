using Microsoft.ML;
using Microsoft.ML.Data;

namespace MlNetBn.Data;

/// <summary>Loads Fashion-MNIST, MNIST or any IDX image/label pair into ML.NET as an <see cref="IDataView"/>.</summary>
/// <remarks>
/// The data view has two columns: <c>Label</c>, a key type with one value per class whose <c>KeyValues</c>
/// annotation holds the class names (so <c>MapKeyToValue</c> gives names), and <c>Features</c>, a known-size
/// vector of rows × columns floats scaled to [0, 1] (pixel / 255, as torchvision's ToTensor does).
/// </remarks>
public static class FashionMnistCatalogExtensions
{
    /// <summary>
    /// Loads a split of Fashion-MNIST from <paramref name="directory"/> (nothing is downloaded: call
    /// <see cref="FashionMnistDownloader.EnsureAsync(CancellationToken)"/> first, or point at a folder holding the four files,
    /// such as the tests' small subset).
    /// </summary>
    /// <param name="catalog">The data catalog of an <see cref="MLContext"/>.</param>
    /// <param name="split">Train or test.</param>
    /// <param name="directory">The folder with the IDX files; <see cref="FashionMnist.DefaultDirectory"/> when null.</param>
    /// <param name="countPerClass">Keep only the first this many images of each class (a balanced subset); null keeps all.</param>
    /// <param name="maxCount">Keep at most this many images in all (after <paramref name="countPerClass"/>); null keeps all.</param>
    /// <returns>A data view with columns <c>Label</c> (key, 10 class names) and <c>Features</c> (784 floats in [0, 1]).</returns>
    /// <exception cref="FileNotFoundException">A file is missing; the message says where to get it.</exception>
    /// <exception cref="IdxFormatException">A file is malformed.</exception>
    public static IDataView LoadFashionMnist(this DataOperationsCatalog catalog, FashionMnistSplit split = FashionMnistSplit.Train,
        string? directory = null, int? countPerClass = null, int? maxCount = null)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        var data = FashionMnist.Read(split, directory);
        var (_, labelsFile) = FashionMnist.GetFileNames(split);
        var labelsPath = Path.Combine(Path.GetFullPath(directory ?? FashionMnist.DefaultDirectory), labelsFile);
        return CreateDataView(data, FashionMnist.ClassNames, countPerClass, maxCount, labelsPath);
    }

    /// <summary>Loads any IDX pair of images and labels (MNIST, Fashion-MNIST, …), raw or gzip.</summary>
    /// <param name="catalog">The data catalog of an <see cref="MLContext"/>.</param>
    /// <param name="imagesPath">The IDX images file (magic 0x00000803).</param>
    /// <param name="labelsPath">The IDX labels file (magic 0x00000801).</param>
    /// <param name="classNames">The name of each label value, indexed by label. When null: "0" … "9", extended to
    /// the largest label present if that is above 9.</param>
    /// <param name="countPerClass">Keep only the first this many images of each class; null keeps all.</param>
    /// <param name="maxCount">Keep at most this many images in all (after <paramref name="countPerClass"/>); null keeps all.</param>
    /// <returns>A data view with columns <c>Label</c> (key with the class names as key values) and <c>Features</c>.</returns>
    /// <exception cref="IdxFormatException">A file is malformed, the counts differ, or a label has no class name.</exception>
    public static IDataView LoadIdx(this DataOperationsCatalog catalog, string imagesPath, string labelsPath,
        IReadOnlyList<string>? classNames = null, int? countPerClass = null, int? maxCount = null)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        var data = IdxDataset.Load(imagesPath, labelsPath);
        return CreateDataView(data, classNames, countPerClass, maxCount, labelsPath);
    }

    /// <summary>Wraps an <see cref="IdxDataset"/> already in memory as a data view (no copy of the pixels).</summary>
    /// <param name="catalog">The data catalog of an <see cref="MLContext"/>.</param>
    /// <param name="data">The images and labels.</param>
    /// <param name="classNames">The name of each label value; when null, "0" … "9" (or up to the largest label).</param>
    /// <param name="countPerClass">Keep only the first this many images of each class; null keeps all.</param>
    /// <param name="maxCount">Keep at most this many images in all (after <paramref name="countPerClass"/>); null keeps all.</param>
    public static IDataView LoadIdx(this DataOperationsCatalog catalog, IdxDataset data,
        IReadOnlyList<string>? classNames = null, int? countPerClass = null, int? maxCount = null)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        ArgumentNullException.ThrowIfNull(data);
        return CreateDataView(data, classNames, countPerClass, maxCount, source: null);
    }

    private static IDataView CreateDataView(IdxDataset data, IReadOnlyList<string>? classNames,
        int? countPerClass, int? maxCount, string? source)
    {
        var counts = data.CountPerLabel();
        int classCount = classNames?.Count ?? Math.Max(10, counts.Length);
        if (classCount == 0)
        {
            throw new ArgumentException("At least one class name is needed.", nameof(classNames));
        }

        if (counts.Length > classCount)
        {
            var message = $"{(source is null ? "The labels hold" : $"'{source}' holds")} label {counts.Length - 1}, but only {classCount} class names were given.";
            if (source is null)
            {
                throw new ArgumentException(message, nameof(classNames));
            }

            throw new IdxFormatException(source, message);
        }

        var names = classNames ?? Enumerable.Range(0, classCount).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        var indices = countPerClass is null && maxCount is null ? null : data.SelectIndices(countPerClass, maxCount);
        return new IdxDataView(data, indices, names);
    }
}
