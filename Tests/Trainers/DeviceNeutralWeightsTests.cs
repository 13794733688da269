using Microsoft.ML;
using MlNetBn.Modules;
using MlNetBn.Transform;
using TorchSharp;
using static MlNetBn.Tests.Internals.InternalsTestEnvironment;
using static TorchSharp.torch;

namespace MlNetBn.Tests.Trainers;

/// <summary>
/// The weights in a model zip do not depend on the device that trained the model: ModelWeights writes host (CPU)
/// copies, the stream holds names, element types, shapes and values and nothing else, and loading builds the network
/// on the CPU — also in a process where CUDA is hidden. This machine has no GPU, so the CUDA side of the round trip
/// (train on CUDA, load on the CPU) runs in scripts/device-check.sh (benchmark export-model / verify-model).
/// </summary>
[TestClass]
public sealed class DeviceNeutralWeightsTests
{
    private readonly string _zipPath = Path.Combine(Path.GetTempPath(), $"mlnetbn-device-neutral-{Guid.NewGuid():N}.zip");

    [TestCleanup]
    public void Cleanup()
    {
        File.Delete(_zipPath);
        File.Delete(_zipPath + ".bin");
    }

    [TestMethod]
    [DataRow(BatchNormKind.Scratch)]
    [DataRow(BatchNormKind.BuiltIn)]
    public void HostStateDict_IsCpuCopiesOfEveryTensor_AndDisposingThemLeavesTheNetworkWhole(BatchNormKind kind)
    {
        using var network = PerturbedNetwork(kind);
        var names = network.state_dict().Keys.ToList();
        using (var scope = NewDisposeScope())
        {
            var host = ModelWeights.HostStateDict(network);
            CollectionAssert.AreEqual(names, host.Keys.ToList(), "the state dict's names, in its order");
            foreach (var (name, value) in host)
            {
                Assert.AreEqual(DeviceType.CPU, value.device_type, $"{name} is handed to the writer on {value.device}");
                Assert.IsFalse(value.requires_grad, $"{name} carries autograd history");
                Assert.IsTrue(value.equal(network.state_dict()[name]).all().item<bool>(), $"{name} differs from the network's");
            }
        }

        // The scope disposed only the copies' handles: the network still has its tensors.
        using var _ = no_grad();
        using var output = network.forward(ones(2, 784));
        Assert.AreEqual(10, output.shape[1]);
    }

    /// <summary>
    /// Reads the stream with a reader written here from TorchSharp's documented state-dict layout (LEB128 counts,
    /// .NET strings, raw little-endian values): every tensor's bytes are the network's values, and the stream ends
    /// right after the last one — there is nowhere a device could be recorded.
    /// </summary>
    [TestMethod]
    [DataRow(BatchNormKind.Scratch)]
    [DataRow(BatchNormKind.BuiltIn)]
    public void WeightsStream_HoldsNamesTypesShapesAndHostValues_AndNothingElse(BatchNormKind kind)
    {
        using var network = PerturbedNetwork(kind);
        using var stream = new MemoryStream();
        using (var writer = new BinaryWriter(stream, System.Text.Encoding.UTF8, leaveOpen: true))
            ModelWeights.Write(writer, network);

        stream.Position = 0;
        using var reader = new BinaryReader(stream);
        const int Sha256Bytes = 32;
        long length = reader.ReadInt64();
        Assert.AreEqual(stream.Length - sizeof(long) - Sha256Bytes, length, "length prefix");
        var stateDict = network.state_dict();
        Assert.AreEqual(stateDict.Count, Leb128(reader), "entry count");
        foreach (var (name, value) in stateDict)
        {
            Assert.AreEqual(name, reader.ReadString());
            Assert.AreEqual((long)value.dtype, Leb128(reader), $"{name}: element type");
            long rank = Leb128(reader);
            var shape = Enumerable.Range(0, (int)rank).Select(_ => Leb128(reader)).ToArray();
            CollectionAssert.AreEqual(value.shape, shape, $"{name}: shape");
            using var host = value.detach().cpu().contiguous();
            var expected = host.bytes.ToArray();
            CollectionAssert.AreEqual(expected, reader.ReadBytes(expected.Length), $"{name}: values");
        }
        var stateBytes = stream.ToArray().AsSpan(sizeof(long), (int)length).ToArray();
        CollectionAssert.AreEqual(System.Security.Cryptography.SHA256.HashData(stateBytes), reader.ReadBytes(Sha256Bytes), "SHA-256 of the state-dict bytes");
        Assert.AreEqual(stream.Length, stream.Position, "bytes after the hash");

        using var fresh = new LeNetBnNetwork(network.Architecture);
        stream.Position = 0;
        ModelWeights.Read(reader, fresh, "LeNetBnWeights.bin");
        foreach (var (name, value) in fresh.state_dict())
        {
            Assert.AreEqual(DeviceType.CPU, value.device_type, name);
            Assert.IsTrue(value.equal(stateDict[name]).all().item<bool>(), $"{name} differs after the round trip");
        }
    }

