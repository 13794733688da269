using System.IO.Compression;
using MlNetBn.Data;

namespace MlNetBn.Tests.Data;

[TestClass]
public sealed class IdxFileTests
{
    private string _folder = "";

    [TestInitialize]
    public void CreateFolder() => _folder = Directory.CreateTempSubdirectory("mlnetbn-idx-").FullName;

    [TestCleanup]
    public void DeleteFolder() => Directory.Delete(_folder, recursive: true);

    private string PathOf(string name) => Path.Combine(_folder, name);

    // 5 images of 3×4 whose bytes encode their position, and labels 0..4.
    private static IdxDataset Sample(int count = 5, int rows = 3, int columns = 4)
    {
        var pixels = new byte[count * rows * columns];
        for (int i = 0; i < pixels.Length; i++)
        {
            pixels[i] = (byte)(i * 7 % 256);
        }

        return new IdxDataset(new IdxImages(count, rows, columns, pixels), Enumerable.Range(0, count).Select(i => (byte)(i % 10)).ToArray());
    }

    [TestMethod]
    [DataRow(false)]
    [DataRow(true)]
    public void WriteThenReadGivesTheSameImagesAndLabels(bool gzip)
    {
        var sample = Sample();
        sample.Save(PathOf("images"), PathOf("labels"), gzip);

        Assert.AreEqual(gzip, IdxFile.IsGzip(PathOf("images")));
        var images = IdxFile.ReadImages(PathOf("images"));
        var labels = IdxFile.ReadLabels(PathOf("labels"));
        Assert.AreEqual(5, images.Count);
        Assert.AreEqual(3, images.Rows);
        Assert.AreEqual(4, images.Columns);
        CollectionAssert.AreEqual(sample.Images.Pixels.ToArray(), images.Pixels.ToArray());
        CollectionAssert.AreEqual(sample.Labels.ToArray(), labels);

        var header = IdxFile.ReadHeader(PathOf("images"));
        Assert.AreEqual(IdxFile.ImagesMagic, header.Magic);
        CollectionAssert.AreEqual(new[] { 5, 3, 4 }, header.Dimensions.ToArray());
        Assert.AreEqual(5, IdxFile.ReadHeader(PathOf("labels")).Count);
    }

    [TestMethod]
    public void RawFileHasTheStandardBigEndianLayout()
    {
        IdxFile.WriteLabels(PathOf("labels"), [7, 8], gzip: false);
        CollectionAssert.AreEqual(new byte[] { 0, 0, 8, 1, 0, 0, 0, 2, 7, 8 }, File.ReadAllBytes(PathOf("labels")));
    }

    [TestMethod]
    public void CompressionIsDetectedFromTheContentNotTheName()
    {
        var sample = Sample();
        // A raw file named .gz and a gzip file without extension both read back.
        sample.Save(PathOf("raw-images.gz"), PathOf("raw-labels.gz"), gzip: false);
        sample.Save(PathOf("gz-images"), PathOf("gz-labels"), gzip: true);

        Assert.IsFalse(IdxFile.IsGzip(PathOf("raw-images.gz")));
        Assert.IsTrue(IdxFile.IsGzip(PathOf("gz-images")));
        CollectionAssert.AreEqual(IdxFile.ReadLabels(PathOf("raw-labels.gz")), IdxFile.ReadLabels(PathOf("gz-labels")));
        CollectionAssert.AreEqual(IdxFile.ReadImages(PathOf("raw-images.gz")).Pixels.ToArray(), IdxFile.ReadImages(PathOf("gz-images")).Pixels.ToArray());
    }

    [TestMethod]
    public void WrongMagicNumberNamesTheFile()
    {
        Sample().Save(PathOf("images.gz"), PathOf("labels.gz"), gzip: true);

        var asLabels = Assert.ThrowsExactly<IdxFormatException>(() => IdxFile.ReadLabels(PathOf("images.gz")));
        StringAssert.Contains(asLabels.Message, PathOf("images.gz"));
        StringAssert.Contains(asLabels.Message, "0x00000803");
        Assert.AreEqual(PathOf("images.gz"), asLabels.FilePath);

        var asImages = Assert.ThrowsExactly<IdxFormatException>(() => IdxFile.ReadImages(PathOf("labels.gz")));
        StringAssert.Contains(asImages.Message, PathOf("labels.gz"));

        File.WriteAllBytes(PathOf("text"), "hello world, not IDX"u8.ToArray());
        var text = Assert.ThrowsExactly<IdxFormatException>(() => IdxFile.ReadImages(PathOf("text")));
        StringAssert.Contains(text.Message, PathOf("text"));
        StringAssert.Contains(text.Message, "magic number");
    }

