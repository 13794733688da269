using Microsoft.ML.Data;

namespace MlNetBn.Tests;

// The row types the tests read and write with LoadFromEnumerable, CreateEnumerable and PredictionEngine.

/// <summary>A Fashion-MNIST image: key-typed label (10 classes) and 28×28 pixels.</summary>
public sealed class Image
{
    [KeyType(10)]
    public uint Label { get; set; }

    [VectorType(784)]
    public float[] Features { get; set; } = [];
}

/// <summary>Just the pixels of a 28×28 image.</summary>
public sealed class FeatureRow
{
    [VectorType(784)]
    public float[] Features { get; set; } = [];
}

/// <summary>The class probabilities of a prediction.</summary>
public sealed class ScoreRow
{
    public float[] Score { get; set; } = [];
}

/// <summary>A prediction over Fashion-MNIST's 10 classes: probabilities and the predicted key (0 = missing).</summary>
public sealed class Prediction
{
    public float[] Score { get; set; } = [];

    [KeyType(10)]
    public uint PredictedLabel { get; set; }
}
