using System.Buffers.Binary;
using System.IO.Compression;

namespace MlNetBn.Data;

/// <summary>
/// Reads and writes files in the IDX format of MNIST and Fashion-MNIST: a big-endian header
/// (magic number, then one 32-bit size per dimension) followed by unsigned bytes.
/// Files may be raw or gzip-compressed; compression is detected from the content, not from the name.
/// </summary>
public static class IdxFile
{
    /// <summary>Magic number of an IDX file of unsigned bytes with three dimensions (count, rows, columns): images.</summary>
    public const int ImagesMagic = 0x00000803;

    /// <summary>Magic number of an IDX file of unsigned bytes with one dimension (count): labels.</summary>
    public const int LabelsMagic = 0x00000801;

    // A gzip member starts with ID1 = 0x1f, ID2 = 0x8b (RFC 1952).
    private const byte GzipId1 = 0x1f;
    private const byte GzipId2 = 0x8b;

    /// <summary>Whether the file starts with the gzip magic bytes <c>1f 8b</c>.</summary>
    /// <param name="path">The file to look at.</param>
    public static bool IsGzip(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        using var file = File.OpenRead(path);
        Span<byte> head = stackalloc byte[2];
        return file.ReadAtLeast(head, 2, throwOnEndOfStream: false) == 2 && head[0] == GzipId1 && head[1] == GzipId2;
    }

    /// <summary>Reads only the header of an IDX file of unsigned bytes (cheap, even for a large gzip file).</summary>
    /// <param name="path">The IDX file, raw or gzip.</param>
    /// <returns>The magic number and the size of each dimension.</returns>
    /// <exception cref="IdxFormatException">The file is not an IDX file of unsigned bytes.</exception>
    public static IdxHeader ReadHeader(string path)
    {
        using var stream = OpenRead(path);
        return ReadHeader(stream, path);
    }

    /// <summary>Reads an IDX images file (magic <c>0x00000803</c>: count, rows, columns, then the pixels).</summary>
    /// <param name="path">The IDX file, raw or gzip.</param>
    /// <exception cref="IdxFormatException">The magic number is wrong, or the file is truncated or too long.</exception>
    public static IdxImages ReadImages(string path)
    {
        using var stream = OpenRead(path);
        var header = ReadHeader(stream, path);
        if (header.Magic != ImagesMagic)
        {
            throw new IdxFormatException(path,
                $"'{path}' is not an IDX images file: magic number is 0x{header.Magic:x8}, expected 0x{ImagesMagic:x8} (unsigned bytes, 3 dimensions).");
        }

        long length = (long)header.Dimensions[0] * header.Dimensions[1] * header.Dimensions[2];
        if (length > Array.MaxLength)
        {
            throw new IdxFormatException(path, $"'{path}' declares {length} bytes of pixels, more than one array can hold.");
        }

        var pixels = ReadBody(stream, path, (int)length, "pixel data");
        return new IdxImages(header.Dimensions[0], header.Dimensions[1], header.Dimensions[2], pixels);
    }

    /// <summary>Reads an IDX labels file (magic <c>0x00000801</c>: count, then one byte per label).</summary>
    /// <param name="path">The IDX file, raw or gzip.</param>
    /// <exception cref="IdxFormatException">The magic number is wrong, or the file is truncated or too long.</exception>
    public static byte[] ReadLabels(string path)
    {
        using var stream = OpenRead(path);
        var header = ReadHeader(stream, path);
        if (header.Magic != LabelsMagic)
        {
            throw new IdxFormatException(path,
                $"'{path}' is not an IDX labels file: magic number is 0x{header.Magic:x8}, expected 0x{LabelsMagic:x8} (unsigned bytes, 1 dimension).");
        }

        return ReadBody(stream, path, header.Dimensions[0], "labels");
    }

    /// <summary>Writes an IDX images file.</summary>
    /// <param name="path">The file to create or overwrite.</param>
    /// <param name="images">The images.</param>
    /// <param name="gzip">Whether to gzip-compress the file (as the official <c>*.gz</c> files are).</param>
    public static void WriteImages(string path, IdxImages images, bool gzip)
    {
        ArgumentNullException.ThrowIfNull(images);
        Write(path, ImagesMagic, [images.Count, images.Rows, images.Columns], images.Pixels.Span, gzip);
    }

    /// <summary>Writes an IDX labels file.</summary>
    /// <param name="path">The file to create or overwrite.</param>
    /// <param name="labels">One byte per label.</param>
    /// <param name="gzip">Whether to gzip-compress the file (as the official <c>*.gz</c> files are).</param>
    public static void WriteLabels(string path, ReadOnlySpan<byte> labels, bool gzip) =>
        Write(path, LabelsMagic, [labels.Length], labels, gzip);

