using System.Text;
using MlNetBn.Data;

namespace MlNetBn.Tests.Data;

[TestClass]
public sealed class NpmFashionMnistPackageTests
{
    private static string Image(int length, int value = 1) => "[" + string.Join(",", Enumerable.Repeat(value, length)) + "]";

    [TestMethod]
    public void EmptyEntriesAreSkippedAndOtherPropertiesIgnored()
    {
        var json = "{\"name\":\"x\",\"data\":[" + Image(784) + ",[]," + Image(784, 255) + "],\"more\":{\"a\":[1,2]}}";
        var images = NpmFashionMnistPackage.ParseClass(Encoding.UTF8.GetBytes(json), "c.json");
        Assert.HasCount(2, images);
        Assert.AreEqual(255, images[1][783]);
    }

    [TestMethod]
    [DataRow(783, 1, "784 pixels")]
    [DataRow(785, 1, "784 pixels")]
    [DataRow(784, 256, "0 to 255")]
    [DataRow(784, -1, "0 to 255")]
    public void MalformedImagesNameTheEntry(int length, int value, string expected)
    {
        var json = "{\"data\":[" + Image(784) + "," + Image(length, value) + "]}";
        var ex = Assert.ThrowsExactly<InvalidDataException>(() => NpmFashionMnistPackage.ParseClass(Encoding.UTF8.GetBytes(json), "pkg.tgz:package/src/clothes/3.json"));
        StringAssert.Contains(ex.Message, "pkg.tgz:package/src/clothes/3.json");
        StringAssert.Contains(ex.Message, "image 1");
        StringAssert.Contains(ex.Message, expected);
    }

    [TestMethod]
    public void NotTheExpectedDocumentIsAClearError()
    {
        Assert.ThrowsExactly<InvalidDataException>(() => NpmFashionMnistPackage.ParseClass("[1,2]"u8, "a.json"));
        StringAssert.Contains(Assert.ThrowsExactly<InvalidDataException>(() => NpmFashionMnistPackage.ParseClass("{\"x\":1}"u8, "b.json")).Message, "\"data\"");
        StringAssert.Contains(Assert.ThrowsExactly<InvalidDataException>(() => NpmFashionMnistPackage.ParseClass("{\"data\":[[1,2"u8, "c.json")).Message, "c.json");
    }

    [TestMethod]
    public async Task TarballWithoutTheClassFilesIsRejected()
    {
        var tarball = SyntheticFashionMnistPackage.Build(imagesPerClass: 3, emptyEntryAt: 1);
        var ex = await Assert.ThrowsExactlyAsync<InvalidDataException>(() =>
            NpmFashionMnistPackage.ConvertAsync(new MemoryStream(tarball), "small.tgz", testPerClass: 3, CancellationToken.None));
        StringAssert.Contains(ex.Message, "small.tgz");
        StringAssert.Contains(ex.Message, "class 0 has 3 images");

        var notPackage = Assert.ThrowsExactlyAsync<InvalidDataException>(() =>
            NpmFashionMnistPackage.ConvertAsync(new MemoryStream(EmptyTarball()), "empty.tgz", testPerClass: 1, CancellationToken.None));
        StringAssert.Contains((await notPackage).Message, "package/src/clothes/0.json");
    }

    [TestMethod]
    public async Task CallersCancellationIsNotTakenForAnOfflineSource()
    {
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        var folder = Directory.CreateTempSubdirectory("mlnetbn-cancel-").FullName;
        try
        {
            var options = new FashionMnistDownloadOptions
            {
                Directory = folder,
                OfficialBaseUris = [new Uri($"http://127.0.0.1:{LocalHttpServer.FreePort()}/")],
                NpmTarballUri = new Uri($"http://127.0.0.1:{LocalHttpServer.FreePort()}/x.tgz"),
            };
            await Assert.ThrowsAsync<OperationCanceledException>(() => new FashionMnistDownloader(options).EnsureAsync(cancelled.Token));
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    private static byte[] EmptyTarball()
    {
        using var output = new MemoryStream();
        using (var gzip = new System.IO.Compression.GZipStream(output, System.IO.Compression.CompressionLevel.Fastest, leaveOpen: true))
        using (var tar = new System.Formats.Tar.TarWriter(gzip))
        {
            tar.WriteEntry(new System.Formats.Tar.PaxTarEntry(System.Formats.Tar.TarEntryType.RegularFile, "package/README.md") { DataStream = new MemoryStream("hi"u8.ToArray()) });
        }

        return output.ToArray();
    }
}
