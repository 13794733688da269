using System.Text.Json;
using System.Text.Json.Serialization;

namespace MlNetBn.Examples.Serve;

/// <summary>The body of <c>POST /predict</c>.</summary>
/// <param name="Features">C·H·W floats, channels first, scaled as in training (pixel / 255 for Fashion-MNIST).</param>
public sealed record PredictRequest(float[]? Features);

/// <summary>A prediction.</summary>
/// <param name="Label">The predicted class: its key value as text.</param>
/// <param name="Probabilities">One probability per class, in the order of <paramref name="Classes"/>.</param>
/// <param name="Classes">The class names (key values as text), in key order.</param>
public sealed record PredictResponse(string Label, float[] Probabilities, IReadOnlyList<string> Classes);

/// <summary>The input image shape.</summary>
/// <param name="Channels">C.</param>
/// <param name="Height">H.</param>
/// <param name="Width">W.</param>
public sealed record ImageShapeInfo(int Channels, int Height, int Width);

/// <summary>What <c>GET /model</c> says about the model.</summary>
/// <param name="Classes">The class names, in key order.</param>
/// <param name="ImageShape">The input shape; <c>/predict</c> takes C·H·W floats.</param>
/// <param name="FeatureCount">C·H·W.</param>
/// <param name="BatchNorm">Scratch, BuiltIn or None.</param>
/// <param name="BatchNormFolded">Whether batch normalization is folded into the conv/linear layers.</param>
/// <param name="Device">The device the network runs on.</param>
public sealed record ModelInfo(IReadOnlyList<string> Classes, ImageShapeInfo ImageShape, int FeatureCount, string BatchNorm, bool BatchNormFolded, string Device);

/// <summary>
/// Reads a JSON number as a float, rejecting what a float cannot hold: a number beyond ±3.4e38 (System.Text.Json
/// would fail it with a generic message) and anything that is not a number (a NaN or Infinity string).
/// </summary>
public sealed class FiniteSingleConverter : JsonConverter<float>
{
    /// <inheritdoc/>
    public override float Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType != JsonTokenType.Number)
            throw new JsonException($"a feature must be a number, not {Describe(reader.TokenType)} (NaN and Infinity are not allowed)");
        // A number beyond a float's range parses as ±Infinity.
        if (reader.TryGetSingle(out float value) && float.IsFinite(value))
            return value;
        string text = System.Text.Encoding.UTF8.GetString(reader.HasValueSequence ? System.Buffers.BuffersExtensions.ToArray(reader.ValueSequence) : reader.ValueSpan);
        throw new JsonException($"the number {text} does not fit a 32-bit float (largest magnitude 3.4028235E+38)");
    }

    /// <inheritdoc/>
    public override void Write(Utf8JsonWriter writer, float value, JsonSerializerOptions options) => writer.WriteNumberValue(value);

    private static string Describe(JsonTokenType token) => token switch
    {
        JsonTokenType.String => "a string",
        JsonTokenType.Null => "null",
        JsonTokenType.True or JsonTokenType.False => "a boolean",
        JsonTokenType.StartArray => "an array",
        JsonTokenType.StartObject => "an object",
        _ => token.ToString(),
    };
}
