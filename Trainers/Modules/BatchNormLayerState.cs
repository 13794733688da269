namespace MlNetBn.Modules;

/// <summary>A copy of one batch normalization layer's learned and tracked values, for inspection.</summary>
/// <param name="Name">The layer's name in the network (for example <c>bn1</c>).</param>
/// <param name="Kind">From-scratch or built-in.</param>
/// <param name="Gamma">Learned scale, one value per feature/channel.</param>
/// <param name="Beta">Learned shift, one value per feature/channel.</param>
/// <param name="MovingMean">Moving mean used in prediction.</param>
/// <param name="MovingVariance">Moving variance used in prediction (biased or unbiased, see <see cref="MovingVarianceKind"/>).</param>
public sealed record BatchNormLayerState(
    string Name,
    BatchNormKind Kind,
    float[] Gamma,
    float[] Beta,
    float[] MovingMean,
    float[] MovingVariance);
