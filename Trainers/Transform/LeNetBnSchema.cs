using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetBn.Modules;

namespace MlNetBn.Transform;

/// <summary>Schema checks (up front, naming the column) and the output columns LeNetBn adds.</summary>
internal static class LeNetBnSchema
{
    /// <summary>Checks the feature column; returns it.</summary>
    public static DataViewSchema.Column CheckFeatures(DataViewSchema schema, string featureColumn, ImageShape shape, string dataName)
    {
        if (schema.GetColumnOrNull(featureColumn) is not { } features)
            throw new ArgumentOutOfRangeException(nameof(schema),
                $"The {dataName} has no feature column '{featureColumn}'. Columns: {string.Join(", ", schema.Where(c => !c.IsHidden).Select(c => c.Name))}.");
        if (features.Type is not VectorDataViewType { ItemType: var item } vector || item != NumberDataViewType.Single)
            throw new ArgumentOutOfRangeException(nameof(schema),
                $"Feature column '{featureColumn}' of the {dataName} must be a vector of Single (float); it is {features.Type}.");
        if (!vector.IsKnownSize)
            throw new ArgumentOutOfRangeException(nameof(schema),
                $"Feature column '{featureColumn}' of the {dataName} must have a known size ({shape.Size} = {shape}); it is a variable-size vector. Declare the size (VectorType({shape.Size})) or resize the images.");
        if (vector.Size != shape.Size)
            throw new ArgumentOutOfRangeException(nameof(schema),
                $"Feature column '{featureColumn}' of the {dataName} has {vector.Size} values per row; the image shape {shape} needs {shape.Size}. Set ImageShape to match the data.");
        return features;
    }

    /// <summary>Checks the feature and label columns for training; returns the class count (the label's key count).</summary>
    public static int CheckTrainingSchema(DataViewSchema schema, string featureColumn, string labelColumn, ImageShape shape, string dataName)
    {
        CheckFeatures(schema, featureColumn, shape, dataName);
        if (schema.GetColumnOrNull(labelColumn) is not { } label)
            throw new ArgumentOutOfRangeException(nameof(schema),
                $"The {dataName} has no label column '{labelColumn}'. Columns: {string.Join(", ", schema.Where(c => !c.IsHidden).Select(c => c.Name))}.");
        if (label.Type is not KeyDataViewType key)
            throw new ArgumentOutOfRangeException(nameof(schema),
                $"Label column '{labelColumn}' of the {dataName} must be a key type; it is {label.Type}. Convert it first with mlContext.Transforms.Conversion.MapValueToKey(\"{labelColumn}\").");
        if (key.Count < 2 || key.Count > int.MaxValue)
            throw new ArgumentOutOfRangeException(nameof(schema),
                $"Label column '{labelColumn}' of the {dataName} has {key.Count} key values; LeNetBn needs between 2 and {int.MaxValue} classes.");
        return (int)key.Count;
    }

    /// <summary>The label's key values, if it carries them.</summary>
    public static LabelKeyValues? GetKeyValues(DataViewSchema.Column label) => LabelKeyValues.From(label);

    /// <summary>The input schema plus <c>Score</c> (class probabilities) and <c>PredictedLabel</c> (key), with ML.NET's annotations.</summary>
    public static DataViewSchema GetOutputSchema(DataViewSchema input, int classCount, LabelKeyValues? keyValues)
    {
        var builder = new DataViewSchema.Builder();
        builder.AddColumns(input);
        builder.AddColumn(DefaultColumnNames.Score, new VectorDataViewType(NumberDataViewType.Single, classCount), ScoreAnnotations(classCount, keyValues));
        builder.AddColumn(DefaultColumnNames.PredictedLabel, new KeyDataViewType(typeof(uint), classCount), PredictedLabelAnnotations(keyValues));
        return builder.ToSchema();
    }

