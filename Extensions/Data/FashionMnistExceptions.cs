namespace MlNetBn.Data;

/// <summary>
/// Fashion-MNIST could be found neither in the cache nor at any source (no network, say).
/// The message says which files to put in which folder and where to get them.
/// </summary>
public sealed class FashionMnistUnavailableException : IOException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="directory">The cache folder the files belong in.</param>
    /// <param name="message">The full explanation.</param>
    /// <param name="inner">The last source's error, if any.</param>
    public FashionMnistUnavailableException(string directory, string message, Exception? inner = null)
        : base(message, inner)
    {
        Directory = directory;
    }

    /// <summary>The cache folder the files belong in.</summary>
    public string Directory { get; }

    /// <summary>The files that belong in <see cref="Directory"/>.</summary>
    public IReadOnlyList<string> FileNames => FashionMnist.FileNames;
}

/// <summary>A cached file no longer matches the manifest written when the cache was made (size, count or SHA-256).</summary>
public sealed class FashionMnistCacheException : IOException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="filePath">The offending file.</param>
    /// <param name="message">What is wrong, naming the file.</param>
    /// <param name="inner">The underlying error, if any.</param>
    public FashionMnistCacheException(string filePath, string message, Exception? inner = null)
        : base(message, inner)
    {
        FilePath = filePath;
    }

    /// <summary>The offending file.</summary>
    public string FilePath { get; }
}
