using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Runtime;
using MlNetBn;
using MlNetBn.Modules;
using MlNetBn.Training;
using MlNetBn.Transform;
using TorchSharp;
using static TorchSharp.torch;

[assembly: LoadableClass(typeof(LeNetBnTransformer), null, typeof(SignatureLoadModel),
    LeNetBnTransformer.UserName, LeNetBnTransformer.LoaderSignature)]

namespace MlNetBn;

/// <summary>
/// A trained LeNet-BN: adds <c>Score</c> (class probabilities) and <c>PredictedLabel</c> (the label's key type) to
/// data with the feature column it was trained on. Predicts in eval mode (batch normalization uses the moving
/// statistics, no gradients), <see cref="LeNetBnTrainer.Defaults.PredictionBatchSize"/> rows per forward pass.
/// </summary>
/// <remarks>
/// Save and load it with <c>mlContext.Model.Save</c>/<c>Load</c>: the weights travel inside the zip.
/// Thread safety: <see cref="Transform"/> and <see cref="GetRowToRowMapper"/> may be called from several threads,
/// and each resulting cursor, or each <c>PredictionEngine</c>, used from one thread at a time — as ML.NET's own
/// transformers. The transformer owns native TorchSharp memory: dispose it when done (models loaded by ML.NET are
/// disposed with the chain that holds them, or by the garbage collector's finalizers otherwise).
/// </remarks>
public sealed class LeNetBnTransformer : ITransformer, IDisposable
{
    // At most 24 characters (ML.NET's model header).
    internal const string LoaderSignature = "MlNetBnLeNetBnTransform";
    internal const string UserName = "LeNet-BN transformer";
    internal const string WeightsStreamName = "LeNetBnWeights.bin";

    private readonly IHost _host;
    private readonly LeNetBnNetwork _network;
    private readonly Device _device;
    private readonly LabelKeyValues? _keyValues;
    private bool _disposed;

    internal LeNetBnTransformer(IHostEnvironment env, LeNetBnNetwork network, string featureColumnName, LabelKeyValues? keyValues,
        int predictionBatchSize, IReadOnlyList<LeNetBnEpochMetrics> history)
    {
        _host = env.Register(nameof(LeNetBnTransformer));
        _network = network;
        _network.eval();
        _device = network.parameters().First().device;
        _keyValues = keyValues;
        FeatureColumnName = featureColumnName;
        PredictionBatchSize = predictionBatchSize;
        TrainingHistory = history;
    }

    /// <summary>The feature column the model reads.</summary>
    public string FeatureColumnName { get; }

    /// <summary>The network's architecture: image shape, class count, BN kind and options, activation, pooling.</summary>
    public LeNetBnArchitecture Architecture => _network.Architecture;

    /// <summary>Number of classes: the length of <c>Score</c>.</summary>
    public int ClassCount => Architecture.NumClasses;

    /// <summary>The label's key values as text (class names), in key order; null when the label had none.</summary>
    public IReadOnlyList<string>? ClassNames => _keyValues?.Names;

    /// <summary>Rows per forward pass in <see cref="Transform"/>.</summary>
    public int PredictionBatchSize { get; }

    /// <summary>The per-epoch metrics of the Fit that made this model (empty for a loaded model).</summary>
    public IReadOnlyList<LeNetBnEpochMetrics> TrainingHistory { get; }

    /// <summary>The device the network lives on.</summary>
    public string Device => _device.ToString();

    /// <summary>The network itself, for tests that compare against it.</summary>
    internal LeNetBnNetwork NetworkForTests => _network;

    /// <summary>Always true: the transformer maps row to row, so it works in a <c>PredictionEngine</c>.</summary>
    public bool IsRowToRowMapper => true;

    /// <summary>
    /// Copies of every batch normalization layer's gamma, beta, moving mean and moving variance, in network order.
    /// Empty for a model without BN layers: <see cref="BatchNormKind.None"/>, or folded
    /// (<see cref="LeNetBnArchitecture.BatchNormFolded"/>), whose statistics are merged into the conv/linear weights.
    /// </summary>
    public IReadOnlyList<BatchNormLayerState> GetBatchNormStates()
    {
        ThrowIfDisposed();
        return _network.GetBatchNormStates();
    }