    /// <summary>The estimator's view of the same: checks the input shape and adds the two columns.</summary>
    public static SchemaShape GetOutputSchemaShape(SchemaShape input, string featureColumn, string labelColumn)
    {
        if (!input.TryFindColumn(featureColumn, out var features))
            throw new ArgumentOutOfRangeException(nameof(input), $"The input schema has no feature column '{featureColumn}'.");
        if (features.Kind != SchemaShape.Column.VectorKind.Vector || features.ItemType != NumberDataViewType.Single)
            throw new ArgumentOutOfRangeException(nameof(input), $"Feature column '{featureColumn}' must be a known-size vector of Single (float); it is {features.Kind} of {features.ItemType}.");
        if (!input.TryFindColumn(labelColumn, out var label))
            throw new ArgumentOutOfRangeException(nameof(input), $"The input schema has no label column '{labelColumn}'.");
        if (!label.IsKey || label.Kind != SchemaShape.Column.VectorKind.Scalar)
            throw new ArgumentOutOfRangeException(nameof(input),
                $"Label column '{labelColumn}' must be a scalar key type; it is {label.Kind} of {label.ItemType}. Convert it first with mlContext.Transforms.Conversion.MapValueToKey(\"{labelColumn}\").");

        bool hasKeyValues = label.Annotations.TryFindColumn(AnnotationKinds.KeyValues, out var keyValuesShape);
        var text = TextDataViewType.Instance;
        var scoreAnnotations = new List<SchemaShape.Column>
        {
            new(AnnotationKinds.ScoreColumnKind, SchemaShape.Column.VectorKind.Scalar, text, false),
            new(AnnotationKinds.ScoreValueKind, SchemaShape.Column.VectorKind.Scalar, text, false),
        };
        if (hasKeyValues)
            scoreAnnotations.Add(new(AnnotationKinds.SlotNames, SchemaShape.Column.VectorKind.Vector, text, false));
        var predictedAnnotations = new List<SchemaShape.Column>
        {
            new(AnnotationKinds.ScoreColumnKind, SchemaShape.Column.VectorKind.Scalar, text, false),
            new(AnnotationKinds.ScoreValueKind, SchemaShape.Column.VectorKind.Scalar, text, false),
        };
        if (hasKeyValues)
            predictedAnnotations.Add(keyValuesShape);

        var columns = input.ToDictionary(c => c.Name);
        columns[DefaultColumnNames.Score] = new SchemaShape.Column(DefaultColumnNames.Score, SchemaShape.Column.VectorKind.Vector,
            NumberDataViewType.Single, false, new SchemaShape(scoreAnnotations));
        columns[DefaultColumnNames.PredictedLabel] = new SchemaShape.Column(DefaultColumnNames.PredictedLabel, SchemaShape.Column.VectorKind.Scalar,
            NumberDataViewType.UInt32, true, new SchemaShape(predictedAnnotations));
        return new SchemaShape(columns.Values);
    }

    private static DataViewSchema.Annotations ScoreAnnotations(int classCount, LabelKeyValues? keyValues)
    {
        var builder = new DataViewSchema.Annotations.Builder();
        AddText(builder, AnnotationKinds.ScoreColumnKind, AnnotationKinds.MulticlassClassification);
        AddText(builder, AnnotationKinds.ScoreValueKind, AnnotationKinds.Score);
        if (keyValues is not null)
        {
            var names = keyValues.Names.Select(n => n.AsMemory()).ToArray();
            builder.AddSlotNames(classCount, (ref VBuffer<ReadOnlyMemory<char>> dst) => dst = new VBuffer<ReadOnlyMemory<char>>(names.Length, names));
        }
        return builder.ToAnnotations();
    }

    private static DataViewSchema.Annotations PredictedLabelAnnotations(LabelKeyValues? keyValues)
    {
        var builder = new DataViewSchema.Annotations.Builder();
        AddText(builder, AnnotationKinds.ScoreColumnKind, AnnotationKinds.MulticlassClassification);
        AddText(builder, AnnotationKinds.ScoreValueKind, AnnotationKinds.PredictedLabel);
        keyValues?.AddKeyValues(builder);
        return builder.ToAnnotations();
    }

    private static void AddText(DataViewSchema.Annotations.Builder builder, string kind, string value)
    {
        var memory = value.AsMemory();
        builder.Add(kind, TextDataViewType.Instance, (ref ReadOnlyMemory<char> dst) => dst = memory);
    }
}
