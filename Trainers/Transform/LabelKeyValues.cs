using Microsoft.ML;
using Microsoft.ML.Data;

namespace MlNetBn.Transform;

/// <summary>
/// The label's key values (the <c>KeyValues</c> annotation <c>MapValueToKey</c> writes), kept by the transformer so
/// that <c>PredictedLabel</c> maps back to them and <c>Score</c>'s slots are named. Text and the common numeric key
/// value types are supported; they are written into the model file as text so any of them round-trips.
/// </summary>
internal sealed class LabelKeyValues
{
    private static readonly Dictionary<Type, (byte Code, PrimitiveDataViewType Type)> Kinds = new()
    {
        [typeof(ReadOnlyMemory<char>)] = (1, TextDataViewType.Instance),
        [typeof(float)] = (2, NumberDataViewType.Single),
        [typeof(double)] = (3, NumberDataViewType.Double),
        [typeof(int)] = (4, NumberDataViewType.Int32),
        [typeof(uint)] = (5, NumberDataViewType.UInt32),
        [typeof(long)] = (6, NumberDataViewType.Int64),
        [typeof(ulong)] = (7, NumberDataViewType.UInt64),
        [typeof(bool)] = (8, BooleanDataViewType.Instance),
    };

    private readonly string[] _text;

    private LabelKeyValues(PrimitiveDataViewType itemType, string[] text)
    {
        ItemType = itemType;
        _text = text;
    }

    /// <summary>The key values' item type.</summary>
    public PrimitiveDataViewType ItemType { get; }

    /// <summary>The key values as text, in key order (key 1 first).</summary>
    public IReadOnlyList<string> Names => _text;

    /// <summary>Reads the <c>KeyValues</c> annotation of a key column, or null when it has none (or an unsupported type).</summary>
    public static LabelKeyValues? From(DataViewSchema.Column label)
    {
        var annotation = label.Annotations.Schema.GetColumnOrNull(AnnotationKinds.KeyValues);
        if (annotation is not { Type: VectorDataViewType vector } || !Kinds.ContainsKey(vector.ItemType.RawType))
            return null;
        return vector.ItemType.RawType switch
        {
            var t when t == typeof(ReadOnlyMemory<char>) => Read<ReadOnlyMemory<char>>(label.Annotations, vector),
            var t when t == typeof(float) => Read<float>(label.Annotations, vector),
            var t when t == typeof(double) => Read<double>(label.Annotations, vector),
            var t when t == typeof(int) => Read<int>(label.Annotations, vector),
            var t when t == typeof(uint) => Read<uint>(label.Annotations, vector),
            var t when t == typeof(long) => Read<long>(label.Annotations, vector),
            var t when t == typeof(ulong) => Read<ulong>(label.Annotations, vector),
            _ => Read<bool>(label.Annotations, vector),
        };
    }

    /// <summary>Adds the values as a <c>KeyValues</c> annotation (their original type) to an annotations builder.</summary>
    public void AddKeyValues(DataViewSchema.Annotations.Builder builder)
    {
        var type = new VectorDataViewType(ItemType, _text.Length);
        switch (Kinds[ItemType.RawType].Code)
        {
            case 1: Add(builder, type, _text.Select(s => s.AsMemory())); break;
            case 2: Add(builder, type, _text.Select(s => float.Parse(s, Invariant))); break;
            case 3: Add(builder, type, _text.Select(s => double.Parse(s, Invariant))); break;
            case 4: Add(builder, type, _text.Select(s => int.Parse(s, Invariant))); break;
            case 5: Add(builder, type, _text.Select(s => uint.Parse(s, Invariant))); break;
            case 6: Add(builder, type, _text.Select(s => long.Parse(s, Invariant))); break;
            case 7: Add(builder, type, _text.Select(s => ulong.Parse(s, Invariant))); break;
            default: Add(builder, type, _text.Select(bool.Parse)); break;
        }
    }

