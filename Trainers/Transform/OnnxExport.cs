using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Model.OnnxConverter;
using MlNetBn.Modules;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetBn.Transform;

/// <summary>
/// Writes a LeNet-BN network into the ONNX graph that <c>mlContext.Model.ConvertToOnnx</c> builds: ML.NET calls
/// <see cref="LeNetBnDataView"/> (an <c>ITransformCanSaveOnnx</c>) while it walks the transformed view back to its
/// source, and the view hands the graph here with the transformer's network.
/// </summary>
/// <remarks>
/// <para>
/// The graph, for a feature column of N×(C·H·W) floats: Reshape to N×C×H×W, then one ONNX node per layer, in the
/// network's order: Conv, BatchNormalization, Sigmoid or Relu, AveragePool or MaxPool, …, Flatten, Gemm, …, then
/// Softmax for <c>Score</c> and ArgMax + 1 as uint32 for <c>PredictedLabel</c> (ML.NET's key: 1-based, 0 = missing),
/// as ML.NET's multiclass predictors write them, so a following <c>MapKeyToValue</c> exports too.
/// </para>
/// <para>
/// Batch normalization is written as BatchNormalization nodes, not folded here: the file then holds the model as
/// trained, with every layer's γ, β, moving mean and moving variance readable in it, and the one eval-mode formula
/// both BN kinds use, <c>(x − mean)/√(var + ε)·γ + β</c>, is ONNX's own. ONNX Runtime fuses Conv + BatchNormalization
/// itself when it loads the graph, so the two after a convolution cost nothing at run time. A folded model
/// (<see cref="LeNetBnArchitecture.BatchNormFolded"/>) has no BN layers: its folded weights are exported as they are.
/// The moving variance goes in unchanged whatever it estimates (biased, d2l; unbiased, PyTorch): eval mode divides by
/// √(moving variance + ε) for both, and so does ONNX. ε is each layer's own.
/// </para>
/// <para>
/// Non-finite features: the network itself would give finite scores for some rows with ±Infinity (a sigmoid or a max
/// pool can swallow it), while <c>Transform</c> gives NaN scores and the missing key 0 for any row holding NaN or
/// ±Infinity. The graph does the same: Σ(x − x) over a row is 0 when every value is finite and NaN otherwise; it is
/// added to the logits (a NaN row, or + 0) and it chooses 0 for <c>PredictedLabel</c>.
/// </para>
/// <para>
/// Every operator used exists with these semantics from ONNX opset 9, ML.NET's lowest. Anything the graph cannot
/// express throws <see cref="NotSupportedException"/> naming the layer and the setting, rather than writing a graph
/// that computes something else.
/// </para>
/// </remarks>
internal static class OnnxExport
{
    /// <summary>The lowest ONNX opset the graph needs (ML.NET exports opsets 9 to 12).</summary>
    public const int MinimumOpSetVersion = 9;

    /// <summary>Prefix of every variable and node name this export adds, so the graph shows which nodes are the network.</summary>
    public const string NamePrefix = "LeNetBn.";

    /// <summary>The default ONNX operator set's domain; OnnxContext's default (null) is ai.onnx.ml, the classical-ML one.</summary>
    private const string OnnxDomain = "";

