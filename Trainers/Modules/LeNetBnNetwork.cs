using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace MlNetBn.Modules;

/// <summary>
/// LeNet with batch normalization after every conv/affine layer but the last, before the activation
/// (Dive into Deep Learning's BNLeNet): Conv(C→6, k5) → BN → act → pool → Conv(6→16, k5) → BN → act → pool →
/// Flatten → Linear(→120) → BN → act → Linear(120→84) → BN → act → Linear(84→classes).
/// </summary>
/// <remarks>
/// A network built with <see cref="LeNetBnArchitecture.BatchNormFolded"/> has no BN layers (its conv/linear
/// layers hold the folded ones); <see cref="FoldBatchNorm"/> makes one from a trained network.
/// Input is N×C×H×W, or N×(C·H·W) as ML.NET feature vectors arrive, which is viewed as N×C×H×W.
/// Output is N×classes logits. Conv and linear weights are Xavier-uniform initialized as d2l does; their biases
/// keep TorchSharp's default initialization.
/// A TorchSharp module: its weights are native memory, freed by <c>Dispose</c> (the transformer disposes the
/// network it owns; dispose one you build yourself). Building one is thread-safe; a forward pass in eval mode
/// only reads the weights, a training-mode pass updates the BN moving statistics and must not run concurrently.
/// </remarks>
public sealed class LeNetBnNetwork : Module<Tensor, Tensor>
{
    private const int KernelSize = 5;
    private const int PoolSize = 2;
    private static readonly int[] ConvChannels = [6, 16];
    private static readonly int[] HiddenUnits = [120, 84];

    private readonly Sequential layers;

    /// <summary>Builds the network with freshly initialized weights.</summary>
    /// <param name="architecture">Input shape, class count, BN kind, activation and pooling.</param>
    /// <param name="seed">When given, seeds TorchSharp's global generator first so the initial weights are reproducible.</param>
    public LeNetBnNetwork(LeNetBnArchitecture architecture, long? seed = null) : base(nameof(LeNetBnNetwork))
    {
        ArgumentNullException.ThrowIfNull(architecture);
        Validate(architecture);
        Architecture = architecture;
        // Seeding and initialization draw from libtorch's process-wide generator: one build at a time, so that a
        // seeded build gets the same weights while other threads build networks (seeded, fresh, or being loaded).
        lock (GeneratorGate)
        {
            // TorchSharp 0.107's Conv2d constructor leaves a view of its weight (the tensor[0, 0] of
            // init.CalculateFanInAndFanOut) to the finalizer, keeping the weight's storage alive after Dispose.
            // Built inside a scope, which then keeps nothing but that view: the network owns the rest.
            using var scope = NewDisposeScope();
            if (seed is { } s)
                random.manual_seed(s);
            layers = Build(out int flattenSize);
            FlattenSize = flattenSize;
            foreach (var parameter in layers.parameters())
                parameter.DetachFromDisposeScope();
            foreach (var buffer in layers.buffers())
                buffer.DetachFromDisposeScope();
        }
        RegisterComponents();
    }

    private static readonly object GeneratorGate = new();

    private Sequential Build(out int flattenSize)
    {
        var architecture = Architecture;
        flattenSize = ComputeFlattenSize(architecture.Input);
        var input = architecture.Input;
        var modules = new List<(string, Module<Tensor, Tensor>)>
        {
            ("conv1", Conv2d(input.Channels, ConvChannels[0], KernelSize)),
        };
        AddNormalizedActivation(modules, "1", ConvChannels[0], convolutional: true);
        modules.Add(("pool1", Pool()));
        modules.Add(("conv2", Conv2d(ConvChannels[0], ConvChannels[1], KernelSize)));
        AddNormalizedActivation(modules, "2", ConvChannels[1], convolutional: true);
        modules.Add(("pool2", Pool()));
        modules.Add(("flatten", Flatten()));
        modules.Add(("fc1", Linear(flattenSize, HiddenUnits[0])));
        AddNormalizedActivation(modules, "3", HiddenUnits[0], convolutional: false);
        modules.Add(("fc2", Linear(HiddenUnits[0], HiddenUnits[1])));
        AddNormalizedActivation(modules, "4", HiddenUnits[1], convolutional: false);
        modules.Add(("fc3", Linear(HiddenUnits[1], architecture.NumClasses)));
        var sequential = Sequential(modules);

        using (no_grad())
        {
            foreach (var (_, module) in sequential.named_children())
            {
                if (module is Conv2d conv) init.xavier_uniform_(conv.weight!);
                else if (module is Linear linear) init.xavier_uniform_(linear.weight!);
            }
        }
        return sequential;
    }

