using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Transforms.Image;
using MlNetBn.Data;
using SkiaSharp;

namespace MlNetBn.Examples.ImageFiles;

/// <summary>
/// Fashion-MNIST images as image files, and the one conversion from image files to the features LeNet-BN is trained
/// on (784 floats in [0, 1], pixel / 255, as the IDX loader gives), with files that cannot be decoded reported by
/// name. Tests/ImageFiles checks that an image written here and read back gives the IDX loader's features.
/// </summary>
public static class FashionImageFiles
{
    /// <summary>The input column: file paths, relative to the image folder given to <see cref="CreatePixelPipeline"/>.</summary>
    public const string ImagePathColumnName = "ImagePath";

    /// <summary>The column that holds the decoded image between the image transforms.</summary>
    public const string ImageColumnName = "Image";

    /// <summary>
    /// The image transforms, from a column of file paths to LeNet-BN's features: load, resize to 28×28 (ML.NET's
    /// default iso-crop: scaled to cover, centre kept; Fashion-MNIST images are 28×28 already), convert to
    /// grayscale, and take one channel scaled by 1/255 (or, with <paramref name="invert"/>, 1 − pixel/255).
    /// </summary>
    /// <param name="mlContext">The ML.NET context.</param>
    /// <param name="imageFolder">The folder the paths in <see cref="ImagePathColumnName"/> are relative to.</param>
    /// <param name="featureColumnName">The output column: a vector of 1×28×28 floats in [0, 1].</param>
    /// <param name="invert">
    /// Fashion-MNIST shows light clothes on a black background. Set this for pictures of the other kind (a dark shirt
    /// photographed on white paper), or the network sees a negative and answers wrongly.
    /// </param>
    /// <remarks>
    /// Grayscale first, then a single channel: ML.NET's grayscale conversion writes the same luminance into red,
    /// green and blue, so red is the gray level, and a colour image becomes one gray channel as the network
    /// expects. Inverting is ExtractPixels' offset and scale: (pixel − offset) · scale with offset 255, scale −1/255.
    /// </remarks>
    public static IEstimator<ITransformer> CreatePixelPipeline(MLContext mlContext, string imageFolder,
        string featureColumnName = FashionMnist.FeaturesColumnName, bool invert = false)
    {
        ArgumentNullException.ThrowIfNull(mlContext);
        ArgumentException.ThrowIfNullOrWhiteSpace(imageFolder);
        return mlContext.Transforms.LoadImages(ImageColumnName, imageFolder, ImagePathColumnName)
            .Append(mlContext.Transforms.ResizeImages(ImageColumnName, FashionMnist.ImageColumns, FashionMnist.ImageRows))
            .Append(mlContext.Transforms.ConvertToGrayscale(ImageColumnName))
            .Append(mlContext.Transforms.ExtractPixels(featureColumnName, ImageColumnName,
                colorsToExtract: ImagePixelExtractingEstimator.ColorBits.Red,
                offsetImage: invert ? 255f : 0f, scaleImage: invert ? -1f / 255 : 1f / 255));
    }

