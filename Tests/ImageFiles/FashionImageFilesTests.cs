using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetBn.Data;
using MlNetBn.Examples.ImageFiles;
using MlNetBn.Tests.Trainers;

namespace MlNetBn.Tests.ImageFiles;

/// <summary>
/// Examples/ImageFiles' pixel pipeline (PNG → LoadImages → ResizeImages → ConvertToGrayscale → ExtractPixels)
/// against the IDX loader, on images of the committed subset written as PNG files.
/// </summary>
[TestClass]
public sealed class FashionImageFilesTests
{
    private const int PerClass = 2;

    private static string _folder = "";
    private static IReadOnlyList<string> _files = [];
    private static IdxDataset _test = null!;

    [ClassInitialize]
    public static void WritePngs(TestContext _)
    {
        _test = FashionMnist.Read(FashionMnistSplit.Test, TestData.FashionMnistSmallDirectory);
        _folder = Directory.CreateTempSubdirectory("mlnetbn-png-").FullName;
        _files = FashionImageFiles.WritePngs(_test, _test.SelectIndices(countPerClass: PerClass), FashionMnist.ClassNames, _folder);
    }

    [ClassCleanup]
    public static void DeletePngs() => Directory.Delete(_folder, recursive: true);

    [TestMethod]
    public void PngThroughTheImageTransformsGivesTheIdxFeatures()
    {
        var ml = new MLContext(seed: 1);
        var fromFiles = ImageFeatures(ml);
        var fromIdx = ml.Data.CreateEnumerable<IdxRow>(ml.Data.LoadIdx(_test, FashionMnist.ClassNames, countPerClass: PerClass), reuseRowObject: false)
            .Select(r => r.Features).ToList();

        Assert.HasCount(10 * PerClass, fromFiles);
        Assert.HasCount(fromIdx.Count, fromFiles);
        double worst = 0;
        for (int i = 0; i < fromIdx.Count; i++)
        {
            Assert.HasCount(FashionMnist.FeatureCount, fromFiles[i], _files[i]);
            for (int j = 0; j < FashionMnist.FeatureCount; j++)
                worst = Math.Max(worst, Math.Abs(fromFiles[i][j] - fromIdx[i][j]));
        }
        // Decoding, the same-size resize and the gray matrix may each round a level; more than one is a wrong
        // channel, scale or resize.
        Assert.IsLessThanOrEqualTo(1.0 / 255 + 1e-6, worst, $"largest difference {worst * 255:F3}/255");
        // The images are not blank (a pipeline that lost the pixels would also match a blank image).
        Assert.IsTrue(fromFiles.All(f => f.Max() > 0.5f), "every image has bright pixels");
    }

    [TestMethod]
    public void ColourImageBecomesItsLuminance()
    {
        // Red, green and blue all different, so that a missing grayscale step or another channel shows.
        const int size = 28;
        var bgra = new byte[size * size * 4];
        var expected = new float[size * size];
        for (int y = 0; y < size; y++)
        {
            for (int x = 0; x < size; x++)
            {
                int i = y * size + x;
                byte r = (byte)(9 * x), g = (byte)(9 * y), b = (byte)(255 - 9 * x);
                (bgra[4 * i], bgra[4 * i + 1], bgra[4 * i + 2], bgra[4 * i + 3]) = (b, g, r, 255);
                expected[i] = (0.3f * r + 0.59f * g + 0.11f * b) / 255; // ML.NET's grayscale weights
            }
        }
        using (var image = MLImage.CreateFromPixels(size, size, MLPixelFormat.Bgra32, bgra))
            image.Save(Path.Combine(_folder, "colour.png"));

        var ml = new MLContext(seed: 1);
        var paths = ml.Data.LoadFromEnumerable(new[] { new ImagePathRow { ImagePath = "colour.png" } });
        var features = ml.Data.CreateEnumerable<FeatureRow>(FashionImageFiles.CreatePixelPipeline(ml, _folder).Fit(paths).Transform(paths), reuseRowObject: false).Single().Features;

        Assert.HasCount(expected.Length, features);
        double worst = expected.Select((e, i) => Math.Abs(e - features[i])).Max();
        Assert.IsLessThanOrEqualTo(1.0 / 255 + 1e-6, worst, $"largest difference {worst * 255:F3}/255");
    }

