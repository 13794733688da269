using System.Security.Cryptography;
using System.Text.Json;

namespace MlNetBn.Data;

/// <summary>
/// The <c>manifest.json</c> written beside the cached files once they are complete: for each file its size,
/// its item count and its SHA-256. Its presence marks a finished cache; later uses check the files against it.
/// </summary>
internal sealed record FashionMnistManifest(int Format, string Source, DateTimeOffset CreatedUtc, IReadOnlyList<FashionMnistManifestFile> Files)
{
    public const string FileName = "manifest.json";

    public const int CurrentFormat = 1;

    private static readonly JsonSerializerOptions JsonOptions = new(JsonSerializerDefaults.Web) { WriteIndented = true };

    /// <summary>Describes the four files as they are now in <paramref name="directory"/>.</summary>
    public static FashionMnistManifest Describe(string directory, string source)
    {
        var files = FashionMnist.FileNames.Select(name =>
        {
            var path = Path.Combine(directory, name);
            return new FashionMnistManifestFile(name, new FileInfo(path).Length, IdxFile.ReadHeader(path).Count, Sha256(path));
        }).ToArray();
        return new FashionMnistManifest(CurrentFormat, source, DateTimeOffset.UtcNow, files);
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

    /// <summary>Throws <see cref="FashionMnistCacheException"/> for the first file that differs from the manifest.</summary>
    public void Verify(string directory, bool checksums)
    {
        var manifestPath = Path.Combine(directory, FileName);
        if (Format != CurrentFormat || Files is null)
        {
            throw new FashionMnistCacheException(manifestPath, $"'{manifestPath}' has format {Format}; this version reads format {CurrentFormat}.");
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