    /// <summary>
    /// A new transformer for prediction whose batch normalization layers are folded into the conv/linear layer
    /// before each (see <see cref="LeNetBnNetwork.FoldBatchNorm"/>): the same <c>Score</c> and
    /// <c>PredictedLabel</c> to float rounding, with fewer operations per forward pass. Its architecture says
    /// <see cref="LeNetBnArchitecture.BatchNormFolded"/>, it saves and loads like any other, and its
    /// <see cref="GetBatchNormStates"/> is empty. This transformer is unchanged; the two are disposed separately.
    /// <see cref="LeNetBnTrainer.Options.FoldBatchNorm"/> has <c>Fit</c> return the folded model directly.
    /// </summary>
    /// <exception cref="InvalidOperationException">The model has no batch normalization, or it is already folded.</exception>
    public LeNetBnTransformer FoldBatchNorm()
    {
        ThrowIfDisposed();
        var folded = _network.FoldBatchNorm();
        return new LeNetBnTransformer(_host, folded, FeatureColumnName, _keyValues, PredictionBatchSize, TrainingHistory);
    }

    /// <summary>The output schema: the input's columns plus <c>Score</c> and <c>PredictedLabel</c>.</summary>
    public DataViewSchema GetOutputSchema(DataViewSchema inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        LeNetBnSchema.CheckFeatures(inputSchema, FeatureColumnName, Architecture.Input, "input data");
        return LeNetBnSchema.GetOutputSchema(inputSchema, ClassCount, _keyValues);
    }

    /// <summary>Lazily scores <paramref name="input"/> in batches as it is read.</summary>
    public IDataView Transform(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        ThrowIfDisposed();
        return new LeNetBnDataView(this, input, GetOutputSchema(input.Schema));
    }

    /// <summary>A row-to-row mapper (one forward pass per row), as <c>PredictionEngine</c> needs.</summary>
    public IRowToRowMapper GetRowToRowMapper(DataViewSchema inputSchema)
    {
        ThrowIfDisposed();
        return new LeNetBnRowMapper(this, inputSchema, GetOutputSchema(inputSchema));
    }

    /// <summary>
    /// Class probabilities for <paramref name="rows"/> images held row-major in <paramref name="features"/>,
    /// written to <paramref name="scores"/> (rows × classes). Eval mode, no gradients, one dispose scope.
    /// </summary>
    internal void Predict(float[] features, int rows, Span<float> scores)
    {
        ThrowIfDisposed();
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var x = tensor(features, [rows, Architecture.Input.Size]).narrow(0, 0, rows);
        var probabilities = nn.functional.softmax(_network.forward(x.to(_device)), 1).cpu().contiguous();
        probabilities.data<float>().CopyTo(scores[..(rows * ClassCount)]);
    }

    /// <summary>Releases the network's native memory.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _network.Dispose();
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

    // ---------------------------------------------------------------------------------------------------------
    // Persistence. The model entry (Model.key) holds, after ML.NET's header:
    //   int32  format version (same as VerWrittenCur, repeated so a truncated header is caught early)
    //   string feature column name
    //   int32  channels, height, width, class count
    //   byte   BN kind, activation, pooling, momentum convention; byte moving-variance kind (255 = layer default)
    //   byte   BN folded: 1 when the BN layers are folded into the conv/linear weights, else 0 (from 0x00010002)
    //   double BN momentum, BN epsilon
    //   int32  prediction batch size
    //   label key values: byte type code (0 = none), int32 count, count strings
    // and the weights stream (LeNetBnWeights.bin) holds: int64 byte count, then TorchSharp's state-dict format
    // (parameters and BN buffers; a folded model has no BN entries), always saved from CPU tensors so the file is
    // device-neutral.
    // Versions: 0x00010001 initial; 0x00010002 adds the BN-folded byte. Older readers cannot read 0x00010002 (a
    // folded model's weights would not fit their unfolded network), hence verReadableCur = FormatVersion.
    // ---------------------------------------------------------------------------------------------------------

    private const uint InitialFormatVersion = 0x00010001;
    private const uint FoldedFlagFormatVersion = 0x00010002;
    private const uint FormatVersion = FoldedFlagFormatVersion;

    private static VersionInfo GetVersionInfo() => new(
        modelSignature: "LENETBNT",
        verWrittenCur: FormatVersion,
        verReadableCur: FormatVersion,
        verWeCanReadBack: InitialFormatVersion,
        loaderSignature: LoaderSignature,
        loaderAssemblyName: typeof(LeNetBnTransformer).Assembly.FullName);

