using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetBn.Data;
using MlNetBn.Examples.ImageFiles;
using MlNetBn.Tests.Trainers;

namespace MlNetBn.Tests.ImageFiles;

/// <summary>
/// A folder as users have them: good pictures next to files that are not images, truncated or empty, a large colour
/// JPEG, and a dark-on-light picture. The bad files are named with a reason, every good one is classified, and the
/// predictions equal those of the same pixels fed to the model as vectors.
/// </summary>
[TestClass]
public sealed class ImageFolderTests
{
    private const string Negative = "negative-ankle-boot.png";
    private const string LargeJpeg = "large-colour.jpg";

    private static string s_folder = "";
    private static IReadOnlyList<string> s_good = [];
    private static MLContext s_mlContext = null!;
    private static LeNetBnTransformer s_model = null!;
    private static IdxDataset s_test = null!;

    [ClassInitialize]
    public static void WriteFolder(TestContext _)
    {
        s_mlContext = new MLContext(seed: 1);
        s_model = s_mlContext.MulticlassClassification.Trainers.LeNetBn(TrainerTestData.QuickOptions(epochs: 1)).Fit(TrainerTestData.Train(s_mlContext, perClass: 30));
        s_test = FashionMnist.Read(FashionMnistSplit.Test, TestData.FashionMnistSmallDirectory);
        s_folder = Directory.CreateTempSubdirectory("mlnetbn-folder-").FullName;
        s_good = FashionImageFiles.WritePngs(s_test, s_test.SelectIndices(countPerClass: 1), FashionMnist.ClassNames, s_folder);

        var good = File.ReadAllBytes(Path.Combine(s_folder, s_good[0]));
        File.WriteAllText(Path.Combine(s_folder, "notes.png"), "not an image, whatever its name says");
        File.WriteAllBytes(Path.Combine(s_folder, "truncated.png"), good[..(good.Length / 2)]);
        File.WriteAllBytes(Path.Combine(s_folder, "empty.png"), []);
        // A TIFF header: a real format, but not one the decoder (SkiaSharp) reads.
        File.WriteAllBytes(Path.Combine(s_folder, "scan.tiff"), [(byte)'I', (byte)'I', 42, 0, 8, 0, 0, 0, 0, 0, 0, 0]);

        // The first image as a negative: a dark garment on white, as a photo on paper would be.
        var pixels = s_test.Images.GetImage(s_test.SelectIndices(countPerClass: 1)[0]).ToArray();
        FashionImageFiles.WritePng(pixels.Select(p => (byte)(255 - p)).ToArray(), 28, 28, Path.Combine(s_folder, Negative));

        WriteColourJpeg(Path.Combine(s_folder, LargeJpeg));
    }

    /// <summary>A 640×480 colour JPEG: a bright ellipse on a dark background (also used by Tests/Serve).</summary>
    internal static void WriteColourJpeg(string path)
    {
        var bgra = new byte[640 * 480 * 4];
        for (int y = 0; y < 480; y++)
            for (int x = 0; x < 640; x++)
            {
                bool inside = Math.Pow((x - 320) / 200.0, 2) + Math.Pow((y - 240) / 180.0, 2) < 1;
                int i = 4 * (y * 640 + x);
                (bgra[i], bgra[i + 1], bgra[i + 2], bgra[i + 3]) = inside ? ((byte)40, (byte)200, (byte)230, (byte)255) : ((byte)10, (byte)20, (byte)5, (byte)255);
            }
        using var image = MLImage.CreateFromPixels(640, 480, MLPixelFormat.Bgra32, bgra);
        image.Save(path);
    }

    [ClassCleanup]
    public static void DeleteFolder()
    {
        s_model.Dispose();
        Directory.Delete(s_folder, recursive: true);
    }

    [TestMethod]
    public void BadFilesAreNamedWithTheirReason_TheRestAreClassified()
    {
        var files = Directory.EnumerateFiles(s_folder).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToList();
        var result = FashionImageFiles.Classify(s_mlContext, s_model, s_folder, files!);

        var unreadable = result.Unreadable.ToDictionary(u => u.FileName, u => u.Reason);
        CollectionAssert.AreEquivalent(new[] { "notes.png", "truncated.png", "empty.png", "scan.tiff" }, unreadable.Keys.ToArray());
        Assert.AreEqual("the file is empty (0 bytes)", unreadable["empty.png"]);
        Assert.AreEqual("the Png data end early: the file is truncated", unreadable["truncated.png"]);
        foreach (var name in new[] { "notes.png", "scan.tiff" })
            Assert.AreEqual("it is not an image in a format the decoder reads (PNG, JPEG, BMP, GIF, WebP, ICO, WBMP)", unreadable[name], name);

        CollectionAssert.AreEqual(s_good.Append(LargeJpeg).Append(Negative).Order(StringComparer.Ordinal).ToList(),
            result.Predictions.Select(p => p.ImagePath).ToList());
        foreach (var p in result.Predictions)
        {
            Assert.HasCount(784, p.Features, p.ImagePath);
            Assert.IsTrue(p.Features.All(v => v is >= 0 and <= 1), $"{p.ImagePath}: features outside [0, 1]");
            CollectionAssert.Contains(FashionMnist.ClassNames.ToList(), p.PredictedClass, p.ImagePath);
        }

        // The same pixels fed as vectors, in the same order (so in the same batches), give the same scores to the bit.
        var vectors = s_mlContext.Data.LoadFromEnumerable(result.Predictions.Select(p => new FeatureRow { Features = p.Features }));
        var expected = s_mlContext.Data.CreateEnumerable<ScoreRow>(s_model.Transform(vectors), reuseRowObject: false).ToList();
        for (int i = 0; i < expected.Count; i++)
            CollectionAssert.AreEqual(expected[i].Score, result.Predictions[i].Score, result.Predictions[i].ImagePath);

        var large = result.Predictions.Single(p => p.ImagePath == LargeJpeg).Features;
        Assert.IsGreaterThan(0.6f, large[14 * 28 + 14], "the bright ellipse fills the centre");
        Assert.IsLessThan(0.1f, large[0], "the dark background at the corner");
    }

    [TestMethod]
    public void ADarkOnLightPicture_NeedsInvert()
    {
        var original = FashionImageFiles.Classify(s_mlContext, s_model, s_folder, [s_good[0]]).Predictions.Single();
        var plain = FashionImageFiles.Classify(s_mlContext, s_model, s_folder, [Negative]).Predictions.Single();
        var inverted = FashionImageFiles.Classify(s_mlContext, s_model, s_folder, [Negative], invert: true).Predictions.Single();

        for (int j = 0; j < 784; j++)
        {
            Assert.AreEqual(original.Features[j], inverted.Features[j], 1e-6f, $"inverted pixel {j}: {original.Features[j]} vs {inverted.Features[j]}, plain {plain.Features[j]}");
            Assert.AreEqual(1 - original.Features[j], plain.Features[j], 1e-6f, $"plain pixel {j}");
        }
        CollectionAssert.AreEqual(original.Score, inverted.Score, "inverted, the negative is the original picture");
    }
}