    [TestMethod]
    public void FeatureColumnIsWhatLeNetBnReads()
    {
        var ml = new MLContext(seed: 1);
        var features = Features(ml).Schema[FashionMnist.FeaturesColumnName].Type as VectorDataViewType;

        Assert.IsNotNull(features);
        Assert.AreEqual(NumberDataViewType.Single, features.ItemType);
        Assert.IsTrue(features.IsKnownSize);
        Assert.AreEqual(FashionMnist.FeatureCount, features.Size);
    }

    [TestMethod]
    public void ModelPredictsTheSameFromFilesAsFromIdx()
    {
        var ml = new MLContext(seed: 1);
        using var model = ml.MulticlassClassification.Trainers.LeNetBn(TrainerTestData.QuickOptions(epochs: 1)).Fit(TrainerTestData.Train(ml, perClass: 30));

        var fromFiles = ml.Data.CreateEnumerable<Scored>(model.Transform(Features(ml)), reuseRowObject: false).ToList();
        var fromIdx = ml.Data.CreateEnumerable<Scored>(model.Transform(ml.Data.LoadIdx(_test, FashionMnist.ClassNames, countPerClass: PerClass)), reuseRowObject: false).ToList();

        Assert.HasCount(fromIdx.Count, fromFiles);
        for (int i = 0; i < fromIdx.Count; i++)
        {
            for (int c = 0; c < FashionMnist.ClassCount; c++)
                Assert.AreEqual(fromIdx[i].Score[c], fromFiles[i].Score[c], 1e-3f, $"{_files[i]}, class {c}");
        }
    }

    [TestMethod]
    public void FileNamesCarryTheIndexAndClass()
    {
        string[] slugs = ["t-shirt-top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"];
        var indices = _test.SelectIndices(countPerClass: PerClass);

        CollectionAssert.AreEqual(indices.Select(i => $"{i:D5}-{slugs[_test.Labels.Span[i]]}.png").ToList(), _files.ToList());
        CollectionAssert.AreEqual(indices.Select(i => FashionMnist.ClassNames[_test.Labels.Span[i]]).ToList(),
            _files.Select(f => FashionImageFiles.ClassFromFileName(f, FashionMnist.ClassNames)).ToList());
        Assert.IsNull(FashionImageFiles.ClassFromFileName("holiday.png", FashionMnist.ClassNames));
        Assert.IsNull(FashionImageFiles.ClassFromFileName("00001-hat.png", FashionMnist.ClassNames));
    }

    [TestMethod]
    public void WritePngRejectsAPixelCountThatIsNotTheShape()
    {
        var e = Assert.ThrowsExactly<ArgumentException>(() => FashionImageFiles.WritePng(new byte[27 * 28], 28, 28, Path.Combine(_folder, "bad.png")));
        StringAssert.Contains(e.Message, "756 pixels cannot form a 28×28 image");
    }

    private static IDataView Features(MLContext ml)
    {
        var paths = ml.Data.LoadFromEnumerable(_files.Select(f => new ImagePathRow { ImagePath = f }));
        return FashionImageFiles.CreatePixelPipeline(ml, _folder).Fit(paths).Transform(paths);
    }

    private static List<float[]> ImageFeatures(MLContext ml) =>
        ml.Data.CreateEnumerable<FeatureRow>(Features(ml), reuseRowObject: false).Select(r => r.Features).ToList();


    private sealed class FeatureRow
    {
        public float[] Features { get; set; } = [];
    }

    private sealed class IdxRow
    {
        [VectorType(FashionMnist.FeatureCount)]
        public float[] Features { get; set; } = [];
    }

    private sealed class Scored
    {
        public float[] Score { get; set; } = [];
    }
}