    [TestMethod]
    [DataRow(false)]
    [DataRow(true)]
    public void TruncatedPixelsNameTheFile(bool gzip)
    {
        Sample().Save(PathOf("full"), PathOf("labels"), gzip: false);
        var bytes = File.ReadAllBytes(PathOf("full"));
        WriteMaybeGzip(PathOf("truncated"), bytes.AsSpan(0, bytes.Length - 10), gzip);

        var ex = Assert.ThrowsExactly<IdxFormatException>(() => IdxFile.ReadImages(PathOf("truncated")));
        StringAssert.Contains(ex.Message, PathOf("truncated"));
        StringAssert.Contains(ex.Message, "truncated");
    }

    [TestMethod]
    public void TruncatedHeaderNamesTheFile()
    {
        File.WriteAllBytes(PathOf("short"), [0, 0, 8, 3, 0, 0]);
        var ex = Assert.ThrowsExactly<IdxFormatException>(() => IdxFile.ReadImages(PathOf("short")));
        StringAssert.Contains(ex.Message, PathOf("short"));
        StringAssert.Contains(ex.Message, "truncated");
    }

    [TestMethod]
    public void TruncatedGzipStreamNamesTheFile()
    {
        Sample(count: 50).Save(PathOf("images.gz"), PathOf("labels.gz"), gzip: true);
        var bytes = File.ReadAllBytes(PathOf("images.gz"));
        File.WriteAllBytes(PathOf("cut.gz"), bytes[..(bytes.Length / 2)]);

        var ex = Assert.Throws<IdxFormatException>(() => IdxFile.ReadImages(PathOf("cut.gz")));
        StringAssert.Contains(ex.Message, PathOf("cut.gz"));
    }

    [TestMethod]
    public void DataBeyondTheDeclaredCountIsRefused()
    {
        IdxFile.WriteLabels(PathOf("labels"), [1, 2, 3], gzip: false);
        File.AppendAllText(PathOf("labels"), "x");
        var ex = Assert.ThrowsExactly<IdxFormatException>(() => IdxFile.ReadLabels(PathOf("labels")));
        StringAssert.Contains(ex.Message, PathOf("labels"));
        StringAssert.Contains(ex.Message, "more data");
    }

    [TestMethod]
    public void MismatchedCountsNameBothFiles()
    {
        IdxFile.WriteImages(PathOf("images.gz"), Sample(count: 5).Images, gzip: true);
        IdxFile.WriteLabels(PathOf("labels.gz"), [1, 2, 3, 4], gzip: true);

        var ex = Assert.ThrowsExactly<IdxFormatException>(() => IdxDataset.Load(PathOf("images.gz"), PathOf("labels.gz")));
        StringAssert.Contains(ex.Message, PathOf("images.gz"));
        StringAssert.Contains(ex.Message, PathOf("labels.gz"));
        StringAssert.Contains(ex.Message, "5 images");
        StringAssert.Contains(ex.Message, "4 labels");
    }

    [TestMethod]
    public void SelectIndicesTakesTheFirstOfEachClassThenCaps()
    {
        // Labels: 0,1,2,0,1,2,0,1,2,0
        var data = new IdxDataset(new IdxImages(10, 1, 1, new byte[10]), Enumerable.Range(0, 10).Select(i => (byte)(i % 3)).ToArray());

        CollectionAssert.AreEqual(new[] { 0, 1, 2, 3, 4, 5 }, data.SelectIndices(countPerClass: 2));
        CollectionAssert.AreEqual(new[] { 0, 1, 2, 3 }, data.SelectIndices(countPerClass: 2, maxCount: 4));
        CollectionAssert.AreEqual(new[] { 0, 1, 2 }, data.SelectIndices(maxCount: 3));
        Assert.AreEqual(10, data.SelectIndices().Length);
        CollectionAssert.AreEqual(new[] { 4, 3, 3 }, data.CountPerLabel());

        var picked = data.Select([9, 1]);
        CollectionAssert.AreEqual(new byte[] { 0, 1 }, picked.Labels.ToArray());
    }

    private static void WriteMaybeGzip(string path, ReadOnlySpan<byte> bytes, bool gzip)
    {
        using var file = File.Create(path);
        using Stream output = gzip ? new GZipStream(file, CompressionLevel.Fastest) : file;
        output.Write(bytes);
    }
}