    /// <summary>The architecture the network was built with.</summary>
    public LeNetBnArchitecture Architecture { get; }

    /// <summary>Number of features entering the first fully connected layer: 16·h·w after the two conv blocks.</summary>
    public int FlattenSize { get; }

    /// <summary>The layers in order, named conv1, bn1, act1, pool1, …, fc3 (the state dict's prefixes); no bnK layers when BN is none or folded.</summary>
    public Sequential Layers => layers;

    /// <inheritdoc/>
    public override Tensor forward(Tensor input)
    {
        var shape = Architecture.Input;
        if (input.dim() == 2 && input.shape[1] == shape.Size)
            input = input.view(-1, shape.Channels, shape.Height, shape.Width);
        else if (input.dim() != 4 || input.shape[1] != shape.Channels || input.shape[2] != shape.Height || input.shape[3] != shape.Width)
            throw new ArgumentException(
                $"LeNet-BN was built for {shape} images: expected N×{shape.Size} or N×{shape.Channels}×{shape.Height}×{shape.Width} input, got [{string.Join(", ", input.shape)}].",
                nameof(input));
        return layers.forward(input);
    }

    /// <summary>
    /// A new network, on the same device and in eval mode, with every batch normalization layer folded into the
    /// conv/linear layer before it: for eval-mode BN <c>y = γ·(z − μ)/√(σ² + ε) + β</c> after <c>z = W·x + b</c>,
    /// the folded layer has <c>W' = W·s</c> per output channel/feature and <c>b' = (b − μ)·s + β</c> with
    /// <c>s = γ/√(σ² + ε)</c>. It computes the same function as this network in eval mode (to float rounding)
    /// with fewer operations; it cannot be trained with batch normalization any more. This network is unchanged.
    /// </summary>
    /// <exception cref="InvalidOperationException">The network has no batch normalization, or it is already folded.</exception>
    public LeNetBnNetwork FoldBatchNorm() => BatchNormFolding.Fold(this);

    /// <summary>
    /// Copies every batch normalization layer's gamma, beta, moving mean and moving variance, in network order.
    /// Empty when the network has no BN layers: <see cref="BatchNormKind.None"/>, or folded
    /// (<see cref="LeNetBnArchitecture.BatchNormFolded"/>), where the statistics are merged into the conv/linear
    /// weights and cannot be told apart from them any more.
    /// </summary>
    public IReadOnlyList<BatchNormLayerState> GetBatchNormStates()
    {
        var states = new List<BatchNormLayerState>();
        foreach (var (name, module) in layers.named_children())
        {
            switch (module)
            {
                case ScratchBatchNorm bn:
                    states.Add(new(name, BatchNormKind.Scratch, ToArray(bn.Gamma), ToArray(bn.Beta), ToArray(bn.MovingMean), ToArray(bn.MovingVariance)));
                    break;
                case BatchNorm bn:
                    states.Add(new(name, BatchNormKind.BuiltIn, ToArray(bn.weight!), ToArray(bn.bias!), ToArray(bn.running_mean!), ToArray(bn.running_var!)));
                    break;
            }
        }
        return states;
    }

    /// <summary>Computes the flatten size for an input shape, or throws when the image is too small for two conv blocks.</summary>
    public static int ComputeFlattenSize(ImageShape input)
    {
        ArgumentNullException.ThrowIfNull(input);
        int h = input.Height, w = input.Width;
        for (int block = 0; block < ConvChannels.Length; block++)
        {
            // A 5×5 convolution without padding trims 4 pixels; 2×2 stride-2 pooling halves, rounding down.
            h = (h - KernelSize + 1) / PoolSize;
            w = (w - KernelSize + 1) / PoolSize;
            if (h < 1 || w < 1)
                throw new ArgumentException(
                    $"Image shape {input} is too small for LeNet's two 5×5 conv + 2×2 pool blocks; the smallest is {input.Channels}×16×16.",
                    nameof(input));
        }
        // Checked: a huge image (for example one read from a damaged model file) must not wrap to a small size.
        return checked(ConvChannels[^1] * h * w);
    }

