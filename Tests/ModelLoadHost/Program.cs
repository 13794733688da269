// usage: dotnet ModelLoadHost.dll <model.zip> [<features.bin> <feature-count>]
// Prints key=value lines (stable, for tests to parse) and exits 0, or prints error=... and exits 1.
// With a features file (raw little-endian float32 rows of <feature-count> values), also transforms those rows
// and prints score[i] (round-trip "R" floats) and, when the model outputs it, predicted-class[i].
using System.Reflection;
using Microsoft.ML;
using Microsoft.ML.Data;

if (args.Length is not (1 or 3))
{
    Console.Error.WriteLine("usage: dotnet ModelLoadHost.dll <model.zip> [<features.bin> <feature-count>]");
    return 2;
}

static bool IsLoaded(string simpleName) =>
    AppDomain.CurrentDomain.GetAssemblies().Any(a => a.GetName().Name == simpleName);

static string Describe(DataViewSchema? schema) =>
    schema is null ? "(none)" : string.Join(",", schema.Select(c => $"{c.Name}:{c.Type}"));

try
{
    // Nothing from MlNetBn is loaded yet: ML.NET has to find it through the loader assembly name in the zip.
    Console.WriteLine($"mlnetbn-loaded-before={IsLoaded("MlNetBn.Trainers")}");

    var mlContext = new MLContext(seed: 0);
    ITransformer model = mlContext.Model.Load(args[0], out DataViewSchema? inputSchema);

    Console.WriteLine($"mlnetbn-loaded-after={IsLoaded("MlNetBn.Trainers")}");
    Console.WriteLine($"model-type={model.GetType().FullName}");
    var transformers = model is IEnumerable<ITransformer> chain ? chain.ToList() : [model];
    Console.WriteLine($"transformer-count={transformers.Count}");
    for (int i = 0; i < transformers.Count; i++)
    {
        Console.WriteLine($"transformer[{i}].type={transformers[i].GetType().FullName}");
        Console.WriteLine($"transformer[{i}].assembly={transformers[i].GetType().Assembly.GetName().Name}");
        Console.WriteLine($"transformer[{i}].text={transformers[i]}");
        // Where the model's tensors live, for transformers that say (found by name: this program names no MlNetBn type).
        if (transformers[i].GetType().GetProperty("Device", BindingFlags.Public | BindingFlags.Instance)?.GetValue(transformers[i]) is { } device)
            Console.WriteLine($"transformer[{i}].device={device}");
    }
    Console.WriteLine($"input-schema={Describe(inputSchema)}");
    if (inputSchema is not null)
        Console.WriteLine($"output-schema={Describe(model.GetOutputSchema(inputSchema))}");
    if (args.Length == 3)
    {
        int size = int.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture);
        var values = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(File.ReadAllBytes(args[1])).ToArray();
        var rows = Enumerable.Range(0, values.Length / size).Select(i => new FeatureRow { Features = values[(i * size)..((i + 1) * size)] });
        var definition = SchemaDefinition.Create(typeof(FeatureRow));
        definition[nameof(FeatureRow.Features)].ColumnType = new VectorDataViewType(NumberDataViewType.Single, size);
        var output = model.Transform(mlContext.Data.LoadFromEnumerable(rows, definition));
        var score = output.Schema["Score"];
        var predicted = output.Schema.GetColumnOrNull("PredictedClass");
        using var cursor = output.GetRowCursor(predicted is { } p ? [score, p] : [score]);
        var getScore = cursor.GetGetter<VBuffer<float>>(score);
        var getPredicted = predicted is { } q ? cursor.GetGetter<ReadOnlyMemory<char>>(q) : null;
        VBuffer<float> scores = default;
        ReadOnlyMemory<char> name = default;
        for (int i = 0; cursor.MoveNext(); i++)
        {
            getScore(ref scores);
            Console.WriteLine($"score[{i}]={string.Join(",", scores.DenseValues().Select(v => v.ToString("R", System.Globalization.CultureInfo.InvariantCulture)))}");
            if (getPredicted is not null)
            {
                getPredicted(ref name);
                Console.WriteLine($"predicted-class[{i}]={name}");
            }
        }
    }
    Console.WriteLine($"mlnet-version={typeof(MLContext).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion}");
    return 0;
}
catch (Exception ex)
{
    Console.WriteLine($"error={ex.GetType().FullName}: {ex.Message.ReplaceLineEndings(" ")}");
    Console.Error.WriteLine(ex);
    return 1;
}

/// <summary>One row of the features file.</summary>
internal sealed class FeatureRow
{
    public float[] Features { get; set; } = [];
}
