using Microsoft.ML;
using Microsoft.ML.Data;

namespace MlNetBn.Transform;

/// <summary>
/// Row-to-row mapping for <c>PredictionEngine</c>: one forward pass per row, computed when <c>Score</c> or
/// <c>PredictedLabel</c> is first read for that row and kept until the input moves on.
/// </summary>
internal sealed class LeNetBnRowMapper : IRowToRowMapper
{
    private readonly LeNetBnTransformer _transformer;

    public LeNetBnRowMapper(LeNetBnTransformer transformer, DataViewSchema inputSchema, DataViewSchema outputSchema)
    {
        _transformer = transformer;
        InputSchema = inputSchema;
        OutputSchema = outputSchema;
    }

    public DataViewSchema InputSchema { get; }

    public DataViewSchema OutputSchema { get; }

    public IEnumerable<DataViewSchema.Column> GetDependencies(IEnumerable<DataViewSchema.Column> dependingColumns)
    {
        var needed = new HashSet<int>();
        foreach (var column in dependingColumns)
            needed.Add(column.Index < InputSchema.Count ? column.Index : InputSchema[_transformer.FeatureColumnName].Index);
        return needed.Select(i => InputSchema[i]);
    }

    public DataViewRow GetRow(DataViewRow input, IEnumerable<DataViewSchema.Column> activeColumns) =>
        new Row(this, input, activeColumns.Select(c => c.Index).ToHashSet());

    private sealed class Row : DataViewRow
    {
        private readonly LeNetBnRowMapper _parent;
        private readonly DataViewRow _input;
        private readonly HashSet<int> _active;
        private readonly float[] _features;
        private readonly float[] _scores;
        private ValueGetter<VBuffer<float>>? _getFeatures;
        private VBuffer<float> _row;
        private long _scoredPosition = -1;

        public Row(LeNetBnRowMapper parent, DataViewRow input, HashSet<int> active)
        {
            _parent = parent;
            _input = input;
            _active = active;
            _features = new float[parent._transformer.Architecture.Input.Size];
            _scores = new float[parent._transformer.ClassCount];
        }

        public override DataViewSchema Schema => _parent.OutputSchema;

        public override long Position => _input.Position;

        public override long Batch => _input.Batch;

        public override ValueGetter<DataViewRowId> GetIdGetter() => _input.GetIdGetter();

        public override bool IsColumnActive(DataViewSchema.Column column) => _active.Contains(column.Index);

        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
        {
            if (column.Index < _parent.InputSchema.Count)
                return _input.GetGetter<TValue>(_input.Schema[column.Index]);
            if (column.Name == DefaultColumnNames.Score && typeof(TValue) == typeof(VBuffer<float>))
            {
                ValueGetter<VBuffer<float>> score = (ref VBuffer<float> value) =>
                {
                    var scores = Score();
                    var editor = VBufferEditor.Create(ref value, scores.Length);
                    scores.CopyTo(editor.Values);
                    value = editor.Commit();
                };
                return (ValueGetter<TValue>)(Delegate)score;
            }
            if (typeof(TValue) == typeof(uint))
            {
                ValueGetter<uint> predicted = (ref uint value) => value = Scoring.PredictedKey(Score());
                return (ValueGetter<TValue>)(Delegate)predicted;
            }
            throw new InvalidOperationException($"Column '{column.Name}' is of type {column.Type}; a getter of {typeof(TValue)} was asked for.");
        }

        private ReadOnlySpan<float> Score()
        {
            if (_scoredPosition != _input.Position || _input.Position < 0)
            {
                _getFeatures ??= _input.GetGetter<VBuffer<float>>(_input.Schema[_parent._transformer.FeatureColumnName]);
                _getFeatures(ref _row);
                if (Scoring.ReadFeatures(_row, _features, _parent._transformer.FeatureColumnName, _input.Position))
                    _parent._transformer.Predict(_features, 1, _scores);
                else
                    Array.Fill(_scores, float.NaN);
                _scoredPosition = _input.Position;
            }
            return _scores;
        }
    }
}