    private static void Write(string path, int magic, ReadOnlySpan<int> dimensions, ReadOnlySpan<byte> body, bool gzip)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var header = new byte[4 * (1 + dimensions.Length)];
        BinaryPrimitives.WriteInt32BigEndian(header, magic);
        for (int i = 0; i < dimensions.Length; i++)
        {
            BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4 * (i + 1)), dimensions[i]);
        }

        using var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, bufferSize: 1 << 16);
        using Stream output = gzip ? new GZipStream(file, CompressionLevel.Optimal) : file;
        output.Write(header);
        output.Write(body);
    }

    private static Stream OpenRead(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1 << 16);
        try
        {
            Span<byte> head = stackalloc byte[2];
            int read = file.ReadAtLeast(head, 2, throwOnEndOfStream: false);
            file.Position = 0;
            // The official files are gzip members; a raw IDX file starts with 00 00, so the two can't be confused.
            return read == 2 && head[0] == GzipId1 && head[1] == GzipId2
                ? new BufferedStream(new GZipStream(file, CompressionMode.Decompress), 1 << 16)
                : file;
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    private static IdxHeader ReadHeader(Stream stream, string path)
    {
        Span<byte> word = stackalloc byte[4];
        ReadExactly(stream, word, path, "the magic number");
        int magic = BinaryPrimitives.ReadInt32BigEndian(word);
        // Byte 3 of the magic is the type (0x08 = unsigned byte), byte 4 the number of dimensions.
        if ((magic & unchecked((int)0xFFFFFF00)) != 0x00000800 || (magic & 0xFF) is 0 or > 4)
        {
            throw new IdxFormatException(path,
                $"'{path}' is not an IDX file of unsigned bytes: magic number is 0x{magic:x8}, expected 0x{ImagesMagic:x8} (images) or 0x{LabelsMagic:x8} (labels).");
        }

        var dimensions = new int[magic & 0xFF];
        for (int i = 0; i < dimensions.Length; i++)
        {
            ReadExactly(stream, word, path, $"the size of dimension {i + 1}");
            dimensions[i] = BinaryPrimitives.ReadInt32BigEndian(word);
            if (dimensions[i] < 0)
            {
                throw new IdxFormatException(path, $"'{path}' declares a negative size ({dimensions[i]}) for dimension {i + 1}.");
            }
        }

        return new IdxHeader(magic, dimensions);
    }

    private static byte[] ReadBody(Stream stream, string path, int length, string what)
    {
        var body = GC.AllocateUninitializedArray<byte>(length);
        ReadExactly(stream, body, path, what);
        // Extra bytes mean the header's count is wrong: refuse rather than silently drop data.
        Span<byte> probe = stackalloc byte[1];
        if (Read(stream, probe, path) != 0)
        {
            throw new IdxFormatException(path, $"'{path}' has more data than its header declares ({length} bytes of {what}).");
        }

        return body;
    }

    private static void ReadExactly(Stream stream, Span<byte> buffer, string path, string what)
    {
        int total = 0;
        while (total < buffer.Length)
        {
            int read = Read(stream, buffer[total..], path);
            if (read == 0)
            {
                throw new IdxFormatException(path,
                    $"'{path}' is truncated: expected {buffer.Length} bytes of {what}, found only {total}.");
            }

            total += read;
        }
    }

    private static int Read(Stream stream, Span<byte> buffer, string path)
    {
        try
        {
            return stream.Read(buffer);
        }
        catch (InvalidDataException ex)
        {
            // GZipStream reports corrupt compressed data without naming the file.
            throw new IdxFormatException(path, $"'{path}' is not valid gzip data: {ex.Message}", ex);
        }
    }
}

/// <summary>The header of an IDX file: its magic number and the size of each dimension.</summary>
/// <param name="Magic">The magic number (<see cref="IdxFile.ImagesMagic"/>, <see cref="IdxFile.LabelsMagic"/>, …).</param>
/// <param name="Dimensions">The size of each dimension; the first is the number of items.</param>
public sealed record IdxHeader(int Magic, IReadOnlyList<int> Dimensions)
{
    /// <summary>The number of items (the first dimension).</summary>
    public int Count => Dimensions.Count > 0 ? Dimensions[0] : 0;
}

/// <summary>An IDX file (or a pair of them) that is malformed; the message names the file.</summary>
public sealed class IdxFormatException : IOException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="filePath">The offending file.</param>
    /// <param name="message">What is wrong, naming the file.</param>
    /// <param name="inner">The underlying error, if any.</param>
    public IdxFormatException(string filePath, string message, Exception? inner = null)
        : base(message, inner)
    {
        FilePath = filePath;
    }

    /// <summary>The offending file.</summary>
    public string FilePath { get; }
}