    /// <summary>Adds the network's nodes, reading the feature column's variable and defining <c>Score</c> and <c>PredictedLabel</c>.</summary>
    /// <param name="ctx">The ONNX graph being built.</param>
    /// <param name="network">The network, in eval mode; only read.</param>
    /// <param name="featureColumn">The feature column's name.</param>
    /// <param name="outputSchema">The transformed view's schema, whose <c>Score</c> and <c>PredictedLabel</c> types the outputs take.</param>
    public static void Save(OnnxContext ctx, LeNetBnNetwork network, string featureColumn, DataViewSchema outputSchema)
    {
        ctx.CheckOpSetVersion(MinimumOpSetVersion, "LeNet-BN");
        if (!ctx.ContainsColumn(featureColumn))
            throw new InvalidOperationException(
                $"Cannot export LeNet-BN to ONNX: its feature column '{featureColumn}' is neither an input of the ONNX graph nor the output of a transform that could be exported before it.");

        var shape = network.Architecture.Input;
        var writer = new GraphWriter(ctx);
        string features = ctx.GetVariableName(featureColumn);

        // 0 for a row whose values are all finite, NaN for a row holding NaN or ±Infinity (x − x is NaN for both).
        string selfDifference = writer.Node("Sub", [features, features], new VectorDataViewType(NumberDataViewType.Single, shape.Size), "NonFinite");
        string rowCheck = writer.Node("ReduceSum", [selfDifference], NumberDataViewType.Single, "RowCheck",
            node => { node.AddAttribute("axes", new long[] { 1 }); node.AddAttribute("keepdims", 1L); });

        // ML.NET's feature vector is channels first, C·H·W, as the network views it.
        string shapeInitializer = ctx.AddInitializer(new long[] { -1, shape.Channels, shape.Height, shape.Width }, new long[] { 4 }, NamePrefix + "ImageShape");
        var current = new Activation(writer.Node("Reshape", [features, shapeInitializer], Image(shape.Channels, shape.Height, shape.Width), "Images"),
            shape.Channels, shape.Height, shape.Width);

        // The CPU copies of the weights, and any zero bias made up, are freed once their values are in the graph.
        using (var scope = NewDisposeScope())
        {
            foreach (var (name, module) in network.Layers.named_children())
                current = WriteLayer(writer, name, module, current);
        }
        if (current.IsImage)
            throw new NotSupportedException($"Cannot export LeNet-BN to ONNX: the network ends in a {current.Channels}×{current.Height}×{current.Width} image, not in class logits.");

        // Score: softmax of the logits, NaN for a non-finite row (NaN + logit), the logits unchanged otherwise (+ 0).
        string checkedLogits = writer.Node("Add", [current.Name, rowCheck], Logits(current.Channels), "CheckedLogits");
        var scoreType = outputSchema[DefaultColumnNames.Score].Type;
        string score = ctx.AddIntermediateVariable(scoreType, DefaultColumnNames.Score);
        ctx.CreateNode("Softmax", checkedLogits, score, ctx.GetNodeName(NamePrefix + "Softmax"), OnnxDomain).AddAttribute("axis", 1L);

        // PredictedLabel: the first most probable class as a 1-based key (ArgMax picks the first maximum, as Transform
        // does), or 0 (missing) where the row check is NaN. ML.NET's key columns are uint32 in ONNX.
        string index = writer.Node("ArgMax", [score], NumberDataViewType.Int64, "ClassIndex",
            node => { node.AddAttribute("axis", 1L); node.AddAttribute("keepdims", 1L); });
        string one = ctx.AddInitializer(1L, NamePrefix + "One");
        string zero = ctx.AddInitializer(0L, NamePrefix + "Zero");
        string key = writer.Node("Add", [index, one], NumberDataViewType.Int64, "Key");
        string nonFinite = writer.Node("IsNaN", [rowCheck], BooleanDataViewType.Instance, "IsNonFinite");
        string keyOrMissing = writer.Node("Where", [nonFinite, zero, key], NumberDataViewType.Int64, "KeyOrMissing");
        string predictedLabel = ctx.AddIntermediateVariable(outputSchema[DefaultColumnNames.PredictedLabel].Type, DefaultColumnNames.PredictedLabel);
        ctx.CreateNode("Cast", keyOrMissing, predictedLabel, ctx.GetNodeName(NamePrefix + "Cast"), OnnxDomain).AddAttribute("to", typeof(uint));
    }

    /// <summary>
    /// The tensor between two layers: its variable name and per-row shape, C×H×W for an image, or C features
    /// (Height = Width = 0) after Flatten.
    /// </summary>
    private readonly record struct Activation(string Name, long Channels, long Height, long Width)
    {
        public bool IsImage => Height != 0;
    }

