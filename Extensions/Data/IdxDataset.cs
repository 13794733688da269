namespace MlNetBn.Data;

/// <summary>
/// A pair of IDX files held in memory: images and their labels, one label per image.
/// </summary>
public sealed class IdxDataset
{
    /// <summary>Pairs images with labels.</summary>
    /// <param name="images">The images.</param>
    /// <param name="labels">One label per image.</param>
    /// <exception cref="ArgumentException">The counts differ.</exception>
    public IdxDataset(IdxImages images, ReadOnlyMemory<byte> labels)
    {
        ArgumentNullException.ThrowIfNull(images);
        if (images.Count != labels.Length)
        {
            throw new ArgumentException($"{images.Count} images but {labels.Length} labels.", nameof(labels));
        }

        Images = images;
        Labels = labels;
    }

    /// <summary>The images.</summary>
    public IdxImages Images { get; }

    /// <summary>One label per image.</summary>
    public ReadOnlyMemory<byte> Labels { get; }

    /// <summary>The number of examples.</summary>
    public int Count => Images.Count;

    /// <summary>Reads an images file and a labels file (raw or gzip) and checks that their counts agree.</summary>
    /// <param name="imagesPath">The IDX images file.</param>
    /// <param name="labelsPath">The IDX labels file.</param>
    /// <exception cref="IdxFormatException">Either file is malformed, or the counts differ (the message names both files).</exception>
    public static IdxDataset Load(string imagesPath, string labelsPath)
    {
        var images = IdxFile.ReadImages(imagesPath);
        var labels = IdxFile.ReadLabels(labelsPath);
        if (images.Count != labels.Length)
        {
            throw new IdxFormatException(labelsPath,
                $"'{imagesPath}' holds {images.Count} images but '{labelsPath}' holds {labels.Length} labels; the counts must match.");
        }

        return new IdxDataset(images, labels);
    }

    /// <summary>Writes the images and labels as two IDX files.</summary>
    /// <param name="imagesPath">The images file to create or overwrite.</param>
    /// <param name="labelsPath">The labels file to create or overwrite.</param>
    /// <param name="gzip">Whether to gzip-compress both files.</param>
    public void Save(string imagesPath, string labelsPath, bool gzip)
    {
        IdxFile.WriteImages(imagesPath, Images, gzip);
        IdxFile.WriteLabels(labelsPath, Labels.Span, gzip);
    }

    /// <summary>A new data set made of the examples at <paramref name="indices"/>, in that order (copied).</summary>
    /// <param name="indices">Indices of examples, from 0.</param>
    public IdxDataset Select(IReadOnlyList<int> indices)
    {
        ArgumentNullException.ThrowIfNull(indices);
        int size = Images.ImageSize;
        var pixels = new byte[(long)indices.Count * size];
        var labels = new byte[indices.Count];
        var source = Images.Pixels.Span;
        var sourceLabels = Labels.Span;
        for (int i = 0; i < indices.Count; i++)
        {
            int index = indices[i];
            ArgumentOutOfRangeException.ThrowIfNegative(index);
            ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, Count);
            source.Slice(index * size, size).CopyTo(pixels.AsSpan(i * size, size));
            labels[i] = sourceLabels[index];
        }

        return new IdxDataset(new IdxImages(indices.Count, Images.Rows, Images.Columns, pixels), labels);
    }

    /// <summary>
    /// Indices of the examples to keep: at most <paramref name="countPerClass"/> of each label (the first ones
    /// in file order), then at most <paramref name="maxCount"/> in all; the order of the file is kept.
    /// </summary>
    /// <param name="countPerClass">Maximum examples per label, or null for no limit.</param>
    /// <param name="maxCount">Maximum examples in all, or null for no limit.</param>
    public int[] SelectIndices(int? countPerClass = null, int? maxCount = null)
    {
        if (countPerClass is < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(countPerClass), countPerClass, "Must be zero or more.");
        }

        if (maxCount is < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(maxCount), maxCount, "Must be zero or more.");
        }

        int limit = Math.Min(maxCount ?? Count, Count);
        var kept = new List<int>(limit);
        var seen = new int[256];
        var labels = Labels.Span;
        for (int i = 0; i < Count && kept.Count < limit; i++)
        {
            if (countPerClass is int perClass && seen[labels[i]]++ >= perClass)
            {
                continue;
            }

            kept.Add(i);
        }

        return [.. kept];
    }

    /// <summary>Counts the examples of each label value (index = label).</summary>
    public int[] CountPerLabel()
    {
        var counts = new int[256];
        foreach (var label in Labels.Span)
        {
            counts[label]++;
        }

        int last = Array.FindLastIndex(counts, c => c != 0);
        return counts[..(last + 1)];
    }
}
