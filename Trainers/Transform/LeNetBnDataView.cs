using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Model.OnnxConverter;

namespace MlNetBn.Transform;

/// <summary>
/// The lazily scored view <see cref="LeNetBnTransformer.Transform"/> returns: the input's columns plus <c>Score</c>
/// and <c>PredictedLabel</c>, computed <see cref="LeNetBnTransformer.PredictionBatchSize"/> rows per forward pass.
/// </summary>
/// <remarks>
/// One pass over the input: a cursor reads a batch of rows ahead, keeping a copy of each row's requested input
/// columns, scores the batch, then serves the rows from those copies. So sources that can be enumerated only once,
/// or that return their rows in another order each time, still give every row its own score.
/// <para>
/// It is an <c>ITransformCanSaveOnnx</c> because that is how <c>mlContext.Model.ConvertToOnnx</c> finds the
/// transforms of a chain: it transforms the data, then walks the resulting view back through each view's
/// <c>Source</c> while the views can save themselves as ONNX (Transform/OnnxExport.cs writes the graph).
/// </para>
/// </remarks>
internal sealed class LeNetBnDataView : ITransformCanSaveOnnx
{
    private readonly LeNetBnTransformer _transformer;
    private readonly IDataView _source;

    public LeNetBnDataView(LeNetBnTransformer transformer, IDataView source, DataViewSchema schema)
    {
        _transformer = transformer;
        _source = source;
        Schema = schema;
    }

    public DataViewSchema Schema { get; }

    /// <summary>The view this one scores: where ONNX export's walk back through the chain goes next.</summary>
    public IDataView Source => _source;

    /// <summary>
    /// Always true: what the graph cannot express makes <see cref="SaveAsOnnx"/> throw, naming it. A false here would
    /// only make ML.NET log a warning and leave the network out of the exported file.
    /// </summary>
    public bool CanSaveOnnx(OnnxContext ctx) => true;

    /// <summary>Writes the network's nodes, from the feature column's variable to <c>Score</c> and <c>PredictedLabel</c>.</summary>
    public void SaveAsOnnx(OnnxContext ctx) => _transformer.SaveAsOnnx(ctx, Schema);

    /// <summary>A view is not a model: ML.NET saves the transformer (mlContext.Model.Save), never this view.</summary>
    void ICanSaveModel.Save(ModelSaveContext ctx) =>
        throw new NotSupportedException("A LeNet-BN transformed data view cannot be saved as a model; save the transformer with mlContext.Model.Save(model, schema, path).");

    // Scores are computed in the order rows are read; a shuffled cursor is left to ML.NET's own shuffling transforms.
    public bool CanShuffle => false;

    public long? GetRowCount() => _source.GetRowCount();

