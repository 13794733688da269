using MlNetBn.Modules;

namespace MlNetBn.Transform;

/// <summary>The network's state dict (parameters and BN buffers) in and out of a model zip's binary stream.</summary>
internal static class ModelWeights
{
    // Upper bound on what a LeNet-sized state dict can take; a larger length means a corrupt or foreign stream.
    private const long MaxBytes = 1L << 30;

    /// <summary>Writes a length prefix and TorchSharp's state-dict bytes.</summary>
    public static void Write(BinaryWriter writer, LeNetBnNetwork network)
    {
        // Into memory first: the length prefix lets Read detect truncation before TorchSharp parses anything, and
        // TorchSharp's save(Stream) would close ML.NET's zip entry. TorchSharp writes every tensor from a CPU copy,
        // so a model trained on CUDA saves device-neutral weights.
        using var buffer = new MemoryStream();
        using (var bytesWriter = new BinaryWriter(buffer, System.Text.Encoding.UTF8, leaveOpen: true))
            network.save(bytesWriter);
        var bytes = buffer.ToArray();
        writer.Write((long)bytes.Length);
        writer.Write(bytes);
    }

    /// <summary>Reads what <see cref="Write"/> wrote into <paramref name="network"/>, strictly (every name and shape must match).</summary>
    public static void Read(BinaryReader reader, LeNetBnNetwork network)
    {
        long length = reader.ReadInt64();
        if (length <= 0 || length > MaxBytes)
            throw new InvalidDataException($"The weights stream declares {length} bytes; the model file is corrupt.");
        var bytes = reader.ReadBytes((int)length);
        if (bytes.Length != length)
            throw new InvalidDataException($"The weights stream is truncated: {bytes.Length} of {length} bytes.");
        using var stream = new MemoryStream(bytes, writable: false);
        try
        {
            network.load(stream, strict: true);
        }
        catch (Exception e) when (e is not InvalidDataException)
        {
            throw new InvalidDataException($"The model's weights do not fit its LeNet-BN architecture: {e.Message}", e);
        }
        network.eval();
    }
}