    private static Activation WriteLayer(GraphWriter w, string name, object module, Activation x)
    {
        switch (module)
        {
            case Conv2d conv:
            {
                RequireImage(name, x);
                if (conv.padding_mode != PaddingModes.Zeros || conv.padding is null)
                    throw Unsupported(name, $"padding mode {conv.padding_mode}, padding {conv.padding_type}", "only explicit zero padding exports");
                long outChannels = conv.weight.shape[0];
                long h = ConvolvedSize(x.Height, conv.kernel_size[0], conv.stride[0], conv.padding[0], conv.dilation[0]);
                long wd = ConvolvedSize(x.Width, conv.kernel_size[1], conv.stride[1], conv.padding[1], conv.dilation[1]);
                string weight = w.Initializer(name + ".weight", conv.weight);
                string bias = w.Initializer(name + ".bias", conv.bias ?? zeros(outChannels));
                string y = w.Node("Conv", [x.Name, weight, bias], Image(outChannels, h, wd), name, node =>
                {
                    node.AddAttribute("kernel_shape", conv.kernel_size);
                    node.AddAttribute("strides", conv.stride);
                    node.AddAttribute("dilations", conv.dilation);
                    node.AddAttribute("pads", conv.padding.Concat(conv.padding)); // begins, then ends
                    node.AddAttribute("group", conv.groups);
                });
                return new(y, outChannels, h, wd);
            }
            case ScratchBatchNorm bn:
                return BatchNormalization(w, name, x, bn.Gamma, bn.Beta, bn.MovingMean, bn.MovingVariance, bn.Options.Epsilon);
            case BatchNorm bn:
                if (bn.running_mean is null || bn.running_var is null)
                    throw Unsupported(name, "no running statistics (track_running_stats false)", "eval mode would normalize with each batch's own statistics");
                // Without affine parameters TorchSharp's layer scales by 1 and shifts by 0.
                return BatchNormalization(w, name, x, (Tensor?)bn.weight ?? ones_like(bn.running_mean), (Tensor?)bn.bias ?? zeros_like(bn.running_mean),
                    bn.running_mean, bn.running_var, bn.eps);
            case Sigmoid:
                return x with { Name = w.Node("Sigmoid", [x.Name], TypeOf(x), name) };
            case ReLU:
                return x with { Name = w.Node("Relu", [x.Name], TypeOf(x), name) };
            case AvgPool2d pool:
                if (pool.divisor_override is not null)
                    throw Unsupported(name, $"divisor override {pool.divisor_override}", "ONNX AveragePool divides by the window size");
                return Pool(w, name, "AveragePool", x, pool.kernel_size, pool.stride, pool.padding, pool.ceil_mode,
                    node => node.AddAttribute("count_include_pad", pool.count_include_pad ? 1L : 0L));
            case MaxPool2d pool:
                if (pool.dilation is { } dilation && dilation.Any(d => d != 1))
                    throw Unsupported(name, $"dilation {string.Join("×", dilation)}", $"opset {MinimumOpSetVersion}'s MaxPool has no dilation");
                return Pool(w, name, "MaxPool", x, pool.kernel_size, pool.stride, pool.padding, pool.ceil_mode, _ => { });
            case Flatten flatten:
                RequireImage(name, x);
                if (flatten.start_dim != 1 || flatten.end_dim != -1)
                    throw Unsupported(name, $"start_dim {flatten.start_dim}, end_dim {flatten.end_dim}", "only flattening all but the batch dimension exports");
                long size = x.Channels * x.Height * x.Width;
                string flat = w.Node("Flatten", [x.Name], Logits(size), name, node => node.AddAttribute("axis", 1L));
                return new(flat, size, 0, 0);
            case Linear linear:
            {
                if (x.IsImage)
                    throw Unsupported(name, $"a {x.Channels}×{x.Height}×{x.Width} image input", "a linear layer needs flattened features");
                long outFeatures = linear.weight.shape[0];
                string weight = w.Initializer(name + ".weight", linear.weight);
                string bias = w.Initializer(name + ".bias", linear.bias ?? zeros(outFeatures));
                // Gemm: x·Wᵀ + b, W stored out×in as in TorchSharp.
                string y = w.Node("Gemm", [x.Name, weight, bias], Logits(outFeatures), name, node => node.AddAttribute("transB", 1L));
                return new(y, outFeatures, 0, 0);
            }
            default:
                throw Unsupported(name, $"a {module.GetType().Name} layer", "the exporter knows LeNet-BN's layers only");
        }
    }

