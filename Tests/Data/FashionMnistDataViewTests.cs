using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetBn.Data;

namespace MlNetBn.Tests.Data;

[TestClass]
public sealed class FashionMnistDataViewTests
{
    private static readonly MLContext Ml = new(seed: 1);

    private static IDataView Load(FashionMnistSplit split, int? countPerClass = null, int? maxCount = null) =>
        Ml.Data.LoadFashionMnist(split, TestData.FashionMnistSmallDirectory, countPerClass, maxCount);

    [TestMethod]
    public void SchemaHasAKeyLabelWithClassNamesAndA784Vector()
    {
        var data = Load(FashionMnistSplit.Test);

        var label = data.Schema[FashionMnist.LabelColumnName];
        var key = label.Type as KeyDataViewType;
        Assert.IsNotNull(key, label.Type.ToString());
        Assert.AreEqual(10UL, key.Count);
        Assert.AreEqual(typeof(uint), key.RawType);
        VBuffer<ReadOnlyMemory<char>> names = default;
        label.GetKeyValues(ref names);
        CollectionAssert.AreEqual(
            new[] { "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot" },
            names.DenseValues().Select(n => n.ToString()).ToArray());

        var features = data.Schema[FashionMnist.FeaturesColumnName].Type as VectorDataViewType;
        Assert.IsNotNull(features);
        Assert.IsTrue(features.IsKnownSize);
        Assert.AreEqual(784, features.Size);
        Assert.AreEqual(NumberDataViewType.Single, features.ItemType);
        Assert.AreEqual(2, data.Schema.Count);
    }

    [TestMethod]
    public void CommittedSubsetHasItsDocumentedSizes()
    {
        foreach (var (split, perClass) in new[] { (FashionMnistSplit.Train, TestData.FashionMnistSmallTrainPerClass), (FashionMnistSplit.Test, TestData.FashionMnistSmallTestPerClass) })
        {
            var data = Load(split);
            Assert.AreEqual(10L * perClass, data.GetRowCount());
            var labels = data.GetColumn<uint>(FashionMnist.LabelColumnName).ToArray();
            Assert.HasCount(10 * perClass, labels);
            CollectionAssert.AreEqual(Enumerable.Range(1, 10).Select(k => perClass).ToArray(),
                Enumerable.Range(1, 10).Select(k => labels.Count(l => l == k)).ToArray());
        }

        Assert.IsTrue(File.Exists(Path.Combine(TestData.FashionMnistSmallDirectory, "README.md")));
    }

    [TestMethod]
    public void PixelsAreScaledToTheUnitInterval()
    {
        var data = Load(FashionMnistSplit.Train, maxCount: 500);
        float min = float.MaxValue, max = float.MinValue;
        double sum = 0;
        int rows = 0;
        foreach (var row in data.GetColumn<float[]>(FashionMnist.FeaturesColumnName))
        {
            Assert.HasCount(784, row);
            min = Math.Min(min, row.Min());
            max = Math.Max(max, row.Max());
            sum += row.Sum();
            rows++;
        }

        Assert.AreEqual(500, rows);
        Assert.AreEqual(0f, min);
        Assert.AreEqual(1f, max);
        // Fashion-MNIST's mean pixel is about 0.286.
        Assert.AreEqual(0.286, sum / (rows * 784), 0.03);

        // Exactly pixel / 255, against the raw bytes.
        var raw = FashionMnist.Read(FashionMnistSplit.Train, TestData.FashionMnistSmallDirectory);
        var first = data.GetColumn<float[]>(FashionMnist.FeaturesColumnName).First();
        CollectionAssert.AreEqual(raw.Images.GetImage(0).ToArray().Select(p => p / 255f).ToArray(), first);
    }

    [TestMethod]
    public void SubsetOptionsKeepTheFirstImagesOfEachClass()
    {
        var perClass = Load(FashionMnistSplit.Train, countPerClass: 3).GetColumn<uint>(FashionMnist.LabelColumnName).ToArray();
        Assert.HasCount(30, perClass);
        Assert.IsTrue(Enumerable.Range(1, 10).All(k => perClass.Count(l => l == k) == 3));

        Assert.AreEqual(7L, Load(FashionMnistSplit.Test, maxCount: 7).GetRowCount());
        Assert.AreEqual(12L, Load(FashionMnistSplit.Test, countPerClass: 2, maxCount: 12).GetRowCount());
        Assert.AreEqual(1000L, Load(FashionMnistSplit.Test, countPerClass: 5000).GetRowCount());
        Assert.AreEqual(0L, Load(FashionMnistSplit.Test, maxCount: 0).GetRowCount());
    }

    [TestMethod]
    public void MapKeyToValueGivesClassNames()
    {
        var data = Load(FashionMnistSplit.Test, maxCount: 10);
        var mapped = Ml.Transforms.Conversion.MapKeyToValue("Name", FashionMnist.LabelColumnName).Fit(data).Transform(data);
        var names = mapped.GetColumn<ReadOnlyMemory<char>>("Name").Select(n => n.ToString()).ToArray();
        CollectionAssert.AreEqual(FashionMnist.ClassNames.ToArray(), names);
    }

