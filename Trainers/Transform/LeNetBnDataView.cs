using Microsoft.ML;
using Microsoft.ML.Data;

namespace MlNetBn.Transform;

/// <summary>
/// The lazily scored view <see cref="LeNetBnTransformer.Transform"/> returns: the input's columns plus <c>Score</c>
/// and <c>PredictedLabel</c>, computed <see cref="LeNetBnTransformer.PredictionBatchSize"/> rows per forward pass.
/// </summary>
internal sealed class LeNetBnDataView : IDataView
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

    // Batching reads ahead with a second cursor that must see the rows in the same order: no shuffling.
    public bool CanShuffle => false;

    public long? GetRowCount() => _source.GetRowCount();

    public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null)
    {
        var needed = columnsNeeded.Select(c => c.Index).ToHashSet();
        int sourceCount = _source.Schema.Count;
        var sourceNeeded = needed.Where(i => i < sourceCount).Select(i => _source.Schema[i]).ToList();
        var input = _source.GetRowCursor(sourceNeeded);
        bool scoresNeeded = needed.Any(i => i >= sourceCount);
        // The look-ahead cursor reads only the features, a batch ahead of the row the caller is on.
        var ahead = scoresNeeded ? _source.GetRowCursor([_source.Schema[_transformer.FeatureColumnName]]) : null;
        return new Cursor(this, input, ahead, needed);
    }

    public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null) =>
        [GetRowCursor(columnsNeeded, rand)];

    private sealed class Cursor : DataViewRowCursor
    {
        private readonly LeNetBnDataView _parent;
        private readonly DataViewRowCursor _input;
        private readonly DataViewRowCursor? _ahead;
        private readonly HashSet<int> _active;
        private readonly BatchScorer? _scorer;

        public Cursor(LeNetBnDataView parent, DataViewRowCursor input, DataViewRowCursor? ahead, HashSet<int> active)
        {
            _parent = parent;
            _input = input;
            _ahead = ahead;
            _active = active;
            if (ahead is not null)
                _scorer = new BatchScorer(parent._transformer, ahead);
        }

        public override DataViewSchema Schema => _parent.Schema;

        public override long Position => _input.Position;

        public override long Batch => _input.Batch;

        public override ValueGetter<DataViewRowId> GetIdGetter() => _input.GetIdGetter();

        public override bool IsColumnActive(DataViewSchema.Column column) => _active.Contains(column.Index);

        public override bool MoveNext() => _input.MoveNext();

        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
        {
            if (!IsColumnActive(column))
                throw new InvalidOperationException($"Column '{column.Name}' was not requested when this cursor was created.");
            int sourceCount = _input.Schema.Count;
            if (column.Index < sourceCount)
                return _input.GetGetter<TValue>(_input.Schema[column.Index]);
            var scorer = _scorer!;
            if (column.Name == DefaultColumnNames.Score && typeof(TValue) == typeof(VBuffer<float>))
            {
                ValueGetter<VBuffer<float>> score = (ref VBuffer<float> value) => scorer.GetScores(Position, ref value);
                return (ValueGetter<TValue>)(Delegate)score;
            }
            if (typeof(TValue) == typeof(uint))
            {
                ValueGetter<uint> predicted = (ref uint value) => value = scorer.GetPredictedKey(Position);
                return (ValueGetter<TValue>)(Delegate)predicted;
            }
            throw new InvalidOperationException($"Column '{column.Name}' is of type {column.Type}; a getter of {typeof(TValue)} was asked for.");
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                _input.Dispose();
                _ahead?.Dispose();
            }
            base.Dispose(disposing);
        }
    }

    /// <summary>Scores the look-ahead cursor's rows a batch at a time and serves them by row position.</summary>
    private sealed class BatchScorer
    {
        private readonly LeNetBnTransformer _transformer;
        private readonly DataViewRowCursor _ahead;
        private readonly ValueGetter<VBuffer<float>> _getFeatures;
        private readonly float[] _features;
        private readonly float[] _scores;
        private readonly int _featureSize;
        private readonly int _classes;
        private VBuffer<float> _row;
        private long _batchStart;
        private int _batchCount;

        public BatchScorer(LeNetBnTransformer transformer, DataViewRowCursor ahead)
        {
            _transformer = transformer;
            _ahead = ahead;
            _getFeatures = ahead.GetGetter<VBuffer<float>>(ahead.Schema[transformer.FeatureColumnName]);
            _featureSize = transformer.Architecture.Input.Size;
            _classes = transformer.ClassCount;
            _features = new float[transformer.PredictionBatchSize * _featureSize];
            _scores = new float[transformer.PredictionBatchSize * _classes];
        }

        public void GetScores(long position, ref VBuffer<float> value)
        {
            int offset = Locate(position) * _classes;
            var editor = VBufferEditor.Create(ref value, _classes);
            _scores.AsSpan(offset, _classes).CopyTo(editor.Values);
            value = editor.Commit();
        }

        public uint GetPredictedKey(long position)
        {
            var scores = _scores.AsSpan(Locate(position) * _classes, _classes);
            int best = 0;
            for (int c = 1; c < scores.Length; c++)
                if (scores[c] > scores[best]) best = c;
            return (uint)best + 1;
        }

        /// <summary>The row's index in the current batch, scoring the next batch first when the row is past it.</summary>
        private int Locate(long position)
        {
            if (position < 0)
                throw new InvalidOperationException("The cursor is not on a row: call MoveNext first.");
            if (position < _batchStart)
                throw new InvalidOperationException("LeNetBn scores rows in order; this row was already passed.");
            if (position >= _batchStart + _batchCount)
                ScoreBatchAt(position);
            return (int)(position - _batchStart);
        }

        private void ScoreBatchAt(long position)
        {
            // Bring the look-ahead cursor onto the row; rows nobody asked scores for are passed without reading.
            while (_ahead.Position < position)
            {
                if (!_ahead.MoveNext())
                    throw new InvalidOperationException("The input data returned fewer rows on a second pass; LeNetBn needs data that reads the same twice.");
            }
            _batchStart = position;
            _batchCount = 0;
            do
            {
                _getFeatures(ref _row);
                _row.CopyTo(_features.AsSpan(_batchCount * _featureSize, _featureSize));
                _batchCount++;
            }
            while (_batchCount < _transformer.PredictionBatchSize && _ahead.MoveNext());
            _transformer.Predict(_features, _batchCount, _scores);
        }
    }
}