    /// <summary>
    /// ONNX BatchNormalization in inference mode, <c>(x − mean)/√(var + ε)·γ + β</c> per channel (N×C×H×W) or
    /// feature (N×C): eval mode of both BN kinds, with the layer's own ε.
    /// </summary>
    private static Activation BatchNormalization(GraphWriter w, string name, Activation x, Tensor gamma, Tensor beta, Tensor mean, Tensor variance, double epsilon)
    {
        string[] inputs =
        [
            x.Name,
            w.Initializer(name + ".gamma", gamma), w.Initializer(name + ".beta", beta),
            w.Initializer(name + ".moving_mean", mean), w.Initializer(name + ".moving_var", variance),
        ];
        return x with { Name = w.Node("BatchNormalization", inputs, TypeOf(x), name, node => node.AddAttribute("epsilon", epsilon)) };
    }

    private static Activation Pool(GraphWriter w, string name, string opType, Activation x, long[] kernel, long[]? stride, long[]? padding, bool ceilMode,
        Action<OnnxNode> more)
    {
        RequireImage(name, x);
        if (ceilMode)
            throw Unsupported(name, "ceil_mode", $"opset {MinimumOpSetVersion}'s {opType} rounds output sizes down");
        // PyTorch's defaults: the stride is the kernel size, no padding.
        stride ??= kernel;
        padding ??= [0, 0];
        long h = ConvolvedSize(x.Height, kernel[0], stride[0], padding[0], 1);
        long wd = ConvolvedSize(x.Width, kernel[1], stride[1], padding[1], 1);
        string y = w.Node(opType, [x.Name], Image(x.Channels, h, wd), name, node =>
        {
            node.AddAttribute("kernel_shape", kernel);
            node.AddAttribute("strides", stride);
            node.AddAttribute("pads", padding.Concat(padding));
            more(node);
        });
        return new(y, x.Channels, h, wd);
    }

    /// <summary>Output size of a convolution or pooling window along one axis, rounded down (floor mode).</summary>
    private static long ConvolvedSize(long size, long kernel, long stride, long padding, long dilation) =>
        (size + 2 * padding - dilation * (kernel - 1) - 1) / stride + 1;

    private static void RequireImage(string name, Activation x)
    {
        if (!x.IsImage)
            throw Unsupported(name, $"{x.Channels} flattened features as input", "it needs an N×C×H×W image");
    }

    private static DataViewType Image(long channels, long height, long width) =>
        new VectorDataViewType(NumberDataViewType.Single, checked((int)channels), checked((int)height), checked((int)width));

    private static DataViewType Logits(long features) => new VectorDataViewType(NumberDataViewType.Single, checked((int)features));

    private static DataViewType TypeOf(Activation x) => x.IsImage ? Image(x.Channels, x.Height, x.Width) : Logits(x.Channels);

    private static NotSupportedException Unsupported(string layer, string what, string why) =>
        new($"Cannot export LeNet-BN to ONNX: layer '{layer}' has {what}, and {why}.");

    /// <summary>Names, variables, nodes and initializers, each with <see cref="NamePrefix"/>.</summary>
    private sealed class GraphWriter(OnnxContext ctx)
    {
        /// <summary>Adds a node with one output of <paramref name="type"/> (per row); returns the output's variable name.</summary>
        public string Node(string opType, string[] inputs, DataViewType type, string name, Action<OnnxNode>? attributes = null)
        {
            string output = ctx.AddIntermediateVariable(type, NamePrefix + name + "." + opType);
            var node = ctx.CreateNode(opType, inputs, [output], ctx.GetNodeName(NamePrefix + name), OnnxDomain);
            attributes?.Invoke(node);
            return output;
        }

        /// <summary>A float32 initializer with the tensor's values and shape, copied from whatever device it lives on.</summary>
        public string Initializer(string name, Tensor tensor)
        {
            var values = tensor.detach().cpu().to(ScalarType.Float32).contiguous();
            return ctx.AddInitializer(values.data<float>().ToArray(), values.shape, NamePrefix + name);
        }
    }
}
