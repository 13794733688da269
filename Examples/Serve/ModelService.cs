using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.ObjectPool;
using Microsoft.Extensions.Options;
using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetBn.Examples.ImageFiles;

namespace MlNetBn.Examples.Serve;

/// <summary>Where the model is and what requests may carry: the configuration section <c>Model</c>.</summary>
public sealed class ModelOptions
{
    /// <summary>The configuration section: <c>Model:Path</c> in appsettings, <c>Model__Path</c> in the environment.</summary>
    public const string SectionName = "Model";

    /// <summary>The model zip, as <c>mlContext.Model.Save</c> wrote it (a LeNet-BN model, alone or in a chain).</summary>
    public string Path { get; set; } = "";

    /// <summary>The largest request body taken, in bytes (1 MiB by default).</summary>
    public int MaxRequestBytes { get; set; } = 1 << 20;

    /// <summary>
    /// How many idle PredictionEngines the pool keeps (0, the default: 4 per core, at least 16). More requests than
    /// this at once still each get an engine; the extra ones are disposed when returned.
    /// </summary>
    public int EnginePoolSize { get; set; }
}

/// <summary>The model could not be loaded: the message says which file and why.</summary>
public sealed class ModelLoadException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// The loaded model and a pool of <see cref="PredictionEngine{TSrc, TDst}"/>s over it, one engine per request at a
/// time (docs/THREADING.md: the model is shared, an engine is not). The engines do not own the model; disposing the
/// service (the host does, at shutdown) disposes the engines, then the model.
/// </summary>
public sealed class ModelService : IHealthCheck, IDisposable
{
    private readonly MLContext _mlContext = new();
    private readonly ITransformer _model;
    private readonly ObjectPool<PredictionEngine<FeaturesRow, ScoredRow>> _engines;
    private readonly string[] _classes;
    private volatile bool _disposed;

    /// <summary>Loads the model named by <see cref="ModelOptions.Path"/>; throws <see cref="ModelLoadException"/> when it can't.</summary>
    public ModelService(IOptions<ModelOptions> options)
    {
        string path = options.Value.Path;
        if (string.IsNullOrWhiteSpace(path))
            throw new ModelLoadException("No model given: pass --model PATH.zip, or set Model:Path (environment: Model__Path).");
        path = System.IO.Path.GetFullPath(path);
        if (!File.Exists(path))
            throw new ModelLoadException($"The model file {path} does not exist.");
        try
        {
            _model = _mlContext.Model.Load(path, out _);
        }
        catch (Exception e)
        {
            throw new ModelLoadException($"The model file {path} could not be loaded ({e.GetType().Name}: {e.Message}); is it a zip that mlContext.Model.Save wrote?", e);
        }
        var lenet = Find(_model);
        if (lenet is null)
        {
            (_model as IDisposable)?.Dispose();
            throw new ModelLoadException($"The model file {path} holds no LeNet-BN model.");
        }
        Network = lenet;
        var shape = lenet.Architecture.Input;
        _classes = lenet.ClassNames?.ToArray() ?? Enumerable.Range(1, lenet.ClassCount).Select(k => k.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray();

        // The feature vector's length is the model's C·H·W, known only now.
        var input = SchemaDefinition.Create(typeof(FeaturesRow));
        input[nameof(FeaturesRow.Features)].ColumnName = lenet.FeatureColumnName;
        input[nameof(FeaturesRow.Features)].ColumnType = new VectorDataViewType(NumberDataViewType.Single, shape.Size);
        var engineOptions = new PredictionEngineOptions { OwnsTransformer = false, InputSchemaDefinition = input };
        try
        {
            using var first = _mlContext.Model.CreatePredictionEngine<FeaturesRow, ScoredRow>(_model, engineOptions);
        }
        catch (Exception e)
        {
            (_model as IDisposable)?.Dispose();
            throw new ModelLoadException($"The model file {path} cannot predict from a {shape.Size}-float '{lenet.FeatureColumnName}' column alone ({e.Message}).", e);
        }
        int retained = options.Value.EnginePoolSize > 0 ? options.Value.EnginePoolSize : Math.Max(16, 4 * Environment.ProcessorCount);
        var provider = new DefaultObjectPoolProvider { MaximumRetained = retained };
        _engines = provider.Create(new EnginePolicy(_mlContext, _model, engineOptions));
        ModelPath = path;
    }

    /// <summary>The model file, as a full path.</summary>
    public string ModelPath { get; }

    /// <summary>The LeNet-BN transformer inside the model.</summary>
    public LeNetBnTransformer Network { get; }

    /// <summary>The class names (the label's key values as text), in key order.</summary>
    public IReadOnlyList<string> Classes => _classes;

    /// <summary>The length of the feature vector: C·H·W.</summary>
    public int FeatureCount => Network.Architecture.Input.Size;

    /// <summary>Scores one feature vector of <see cref="FeatureCount"/> finite floats with a pooled engine.</summary>
    public PredictResponse Predict(float[] features)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var engine = _engines.Get();
        ScoredRow scored;
        try
        {
            scored = engine.Predict(new FeaturesRow { Features = features });
        }
        finally
        {
            _engines.Return(engine);
        }
        // PredictedLabel is the key (1-based; 0 = missing, which finite features never give).
        string label = scored.PredictedLabel is > 0 && scored.PredictedLabel <= (uint)_classes.Length ? _classes[scored.PredictedLabel - 1] : "";
        return new PredictResponse(label, scored.Score, _classes);
    }