    private static readonly System.Globalization.CultureInfo Invariant = System.Globalization.CultureInfo.InvariantCulture;

    /// <summary>Throws <see cref="InvalidDataException"/> for a value that does not parse as the item type, naming it.</summary>
    private void CheckParses()
    {
        for (int i = 0; i < _text.Length; i++)
        {
            string s = _text[i];
            bool ok = Kinds[ItemType.RawType].Code switch
            {
                1 => true,
                2 => float.TryParse(s, Invariant, out _),
                3 => double.TryParse(s, Invariant, out _),
                4 => int.TryParse(s, Invariant, out _),
                5 => uint.TryParse(s, Invariant, out _),
                6 => long.TryParse(s, Invariant, out _),
                7 => ulong.TryParse(s, Invariant, out _),
                _ => bool.TryParse(s, out _),
            };
            if (!ok)
                throw new InvalidDataException($"label key value {i + 1} '{s}' is not a valid {ItemType.RawType.Name}");
        }
    }

    /// <summary>Writes the type code, the count and each value as text.</summary>
    public static void Write(BinaryWriter writer, LabelKeyValues? values)
    {
        if (values is null) { writer.Write((byte)0); return; }
        writer.Write(Kinds[values.ItemType.RawType].Code);
        writer.Write(values._text.Length);
        foreach (var s in values._text) writer.Write(s);
    }

    /// <summary>Reads what <see cref="Write"/> wrote.</summary>
    public static LabelKeyValues? Read(BinaryReader reader, int expectedCount)
    {
        byte code = reader.ReadByte();
        if (code == 0) return null;
        var kind = Kinds.Values.FirstOrDefault(k => k.Code == code);
        if (kind.Type is null)
            throw new InvalidDataException($"Unknown label key-value type code {code}.");
        int count = reader.ReadInt32();
        if (count != expectedCount)
            throw new InvalidDataException($"The model holds {count} label key values for {expectedCount} classes.");
        var text = new string[count];
        for (int i = 0; i < count; i++) text[i] = reader.ReadString();
        var values = new LabelKeyValues(kind.Type, text);
        values.CheckParses();
        return values;
    }

    private static LabelKeyValues Read<T>(DataViewSchema.Annotations annotations, VectorDataViewType type)
    {
        VBuffer<T> values = default;
        annotations.GetValue(AnnotationKinds.KeyValues, ref values);
        var text = values.DenseValues().Select(v => Format(v)).ToArray();
        return new LabelKeyValues((PrimitiveDataViewType)type.ItemType, text);
    }

    private static string Format<T>(T value) => value switch
    {
        float f => f.ToString("R", System.Globalization.CultureInfo.InvariantCulture),
        double d => d.ToString("R", System.Globalization.CultureInfo.InvariantCulture),
        ReadOnlyMemory<char> m => m.ToString(),
        _ => Convert.ToString(value, System.Globalization.CultureInfo.InvariantCulture) ?? "",
    };

    private static void Add<T>(DataViewSchema.Annotations.Builder builder, VectorDataViewType type, IEnumerable<T> values)
    {
        var array = values.ToArray();
        builder.Add(AnnotationKinds.KeyValues, type, (ref VBuffer<T> dst) => dst = new VBuffer<T>(array.Length, array));
    }
}

/// <summary>Annotation kinds ML.NET's scorers and evaluators read (the strings of ML.NET's internal <c>AnnotationUtils.Kinds</c>).</summary>
internal static class AnnotationKinds
{
    public const string KeyValues = "KeyValues";
    public const string SlotNames = "SlotNames";
    public const string ScoreColumnKind = "ScoreColumnKind";
    public const string ScoreValueKind = "ScoreValueKind";
    public const string MulticlassClassification = "MulticlassClassification";
    public const string Score = "Score";
    public const string PredictedLabel = "PredictedLabel";
}
