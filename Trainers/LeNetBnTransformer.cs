using System.Reflection;
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
/// <para>
/// Save and load it with <c>mlContext.Model.Save</c>/<c>Load</c>: the weights travel inside the zip. A damaged,
/// truncated or too-new model file fails to load with an <see cref="InvalidDataException"/> naming the entry.
/// </para>
/// <para>
/// Thread safety (docs/THREADING.md): one transformer may serve many threads. <see cref="Transform"/>,
/// <see cref="GetRowToRowMapper"/>, <see cref="GetOutputSchema"/> and <see cref="GetBatchNormStates"/> may be
/// called concurrently, and give the same results, to the bit, as on one thread. What they return is not shared:
/// each cursor of a transformed view, and each <c>PredictionEngine</c>, is for one thread at a time; use one
/// engine per thread or <c>PredictionEnginePool</c> (ML.NET's own rule for <c>PredictionEngine</c>).
/// </para>
/// <para>
/// Lifetime: the transformer owns native (libtorch) memory; dispose it when no code will predict with it again.
/// A chain returned by <c>Fit</c> or <c>Model.Load</c> disposes it with the chain, and a <c>PredictionEngine</c>
/// created without <c>PredictionEngineOptions.OwnsTransformer = false</c> disposes it with the engine, ML.NET's
/// default. <see cref="Dispose"/> waits for forward passes in flight on other threads; later calls throw
/// <see cref="ObjectDisposedException"/>, never touch freed memory. An undisposed transformer is freed by
/// TorchSharp's finalizers, later.
/// </para>
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

    // Every use of the network holds the read side; Dispose takes the write side. So Dispose waits for forward
    // passes in flight on other threads, and a call after it throws ObjectDisposedException instead of running on
    // freed native memory. Never disposed itself: it holds no native resource until contended, and a disposed
    // lock would throw its own ObjectDisposedException, naming the lock instead of this transformer.
    private readonly ReaderWriterLockSlim _lifetime = new(LockRecursionPolicy.NoRecursion);
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
        using var _ = UseNetwork();
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
        using var use = UseNetwork();
        var folded = _network.FoldBatchNorm();
        return new LeNetBnTransformer(_host, folded, FeatureColumnName, _keyValues, PredictionBatchSize, TrainingHistory);
    }

    /// <summary>Copies the weights and BN statistics into <paramref name="target"/>, a network of the same architecture on any device.</summary>
    internal void CopyWeightsTo(LeNetBnNetwork target)
    {
        using var use = UseNetwork();
        using var scope = NewDisposeScope();
        using (no_grad())
            target.load_state_dict(_network.state_dict());
    }

    /// <summary>Writes the weights as the model file stores them (for fingerprints).</summary>
    internal void WriteWeights(Stream stream)
    {
        using var use = UseNetwork();
        using var writer = new BinaryWriter(stream, System.Text.Encoding.UTF8, leaveOpen: true);
        ModelWeights.Write(writer, _network);
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
        using var use = UseNetwork();
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var x = tensor(features, [rows, Architecture.Input.Size]).narrow(0, 0, rows);
        var probabilities = nn.functional.softmax(_network.forward(x.to(_device)), 1).cpu().contiguous();
        probabilities.data<float>().CopyTo(scores[..(rows * ClassCount)]);
    }

    /// <summary>Adds the network to an ONNX graph being built by <c>ConvertToOnnx</c> (see Transform/OnnxExport.cs).</summary>
    internal void SaveAsOnnx(Microsoft.ML.Model.OnnxConverter.OnnxContext ctx, DataViewSchema outputSchema)
    {
        using var use = UseNetwork();
        OnnxExport.Save(ctx, _network, FeatureColumnName, outputSchema);
    }

    /// <summary>
    /// Releases the network's native memory, after the forward passes in flight on other threads finish. Safe to
    /// call more than once; any later use of the transformer throws <see cref="ObjectDisposedException"/>.
    /// </summary>
    public void Dispose()
    {
        _lifetime.EnterWriteLock();
        try
        {
            if (_disposed) return;
            _disposed = true;
            _network.Dispose();
        }
        finally
        {
            _lifetime.ExitWriteLock();
        }
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

    /// <summary>Holds off <see cref="Dispose"/> while the caller uses the network; throws if it already ran.</summary>
    private NetworkUse UseNetwork()
    {
        _lifetime.EnterReadLock();
        if (_disposed)
        {
            _lifetime.ExitReadLock();
            ThrowIfDisposed();
        }
        return new NetworkUse(_lifetime);
    }

    private readonly struct NetworkUse(ReaderWriterLockSlim lifetime) : IDisposable
    {
        public void Dispose() => lifetime.ExitReadLock();
    }

    // ---------------------------------------------------------------------------------------------------------
    // Persistence. How ML.NET finds this code: mlContext.Model.Save calls ICanSaveModel.Save with a ModelSaveContext
    // on the entry <dir>/Model.key of the zip; SetVersionInfo puts ML.NET's header in front of it (model signature,
    // versions, the loader signature and this assembly's full name). Model.Load, in any process, reads the header,
    // loads the assembly by that name, registers its [assembly: LoadableClass] attributes and calls the Create whose
    // loader signature matches. Nothing to register, as long as the process can resolve MlNetBn.Trainers.
    //
    // The model entry (Model.key) holds, after ML.NET's header:
    //   uint32 format version (equal to the header's VerWritten: a body that does not belong to its header is corrupt)
    //   int32  byte count of the fields, the fields, then the SHA-256 of those bytes. The fields:
    //     string feature column name
    //     int32  channels, height, width, class count
    //     byte   BN kind, activation, pooling, momentum convention; byte moving-variance kind (255 = layer default)
    //     byte   BN folded: 1 when the BN layers are folded into the conv/linear weights, else 0
    //     double BN momentum, BN epsilon
    //     int32  prediction batch size
    //     label key values: byte type code (0 = none), int32 count, count strings
    // and the weights entry (LeNetBnWeights.bin) what ModelWeights writes: int64 byte count, TorchSharp's state-dict
    // format (parameters and BN buffers, none when folded; always from CPU tensors so the file is device-neutral),
    // then the SHA-256 of those bytes. Every byte a loader reads is hashed, and every field is validated, before a
    // network is built: a damaged file fails at Model.Load, never later with a different model.
    //
    // As in ML.NET, VerReadableCur is the oldest format a reader must understand to read what Save writes now, and
    // VerWeCanReadBack the oldest format Create reads. Bump FormatVersion with any change to either entry.
    // ---------------------------------------------------------------------------------------------------------

    /// <summary>ML.NET's name for the main stream of each model directory in the zip.</summary>
    internal const string ModelEntryName = "Model.key";

    private const string ModelSignature = "LENETBNT";
    internal const uint FormatVersion = 0x00010001;

    /// <summary>Upper bound on the fields' bytes (they are a few hundred bytes plus the class names).</summary>
    private const int MaxFieldBytes = 1 << 24;

    private static VersionInfo GetVersionInfo() => new(
        modelSignature: ModelSignature,
        verWrittenCur: FormatVersion,
        verReadableCur: FormatVersion,
        verWeCanReadBack: FormatVersion,
        loaderSignature: LoaderSignature,
        loaderAssemblyName: typeof(LeNetBnTransformer).Assembly.FullName);

    void ICanSaveModel.Save(ModelSaveContext ctx)
    {
        using var use = UseNetwork();
        ctx.CheckAtModel();
        ctx.SetVersionInfo(GetVersionInfo());

        using var fields = new MemoryStream();
        using (var w = new BinaryWriter(fields, System.Text.Encoding.UTF8, leaveOpen: true))
        {
            var a = Architecture;
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
        }
        var bytes = fields.GetBuffer().AsSpan(0, (int)fields.Length);
        ctx.Writer.Write(FormatVersion);
        ctx.Writer.Write(bytes.Length);
        ctx.Writer.Write(bytes);
        ctx.Writer.Write(System.Security.Cryptography.SHA256.HashData(bytes));
        ctx.SaveBinaryStream(WeightsStreamName, writer => ModelWeights.Write(writer, _network));
    }

    /// <summary>
    /// ML.NET's loader entry point, found through the assembly's <c>LoadableClass</c> attribute. Every way a model
    /// file can be damaged, truncated, foreign or of another format ends in an <see cref="InvalidDataException"/>
    /// that names the zip entry (ML.NET hands it on wrapped in a <c>TargetInvocationException</c>); no byte reaches
    /// TorchSharp unchecked.
    /// </summary>
    internal static LeNetBnTransformer Create(IHostEnvironment env, ModelLoadContext ctx)
    {
        string modelEntry = EntryPath(ctx, ModelEntryName);
        CheckFormat(ctx.Header, modelEntry);
        ctx.CheckAtModel(GetVersionInfo());
        uint written = ctx.Header.ModelVerWritten;

        string featureColumn;
        LeNetBnArchitecture architecture;
        int predictionBatchSize;
        LabelKeyValues? keyValues;
        try
        {
            uint version = ctx.Reader.ReadUInt32();
            if (version != written)
                throw new InvalidDataException($"its body is of format 0x{version:X8} but its header says 0x{written:X8}");
            using var r = new BinaryReader(new MemoryStream(ReadHashedFields(ctx.Reader), writable: false));
            featureColumn = r.ReadString();
            if (featureColumn.Length == 0)
                throw new InvalidDataException("its feature column name is empty");
            var shape = new ImageShape(r.ReadInt32(), r.ReadInt32(), r.ReadInt32());
            int classes = r.ReadInt32();
            if (classes < 2)
                throw new InvalidDataException($"class count {classes} (at least 2 expected)");
            var bnKind = ReadEnum<BatchNormKind>(r);
            var activation = ReadEnum<ActivationKind>(r);
            var pooling = ReadEnum<PoolingKind>(r);
            var convention = ReadEnum<MomentumConvention>(r);
            byte variance = r.ReadByte();
            bool folded = ReadFlag(r, "BN-folded");
            var bnOptions = new BatchNormOptions
            {
                Convention = convention,
                MovingVariance = variance == byte.MaxValue ? null : (MovingVarianceKind)variance,
                Momentum = r.ReadDouble(),
                Epsilon = r.ReadDouble(),
            };
            bnOptions.Validate();
            architecture = new LeNetBnArchitecture
            {
                Input = shape,
                NumClasses = classes,
                BatchNorm = bnKind,
                Activation = activation,
                Pooling = pooling,
                BatchNormFolded = folded,
                BatchNormOptions = bnOptions,
            };
            predictionBatchSize = r.ReadInt32();
            if (predictionBatchSize is < 1 or > LeNetBnTrainer.MaxPredictionBatchSize)
                throw new InvalidDataException($"prediction batch size {predictionBatchSize} (1 to {LeNetBnTrainer.MaxPredictionBatchSize:N0} expected)");
            keyValues = LabelKeyValues.Read(r, classes);
            if (r.BaseStream.Position != r.BaseStream.Length)
                throw new InvalidDataException($"{r.BaseStream.Length - r.BaseStream.Position:N0} unexpected bytes follow its fields");
            // Sizes come from the file: bound what they would allocate before libtorch allocates it.
            long values = LeNetBnNetwork.CountStateValues(architecture);
            if (values > ModelWeights.MaxBytes / sizeof(float))
                throw new InvalidDataException($"its architecture ({shape}, {classes} classes) would need {values:N0} weights, more than a model file holds");
        }
        catch (Exception e) when (e is InvalidDataException or EndOfStreamException or ArgumentException or OverflowException or FormatException)
        {
            throw new InvalidDataException($"The LeNet-BN model entry '{modelEntry}' of the model file is corrupt: {e.Message.TrimEnd('.')}.", e);
        }

        TorchNative.EnsureLoaded();
        var network = new LeNetBnNetwork(architecture);
        try
        {
            string weightsEntry = EntryPath(ctx, WeightsStreamName);
            if (!ctx.TryLoadBinaryStream(WeightsStreamName, reader => ModelWeights.Read(reader, network, weightsEntry)))
                throw new InvalidDataException($"The model file has no '{weightsEntry}' entry next to '{modelEntry}': the LeNet-BN weights are missing.");
            return new LeNetBnTransformer(env, network, featureColumn, keyValues, predictionBatchSize, []);
        }
        catch
        {
            network.Dispose();
            throw;
        }
    }

    /// <summary>Reads the fields' length, the fields and their SHA-256, and returns the fields once the hash matches.</summary>
    private static byte[] ReadHashedFields(BinaryReader reader)
    {
        int length = reader.ReadInt32();
        if (length is < 1 or > MaxFieldBytes)
            throw new InvalidDataException($"it declares {length:N0} bytes of fields, outside 1 to {MaxFieldBytes:N0}");
        var fields = reader.ReadBytes(length);
        var expected = reader.ReadBytes(ModelWeights.HashBytes);
        if (fields.Length != length || expected.Length != ModelWeights.HashBytes)
            throw new EndOfStreamException("it is truncated");
        if (!System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(expected, System.Security.Cryptography.SHA256.HashData(fields)))
            throw new InvalidDataException("its fields do not match their SHA-256: the file was damaged or altered after it was saved");
        return fields;
    }

    /// <summary>
    /// The checks of ML.NET's <c>CheckAtModel</c>, first, with messages that name this entry, MlNetBn and both
    /// format versions (ML.NET's name its own version and the loader signature only).
    /// </summary>
    private static void CheckFormat(ModelHeader header, string entry)
    {
        var ours = GetVersionInfo();
        if (header.ModelSignature != ours.ModelSignature)
            throw new InvalidDataException(
                $"The model entry '{entry}' names the LeNet-BN loader but is not a LeNet-BN model: its model signature is '{SignatureText(header.ModelSignature)}', not '{ModelSignature}'.");
        if (header.ModelVerReadable > header.ModelVerWritten)
            throw new InvalidDataException(
                $"The LeNet-BN model entry '{entry}' of the model file is corrupt: its header says format 0x{header.ModelVerWritten:X8} is readable from format 0x{header.ModelVerReadable:X8}, a later one.");
        string reader = $"MlNetBn.Trainers {ProductVersion} reads LeNet-BN model format 0x{ours.VerWrittenCur:X8}";
        if (header.ModelVerReadable > ours.VerWrittenCur)
            throw new InvalidDataException(
                $"The LeNet-BN model in '{entry}' is too new: it was saved in model format 0x{header.ModelVerWritten:X8}, which needs a reader of format 0x{header.ModelVerReadable:X8} or later; {reader}. Update the MlNetBn packages to load it.");
        if (header.ModelVerWritten < ours.VerWeCanReadBack)
            throw new InvalidDataException(
                $"The LeNet-BN model in '{entry}' is too old: it was saved in model format 0x{header.ModelVerWritten:X8}; {reader}. Train it again, or load it with the MlNetBn that saved it.");
    }

    private static string EntryPath(ModelLoadContext ctx, string name) =>
        string.IsNullOrEmpty(ctx.Directory) ? name : $"{ctx.Directory.Replace('\\', '/')}/{name}";

    private static string SignatureText(ulong signature)
    {
        var bytes = BitConverter.GetBytes(signature);
        return bytes.All(b => b is >= 0x20 and < 0x7F) ? System.Text.Encoding.ASCII.GetString(bytes) : $"0x{signature:X16}";
    }

    private static string ProductVersion =>
        typeof(LeNetBnTransformer).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0]
        ?? typeof(LeNetBnTransformer).Assembly.GetName().Version?.ToString() ?? "?";

    private static bool ReadFlag(BinaryReader r, string what) => r.ReadByte() switch
    {
        0 => false,
        1 => true,
        var b => throw new InvalidDataException($"invalid {what} flag {b} (0 or 1 expected)"),
    };

    private static T ReadEnum<T>(BinaryReader r) where T : struct, Enum
    {
        byte b = r.ReadByte();
        var value = (T)Enum.ToObject(typeof(T), b);
        if (!Enum.IsDefined(value))
            throw new InvalidDataException($"unknown {typeof(T).Name} value {b}");
        return value;
    }
}
