using System.Security.Cryptography;
using MlNetBn.Modules;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetBn.Transform;

/// <summary>
/// The network's state dict (parameters and BN buffers) in and out of a model zip's binary stream:
/// an int64 byte count, TorchSharp's state-dict bytes, then their SHA-256.
/// </summary>
/// <remarks>
/// Everything is checked before TorchSharp parses a byte: the length against the stream, the hash against the
/// bytes. So a truncated, overwritten or foreign stream is refused with an <see cref="InvalidDataException"/>
/// naming the entry, and TorchSharp's loader only ever sees bytes this class wrote. Whatever TorchSharp still
/// throws (a state dict of another architecture) is wrapped the same way.
/// </remarks>
internal static class ModelWeights
{
    /// <summary>
    /// Upper bound on the state-dict bytes: far above any LeNet (Fashion-MNIST's is about 250 KB) and the most
    /// <see cref="Read"/> buffers. A larger length prefix means a corrupt or foreign stream.
    /// </summary>
    internal const long MaxBytes = 1L << 30;

    internal const int HashBytes = 32; // SHA-256

    /// <summary>Writes the length prefix, TorchSharp's state-dict bytes (from host copies) and their SHA-256.</summary>
    public static void Write(BinaryWriter writer, LeNetBnNetwork network) => Write(writer, network.state_dict());

    /// <summary>Writes a state dict (a network's, or a snapshot of one) as <see cref="Write(BinaryWriter, LeNetBnNetwork)"/> does.</summary>
    public static void Write(BinaryWriter writer, Dictionary<string, Tensor> state)
    {
        // Into memory first: the length prefix lets Read detect truncation before TorchSharp parses anything, and
        // TorchSharp's save(Stream) would close ML.NET's zip entry. The scope disposes the host copies.
        using var buffer = new MemoryStream();
        using (NewDisposeScope())
        using (var bytesWriter = new BinaryWriter(buffer, System.Text.Encoding.UTF8, leaveOpen: true))
            nn.Module.save_state_dict(bytesWriter, HostStateDict(state));
        if (buffer.Length > MaxBytes)
            throw new InvalidOperationException(
                $"The network's weights take {buffer.Length:N0} bytes, more than the {MaxBytes:N0} a LeNet-BN model file may hold.");
        var bytes = buffer.GetBuffer().AsSpan(0, (int)buffer.Length);
        writer.Write((long)bytes.Length);
        writer.Write(bytes);
        writer.Write(SHA256.HashData(bytes));
    }

    /// <summary>
    /// The network's parameters and buffers as CPU tensors, in state-dict order: what <see cref="Write(BinaryWriter, LeNetBnNetwork)"/> stores.
    /// TorchSharp's state-dict format holds names, element types, shapes and little-endian values — no device — so
    /// bytes written from host copies load into a network on any device, whichever device trained the model.
    /// TorchSharp would copy a CUDA tensor to the host when saving anyway; doing it here keeps that promise ours.
    /// The tensors belong to the caller's dispose scope.
    /// </summary>
    internal static Dictionary<string, Tensor> HostStateDict(Dictionary<string, Tensor> state)
    {
        var host = new Dictionary<string, Tensor>();
        using (no_grad())
        {
            // cpu() is a copy on CUDA and a new handle to the same storage on the CPU; either way the caller's scope
            // disposes only the handle, never the network's own tensors. detach(): no autograd history is kept.
            foreach (var (name, value) in state)
                host[name] = value.detach().cpu();
        }
        return host;
    }

    /// <summary>
    /// Reads what <see cref="Write(BinaryWriter, LeNetBnNetwork)"/> wrote into <paramref name="network"/>, strictly (every name and shape must
    /// match), and checks that every value is finite and the stream holds nothing more.
    /// </summary>
    /// <param name="reader">The weights stream.</param>
    /// <param name="network">A network of the saved architecture.</param>
    /// <param name="entryName">The stream's path in the zip, for messages.</param>
    public static void Read(BinaryReader reader, LeNetBnNetwork network, string entryName)
    {
        long length;
        try
        {
            length = reader.ReadInt64();
        }
        catch (EndOfStreamException)
        {
            throw Corrupt(entryName, "it is empty or shorter than its 8-byte length prefix");
        }
        if (length <= 0 || length > MaxBytes)
            throw Corrupt(entryName, $"it declares {length:N0} bytes of weights, outside 1 to {MaxBytes:N0}");
        var bytes = reader.ReadBytes((int)length);
        if (bytes.Length != length)
            throw Corrupt(entryName, $"it is truncated: {bytes.Length:N0} of {length:N0} bytes of weights");
        var expected = reader.ReadBytes(HashBytes);
        if (expected.Length != HashBytes)
            throw Corrupt(entryName, "it is truncated: the SHA-256 of the weights is missing");
        if (!CryptographicOperations.FixedTimeEquals(expected, SHA256.HashData(bytes)))
            throw Corrupt(entryName, "the weights do not match their SHA-256: the file was damaged or altered after it was saved");
        if (reader.BaseStream.CanSeek && reader.BaseStream.Position != reader.BaseStream.Length)
            throw Corrupt(entryName, $"{reader.BaseStream.Length - reader.BaseStream.Position:N0} unexpected bytes follow the weights");

        using var stream = new MemoryStream(bytes, writable: false);
        try
        {
            using var scope = NewDisposeScope();
            // A reader that leaves the stream open (TorchSharp's load(Stream) closes it), to check it was all read.
            using var stateReader = new BinaryReader(stream, System.Text.Encoding.UTF8, leaveOpen: true);
            network.load(stateReader, strict: true);
        }
        catch (Exception e)
        {
            // TorchSharp's loader throws ArgumentException for a state dict of another shape, EndOfStreamException
            // for a short one, and overflow or out-of-memory errors for a garbage shape length (arrays it sizes
            // from the stream); all mean the same to the user, and none leaves native state behind.
            throw Corrupt(entryName, $"TorchSharp could not read them into a {network.Architecture.Input} → {network.Architecture.NumClasses}-class " +
                $"{network.Architecture.BatchNorm}-BN LeNet ({e.GetType().Name}: {e.Message})", e);
        }
        if (stream.Position != stream.Length)
            throw Corrupt(entryName, $"{stream.Length - stream.Position:N0} bytes of the weights were left over after the state dict");
        network.eval();
        EnsureFinite(network, entryName);
    }

    /// <summary>Refuses weights with NaN or Infinity: Fit never produces them, so they mean damage.</summary>
    private static void EnsureFinite(LeNetBnNetwork network, string entryName)
    {
        using var scope = NewDisposeScope();
        foreach (var (name, value) in network.state_dict())
        {
            if (value.is_floating_point() && !value.isfinite().all().item<bool>())
                throw Corrupt(entryName, $"'{name}' holds NaN or Infinity, which training never produces");
        }
    }

    private static InvalidDataException Corrupt(string entryName, string why, Exception? inner = null) =>
        new($"The LeNet-BN weights entry '{entryName}' of the model file is corrupt: {why}.", inner);
}