    /// <summary>
    /// One image held in memory (an upload, say) to LeNet-BN's features, exactly as <see cref="CreatePixelPipeline"/>
    /// converts a file: the bytes are written to a temporary file, which that pipeline reads, and deleted. Check
    /// the bytes with <see cref="CheckDecodes(byte[])"/> first.
    /// </summary>
    /// <remarks>
    /// Through a file rather than an in-memory image column: ML.NET's data views take an <see cref="MLImage"/>
    /// column only of one fixed, registered size, and going through LoadImages keeps files and uploads on one
    /// code path.
    /// </remarks>
    /// <param name="mlContext">The ML.NET context.</param>
    /// <param name="imageBytes">The encoded image (PNG, JPEG, …).</param>
    /// <param name="invert">See <see cref="CreatePixelPipeline"/>.</param>
    /// <returns>1×28×28 floats in [0, 1].</returns>
    public static float[] ToFeatures(MLContext mlContext, byte[] imageBytes, bool invert = false)
    {
        ArgumentNullException.ThrowIfNull(mlContext);
        ArgumentNullException.ThrowIfNull(imageBytes);
        string path = Path.Combine(Path.GetTempPath(), $"mlnetbn-image-{Guid.NewGuid():N}");
        try
        {
            File.WriteAllBytes(path, imageBytes);
            var paths = mlContext.Data.LoadFromEnumerable(new[] { new ImagePathRow { ImagePath = Path.GetFileName(path) } });
            var features = CreatePixelPipeline(mlContext, Path.GetDirectoryName(path)!, invert: invert).Fit(paths).Transform(paths);
            return features.GetColumn<float[]>(FashionMnist.FeaturesColumnName).Single();
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>
    /// Classifies the image files <paramref name="fileNames"/> of <paramref name="imageFolder"/> with
    /// <paramref name="model"/> (a LeNet-BN model, alone or in a chain). Each file is decoded on its own first: one
    /// that cannot be (not an image, truncated, empty, a format the decoder lacks) is reported with the reason and
    /// left out, and every other file is still classified.
    /// </summary>
    /// <param name="mlContext">The ML.NET context.</param>
    /// <param name="model">The model; its <c>PredictedLabel</c> is mapped back to the class names.</param>
    /// <param name="imageFolder">The folder holding the files.</param>
    /// <param name="fileNames">File names relative to <paramref name="imageFolder"/>.</param>
    /// <param name="invert">See <see cref="CreatePixelPipeline"/>.</param>
    public static ImageFolderResult Classify(MLContext mlContext, ITransformer model, string imageFolder, IEnumerable<string> fileNames, bool invert = false)
    {
        ArgumentNullException.ThrowIfNull(mlContext);
        ArgumentNullException.ThrowIfNull(model);
        var readable = new List<string>();
        var unreadable = new List<UnreadableImageFile>();
        foreach (var name in fileNames)
        {
            if (CheckDecodes(Path.Combine(imageFolder, name)) is { } reason)
                unreadable.Add(new UnreadableImageFile(name, reason));
            else
                readable.Add(name);
        }
        if (readable.Count == 0)
            return new ImageFolderResult([], unreadable);

        var paths = mlContext.Data.LoadFromEnumerable(readable.Select(f => new ImagePathRow { ImagePath = f }));
        var scored = model.Transform(CreatePixelPipeline(mlContext, imageFolder, invert: invert).Fit(paths).Transform(paths));
        // Examples/FashionMnist's zip maps the predicted key to its class name already; a bare LeNet-BN model does not.
        if (scored.Schema.GetColumnOrNull(PredictedClassColumnName) is null)
            scored = mlContext.Transforms.Conversion.MapKeyToValue(PredictedClassColumnName, "PredictedLabel").Fit(scored).Transform(scored);
        var predictions = mlContext.Data.CreateEnumerable<ImageFilePrediction>(scored, reuseRowObject: false).ToList();
        return new ImageFolderResult(predictions, unreadable);
    }

    /// <summary>The column <see cref="Classify"/> reads the class name from.</summary>
    public const string PredictedClassColumnName = "PredictedClass";

    /// <summary>Null when the file decodes as an image, in full, else why not, in words.</summary>
    /// <remarks>
    /// SkiaSharp's codec, the decoder under ML.NET's LoadImages, is asked directly: it names the format it sees and
    /// says when the data end early. Through ML.NET a truncated file either decodes into a partly blank picture,
    /// silently, or fails the whole pipeline with "Invalid input stream contents", naming no file.
    /// </remarks>
    public static string? CheckDecodes(string path)
    {
        var info = new FileInfo(path);
        if (!info.Exists)
            return "the file does not exist";
        if (info.Length == 0)
            return "the file is empty (0 bytes)";
        using var stream = File.OpenRead(path);
        return CheckDecodes(stream);
    }

    /// <summary>The same check as <see cref="CheckDecodes(string)"/> for an image held in memory (an upload).</summary>
    public static string? CheckDecodes(byte[] imageBytes)
    {
        ArgumentNullException.ThrowIfNull(imageBytes);
        if (imageBytes.Length == 0)
            return "the image is empty (0 bytes)";
        using var stream = new MemoryStream(imageBytes, writable: false);
        return CheckDecodes(stream);
    }

    private static string? CheckDecodes(Stream stream)
    {
        using var codec = SKCodec.Create(stream);
        if (codec is null)
            return "it is not an image in a format the decoder reads (PNG, JPEG, BMP, GIF, WebP, ICO, WBMP)";
        using var pixels = new SKBitmap(codec.Info.Width, codec.Info.Height);
        return codec.GetPixels(pixels.Info, pixels.GetPixels()) switch
        {
            SKCodecResult.Success => null,
            SKCodecResult.IncompleteInput => $"the {codec.EncodedFormat} data end early: the file is truncated",
            var decoded => $"the {codec.EncodedFormat} data cannot be decoded: {decoded}",
        };
    }

    /// <summary>
    /// Writes the images at <paramref name="indices"/> of <paramref name="data"/> as PNG files named
    /// <c>{index:D5}-{class}.png</c> (for example <c>00000-ankle-boot.png</c>) into <paramref name="folder"/>.
    /// </summary>
    /// <returns>The file names, in the order of <paramref name="indices"/>.</returns>
    public static IReadOnlyList<string> WritePngs(IdxDataset data, IEnumerable<int> indices, IReadOnlyList<string> classNames, string folder)
    {
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(indices);
        ArgumentNullException.ThrowIfNull(classNames);
        Directory.CreateDirectory(folder);
        var names = new List<string>();
        foreach (int index in indices)
        {
            int label = data.Labels.Span[index];
            if (label >= classNames.Count)
                throw new ArgumentException($"Image {index} has label {label}, but only {classNames.Count} class names were given.", nameof(classNames));
            string name = $"{index:D5}-{Slug(classNames[label])}.png";
            WritePng(data.Images.GetImage(index), data.Images.Rows, data.Images.Columns, Path.Combine(folder, name));
            names.Add(name);
        }
        return names;
    }

    /// <summary>Writes one grayscale image (a byte per pixel, row-major) as a PNG file.</summary>
    public static void WritePng(ReadOnlySpan<byte> pixels, int height, int width, string path)
    {
        if (pixels.Length != height * width)
            throw new ArgumentException($"{pixels.Length} pixels cannot form a {height}×{width} image.", nameof(pixels));
        // MLImage takes 32-bit pixels: gray into blue, green and red, fully opaque.
        var bgra = new byte[pixels.Length * 4];
        for (int i = 0; i < pixels.Length; i++)
        {
            bgra[4 * i] = bgra[4 * i + 1] = bgra[4 * i + 2] = pixels[i];
            bgra[4 * i + 3] = byte.MaxValue;
        }
        using var image = MLImage.CreateFromPixels(width, height, MLPixelFormat.Bgra32, bgra);
        image.Save(path);
    }

    /// <summary>The class a file named by <see cref="WritePngs"/> shows, or null for other names.</summary>
    public static string? ClassFromFileName(string fileName, IReadOnlyList<string> classNames)
    {
        ArgumentNullException.ThrowIfNull(classNames);
        string stem = Path.GetFileNameWithoutExtension(fileName);
        int dash = stem.IndexOf('-');
        if (dash <= 0 || !stem[..dash].All(char.IsAsciiDigit))
            return null;
        string slug = stem[(dash + 1)..];
        return classNames.FirstOrDefault(c => Slug(c) == slug);
    }

    /// <summary>A class name as a file-name part: lower case, runs of other characters than letters and digits as one dash.</summary>
    private static string Slug(string name) =>
        System.Text.RegularExpressions.Regex.Replace(name.ToLowerInvariant(), "[^a-z0-9]+", "-").Trim('-');
}

/// <summary>An image file to classify, by path relative to the image folder.</summary>
public sealed class ImagePathRow
{
    /// <summary>The path, relative to the image folder.</summary>
    public string ImagePath { get; set; } = "";
}

/// <summary>What <see cref="FashionImageFiles.Classify"/> says about one image file.</summary>
public sealed class ImageFilePrediction
{
    /// <summary>The file, relative to the image folder.</summary>
    public string ImagePath { get; set; } = "";

    /// <summary>The most probable class's name (empty when the scores are NaN).</summary>
    public string PredictedClass { get; set; } = "";

    /// <summary>The class probabilities.</summary>
    public float[] Score { get; set; } = [];

    /// <summary>The features the model saw: 784 floats in [0, 1].</summary>
    [VectorType(784)]
    public float[] Features { get; set; } = [];
}

/// <summary>A file <see cref="FashionImageFiles.Classify"/> could not decode, and why.</summary>
/// <param name="FileName">The file, relative to the image folder.</param>
/// <param name="Reason">Why it could not be read, in words.</param>
public sealed record UnreadableImageFile(string FileName, string Reason);

/// <summary>The classified files, in the order given, and the files that could not be read.</summary>
/// <param name="Predictions">One per readable file.</param>
/// <param name="Unreadable">One per file that could not be decoded.</param>
public sealed record ImageFolderResult(IReadOnlyList<ImageFilePrediction> Predictions, IReadOnlyList<UnreadableImageFile> Unreadable);