    /// <summary>Converts an uploaded image to features exactly as Examples/ImageFiles converts a file (same code).</summary>
    public float[] ImageToFeatures(byte[] imageBytes, bool invert) =>
        FashionImageFiles.ToFeatures(new MLContext(), imageBytes, invert);

    /// <summary>What <c>GET /model</c> reports.</summary>
    public ModelInfo Info()
    {
        var architecture = Network.Architecture;
        var shape = architecture.Input;
        return new ModelInfo(_classes, new ImageShapeInfo(shape.Channels, shape.Height, shape.Width), FeatureCount,
            architecture.BatchNorm.ToString(), architecture.BatchNormFolded, Network.Device);
    }

    /// <summary>Healthy while the model is loaded.</summary>
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
        Task.FromResult(_disposed ? HealthCheckResult.Unhealthy("The model is disposed.") : HealthCheckResult.Healthy($"Model {ModelPath} loaded."));

    /// <summary>Disposes the pooled engines, then the model (its native weights).</summary>
    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        (_engines as IDisposable)?.Dispose();
        (_model as IDisposable)?.Dispose();
    }

    private static LeNetBnTransformer? Find(ITransformer model) => model switch
    {
        LeNetBnTransformer lenet => lenet,
        IEnumerable<ITransformer> chain => chain.Select(Find).LastOrDefault(t => t is not null),
        _ => null,
    };

    private sealed class EnginePolicy(MLContext mlContext, ITransformer model, PredictionEngineOptions options)
        : PooledObjectPolicy<PredictionEngine<FeaturesRow, ScoredRow>>
    {
        private readonly Lock _creating = new();

        // An MLContext is not thread-safe; engines are created rarely (the pool keeps them), so one at a time.
        public override PredictionEngine<FeaturesRow, ScoredRow> Create()
        {
            lock (_creating)
                return mlContext.Model.CreatePredictionEngine<FeaturesRow, ScoredRow>(model, options);
        }

        public override bool Return(PredictionEngine<FeaturesRow, ScoredRow> engine) => true;
    }
}

/// <summary>The engine's input row; its column name and length are set from the model.</summary>
public sealed class FeaturesRow
{
    /// <summary>C·H·W floats.</summary>
    public float[] Features { get; set; } = [];
}

/// <summary>The engine's output row.</summary>
public sealed class ScoredRow
{
    /// <summary>Class probabilities.</summary>
    public float[] Score { get; set; } = [];

    /// <summary>The predicted key (1-based; 0 = missing).</summary>
    public uint PredictedLabel { get; set; }
}