    /// <summary>
    /// A saved model loads onto the CPU: in this process (every parameter and buffer) and in a fresh process with
    /// CUDA hidden (CUDA_VISIBLE_DEVICES empty), where it scores bit-for-bit as the original.
    /// </summary>
    [TestMethod]
    public void SavedModel_LoadsOntoTheCpu_HereAndInAProcessWithCudaHidden()
    {
        var mlContext = new MLContext(seed: 1);
        var data = TrainerTestData.Test(mlContext, 2);
        var labels = LabelKeyValues.From(data.Schema["Label"]);
        using var model = new LeNetBnTransformer(mlContext, PerturbedNetwork(BatchNormKind.Scratch), "Features", labels, 64, []);
        mlContext.Model.Save(model, data.Schema, _zipPath);

        var loaded = (LeNetBnTransformer)mlContext.Model.Load(_zipPath, out _);
        try
        {
            Assert.AreEqual("cpu", loaded.Device.ToLowerInvariant());
            var original = model.NetworkForTests.state_dict();
            foreach (var (name, value) in loaded.NetworkForTests.state_dict())
            {
                Assert.AreEqual(DeviceType.CPU, value.device_type, $"{name} was loaded onto {value.device}");
                Assert.IsTrue(value.equal(original[name]).all().item<bool>(), $"{name} differs after loading");
            }
        }
        finally
        {
            loaded.Dispose();
        }

        var features = mlContext.Data.CreateEnumerable<FeatureRow>(data, reuseRowObject: false).Take(8).SelectMany(r => r.Features).ToArray();
        File.WriteAllBytes(_zipPath + ".bin", System.Runtime.InteropServices.MemoryMarshal.AsBytes(features.AsSpan()).ToArray());
        var (exitCode, values, output) = RunModelLoadHost(_zipPath, _zipPath + ".bin", 784, new Dictionary<string, string> { ["CUDA_VISIBLE_DEVICES"] = "" });
        Assert.AreEqual(0, exitCode, output);
        Assert.AreEqual("", values["cuda-visible-devices"], output);
        Assert.AreEqual("cpu", values["transformer[0].device"].ToLowerInvariant(), output);

        // The host transforms the 8 rows in one forward pass; so does this: the same arithmetic, so the same bits.
        var expected = new float[8 * 10];
        model.Predict(features, 8, expected);
        for (int i = 0; i < 8; i++)
        {
            var scores = values[$"score[{i}]"].Split(',').Select(v => float.Parse(v, System.Globalization.CultureInfo.InvariantCulture)).ToArray();
            CollectionAssert.AreEqual(expected[(i * 10)..((i + 1) * 10)], scores, $"row {i} in the process with CUDA hidden");
        }
    }

    /// <summary>A seeded network whose weights and BN statistics are all away from their initial values.</summary>
    private static LeNetBnNetwork PerturbedNetwork(BatchNormKind kind)
    {
        var network = new LeNetBnNetwork(new LeNetBnArchitecture { BatchNorm = kind }, seed: 11);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var generator = new Generator(12);
        foreach (var parameter in network.parameters())
            parameter.add_(randn(parameter.shape, generator: generator) * 0.1);
        network.train();
        for (int i = 0; i < 3; i++)
            network.forward(rand([16, 784], generator: generator));
        network.eval();
        return network;
    }

    private static long Leb128(BinaryReader reader)
    {
        long result = 0;
        for (int shift = 0; ; shift += 7)
        {
            byte b = reader.ReadByte();
            result |= (long)(b & 0x7f) << shift;
            if ((b & 0x80) == 0) return result;
        }
    }
}
