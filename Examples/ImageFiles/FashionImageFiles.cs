using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Transforms.Image;
using MlNetBn.Data;

namespace MlNetBn.Examples.ImageFiles;

/// <summary>
/// Fashion-MNIST images as image files, and the ML.NET pipeline that turns image files back into the features
/// LeNet-BN is trained on (784 floats in [0, 1], pixel / 255, as the IDX loader gives). Tests/ImageFiles checks
/// that an image written here and read back through the pipeline gives the IDX loader's features.
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
    /// grayscale, and take one channel scaled by 1/255.
    /// </summary>
    /// <param name="mlContext">The ML.NET context.</param>
    /// <param name="imageFolder">The folder the paths in <see cref="ImagePathColumnName"/> are relative to.</param>
    /// <param name="featureColumnName">The output column: a vector of 1×28×28 floats in [0, 1].</param>
    /// <remarks>
    /// Grayscale first, then a single channel: ML.NET's grayscale conversion writes the same luminance into red,
    /// green and blue, so red is the gray level, and a colour image becomes one gray channel as the network
    /// expects. Fashion-MNIST draws light clothes on black; photos of dark clothes on white need inverting.
    /// </remarks>
    public static IEstimator<ITransformer> CreatePixelPipeline(MLContext mlContext, string imageFolder, string featureColumnName = FashionMnist.FeaturesColumnName)
    {
        ArgumentNullException.ThrowIfNull(mlContext);
        ArgumentException.ThrowIfNullOrWhiteSpace(imageFolder);
        return mlContext.Transforms.LoadImages(ImageColumnName, imageFolder, ImagePathColumnName)
            .Append(mlContext.Transforms.ResizeImages(ImageColumnName, FashionMnist.ImageColumns, FashionMnist.ImageRows))
            .Append(mlContext.Transforms.ConvertToGrayscale(ImageColumnName))
            .Append(mlContext.Transforms.ExtractPixels(featureColumnName, ImageColumnName,
                colorsToExtract: ImagePixelExtractingEstimator.ColorBits.Red, scaleImage: 1f / 255));
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
