using System.Buffers.Binary;
using System.IO.Compression;

namespace MlNetBn.Examples.OnnxClassify;

/// <summary>
/// Fashion-MNIST's test split read straight from its published files (gzipped IDX: a big-endian header, then one byte
/// per pixel or label), so that this program needs no ML.NET. Where MlNetBn's examples cache them by default.
/// </summary>
internal static class FashionMnistIdx
{
    public const int TestCount = 10_000;
    public const int Pixels = 28 * 28;

    public static readonly string[] ClassNames =
        ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

    /// <summary>$MLNETBN_DATA_DIR/fashion-mnist, else ~/.local/share/MlNetBn/fashion-mnist (%LOCALAPPDATA% on Windows): where the other examples download to.</summary>
    public static string DefaultDirectory =>
        Path.Combine(Environment.GetEnvironmentVariable("MLNETBN_DATA_DIR") is { Length: > 0 } root
            ? root
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData), "MlNetBn"), "fashion-mnist");

    /// <summary>The first <paramref name="count"/> test images (all when null; row-major, pixel / 255) and their labels (0–9).</summary>
    public static (float[] Images, byte[] Labels) ReadTest(string directory, int? count)
    {
        byte[] pixels = Read(Path.Combine(directory, "t10k-images-idx3-ubyte.gz"), magic: 0x803, headerInts: 3, count, Pixels);
        byte[] labels = Read(Path.Combine(directory, "t10k-labels-idx1-ubyte.gz"), magic: 0x801, headerInts: 1, count, 1);
        return (pixels.Select(p => p / 255f).ToArray(), labels);
    }

    private static byte[] Read(string path, int magic, int headerInts, int? count, int itemBytes)
    {
        if (!File.Exists(path))
            throw new FileNotFoundException($"'{path}' is missing: run Examples/OnnxExport (it downloads Fashion-MNIST there), or pass --data-dir.", path);
        using var gzip = new GZipStream(File.OpenRead(path), CompressionMode.Decompress);
        var header = new byte[4 * (1 + headerInts)];
        gzip.ReadExactly(header);
        int fileMagic = BinaryPrimitives.ReadInt32BigEndian(header), items = BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(4));
        if (fileMagic != magic || items < (count ?? 1))
            throw new InvalidDataException($"'{path}' is not an IDX file of at least {count ?? 1:N0} items (magic 0x{fileMagic:X}, {items:N0} items).");
        if (headerInts == 3 && (BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(8)) != 28 || BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(12)) != 28))
            throw new InvalidDataException($"'{path}' does not hold 28×28 images.");
        var data = new byte[(count ?? items) * itemBytes];
        gzip.ReadExactly(data);
        return data;
    }
}
