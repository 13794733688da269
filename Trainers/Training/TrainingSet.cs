using Microsoft.ML;
using Microsoft.ML.Data;

namespace MlNetBn.Training;

/// <summary>What Fit does with a row whose features hold NaN or ±Infinity.</summary>
public enum NonFiniteFeatureHandling
{
    /// <summary>Throw, naming the column and the row (the default: such values poison batch statistics).</summary>
    Reject,

    /// <summary>Leave the row out of training and log how many rows were skipped.</summary>
    SkipRow,
}

/// <summary>
/// Images and labels read from an <see cref="IDataView"/> once, into one contiguous feature array and one label
/// array, so that batches are gathered from a single tensor instead of allocating per row.
/// </summary>
internal sealed class TrainingSet
{
    private TrainingSet(float[] features, long[] labels, int count, int featureSize, int skippedRows)
    {
        Features = features;
        Labels = labels;
        Count = count;
        FeatureSize = featureSize;
        SkippedRows = skippedRows;
    }

    /// <summary>Row-major N×D features, exactly <see cref="Count"/>·D values.</summary>
    public float[] Features { get; }

    /// <summary>Zero-based class indices (ML.NET key value − 1), exactly <see cref="Count"/> of them.</summary>
    public long[] Labels { get; }

    /// <summary>Number of rows.</summary>
    public int Count { get; }

    /// <summary>Values per row, C·H·W.</summary>
    public int FeatureSize { get; }

    /// <summary>Rows left out for non-finite features (with <see cref="NonFiniteFeatureHandling.SkipRow"/>).</summary>
    public int SkippedRows { get; }

    /// <summary>Reads every row. The schema has been checked by the caller; values are checked here.</summary>
    /// <param name="data">The data to read.</param>
    /// <param name="featureColumn">A known-size float vector column of <paramref name="featureSize"/> values.</param>
    /// <param name="labelColumn">A key-typed column with <paramref name="classCount"/> values.</param>
    /// <param name="featureSize">Expected vector size.</param>
    /// <param name="classCount">Number of classes (the key count).</param>
    /// <param name="nonFinite">What to do with NaN/Infinity features.</param>
    /// <param name="dataName">"training data" or "validation data", for messages.</param>
    /// <param name="throwIfCancelled">Called every few thousand rows.</param>
    public static TrainingSet Read(IDataView data, string featureColumn, string labelColumn, int featureSize, int classCount,
        NonFiniteFeatureHandling nonFinite, string dataName, Action throwIfCancelled)
    {
        var features = data.Schema[featureColumn];
        var label = data.Schema[labelColumn];
        long capacity = data.GetRowCount() ?? 1024;
        var x = new float[checked(capacity * featureSize)];
        var y = new long[capacity];
        int count = 0, skipped = 0;
        long row = -1;

        using var cursor = data.GetRowCursor([features, label]);
        var getFeatures = cursor.GetGetter<VBuffer<float>>(features);
        var getLabel = KeyGetter(cursor, label);
        VBuffer<float> buffer = default;
        while (cursor.MoveNext())
        {
            row++;
            if ((row & 4095) == 0) throwIfCancelled();
            ulong key = getLabel();
            if (key == 0)
                throw new InvalidOperationException($"Label column '{labelColumn}' of the {dataName} has a missing value (key 0) at row {row}; filter such rows out or map them to a class.");
            if (key > (ulong)classCount)
                throw new InvalidOperationException($"Label column '{labelColumn}' of the {dataName} has key {key} at row {row}, outside 1..{classCount}.");

            getFeatures(ref buffer);
            if (buffer.Length != featureSize)
                throw new InvalidOperationException($"Feature column '{featureColumn}' of the {dataName} has {buffer.Length} values at row {row}; expected {featureSize}.");
            if (count == y.Length)
            {
                Array.Resize(ref y, y.Length * 2);
                Array.Resize(ref x, checked(y.Length * featureSize));
            }
            var target = x.AsSpan(count * featureSize, featureSize);
            buffer.CopyTo(target);
            if (!AllFinite(target))
            {
                if (nonFinite == NonFiniteFeatureHandling.SkipRow) { skipped++; continue; }
                throw new InvalidOperationException(
                    $"Feature column '{featureColumn}' of the {dataName} holds NaN or Infinity at row {row}. Clean the data, or set NonFiniteFeatures = SkipRow to leave such rows out.");
            }
            y[count++] = (long)key - 1;
        }
        // Exact-length arrays let the training loop wrap them in tensors without another copy.
        if (y.Length != count)
        {
            Array.Resize(ref y, count);
            Array.Resize(ref x, count * featureSize);
        }
        return new TrainingSet(x, y, count, featureSize, skipped);
    }

    /// <summary>Holds out a seeded random <paramref name="fraction"/> of the rows as a validation set.</summary>
    public (TrainingSet Train, TrainingSet Validation) Split(double fraction, int seed)
    {
        int validationCount = (int)Math.Round(Count * fraction);
        if (validationCount < 1 || validationCount >= Count)
            throw new ArgumentOutOfRangeException(nameof(fraction), fraction,
                $"ValidationFraction {fraction} of {Count} rows leaves {validationCount} for validation and {Count - validationCount} for training; both need at least one row.");
        var rows = Enumerable.Range(0, Count).ToArray();
        new Random(seed).Shuffle(rows);
        return (Take(rows.AsSpan(validationCount)), Take(rows.AsSpan(0, validationCount)));
    }

    private TrainingSet Take(ReadOnlySpan<int> rows)
    {
        var x = new float[rows.Length * FeatureSize];
        var y = new long[rows.Length];
        for (int i = 0; i < rows.Length; i++)
        {
            Features.AsSpan(rows[i] * FeatureSize, FeatureSize).CopyTo(x.AsSpan(i * FeatureSize));
            y[i] = Labels[rows[i]];
        }
        return new TrainingSet(x, y, rows.Length, FeatureSize, 0);
    }

    private static bool AllFinite(ReadOnlySpan<float> values)
    {
        foreach (float v in values)
            if (!float.IsFinite(v)) return false;
        return true;
    }

    /// <summary>A getter returning the key as ulong whatever its raw type (MapValueToKey makes uint; others exist).</summary>
    private static Func<ulong> KeyGetter(DataViewRowCursor cursor, DataViewSchema.Column column)
    {
        switch (((KeyDataViewType)column.Type).RawType)
        {
            case var t when t == typeof(uint):
            {
                var get = cursor.GetGetter<uint>(column); uint v = 0;
                return () => { get(ref v); return v; };
            }
            case var t when t == typeof(ulong):
            {
                var get = cursor.GetGetter<ulong>(column); ulong v = 0;
                return () => { get(ref v); return v; };
            }
            case var t when t == typeof(ushort):
            {
                var get = cursor.GetGetter<ushort>(column); ushort v = 0;
                return () => { get(ref v); return v; };
            }
            default:
            {
                var get = cursor.GetGetter<byte>(column); byte v = 0;
                return () => { get(ref v); return v; };
            }
        }
    }
}
