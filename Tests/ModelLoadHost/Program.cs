// usage: dotnet ModelLoadHost.dll <model.zip>
// Prints key=value lines (stable, for tests to parse) and exits 0, or prints error=... and exits 1.
using System.Reflection;
using Microsoft.ML;
using Microsoft.ML.Data;

if (args.Length != 1)
{
    Console.Error.WriteLine("usage: dotnet ModelLoadHost.dll <model.zip>");
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
    }
    Console.WriteLine($"input-schema={Describe(inputSchema)}");
    if (inputSchema is not null)
        Console.WriteLine($"output-schema={Describe(model.GetOutputSchema(inputSchema))}");
    Console.WriteLine($"mlnet-version={typeof(MLContext).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion}");
    return 0;
}
catch (Exception ex)
{
    Console.WriteLine($"error={ex.GetType().FullName}: {ex.Message.ReplaceLineEndings(" ")}");
    Console.Error.WriteLine(ex);
    return 1;
}
