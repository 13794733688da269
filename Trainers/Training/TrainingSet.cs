using System.Runtime.InteropServices;
using Microsoft.ML;
using Microsoft.ML.Data;
using TorchSharp;
using static TorchSharp.torch;

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
/// Images and labels read from an <see cref="IDataView"/> once: the features straight into one CPU tensor (N×D
/// float32, the only copy Fit holds; the training loop gathers its batches from it), the labels into an array. A
/// validation split is a second set of row indices into the same tensor, not a copy.
/// </summary>
internal sealed class TrainingSet : IDisposable
{
    // Rows are gathered in a managed buffer of this many and then copied into the tensor, so reading never holds
    // more than one such chunk besides the tensor.
    private const int ChunkRows = 1024;

    private readonly bool _ownsTensor;

    private TrainingSet(Tensor features, long[] labels, long[] rows, int skippedRows, bool ownsTensor)
    {
        Features = features;
        Labels = labels;
        Rows = rows;
        SkippedRows = skippedRows;
        _ownsTensor = ownsTensor;
    }

    /// <summary>Every row read, N×D on the CPU; <see cref="Rows"/> says which belong to this set.</summary>
    public Tensor Features { get; }

    /// <summary>Zero-based class indices (ML.NET key value − 1) of every row read.</summary>
    public long[] Labels { get; }

    /// <summary>The rows of <see cref="Features"/> that form this set, in order.</summary>
    public long[] Rows { get; }

    /// <summary>Number of rows in this set.</summary>
    public int Count => Rows.Length;

    /// <summary>Values per row, C·H·W.</summary>
    public int FeatureSize => (int)Features.shape[1];

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
        // With the row count known (loaders and row-to-row transforms report it) the rows go straight into a tensor
        // of that size; otherwise into chunk tensors joined at the end, which holds the features twice for a moment.
        long? knownRows = data.GetRowCount();
        Tensor? whole = knownRows is { } n ? empty([n, featureSize], ScalarType.Float32) : null;
        var chunks = new List<Tensor>();
        var y = new List<long>(knownRows is { } k ? (int)Math.Min(k, int.MaxValue) : 1024);
        var stage = new float[ChunkRows * featureSize];
        int staged = 0, count = 0, skipped = 0;
        long row = -1;

        void Flush()
        {
            if (staged == 0) return;
            Tensor target = whole is not null
                ? whole.narrow(0, count - staged, staged)
                : empty([staged, featureSize], ScalarType.Float32);
            // A contiguous CPU tensor's bytes are its storage: this writes the rows in place, no intermediate copy.
            MemoryMarshal.AsBytes(stage.AsSpan(0, staged * featureSize)).CopyTo(target.bytes);
            if (whole is null) chunks.Add(target); else target.Dispose();
            staged = 0;
        }

        try
        {
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
                if (whole is not null && count == whole.shape[0])
                    throw new InvalidOperationException($"The {dataName} reported {whole.shape[0]:N0} rows but its cursor returned more.");
                var target = stage.AsSpan(staged * featureSize, featureSize);
                buffer.CopyTo(target);
                if (!Transform.Scoring.AllFinite(target))
                {
                    if (nonFinite == NonFiniteFeatureHandling.SkipRow) { skipped++; continue; }
                    throw new InvalidOperationException(
                        $"Feature column '{featureColumn}' of the {dataName} holds NaN or Infinity at row {row}. Clean the data, or set NonFiniteFeatures = SkipRow to leave such rows out.");
                }
                y.Add((long)key - 1);
                staged++;
                count++;
                if (staged == ChunkRows) Flush();
            }
            Flush();

            Tensor all;
            if (whole is not null)
            {
                all = count == whole.shape[0] ? whole : whole.narrow(0, 0, count);
                if (!ReferenceEquals(all, whole)) whole.Dispose();
                whole = null;
            }
            else
            {
                all = chunks.Count == 0 ? empty([0, featureSize], ScalarType.Float32) : cat(chunks, 0);
            }
            return new TrainingSet(all, [.. y], AllRows(count), skipped, ownsTensor: true);
        }
        finally
        {
            whole?.Dispose();
            foreach (var chunk in chunks) chunk.Dispose();
        }
    }

    /// <summary>Holds out a seeded random <paramref name="fraction"/> of the rows as a validation set; both share this set's tensor.</summary>
    public (TrainingSet Train, TrainingSet Validation) Split(double fraction, int seed)
    {
        int validationCount = (int)Math.Round(Count * fraction);
        if (validationCount < 1 || validationCount >= Count)
            throw new ArgumentOutOfRangeException(nameof(fraction), fraction,
                $"ValidationFraction {fraction} of {Count} rows leaves {validationCount} for validation and {Count - validationCount} for training; both need at least one row.");
        var rows = (long[])Rows.Clone();
        new Random(seed).Shuffle(rows);
        return (Subset(rows[validationCount..]), Subset(rows[..validationCount]));
    }

    /// <summary>Adds every row read, features and labels, to a fingerprint of the data (checkpoints compare them).</summary>
    public void AppendTo(System.Security.Cryptography.IncrementalHash hash)
    {
        hash.AppendData(BitConverter.GetBytes(Features.shape[0]));
        hash.AppendData(Features.bytes);
        hash.AppendData(MemoryMarshal.AsBytes(Labels.AsSpan()));
    }

    /// <summary>Disposes the features tensor (a split's sets share it and leave it to the set they came from).</summary>
    public void Dispose()
    {
        if (_ownsTensor) Features.Dispose();
    }

    private TrainingSet Subset(long[] rows) => new(Features, Labels, rows, 0, ownsTensor: false);

    private static long[] AllRows(int count)
    {
        var rows = new long[count];
        for (int i = 0; i < count; i++) rows[i] = i;
        return rows;
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
