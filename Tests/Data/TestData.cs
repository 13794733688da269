namespace MlNetBn.Tests;

/// <summary>Paths of the data files committed with the tests (copied next to the test assembly).</summary>
public static class TestData
{
    /// <summary>
    /// A small real Fashion-MNIST subset in the official four-file IDX format: train = the first 300 images of
    /// each class (3,000), test = the first 100 of each class of the test split (1,000). Load it with
    /// <c>mlContext.Data.LoadFashionMnist(FashionMnistSplit.Train, directory: TestData.FashionMnistSmallDirectory)</c>.
    /// See Tests/Data/fashion-mnist-small/README.md for its provenance.
    /// </summary>
    public static string FashionMnistSmallDirectory { get; } = Path.Combine(AppContext.BaseDirectory, "Data", "fashion-mnist-small");

    /// <summary>Images per class in the training split of <see cref="FashionMnistSmallDirectory"/>.</summary>
    public const int FashionMnistSmallTrainPerClass = 300;

    /// <summary>Images per class in the test split of <see cref="FashionMnistSmallDirectory"/>.</summary>
    public const int FashionMnistSmallTestPerClass = 100;
}
