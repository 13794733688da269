using System.IO.Compression;
using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetBn.Internal;
using static MlNetBn.Tests.Internals.InternalsTestEnvironment;

namespace MlNetBn.Tests.Internals;

/// <summary>
/// The probe transformer through the public ML.NET API only: mlContext.Model.Save, then Load in a new MLContext
/// and in a new process, with no registration call. This is the mechanism the LeNet transformer will use.
/// </summary>
[TestClass]
public sealed class ModelPersistenceRoundTripTests
{
    private const float Weight = 0.15625f; // exact in binary: equality below is exact

    private sealed class Row
    {
        public float A { get; set; }
    }

    private string _zipPath = null!;

    public TestContext TestContext { get; set; } = null!;

    [TestInitialize]
    public void CreateZipPath() =>
        _zipPath = Path.Combine(Path.GetTempPath(), $"mlnetbn-internals-{Guid.NewGuid():N}.zip");

    [TestCleanup]
    public void DeleteZip() => File.Delete(_zipPath);

    [TestMethod]
    public void ProbeRoundTripsThroughModelSaveAndLoadInANewMLContext()
    {
        var saving = new MLContext(seed: 1);
        var data = saving.Data.LoadFromEnumerable([new Row { A = 3 }]);
        saving.Model.Save(new MlNetInternalsProbe(saving, Weight), data.Schema, _zipPath);

        var loading = new MLContext(seed: 2);
        var loaded = loading.Model.Load(_zipPath, out var inputSchema);

        var probe = loaded as MlNetInternalsProbe;
        Assert.IsNotNull(probe, $"Loaded {loaded.GetType().FullName}, expected the probe itself.");
        Assert.AreEqual(Weight, probe.Weight);
        Assert.AreEqual("A", inputSchema.Single().Name);

        // Identity, and usable where ML.NET wants a row-to-row mapper.
        var output = probe.Transform(loading.Data.LoadFromEnumerable([new Row { A = 7 }]));
        Assert.AreEqual(7f, loading.Data.CreateEnumerable<Row>(output, reuseRowObject: false).Single().A);
        using var engine = loading.Model.CreatePredictionEngine<Row, Row>(probe);
        Assert.AreEqual(5f, engine.Predict(new Row { A = 5 }).A);
    }

    [TestMethod]
    public void WeightsTravelInsideTheZip()
    {
        var mlContext = new MLContext(seed: 1);
        mlContext.Model.Save(new MlNetInternalsProbe(mlContext, Weight), null, _zipPath);

        using var zip = ZipFile.OpenRead(_zipPath);
        var names = zip.Entries.Select(e => e.FullName.Replace('\\', '/')).ToList();
        var weights = zip.Entries.SingleOrDefault(e => e.Name == MlNetInternalsProbe.WeightsStreamName);
        Assert.IsNotNull(weights, "Entries: " + string.Join(", ", names));
        using var reader = new BinaryReader(weights.Open());
        Assert.AreEqual(Weight, reader.ReadSingle());
        Assert.IsTrue(names.Any(n => n.EndsWith("/Model.key", StringComparison.Ordinal)), "Entries: " + string.Join(", ", names));
    }

    [TestMethod]
    public void ProbeRoundTripsInsideATransformerChainWithMlNetTransformers()
    {
        var saving = new MLContext(seed: 1);
        var data = saving.Data.LoadFromEnumerable([new Row { A = 3 }]);
        var copy = saving.Transforms.CopyColumns("B", "A").Fit(data);
        var chain = new TransformerChain<ITransformer>(copy, new MlNetInternalsProbe(saving, Weight));
        saving.Model.Save(chain, data.Schema, _zipPath);

        var loading = new MLContext(seed: 2);
        var loaded = loading.Model.Load(_zipPath, out var inputSchema);

        var elements = ((IEnumerable<ITransformer>)loaded).ToList();
        Assert.HasCount(2, elements);
        Assert.AreEqual(Weight, ((MlNetInternalsProbe)elements[1]).Weight);
        var outputSchema = loaded.GetOutputSchema(inputSchema);
        CollectionAssert.AreEqual(new[] { "A", "B" }, outputSchema.Select(c => c.Name).ToArray());
    }

    /// <summary>
    /// The real proof of discovery: a process that has never loaded MlNetBn.Trainers opens the zip, and ML.NET
    /// finds our loader from the assembly name recorded in it.
    /// </summary>
    [TestMethod]
    public void ProbeLoadsInAFreshProcessWithNoRegistration()
    {
        var mlContext = new MLContext(seed: 1);
        var data = mlContext.Data.LoadFromEnumerable([new Row { A = 3 }]);
        mlContext.Model.Save(new MlNetInternalsProbe(mlContext, Weight), data.Schema, _zipPath);

        var (exitCode, values, output) = RunModelLoadHost(_zipPath);
        TestContext.WriteLine(output);

        Assert.AreEqual(0, exitCode, output);
        Assert.AreEqual("False", values["mlnetbn-loaded-before"], "The host loaded MlNetBn before reading the zip: the test proves nothing.");
        Assert.AreEqual("True", values["mlnetbn-loaded-after"], output);
        Assert.AreEqual(typeof(MlNetInternalsProbe).FullName, values["model-type"], output);
        Assert.AreEqual($"MlNetInternalsProbe(Weight={Weight:R})", values["transformer[0].text"], output);
        Assert.AreEqual("A:Single", values["input-schema"], output);
        StringAssert.StartsWith(values["mlnet-version"], "5.0.1");
    }

    [TestMethod]
    public void ZipWithoutTheWeightsStreamFailsToLoadWithAClearError()
    {
        var mlContext = new MLContext(seed: 1);
        mlContext.Model.Save(new MlNetInternalsProbe(mlContext, Weight), null, _zipPath);
        using (var zip = ZipFile.Open(_zipPath, ZipArchiveMode.Update))
            zip.Entries.Single(e => e.Name == MlNetInternalsProbe.WeightsStreamName).Delete();

        var ex = Assert.Throws<Exception>(() => new MLContext(seed: 2).Model.Load(_zipPath, out _));
        var messages = string.Join(" | ", Enumerate(ex).Select(e => e.Message));
        StringAssert.Contains(messages, MlNetInternalsProbe.WeightsStreamName);
    }

    private static IEnumerable<Exception> Enumerate(Exception? ex)
    {
        for (; ex is not null; ex = ex.InnerException)
            yield return ex;
    }
}
