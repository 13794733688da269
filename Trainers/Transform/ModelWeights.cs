using MlNetBn.Modules;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetBn.Transform;

/// <summary>The network's state dict (parameters and BN buffers) in and out of a model zip's binary stream.</summary>
internal static class ModelWeights
{
    // Upper bound on what a LeNet-sized state dict can take; a larger length means a corrupt or foreign stream.
    private const long MaxBytes = 1L << 30;

    /// <summary>Writes a length prefix and TorchSharp's state-dict bytes, from host copies of the tensors.</summary>
    public static void Write(BinaryWriter writer, LeNetBnNetwork network)
    {
        // Into memory first: the length prefix lets Read detect truncation before TorchSharp parses anything, and
        // TorchSharp's save(Stream) would close ML.NET's zip entry.
        using var buffer = new MemoryStream();
        using (var scope = NewDisposeScope())
        using (var bytesWriter = new BinaryWriter(buffer, System.Text.Encoding.UTF8, leaveOpen: true))
            nn.Module.save_state_dict(bytesWriter, HostStateDict(network));
        var bytes = buffer.ToArray();
        writer.Write((long)bytes.Length);
        writer.Write(bytes);
    }

    /// <summary>
    /// The network's parameters and buffers as CPU tensors, in state-dict order: what <see cref="Write"/> stores.
    /// TorchSharp's state-dict format holds names, element types, shapes and little-endian values — no device — so
    /// bytes written from host copies load into a network on any device, whichever device trained the model.
    /// TorchSharp would copy a CUDA tensor to the host when saving anyway; doing it here keeps that promise ours.
    /// The tensors belong to the caller's dispose scope.
    /// </summary>
    internal static Dictionary<string, Tensor> HostStateDict(LeNetBnNetwork network)
    {
        var host = new Dictionary<string, Tensor>();
        using (no_grad())
        {
            // cpu() is a copy on CUDA and a new handle to the same storage on the CPU; either way the caller's scope
            // disposes only the handle, never the network's own tensors. detach(): no autograd history is kept.
            foreach (var (name, value) in network.state_dict())
                host[name] = value.detach().cpu();
        }
        return host;
    }

    /// <summary>
    /// Reads what <see cref="Write"/> wrote into <paramref name="network"/>, strictly (every name and shape must match).
    /// The values land on the network's device; model loading builds the network on the CPU and asks for no other.
    /// </summary>
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