    public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null)
    {
        var needed = columnsNeeded.Select(c => c.Index).ToHashSet();
        int sourceCount = _source.Schema.Count;
        var sourceColumns = needed.Where(i => i < sourceCount).Select(i => _source.Schema[i]).ToList();
        if (!needed.Any(i => i >= sourceCount))
            return new PassThroughCursor(this, _source.GetRowCursor(sourceColumns), needed);
        var features = _source.Schema[_transformer.FeatureColumnName];
        var input = _source.GetRowCursor(sourceColumns.Append(features).Distinct());
        return new BatchCursor(this, input, sourceColumns, needed);
    }

    public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null) =>
        [GetRowCursor(columnsNeeded, rand)];

    /// <summary>No score asked for: the input's rows as they are.</summary>
    private sealed class PassThroughCursor(LeNetBnDataView parent, DataViewRowCursor input, HashSet<int> active) : DataViewRowCursor
    {
        public override DataViewSchema Schema => parent.Schema;
        public override long Position => input.Position;
        public override long Batch => input.Batch;
        public override ValueGetter<DataViewRowId> GetIdGetter() => input.GetIdGetter();
        public override bool IsColumnActive(DataViewSchema.Column column) => active.Contains(column.Index);
        public override bool MoveNext() => input.MoveNext();

        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
        {
            if (!IsColumnActive(column))
                throw new InvalidOperationException($"Column '{column.Name}' was not requested when this cursor was created.");
            return input.GetGetter<TValue>(input.Schema[column.Index]);
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing) input.Dispose();
            base.Dispose(disposing);
        }
    }

    /// <summary>Reads a batch ahead, copies the rows' requested input columns, scores the batch, serves it row by row.</summary>
    private sealed class BatchCursor : DataViewRowCursor
    {
        private readonly LeNetBnDataView _parent;
        private readonly DataViewRowCursor _input;
        private readonly HashSet<int> _active;
        private readonly Dictionary<int, RowCache> _caches;
        private readonly RowCache<DataViewRowId> _ids;
        private readonly ValueGetter<VBuffer<float>> _getFeatures;
        private readonly int _featureSize;
        private readonly int _classes;
        private readonly int _batchSize;
        private readonly List<int> _nonFinite = [];
        private float[] _features = [];
        private float[] _scores = [];
        private VBuffer<float> _row;
        private int _batchCount;
        private int _slot;
        private long _position = -1;

        public BatchCursor(LeNetBnDataView parent, DataViewRowCursor input, IEnumerable<DataViewSchema.Column> sourceColumns, HashSet<int> active)
        {
            _parent = parent;
            _input = input;
            _active = active;
            var transformer = parent._transformer;
            _featureSize = transformer.Architecture.Input.Size;
            _classes = transformer.ClassCount;
            _batchSize = transformer.PredictionBatchSize;
            _getFeatures = input.GetGetter<VBuffer<float>>(input.Schema[transformer.FeatureColumnName]);
            _caches = sourceColumns.ToDictionary(c => c.Index, c => RowCache.For(input, input.Schema[c.Index]));
            _ids = new RowCache<DataViewRowId>(input.GetIdGetter());
        }

        public override DataViewSchema Schema => _parent.Schema;

        public override long Position => _position;

        public override long Batch => _input.Batch;

        public override ValueGetter<DataViewRowId> GetIdGetter() => _ids.Getter(this);

        public override bool IsColumnActive(DataViewSchema.Column column) => _active.Contains(column.Index);

        public override bool MoveNext()
        {
            if (++_slot >= _batchCount)
            {
                if (!ReadBatch()) return false;
                _slot = 0;
            }
            _position++;
            return true;
        }

        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
        {
            if (!IsColumnActive(column))
                throw new InvalidOperationException($"Column '{column.Name}' was not requested when this cursor was created.");
            if (_caches.TryGetValue(column.Index, out var cache))
                return (cache as RowCache<TValue>
                    ?? throw new InvalidOperationException($"Column '{column.Name}' is of type {column.Type}; a getter of {typeof(TValue)} was asked for.")).Getter(this);
            if (column.Name == DefaultColumnNames.Score && typeof(TValue) == typeof(VBuffer<float>))
            {
                ValueGetter<VBuffer<float>> score = (ref VBuffer<float> value) =>
                {
                    var editor = VBufferEditor.Create(ref value, _classes);
                    CurrentScores().CopyTo(editor.Values);
                    value = editor.Commit();
                };
                return (ValueGetter<TValue>)(Delegate)score;
            }
            if (typeof(TValue) == typeof(uint))
            {
                ValueGetter<uint> predicted = (ref uint value) => value = Scoring.PredictedKey(CurrentScores());
                return (ValueGetter<TValue>)(Delegate)predicted;
            }
            throw new InvalidOperationException($"Column '{column.Name}' is of type {column.Type}; a getter of {typeof(TValue)} was asked for.");
        }

        /// <summary>The slot of the row the cursor is on.</summary>
        internal int CurrentSlot => _position >= 0 ? _slot : throw new InvalidOperationException("The cursor is not on a row: call MoveNext first.");

        private ReadOnlySpan<float> CurrentScores() => _scores.AsSpan(CurrentSlot * _classes, _classes);

        /// <summary>Reads up to a batch of rows, keeping what the caller asked for, and scores them.</summary>
        private bool ReadBatch()
        {
            _batchCount = 0;
            _nonFinite.Clear();
            while (_batchCount < _batchSize && _input.MoveNext())
            {
                // Buffers grow with the rows actually read, so a large batch size costs nothing on small inputs.
                if (_batchCount * _featureSize == _features.Length)
                {
                    int rows = Math.Min(_batchSize, Math.Max(16, _batchCount * 2));
                    Array.Resize(ref _features, rows * _featureSize);
                    Array.Resize(ref _scores, rows * _classes);
                }
                _getFeatures(ref _row);
                if (!Scoring.ReadFeatures(_row, _features.AsSpan(_batchCount * _featureSize, _featureSize), _parent._transformer.FeatureColumnName, _input.Position))
                    _nonFinite.Add(_batchCount);
                _ids.Store(_batchCount);
                foreach (var cache in _caches.Values) cache.Store(_batchCount);
                _batchCount++;
            }
            if (_batchCount == 0) return false;
            _parent._transformer.Predict(_features, _batchCount, _scores);
            // Rows are independent in eval mode; a row with NaN or Infinity gets NaN scores whatever the network made of it.
            foreach (int slot in _nonFinite) _scores.AsSpan(slot * _classes, _classes).Fill(float.NaN);
            return true;
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing) _input.Dispose();
            base.Dispose(disposing);
        }
    }

    /// <summary>One input column's values for the rows of the current batch.</summary>
    private abstract class RowCache
    {
        /// <summary>Copies the input cursor's current value into slot <paramref name="slot"/>.</summary>
        public abstract void Store(int slot);

        public static RowCache For(DataViewRowCursor input, DataViewSchema.Column column)
        {
            var raw = column.Type.RawType;
            var cacheType = raw.IsGenericType && raw.GetGenericTypeDefinition() == typeof(VBuffer<>)
                ? typeof(VBufferRowCache<>).MakeGenericType(raw.GetGenericArguments()[0])
                : typeof(RowCache<>).MakeGenericType(raw);
            var getter = typeof(DataViewRow).GetMethod(nameof(DataViewRow.GetGetter))!.MakeGenericMethod(raw).Invoke(input, [column]);
            return (RowCache)Activator.CreateInstance(cacheType, getter)!;
        }
    }

    /// <summary>Values held as they are: numbers, keys, booleans, ids; text is copied out of the source's buffers.</summary>
    private class RowCache<T>(ValueGetter<T> get) : RowCache
    {
        protected readonly ValueGetter<T> Get = get;
        protected T[] Values = [];

        public override void Store(int slot)
        {
            if (slot == Values.Length) Array.Resize(ref Values, Math.Max(16, slot * 2));
            Read(ref Values[slot]);
        }

        protected virtual void Read(ref T slot)
        {
            Get(ref slot);
            // A loader may hand out text that points into a buffer it reuses for the next row.
            if (typeof(T) == typeof(ReadOnlyMemory<char>))
            {
                ref var text = ref System.Runtime.CompilerServices.Unsafe.As<T, ReadOnlyMemory<char>>(ref slot);
                text = text.ToString().AsMemory();
            }
        }

        public virtual ValueGetter<T> Getter(BatchCursor cursor) => (ref T value) => value = Values[cursor.CurrentSlot];
    }

    /// <summary>Vectors: each slot keeps its own buffers, and the caller gets a copy it may write into.</summary>
    private sealed class VBufferRowCache<TItem>(ValueGetter<VBuffer<TItem>> get) : RowCache<VBuffer<TItem>>(get)
    {
        private VBuffer<TItem> _scratch;

        // A getter may hand out its own buffers: copy into the slot's.
        protected override void Read(ref VBuffer<TItem> slot)
        {
            Get(ref _scratch);
            _scratch.CopyTo(ref slot);
        }

        public override ValueGetter<VBuffer<TItem>> Getter(BatchCursor cursor) =>
            (ref VBuffer<TItem> value) => Values[cursor.CurrentSlot].CopyTo(ref value);
    }
}
