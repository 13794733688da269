// Template for a transformer that round-trips through mlContext.Model.Save/Load with no registration call.
// The LeNet transformer replaces this probe; Tests/Internals keep proving the mechanism until then.
//
// How ML.NET finds the loader of a saved model (Microsoft.ML.Core, ModelLoadContext/ComponentCatalog):
//  1. Save: mlContext.Model.Save calls ICanSaveModel.Save with a ModelSaveContext opened on the zip entry
//     "TransformerChain/Model.key" (or a sub-directory per element of a TransformerChain). SetVersionInfo puts
//     a model signature, versions, a loader signature and the loader assembly's full name in that entry's header.
//  2. Load (any process): ModelLoadContext reads the header, does Assembly.Load(loader assembly name) and
//     ComponentCatalog.RegisterAssembly on it, which reads that assembly's [assembly: LoadableClass] attributes.
//     The one whose load name equals the header's loader signature and whose signature type is
//     SignatureLoadModel is instantiated through a static Create(IHostEnvironment, ModelLoadContext) (or a
//     constructor with those parameters, whichever is more visible).
// So the zip names our assembly and ML.NET loads it by itself: nothing to register, as long as the process
// can resolve MlNetBn.Trainers by name (it is in the application's deps.json when the app references us).

using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Runtime;
using MlNetBn.Internal;

// Internal ML.NET attribute: fine at run time thanks to [IgnoresAccessChecksTo("Microsoft.ML.Core")].
[assembly: LoadableClass(typeof(MlNetInternalsProbe), null, typeof(SignatureLoadModel),
    MlNetInternalsProbe.UserName, MlNetInternalsProbe.LoaderSignature)]

namespace MlNetBn.Internal;

/// <summary>
/// Identity transformer that stores one float in the model zip. Proves, end to end, that the publicized
/// ML.NET persistence API works against the real ML.NET at run time.
/// </summary>
internal sealed class MlNetInternalsProbe : ITransformer
{
    /// <summary>Load name written in the zip; at most 24 ASCII characters and unique across loaded assemblies.</summary>
    internal const string LoaderSignature = "MlNetBnInternalsProbe";

    /// <summary>Display name in ML.NET's component catalog.</summary>
    internal const string UserName = "MlNetBn internals probe";

    /// <summary>Side stream, next to Model.key in the zip, that holds the "weights".</summary>
    internal const string WeightsStreamName = "Weights.bin";

    // Version 0x00010001: first format. Bump VerWrittenCur when the format changes; keep VerWeCanReadBack at the
    // oldest version Create still reads; VerReadableCur is the oldest reader that can read what we write now.
    private static VersionInfo GetVersionInfo() => new(
        modelSignature: "MLBNPROB", // exactly 8 characters
        verWrittenCur: 0x00010001,
        verReadableCur: 0x00010001,
        verWeCanReadBack: 0x00010001,
        loaderAssemblyName: typeof(MlNetInternalsProbe).Assembly.FullName,
        loaderSignature: LoaderSignature);

    private readonly IHost _host;

    internal MlNetInternalsProbe(IHostEnvironment env, float weight)
    {
        Contracts.CheckValue(env, nameof(env));
        _host = env.Register(nameof(MlNetInternalsProbe));
        _host.CheckParam(float.IsFinite(weight), nameof(weight), "must be finite");
        Weight = weight;
    }

    /// <summary>The value that travels in the zip's side stream.</summary>
    internal float Weight { get; }

    /// <summary>Found by ComponentCatalog through the LoadableClass attribute above (by reflection: private is fine).</summary>
    private static MlNetInternalsProbe Create(IHostEnvironment env, ModelLoadContext ctx)
    {
        Contracts.CheckValue(env, nameof(env));
        env.CheckValue(ctx, nameof(ctx));
        // Throws a clear "model version not supported" error if the zip is from an incompatible version.
        ctx.CheckAtModel(GetVersionInfo());

        // Main stream (Model.key): a small header. Header.ModelVerWritten tells which format wrote it, which is
        // where a later version branches to keep reading older zips.
        int count = ctx.Reader.ReadInt32();
        env.CheckDecode(count == 1, "MlNetInternalsProbe stores exactly one weight");
        env.CheckDecode(ctx.Header.ModelVerWritten >= 0x00010001);

        // Side stream: the weights (for the LeNet transformer: TorchSharp's state dict bytes).
        float weight = float.NaN;
        if (!ctx.TryLoadBinaryStream(WeightsStreamName, reader => weight = reader.ReadSingle()))
            throw env.ExceptDecode($"The model has no '{WeightsStreamName}' stream.");
        return new MlNetInternalsProbe(env, weight);
    }

    /// <inheritdoc />
    void ICanSaveModel.Save(ModelSaveContext ctx)
    {
        _host.CheckValue(ctx, nameof(ctx));
        ctx.CheckAtModel();
        ctx.SetVersionInfo(GetVersionInfo());

        ctx.Writer.Write(1); // number of weights; see Create
        ctx.SaveBinaryStream(WeightsStreamName, writer => writer.Write(Weight));
    }

    /// <inheritdoc />
    public bool IsRowToRowMapper => true;

    /// <inheritdoc />
    public DataViewSchema GetOutputSchema(DataViewSchema inputSchema)
    {
        _host.CheckValue(inputSchema, nameof(inputSchema));
        return inputSchema;
    }

    /// <inheritdoc />
    public IDataView Transform(IDataView input)
    {
        _host.CheckValue(input, nameof(input));
        return input;
    }

    /// <inheritdoc />
    public IRowToRowMapper GetRowToRowMapper(DataViewSchema inputSchema)
    {
        _host.CheckValue(inputSchema, nameof(inputSchema));
        return new IdentityMapper(inputSchema);
    }

    /// <inheritdoc />
    public override string ToString() => $"{nameof(MlNetInternalsProbe)}(Weight={Weight:R})";

    private sealed class IdentityMapper(DataViewSchema schema) : IRowToRowMapper
    {
        public DataViewSchema InputSchema => schema;

        public DataViewSchema OutputSchema => schema;

        public IEnumerable<DataViewSchema.Column> GetDependencies(IEnumerable<DataViewSchema.Column> dependingColumns)
            => dependingColumns;

        public DataViewRow GetRow(DataViewRow input, IEnumerable<DataViewSchema.Column> activeColumns) => input;
    }
}