    /// <summary>
    /// Number of values (parameters and buffers) in the state dict of a network of <paramref name="architecture"/>,
    /// computed without building it, so that sizes read from a file can be bounded before libtorch allocates them.
    /// </summary>
    internal static long CountStateValues(LeNetBnArchitecture architecture)
    {
        ArgumentNullException.ThrowIfNull(architecture);
        Validate(architecture);
        long[] inputs = [architecture.Input.Channels, ConvChannels[0], ComputeFlattenSize(architecture.Input), HiddenUnits[0], HiddenUnits[1]];
        long[] outputs = [ConvChannels[0], ConvChannels[1], HiddenUnits[0], HiddenUnits[1], architecture.NumClasses];
        long[] kernel = [KernelSize * KernelSize, KernelSize * KernelSize, 1, 1, 1];
        long count = 0;
        checked
        {
            for (int layer = 0; layer < inputs.Length; layer++)
            {
                count += inputs[layer] * outputs[layer] * kernel[layer] + outputs[layer]; // weight and bias
                bool normalized = layer < inputs.Length - 1;
                if (normalized && architecture.BatchNorm == BatchNormKind.Scratch)
                    count += 4 * outputs[layer]; // gamma, beta, moving mean, moving variance
                else if (normalized && architecture.BatchNorm == BatchNormKind.BuiltIn)
                    count += 4 * outputs[layer] + 1; // weight, bias, running mean and variance, num_batches_tracked
            }
        }
        return count;
    }

    private void AddNormalizedActivation(List<(string, Module<Tensor, Tensor>)> modules, string index, int features, bool convolutional)
    {
        var kind = Architecture.BatchNormFolded ? BatchNormKind.None : Architecture.BatchNorm;
        var options = Architecture.BatchNormOptions;
        if (kind == BatchNormKind.Scratch)
            modules.Add(("bn" + index, convolutional ? new ScratchBatchNorm2d(features, options) : new ScratchBatchNorm1d(features, options)));
        else if (kind == BatchNormKind.BuiltIn)
        {
            // TorchSharp takes PyTorch's momentum: the weight of the new batch statistic.
            double momentum = 1 - options.MovingAverageKeep;
            modules.Add(("bn" + index, convolutional
                ? BatchNorm2d(features, options.Epsilon, momentum)
                : BatchNorm1d(features, options.Epsilon, momentum)));
        }
        modules.Add(("act" + index, Architecture.Activation == ActivationKind.ReLU ? ReLU() : Sigmoid()));
    }

    private Module<Tensor, Tensor> Pool() =>
        Architecture.Pooling == PoolingKind.Max ? MaxPool2d(PoolSize, PoolSize) : AvgPool2d(PoolSize, PoolSize);

    /// <summary>Throws when the architecture cannot be built, naming the offending setting.</summary>
    internal static void Validate(LeNetBnArchitecture a)
    {
        if (a.Input is null || a.Input.Channels < 1 || a.Input.Height < 1 || a.Input.Width < 1)
            throw new ArgumentException($"Input shape must have positive channels, height and width; got {a.Input?.ToString() ?? "null"}.", nameof(a.Input));
        if (a.NumClasses < 2)
            throw new ArgumentOutOfRangeException(nameof(a.NumClasses), a.NumClasses, "LeNet-BN needs at least 2 classes.");
        if (!Enum.IsDefined(a.BatchNorm))
            throw new ArgumentOutOfRangeException(nameof(a.BatchNorm), a.BatchNorm, "Unknown batch normalization kind.");
        if (!Enum.IsDefined(a.Activation))
            throw new ArgumentOutOfRangeException(nameof(a.Activation), a.Activation, "Unknown activation.");
        if (!Enum.IsDefined(a.Pooling))
            throw new ArgumentOutOfRangeException(nameof(a.Pooling), a.Pooling, "Unknown pooling.");
        ComputeFlattenSize(a.Input);
        if (a.BatchNormFolded && a.BatchNorm == BatchNormKind.None)
            throw new ArgumentException("A network without batch normalization has nothing folded: BatchNormFolded needs BatchNorm Scratch or BuiltIn.", nameof(a.BatchNormFolded));
        ArgumentNullException.ThrowIfNull(a.BatchNormOptions, nameof(a.BatchNormOptions));
        a.BatchNormOptions.Validate();
        if (a.BatchNorm == BatchNormKind.BuiltIn && a.BatchNormOptions.MovingVariance == MovingVarianceKind.Biased)
            throw new ArgumentException(
                "TorchSharp's built-in BatchNorm always stores the unbiased moving variance; use BatchNormKind.Scratch for the biased one (the seed's), or leave MovingVariance unset.",
                nameof(a.BatchNormOptions));
    }

    private static float[] ToArray(Tensor t)
    {
        using var scope = NewDisposeScope();
        return t.detach().cpu().to(ScalarType.Float32).contiguous().data<float>().ToArray();
    }
}
