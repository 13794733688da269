using Microsoft.ML.Data;

namespace MlNetBn.Transform;

/// <summary>What <c>Transform</c> and <c>PredictionEngine</c> share per row: reading the features and choosing the label.</summary>
internal static class Scoring
{
    /// <summary>
    /// Copies one row's features into <paramref name="destination"/>, refusing a vector of another length: ML.NET
    /// passes arrays of any length through a known-size vector column, and a short one would leave the previous
    /// row's values in the rest of the buffer. Returns whether every value is finite.
    /// </summary>
    public static bool ReadFeatures(in VBuffer<float> row, Span<float> destination, string column, long position)
    {
        if (row.Length != destination.Length)
            throw new InvalidOperationException(
                $"Feature column '{column}' has {row.Length} values at row {position}; the model expects {destination.Length} (channels × height × width).");
        row.CopyTo(destination);
        return AllFinite(destination);
    }

    /// <summary>Whether no value is NaN or ±Infinity.</summary>
    public static bool AllFinite(ReadOnlySpan<float> values)
    {
        foreach (float v in values)
            if (!float.IsFinite(v)) return false;
        return true;
    }

    /// <summary>
    /// The predicted key (1-based) for one row's class probabilities: the most probable class, or 0 (missing),
    /// as ML.NET's multiclass trainers give, when the scores are NaN (the features held NaN or Infinity).
    /// </summary>
    public static uint PredictedKey(ReadOnlySpan<float> scores)
    {
        int best = 0;
        for (int c = 0; c < scores.Length; c++)
        {
            if (float.IsNaN(scores[c])) return 0;
            if (scores[c] > scores[best]) best = c;
        }
        return (uint)best + 1;
    }
}
