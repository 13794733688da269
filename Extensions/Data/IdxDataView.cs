using Microsoft.ML;
using Microsoft.ML.Data;

namespace MlNetBn.Data;

/// <summary>
/// An <see cref="IDataView"/> over an <see cref="IdxDataset"/> that keeps the pixels as bytes and converts a row to
/// floats only when a cursor asks for it.
/// </summary>
/// <remarks>
/// Why not <c>LoadFromEnumerable</c> with a schema definition: that view cannot shuffle (ML.NET 5 wraps even an
/// <see cref="IList{T}"/> in its streaming view, <c>CanShuffle</c> false) and needs one row object with its own
/// float array per row, either held (188 MB for the 60,000 training images instead of 47 MB of bytes) or allocated
/// on every pass. This view knows its row count, shuffles by permuting indices when given a <see cref="Random"/>,
/// and its getter writes straight into the caller's reused buffer.
/// </remarks>
internal sealed class IdxDataView : IDataView
{
    private const int LabelColumn = 0;
    private const int FeaturesColumn = 1;

    // ML.NET's name for the annotation holding a key column's values (AnnotationUtils.Kinds.KeyValues is internal).
    private const string KeyValuesAnnotationKind = "KeyValues";

    private readonly IdxDataset _data;
    private readonly int[]? _indices;

    public IdxDataView(IdxDataset data, int[]? indices, IReadOnlyList<string> classNames)
    {
        _data = data;
        _indices = indices;

        var names = new VBuffer<ReadOnlyMemory<char>>(classNames.Count, classNames.Select(n => n.AsMemory()).ToArray());
        var annotations = new DataViewSchema.Annotations.Builder();
        annotations.Add(KeyValuesAnnotationKind, new VectorDataViewType(TextDataViewType.Instance, classNames.Count),
            (ref VBuffer<ReadOnlyMemory<char>> value) => names.CopyTo(ref value));

        var schema = new DataViewSchema.Builder();
        schema.AddColumn(FashionMnist.LabelColumnName, new KeyDataViewType(typeof(uint), classNames.Count), annotations.ToAnnotations());
        schema.AddColumn(FashionMnist.FeaturesColumnName, new VectorDataViewType(NumberDataViewType.Single, data.Images.ImageSize));
        Schema = schema.ToSchema();
    }

    public bool CanShuffle => true;

    public DataViewSchema Schema { get; }

    private int Count => _indices?.Length ?? _data.Count;

    public long? GetRowCount() => Count;

    public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null)
    {
        ArgumentNullException.ThrowIfNull(columnsNeeded);
        var active = new bool[Schema.Count];
        foreach (var column in columnsNeeded)
        {
            active[column.Index] = true;
        }

        int[]? order = _indices;
        if (rand is not null)
        {
            order = _indices is null ? Enumerable.Range(0, _data.Count).ToArray() : (int[])_indices.Clone();
            // Fisher–Yates: the permutation depends only on the caller's Random, so a seeded pipeline is reproducible.
            for (int i = order.Length - 1; i > 0; i--)
            {
                int j = rand.Next(i + 1);
                (order[i], order[j]) = (order[j], order[i]);
            }
        }

        return new Cursor(this, order, active);
    }

    // One cursor is enough: producing a row costs 784 divisions, far below what the consumer does with it.
    public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null) =>
        [GetRowCursor(columnsNeeded, rand)];

    private sealed class Cursor : DataViewRowCursor
    {
        private readonly IdxDataView _parent;
        private readonly int[]? _order;
        private readonly bool[] _active;
        private long _position = -1;
        private int _row = -1;
        private bool _disposed;

        public Cursor(IdxDataView parent, int[]? order, bool[] active)
        {
            _parent = parent;
            _order = order;
            _active = active;
        }

        public override DataViewSchema Schema => _parent.Schema;

        public override long Position => _position;

        public override long Batch => 0;

        public override bool MoveNext()
        {
            if (_disposed)
            {
                return false;
            }

            if (_position + 1 < _parent.Count)
            {
                _position++;
                _row = _order?[_position] ?? (int)_position;
                return true;
            }

            Dispose();
            return false;
        }

        public override bool IsColumnActive(DataViewSchema.Column column) =>
            column.Index >= 0 && column.Index < _active.Length && _active[column.Index];

        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
        {
            if (!IsColumnActive(column))
            {
                throw new ArgumentOutOfRangeException(nameof(column), $"Column '{column.Name}' was not requested when the cursor was made.");
            }

            Delegate getter = column.Index switch
            {
                LabelColumn when typeof(TValue) == typeof(uint) => (ValueGetter<uint>)GetLabel,
                FeaturesColumn when typeof(TValue) == typeof(VBuffer<float>) => (ValueGetter<VBuffer<float>>)GetFeatures,
                _ => throw new InvalidOperationException(
                    $"Column '{column.Name}' has type {column.Type}; a getter of {typeof(TValue).Name} was asked for."),
            };
            return (ValueGetter<TValue>)getter;
        }

        public override ValueGetter<DataViewRowId> GetIdGetter() =>
            (ref DataViewRowId id) =>
            {
                EnsureOnRow();
                // The source row's index: stable whatever the order, as shuffled cursors require.
                id = new DataViewRowId((ulong)_row, 0);
            };

        protected override void Dispose(bool disposing)
        {
            if (!_disposed)
            {
                _disposed = true;
                _position = -1;
                _row = -1;
            }

            base.Dispose(disposing);
        }

        private void GetLabel(ref uint value)
        {
            EnsureOnRow();
            // Keys are 1-based (0 means missing), so label l is key l + 1.
            value = _parent._data.Labels.Span[_row] + 1u;
        }

        private void GetFeatures(ref VBuffer<float> value)
        {
            EnsureOnRow();
            var pixels = _parent._data.Images.GetImage(_row);
            var editor = VBufferEditor.Create(ref value, pixels.Length);
            var values = editor.Values;
            for (int i = 0; i < pixels.Length; i++)
            {
                // Scaled to [0, 1] like torchvision's ToTensor, which d2l uses.
                values[i] = pixels[i] / 255f;
            }

            value = editor.Commit();
        }

        private void EnsureOnRow()
        {
            if (_row < 0)
            {
                throw new InvalidOperationException("The cursor is not on a row: call MoveNext first, and not after it returned false.");
            }
        }
    }
}
