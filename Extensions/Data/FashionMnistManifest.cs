using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace MlNetBn.Data;

/// <summary>
/// The <c>manifest.json</c> written beside the cached files once they are complete: for each file its size,
/// its item count and its SHA-256, and, when the files were converted from the npm package, how many images of each
/// class formed the test split. Its presence marks a finished cache; later uses check the files, and that number,
/// against it.
/// </summary>
/// <param name="Format">The manifest's format version.</param>
/// <param name="Source">Where the files came from, in words.</param>
/// <param name="CreatedUtc">When the cache was finished.</param>
/// <param name="Files">The four files.</param>
/// <param name="NpmTestImagesPerClass">The test images per class of a conversion from the npm package; null for files that
/// came already split.</param>
internal sealed record FashionMnistManifest(int Format, string Source, DateTimeOffset CreatedUtc, IReadOnlyList<FashionMnistManifestFile> Files,
    int? NpmTestImagesPerClass = null)
{
    public const string FileName = "manifest.json";

    /// <summary>
    /// The format version. Format 1 caches converted from the npm package may hold the split that takes each class's
    /// last images for testing, which are Zalando's training images; they are never reused.
    /// </summary>
    public const int CurrentFormat = 2;

    private static readonly JsonSerializerOptions JsonOptions = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        Converters = { new JsonStringEnumConverter() },
    };

    /// <summary>Describes the four files as they are now in <paramref name="directory"/>.</summary>
    /// <param name="directory">The cache folder.</param>
    /// <param name="source">Where the files came from, in words.</param>
    /// <param name="npmTestImagesPerClass">The test images per class, when the files were converted from the npm package.</param>
    public static FashionMnistManifest Describe(string directory, string source, int? npmTestImagesPerClass = null)
    {
        var files = FashionMnist.FileNames.Select(name =>
        {
            var path = Path.Combine(directory, name);
            return new FashionMnistManifestFile(name, new FileInfo(path).Length, IdxFile.ReadHeader(path).Count, Sha256(path));
        }).ToArray();
        return new FashionMnistManifest(CurrentFormat, source, DateTimeOffset.UtcNow, files, npmTestImagesPerClass);
    }

    public static FashionMnistManifest? TryRead(string directory)
    {
        var path = Path.Combine(directory, FileName);
        if (!File.Exists(path))
        {
            return null;
        }

        try
        {
            return JsonSerializer.Deserialize<FashionMnistManifest>(File.ReadAllText(path), JsonOptions)
                ?? throw new FashionMnistCacheException(path, $"'{path}' is empty.");
        }
        catch (JsonException ex)
        {
            throw new FashionMnistCacheException(path, $"'{path}' is not a valid manifest: {ex.Message}", ex);
        }
    }

    public void Write(string directory)
    {
        var path = Path.Combine(directory, FileName);
        var temporary = path + $".{Guid.NewGuid():N}.part";
        File.WriteAllText(temporary, JsonSerializer.Serialize(this, JsonOptions));
        File.Move(temporary, path, overwrite: true);
    }

    /// <summary>
    /// Throws <see cref="FashionMnistCacheException"/> when the manifest has another format, when the cache was
    /// converted from the npm package with another number of test images per class than the one asked for, or for the
    /// first file that differs from the manifest.
    /// </summary>
    /// <param name="directory">The cache folder.</param>
    /// <param name="checksums">Whether to recompute and compare the SHA-256 of each file.</param>
    /// <param name="npmTestImagesPerClass">The test images per class asked for, compared with
    /// <see cref="NpmTestImagesPerClass"/> when the manifest records one.</param>
    public void Verify(string directory, bool checksums, int npmTestImagesPerClass)
    {
        var manifestPath = Path.Combine(directory, FileName);
        if (Format != CurrentFormat || Files is null)
        {
            throw new FashionMnistCacheException(manifestPath, Format == 1
                ? $"'{manifestPath}' has format 1, whose conversions of the npm package may take Zalando's training images for testing; this version reads format {CurrentFormat}."
                : $"'{manifestPath}' has format {Format}; this version reads format {CurrentFormat}.");
        }

        if (NpmTestImagesPerClass is { } recorded && recorded != npmTestImagesPerClass)
        {
            throw new FashionMnistCacheException(manifestPath,
                $"'{manifestPath}' records a cache converted from the npm package where " +
                $"{NpmFashionMnistPackage.Describe(recorded)}, but the options ask for " +
                $"{NpmFashionMnistPackage.Describe(npmTestImagesPerClass)}. To use this cache, set " +
                $"FashionMnistDownloadOptions.NpmTestImagesPerClass to match it; to convert it again, delete the folder " +
                $"or set RedownloadIfCorrupt.");
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
