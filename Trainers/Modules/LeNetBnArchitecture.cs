namespace MlNetBn.Modules;

/// <summary>Which batch normalization the network uses.</summary>
public enum BatchNormKind
{
    /// <summary>The from-scratch layers (<see cref="ScratchBatchNorm1d"/>, <see cref="ScratchBatchNorm2d"/>), as the seed.</summary>
    Scratch,

    /// <summary>TorchSharp's <c>BatchNorm1d</c>/<c>BatchNorm2d</c>.</summary>
    BuiltIn,

    /// <summary>No batch normalization: the plain LeNet, for comparison.</summary>
    None,
}

/// <summary>The nonlinearity after each (normalized) conv/affine layer.</summary>
public enum ActivationKind
{
    /// <summary>Logistic sigmoid, as the seed.</summary>
    Sigmoid,

    /// <summary>Rectified linear unit.</summary>
    ReLU,
}

/// <summary>The 2×2, stride-2 pooling after each convolutional block.</summary>
public enum PoolingKind
{
    /// <summary>Average pooling, as the seed.</summary>
    Average,

    /// <summary>Max pooling.</summary>
    Max,
}

/// <summary>The shape of one input image, channels first.</summary>
/// <param name="Channels">Number of channels (1 for grayscale).</param>
/// <param name="Height">Height in pixels.</param>
/// <param name="Width">Width in pixels.</param>
public sealed record ImageShape(int Channels, int Height, int Width)
{
    /// <summary>Fashion-MNIST's 1×28×28.</summary>
    public static ImageShape FashionMnist { get; } = new(1, 28, 28);

    /// <summary>Number of values in one image, C·H·W: the length of the feature vector.</summary>
    public int Size => checked(Channels * Height * Width);

    /// <inheritdoc/>
    public override string ToString() => $"{Channels}×{Height}×{Width}";
}

/// <summary>Everything that decides the LeNet-BN network's layers.</summary>
public sealed record LeNetBnArchitecture
{
    /// <summary>Input image shape; the flatten size is computed from it.</summary>
    public ImageShape Input { get; init; } = ImageShape.FashionMnist;

    /// <summary>Number of classes (output logits).</summary>
    public int NumClasses { get; init; } = 10;

    /// <summary>From-scratch, built-in or no batch normalization.</summary>
    public BatchNormKind BatchNorm { get; init; } = BatchNormKind.Scratch;

    /// <summary>Batch normalization hyper-parameters (momentum, epsilon, moving-variance kind).</summary>
    public BatchNormOptions BatchNormOptions { get; init; } = new();

    /// <summary>
    /// True for a prediction-only network whose batch normalization layers were folded into the conv/linear layer
    /// before each (see <see cref="LeNetBnNetwork.FoldBatchNorm"/>): it has no BN layers, and
    /// <see cref="BatchNorm"/> and <see cref="BatchNormOptions"/> record what was folded. Requires a
    /// <see cref="BatchNorm"/> other than <see cref="BatchNormKind.None"/>.
    /// </summary>
    public bool BatchNormFolded { get; init; }

    /// <summary>Activation after each normalized layer.</summary>
    public ActivationKind Activation { get; init; } = ActivationKind.Sigmoid;

    /// <summary>Pooling after each convolutional block.</summary>
    public PoolingKind Pooling { get; init; } = PoolingKind.Average;
}