    void ICanSaveModel.Save(ModelSaveContext ctx)
    {
        ThrowIfDisposed();
        ctx.CheckAtModel();
        ctx.SetVersionInfo(GetVersionInfo());
        var w = ctx.Writer;
        var a = Architecture;
        w.Write(FormatVersion);
        w.Write(FeatureColumnName);
        w.Write(a.Input.Channels); w.Write(a.Input.Height); w.Write(a.Input.Width);
        w.Write(a.NumClasses);
        w.Write((byte)a.BatchNorm); w.Write((byte)a.Activation); w.Write((byte)a.Pooling);
        w.Write((byte)a.BatchNormOptions.Convention);
        w.Write(a.BatchNormOptions.MovingVariance is { } kind ? (byte)kind : byte.MaxValue);
        w.Write(a.BatchNormFolded ? (byte)1 : (byte)0);
        w.Write(a.BatchNormOptions.Momentum); w.Write(a.BatchNormOptions.Epsilon);
        w.Write(PredictionBatchSize);
        LabelKeyValues.Write(w, _keyValues);
        ctx.SaveBinaryStream(WeightsStreamName, writer => ModelWeights.Write(writer, _network));
    }

    /// <summary>ML.NET's loader entry point, found through the assembly's <c>LoadableClass</c> attribute.</summary>
    internal static LeNetBnTransformer Create(IHostEnvironment env, ModelLoadContext ctx)
    {
        ctx.CheckAtModel(GetVersionInfo());
        var r = ctx.Reader;
        uint version = r.ReadUInt32();
        if (version > FormatVersion)
            throw new InvalidDataException($"This LeNetBn model was written by a newer MlNetBn (format 0x{version:X8}); this version reads up to 0x{FormatVersion:X8}.");
        if (version < InitialFormatVersion)
            throw new InvalidDataException($"The LeNetBn model declares format 0x{version:X8}, older than any MlNetBn wrote; the model file is corrupt.");
        string featureColumn = r.ReadString();
        var shape = new ImageShape(r.ReadInt32(), r.ReadInt32(), r.ReadInt32());
        int classes = r.ReadInt32();
        var bnKind = ReadEnum<BatchNormKind>(r);
        var activation = ReadEnum<ActivationKind>(r);
        var pooling = ReadEnum<PoolingKind>(r);
        var convention = ReadEnum<MomentumConvention>(r);
        byte variance = r.ReadByte();
        bool folded = version >= FoldedFlagFormatVersion && ReadFlag(r, "BN-folded");
        var architecture = new LeNetBnArchitecture
        {
            Input = shape,
            NumClasses = classes,
            BatchNorm = bnKind,
            Activation = activation,
            Pooling = pooling,
            BatchNormFolded = folded,
            BatchNormOptions = new BatchNormOptions
            {
                Convention = convention,
                MovingVariance = variance == byte.MaxValue ? null : (MovingVarianceKind)variance,
                Momentum = r.ReadDouble(),
                Epsilon = r.ReadDouble(),
            },
        };
        int predictionBatchSize = r.ReadInt32();
        var keyValues = LabelKeyValues.Read(r, classes);

        TorchNative.EnsureLoaded();
        var network = new LeNetBnNetwork(architecture);
        try
        {
            if (!ctx.TryLoadBinaryStream(WeightsStreamName, reader => ModelWeights.Read(reader, network)))
                throw new InvalidDataException($"The model has no '{WeightsStreamName}' entry: its weights are missing.");
            return new LeNetBnTransformer(env, network, featureColumn, keyValues, predictionBatchSize, []);
        }
        catch
        {
            network.Dispose();
            throw;
        }
    }

    private static bool ReadFlag(BinaryReader r, string what) => r.ReadByte() switch
    {
        0 => false,
        1 => true,
        var b => throw new InvalidDataException($"Invalid {what} flag {b} in the model (0 or 1 expected)."),
    };

    private static T ReadEnum<T>(BinaryReader r) where T : struct, Enum
    {
        byte b = r.ReadByte();
        var value = (T)Enum.ToObject(typeof(T), b);
        if (!Enum.IsDefined(value))
            throw new InvalidDataException($"Unknown {typeof(T).Name} value {b} in the model.");
        return value;
    }
}