    [TestMethod]
    public void ShuffledCursorsVisitEveryRowOnceAndDependOnTheSeed()
    {
        var data = Load(FashionMnistSplit.Test, countPerClass: 10);
        Assert.IsTrue(data.CanShuffle);

        ulong[] Ids(Random? random)
        {
            var ids = new List<ulong>();
            using var cursor = data.GetRowCursor(data.Schema, random);
            var id = cursor.GetIdGetter();
            var label = cursor.GetGetter<uint>(data.Schema[FashionMnist.LabelColumnName]);
            DataViewRowId value = default;
            uint key = 0;
            while (cursor.MoveNext())
            {
                id(ref value);
                label(ref key);
                Assert.IsTrue(key is >= 1 and <= 10);
                ids.Add(value.Low);
            }

            return [.. ids];
        }

        var ordered = Ids(null);
        var shuffled = Ids(new Random(5));
        CollectionAssert.AreEqual(Enumerable.Range(0, 100).Select(i => (ulong)i).ToArray(), ordered);
        CollectionAssert.AreNotEqual(ordered, shuffled);
        CollectionAssert.AreEquivalent(ordered, shuffled);
        CollectionAssert.AreEqual(shuffled, Ids(new Random(5)));

        // ML.NET's own shuffle accepts the view and keeps every row.
        Assert.AreEqual(100, Ml.Data.ShuffleRows(data, seed: 2).GetColumn<uint>(FashionMnist.LabelColumnName).Count());
    }

    [TestMethod]
    public void CursorRefusesColumnsNotAskedForAndWrongTypes()
    {
        var data = Load(FashionMnistSplit.Test, maxCount: 2);
        var labelColumn = data.Schema[FashionMnist.LabelColumnName];
        using var cursor = data.GetRowCursor([labelColumn]);
        Assert.IsFalse(cursor.IsColumnActive(data.Schema[FashionMnist.FeaturesColumnName]));
        Assert.Throws<ArgumentOutOfRangeException>(() => cursor.GetGetter<VBuffer<float>>(data.Schema[FashionMnist.FeaturesColumnName]));
        Assert.Throws<InvalidOperationException>(() => cursor.GetGetter<float>(labelColumn));
        var getter = cursor.GetGetter<uint>(labelColumn);
        uint value = 0;
        Assert.Throws<InvalidOperationException>(() => getter(ref value));
    }

    [TestMethod]
    public void LoadIdxReadsAnyPairWithDigitNamesByDefault()
    {
        var (images, labels) = FashionMnist.GetFileNames(FashionMnistSplit.Test);
        var data = Ml.Data.LoadIdx(Path.Combine(TestData.FashionMnistSmallDirectory, images), Path.Combine(TestData.FashionMnistSmallDirectory, labels), maxCount: 20);

        Assert.AreEqual(20L, data.GetRowCount());
        VBuffer<ReadOnlyMemory<char>> names = default;
        data.Schema[FashionMnist.LabelColumnName].GetKeyValues(ref names);
        CollectionAssert.AreEqual(Enumerable.Range(0, 10).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray(),
            names.DenseValues().Select(n => n.ToString()).ToArray());

        // Too few class names for the labels present is an error that names the labels file.
        var labelsPath = Path.Combine(TestData.FashionMnistSmallDirectory, labels);
        var ex = Assert.ThrowsExactly<IdxFormatException>(() => Ml.Data.LoadIdx(Path.Combine(TestData.FashionMnistSmallDirectory, images), labelsPath, ["a", "b"]));
        StringAssert.Contains(ex.Message, labelsPath);
    }

    [TestMethod]
    public void LoadIdxWrapsAnInMemoryDataset()
    {
        var dataset = new IdxDataset(new IdxImages(3, 2, 2, new byte[] { 0, 255, 51, 102, 1, 2, 3, 4, 5, 6, 7, 8 }), new byte[] { 2, 0, 1 });
        var data = Ml.Data.LoadIdx(dataset, ["x", "y", "z"]);

        Assert.AreEqual(4, ((VectorDataViewType)data.Schema[FashionMnist.FeaturesColumnName].Type).Size);
        CollectionAssert.AreEqual(new uint[] { 3, 1, 2 }, data.GetColumn<uint>(FashionMnist.LabelColumnName).ToArray());
        CollectionAssert.AreEqual(new[] { 0f, 1f, 0.2f, 0.4f }, data.GetColumn<float[]>(FashionMnist.FeaturesColumnName).First());
    }

    [TestMethod]
    public void MissingFilesSayWhereToGetThem()
    {
        var empty = Directory.CreateTempSubdirectory("mlnetbn-empty-").FullName;
        try
        {
            var ex = Assert.ThrowsExactly<FileNotFoundException>(() => Ml.Data.LoadFashionMnist(FashionMnistSplit.Train, empty));
            StringAssert.Contains(ex.Message, empty);
            StringAssert.Contains(ex.Message, FashionMnist.TrainImagesFileName);
            StringAssert.Contains(ex.Message, "FashionMnistDownloader");
            foreach (var name in FashionMnist.FileNames)
            {
                StringAssert.Contains(ex.Message, name);
            }
        }
        finally
        {
            Directory.Delete(empty, recursive: true);
        }
    }
}
