using System.Buffers.Binary;
using System.IO.Compression;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetBn.Modules;
using MlNetBn.Transform;

namespace MlNetBn.Tests.Trainers;

/// <summary>
/// The model zip: what Save puts in it, and what Load says about every way it can be truncated, damaged, foreign
/// or of another format version. Each case edits a copy of one small saved model and expects a managed exception
/// whose message names the problem and the entry, never a crash in libtorch.
/// </summary>
[TestClass]
public sealed class LeNetBnModelFileTests
{
    // Offsets in ML.NET's model header (Microsoft.ML.Core ModelHeader, 256 bytes before each Model.key body).
    private const int HeaderModelSignature = 0x40;
    private const int HeaderVerWritten = 0x48;
    private const int HeaderVerReadable = 0x4C;
    private const int HeaderLoaderSignature = 0x50;
    private const int Body = 0x100;
    // The body: format (4), the fields' byte count (4), the fields, their SHA-256 (32).
    private const int Fields = Body + 8;
    // In the fields: "Features" (1 + 8), channels, height, width, classes (16), then the BN kind byte.
    private const int BatchNormKindField = 9 + 16;

    private const uint CurrentFormat = LeNetBnTransformer.FormatVersion;

    private static MLContext s_mlContext = null!;
    private static LeNetBnTransformer s_model = null!;
    private static IDataView s_test = null!;
    private static byte[] s_zip = null!;
    private static List<float[]> s_expectedScores = null!;
    private string _path = null!;

    /// <summary>One tiny model (one epoch on 50 images), saved once; each test damages a copy of the zip.</summary>
    [ClassInitialize]
    public static void SaveOnce(TestContext _)
    {
        s_mlContext = new MLContext(seed: 1);
        var train = TrainerTestData.Train(s_mlContext, 5);
        s_model = s_mlContext.MulticlassClassification.Trainers.LeNetBn(TrainerTestData.QuickOptions(epochs: 1)).Fit(train);
        s_test = TrainerTestData.Test(s_mlContext, 2);
        using var stream = new MemoryStream();
        s_mlContext.Model.Save(s_model, train.Schema, stream);
        s_zip = stream.ToArray();
        s_expectedScores = Scores(s_model);
    }

    [ClassCleanup]
    public static void DisposeModel() => s_model.Dispose();

    [TestInitialize]
    public void WriteCopy()
    {
        _path = Path.Combine(Path.GetTempPath(), $"mlnetbn-modelfile-{Guid.NewGuid():N}.zip");
        File.WriteAllBytes(_path, s_zip);
    }

    [TestCleanup]
    public void DeleteCopy() => File.Delete(_path);

    [TestMethod]
    public void Save_PutsTheWeightsInsideTheZip_NextToModelKey_WithTheirSha256()
    {
        using var zip = new ZipArchive(new MemoryStream(s_zip), ZipArchiveMode.Read);
        var names = zip.Entries.Select(e => Normalize(e.FullName)).ToList();
        string weights = WeightsEntry();
        CollectionAssert.Contains(names, weights, string.Join(", ", names));
        CollectionAssert.Contains(names, ModelKeyEntry(), string.Join(", ", names));

        var bytes = Read(weights);
        long length = BinaryPrimitives.ReadInt64LittleEndian(bytes);
        Assert.AreEqual(8 + length + 32, bytes.Length, "length prefix, state dict, SHA-256");
        CollectionAssert.AreEqual(SHA256.HashData(bytes.AsSpan(8, (int)length)), bytes[^32..]);
        // The state dict holds every parameter and buffer, as float32.
        long values = LeNetBnNetwork.CountStateValues(s_model.Architecture);
        Assert.IsGreaterThan(values * 4, length);
        Assert.IsLessThan(values * 4 + 4096, length, "names and shapes take a few hundred bytes");
    }

    [TestMethod]
    public void CountStateValues_MatchesTheBuiltNetworks()
    {
        foreach (var bn in Enum.GetValues<BatchNormKind>())
        {
            var architecture = new LeNetBnArchitecture { Input = new ImageShape(3, 32, 20), NumClasses = 7, BatchNorm = bn };
            using var network = new LeNetBnNetwork(architecture);
            long built = network.state_dict().Values.Sum(t => t.numel());
            Assert.AreEqual(built, LeNetBnNetwork.CountStateValues(architecture), bn.ToString());
        }
    }

    [TestMethod]
    public void TheUndamagedCopy_LoadsAndScoresToTheBit()
    {
        using var loaded = LoadLeNetBn();
        AssertSameScores(loaded);
    }

    /// <summary>Inside a chain, between ML.NET's own transformers, each element keeps its own directory in the zip.</summary>
    [TestMethod]
    public void InsideAChainOfMlNetTransformers_EachElementRoundTrips()
    {
        var train = TrainerTestData.Train(s_mlContext, 5);
        var copy = s_mlContext.Transforms.CopyColumns("Pixels", "Features").Fit(train);
        var names = s_mlContext.Transforms.Conversion.MapKeyToValue("PredictedClass", "PredictedLabel").Fit(s_model.Transform(copy.Transform(train)));
        var chain = new TransformerChain<ITransformer>(copy, s_model, names);
        s_mlContext.Model.Save(chain, train.Schema, _path);

        var loaded = new MLContext(seed: 2).Model.Load(_path, out var inputSchema);
        var elements = ((IEnumerable<ITransformer>)loaded).ToList();
        Assert.HasCount(3, elements);
        Assert.IsInstanceOfType<LeNetBnTransformer>(elements[1]);
        CollectionAssert.AreEqual(
            chain.GetOutputSchema(train.Schema).Select(c => (c.Name, c.Type)).ToList(),
            loaded.GetOutputSchema(inputSchema).Select(c => (c.Name, c.Type)).ToList());
        var expected = s_mlContext.Data.CreateEnumerable<ChainOutput>(chain.Transform(s_test), reuseRowObject: false).ToList();
        var actual = s_mlContext.Data.CreateEnumerable<ChainOutput>(loaded.Transform(s_test), reuseRowObject: false).ToList();
        Assert.HasCount(expected.Count, actual);
        for (int i = 0; i < expected.Count; i++)
        {
            CollectionAssert.AreEqual(expected[i].Score, actual[i].Score, $"row {i}");
            Assert.AreEqual(expected[i].PredictedClass, actual[i].PredictedClass);
            CollectionAssert.AreEqual(expected[i].Pixels, actual[i].Pixels, "the copy before LeNet-BN travels too");
        }
        using var zip = ZipFile.OpenRead(_path);
        var weights = zip.Entries.Select(e => Normalize(e.FullName)).Where(n => n.EndsWith("/" + LeNetBnTransformer.WeightsStreamName, StringComparison.Ordinal)).ToList();
        Assert.HasCount(1, weights, "the weights sit in the LeNet-BN element's own directory");
        ((IDisposable)loaded).Dispose();
        Assert.ThrowsExactly<ObjectDisposedException>(() => ((LeNetBnTransformer)elements[1]).GetBatchNormStates(), "disposing the chain disposes its LeNet-BN");
    }

    [TestMethod]
    public void TruncatedZip_IsAClearError()
    {
        File.WriteAllBytes(_path, s_zip[..(s_zip.Length / 2)]);
        // ML.NET's own check, before any loader runs.
        var ex = LoadFails();
        Assert.IsInstanceOfType<FormatException>(ex);
        StringAssert.Contains(Messages(ex), "Failed to open a zip archive | InvalidDataException: End of Central Directory record could not be found");
    }

    [TestMethod]
    public void AFileThatIsNotAZip_IsAClearError()
    {
        File.WriteAllText(_path, "Label,Pixel0,Pixel1\n3,0,0\n");
        var ex = LoadFails();
        Assert.IsInstanceOfType<FormatException>(ex);
        StringAssert.Contains(Messages(ex), "Failed to open a zip archive");
    }

    [TestMethod]
    public void AZipThatIsNotAnMlNetModel_IsAClearError()
    {
        File.Delete(_path);
        using (var zip = ZipFile.Open(_path, ZipArchiveMode.Create))
        {
            using var writer = new StreamWriter(zip.CreateEntry("readme.txt").Open());
            writer.Write("holiday photos");
        }
        // ML.NET looks for its own entries, then for its older layout, and names the entry it missed.
        var ex = LoadFails();
        StringAssert.Contains(Messages(ex), "Repository doesn't contain entry DataLoaderModel/Model.key");
    }

    [TestMethod]
    public void MissingWeightsEntry_IsNamed()
    {
        Edit(WeightsEntry(), _ => null);
        var ex = LoadFailsWithInvalidData();
        StringAssert.Contains(ex.Message, $"no '{WeightsEntry()}' entry next to '{ModelKeyEntry()}'");
        StringAssert.Contains(ex.Message, "weights are missing");
    }

    [TestMethod]
    public void EmptyWeightsEntry_IsNamed()
    {
        Edit(WeightsEntry(), _ => []);
        var ex = LoadFailsWithInvalidData();
        StringAssert.Contains(ex.Message, $"weights entry '{WeightsEntry()}'");
        StringAssert.Contains(ex.Message, "empty");
    }

    [TestMethod]
    public void TruncatedWeightsEntry_IsNamed()
    {
        Edit(WeightsEntry(), bytes => bytes[..(bytes.Length / 2)]);
        var ex = LoadFailsWithInvalidData();
        StringAssert.Contains(ex.Message, $"weights entry '{WeightsEntry()}'");
        StringAssert.Contains(ex.Message, "truncated");
    }

    [TestMethod]
    public void WeightsEntryWithoutItsHash_IsTruncated()
    {
        Edit(WeightsEntry(), bytes => bytes[..^32]);
        StringAssert.Contains(LoadFailsWithInvalidData().Message, "the SHA-256 of the weights is missing");
    }

    [TestMethod]
    public void GarbageWeightsEntry_IsNamed()
    {
        Edit(WeightsEntry(), bytes => RandomBytes(bytes.Length, seed: 3));
        var ex = LoadFailsWithInvalidData();
        StringAssert.Contains(ex.Message, $"weights entry '{WeightsEntry()}'");
        StringAssert.Contains(ex.Message, "outside 1 to");
    }

    [TestMethod]
    public void DamagedWeightBytes_FailTheHashCheck()
    {
        Edit(WeightsEntry(), bytes =>
        {
            bytes[bytes.Length / 2] ^= 0x40; // one bit in the middle of the tensor data
            return bytes;
        });
        var ex = LoadFailsWithInvalidData();
        StringAssert.Contains(ex.Message, $"weights entry '{WeightsEntry()}'");
        StringAssert.Contains(ex.Message, "do not match their SHA-256");
    }

    [TestMethod]
    public void BytesAfterTheWeights_AreRefused()
    {
        Edit(WeightsEntry(), bytes => [.. bytes, 0, 0, 0, 0]);
        StringAssert.Contains(LoadFailsWithInvalidData().Message, "4 unexpected bytes follow the weights");
    }

    /// <summary>Garbage that passes the length and hash checks reaches TorchSharp's loader, whose error is wrapped.</summary>
    [TestMethod]
    public void RehashedGarbage_TorchSharpsErrorIsWrappedWithTheEntryName()
    {
        Edit(WeightsEntry(), bytes => Weights(RandomBytes((int)BinaryPrimitives.ReadInt64LittleEndian(bytes), seed: 4)));
        var ex = LoadFailsWithInvalidData();
        StringAssert.Contains(ex.Message, $"weights entry '{WeightsEntry()}'");
        StringAssert.Contains(ex.Message, "TorchSharp could not read them into a 1×28×28 → 10-class Scratch-BN LeNet");
        Assert.IsNotNull(ex.InnerException, "TorchSharp's own exception is kept as the inner one");
    }

    [TestMethod]
    public void WeightsOfAnotherArchitecture_AreRefused()
    {
        using var other = new LeNetBnNetwork(new LeNetBnArchitecture { NumClasses = 3 });
        using var buffer = new MemoryStream();
        using (var writer = new BinaryWriter(buffer, System.Text.Encoding.UTF8, leaveOpen: true))
            ModelWeights.Write(writer, other);
        Edit(WeightsEntry(), _ => buffer.ToArray());
        var ex = LoadFailsWithInvalidData();
        StringAssert.Contains(ex.Message, "TorchSharp could not read them");
        StringAssert.Contains(ex.Message, "shape");
    }

    [TestMethod]
    public void NonFiniteWeights_AreRefused()
    {
        Edit(WeightsEntry(), bytes =>
        {
            var stateDict = bytes[8..^32];
            // The last value of the state dict: TorchSharp writes the buffers after the parameters, bn4's last.
            BinaryPrimitives.WriteSingleLittleEndian(stateDict.AsSpan(stateDict.Length - 4), float.NaN);
            return Weights(stateDict);
        });
        var ex = LoadFailsWithInvalidData();
        StringAssert.Contains(ex.Message, "'layers.bn4.moving_var' holds NaN or Infinity, which training never produces");
    }

    [TestMethod]
    public void ForeignModelSignature_IsRefused()
    {
        Edit(ModelKeyEntry(), bytes => Patch(bytes, HeaderModelSignature, "FOREIGN!"u8.ToArray()));
        var ex = LoadFailsWithInvalidData();
        StringAssert.Contains(ex.Message, $"'{ModelKeyEntry()}' names the LeNet-BN loader but is not a LeNet-BN model");
        StringAssert.Contains(ex.Message, "'FOREIGN!', not 'LENETBNT'");
    }

    [TestMethod]
    public void UnknownLoaderSignature_IsAClearError()
    {
        Edit(ModelKeyEntry(), bytes => Patch(bytes, HeaderLoaderSignature, "NoSuchLoaderAnywhere\0\0\0\0"u8.ToArray()));
        // No loader of that name: ML.NET names the directory whose Model.key it could not load.
        var ex = LoadFails();
        Assert.IsInstanceOfType<FormatException>(ex);
        StringAssert.Contains(ex.Message, "Couldn't load model: 'TransformerChain'");
    }

    [TestMethod]
    public void ANewerFormat_IsRefused_NamingBothVersions()
    {
        Edit(ModelKeyEntry(), bytes => SetVersions(bytes, written: 0x00020001, readable: 0x00020001));
        var ex = LoadFailsWithInvalidData();
        StringAssert.Contains(ex.Message, "is too new: it was saved in model format 0x00020001, which needs a reader of format 0x00020001 or later");
        StringAssert.Contains(ex.Message, $"reads LeNet-BN model format 0x{CurrentFormat:X8}");
        StringAssert.Contains(ex.Message, "Update the MlNetBn packages");
    }

    [TestMethod]
    public void AnOlderFormat_IsRefused_NamingBothVersions()
    {
        Edit(ModelKeyEntry(), bytes => SetVersions(bytes, written: 0x00010000, readable: 0x00010000));
        var ex = LoadFailsWithInvalidData();
        StringAssert.Contains(ex.Message, "is too old: it was saved in model format 0x00010000");
        StringAssert.Contains(ex.Message, $"reads LeNet-BN model format 0x{CurrentFormat:X8}");
    }

    [TestMethod]
    public void AHeaderReadableOnlyByALaterFormatThanItWasWrittenIn_IsCorrupt()
    {
        Edit(ModelKeyEntry(), bytes => SetVersions(bytes, written: CurrentFormat, readable: CurrentFormat + 1));
        StringAssert.Contains(LoadFailsWithInvalidData().Message, $"is corrupt: its header says format 0x{CurrentFormat:X8} is readable from format 0x{CurrentFormat + 1:X8}");
    }

    /// <summary>ML.NET's contract: a newer writer that declares the current format still readable is read.</summary>
    [TestMethod]
    public void ANewerFormatThatDeclaresItselfReadable_Loads()
    {
        Edit(ModelKeyEntry(), bytes => SetVersions(SetBodyVersion(bytes, CurrentFormat + 1), written: CurrentFormat + 1, readable: CurrentFormat));
        using var loaded = LoadLeNetBn();
        AssertSameScores(loaded);
    }

    [TestMethod]
    public void ABodyThatDoesNotMatchItsHeader_IsCorrupt()
    {
        Edit(ModelKeyEntry(), bytes => SetBodyVersion(bytes, CurrentFormat + 1));
        var ex = LoadFailsWithInvalidData();
        StringAssert.Contains(ex.Message, $"model entry '{ModelKeyEntry()}' of the model file is corrupt: its body is of format 0x{CurrentFormat + 1:X8} but its header says 0x{CurrentFormat:X8}");
    }

    /// <summary>
    /// Any flipped byte of the fields fails the hash: without it, the activation or pooling byte turned Sigmoid into
    /// ReLU or average into max pooling (the weights' shapes do not change) and the model loaded, predicting otherwise.
    /// </summary>
    [TestMethod]
    [DataRow(9 + 16 + 1, DisplayName = "activation")]
    [DataRow(9 + 16 + 2, DisplayName = "pooling")]
    [DataRow(9 + 16 + 6 + 8 + 3, DisplayName = "BN epsilon")]
    [DataRow(-1, DisplayName = "last byte of the class names")]
    public void AFlippedByteInTheFields_FailsTheHashCheck(int offset)
    {
        Edit(ModelKeyEntry(), bytes =>
        {
            int length = BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(Body + 4));
            bytes[Fields + (offset >= 0 ? offset : length + offset)] ^= 0x01;
            return bytes;
        });
        StringAssert.Contains(LoadFailsWithInvalidData().Message,
            $"The LeNet-BN model entry '{ModelKeyEntry()}' of the model file is corrupt: its fields do not match their SHA-256: the file was damaged or altered after it was saved.");
    }

    [TestMethod]
    public void AFieldsLengthOutOfRange_IsCorrupt()
    {
        Edit(ModelKeyEntry(), bytes => Patch(bytes, Body + 4, BitConverter.GetBytes(int.MaxValue)));
        StringAssert.Contains(LoadFailsWithInvalidData().Message, $"'{ModelKeyEntry()}' of the model file is corrupt: it declares 2,147,483,647 bytes of fields, outside 1 to 16,777,216.");
    }

    /// <summary>
    /// Fields that pass the hash (as a buggy writer would make them) are still validated one by one, so a bad value
    /// fails at Model.Load naming the entry, not at the first Transform.
    /// </summary>
    [TestMethod]
    [DataRow(BatchNormKindField, new byte[] { 9 }, "unknown BatchNormKind value 9", DisplayName = "BN kind")]
    [DataRow(BatchNormKindField + 1, new byte[] { 7 }, "unknown ActivationKind value 7", DisplayName = "activation")]
    [DataRow(BatchNormKindField + 4, new byte[] { 5 }, "Unknown moving-variance kind", DisplayName = "moving variance")]
    [DataRow(BatchNormKindField + 5, new byte[] { 2 }, "invalid BN-folded flag 2 (0 or 1 expected)", DisplayName = "folded flag")]
    [DataRow(BatchNormKindField + 6, new byte[] { 0, 0, 0, 0, 0, 0, 0, 0x40 }, "BatchNorm momentum must be in [0, 1]", DisplayName = "BN momentum 2")]
    [DataRow(BatchNormKindField + 14, new byte[] { 0, 0, 0, 0, 0, 0, 0xF8, 0xFF }, "BatchNorm epsilon must be a positive, finite number", DisplayName = "BN epsilon NaN")]
    [DataRow(BatchNormKindField + 22, new byte[] { 0, 0, 0, 0 }, "prediction batch size 0 (1 to 65,536 expected)", DisplayName = "prediction batch size")]
    [DataRow(21, new byte[] { 1, 0, 0, 0 }, "class count 1 (at least 2 expected)", DisplayName = "class count")]
    [DataRow(BatchNormKindField + 26, new byte[] { 4 }, "label key value 1 'T-shirt/top' is not a valid Int32", DisplayName = "key value type")]
    public void AnInvalidFieldUnderAValidHash_IsCorrupt(int offset, byte[] value, string why)
    {
        EditFields(fields => Patch(fields, offset, value));
        var ex = LoadFailsWithInvalidData();
        StringAssert.Contains(ex.Message, $"The LeNet-BN model entry '{ModelKeyEntry()}' of the model file is corrupt: ");
        StringAssert.Contains(ex.Message, why);
    }

    [TestMethod]
    public void BytesAfterTheFields_AreRefused()
    {
        // One more byte at the end, and the entry's size unchanged (ML.NET checks that against its header): the
        // last class name, "Ankle boot", loses its last letter.
        EditFields(fields =>
        {
            Assert.AreEqual("\nAnkle boot", System.Text.Encoding.UTF8.GetString(fields.AsSpan(fields.Length - 11)));
            return [.. fields[..^11], 9, .. "Ankle boo"u8.ToArray(), 7];
        });
        StringAssert.Contains(LoadFailsWithInvalidData().Message, "1 unexpected bytes follow its fields");
    }

    /// <summary>Sizes read from the file are bounded before libtorch is asked to allocate them.</summary>
    [TestMethod]
    public void AnAbsurdImageSizeInTheBody_IsRefusedBeforeAllocating()
    {
        // Height and width 30,000: fc1 alone would take 120 × 16 × 7,497² weights (430 GB).
        EditFields(fields =>
        {
            BinaryPrimitives.WriteInt32LittleEndian(fields.AsSpan(9 + 4), 30_000);
            BinaryPrimitives.WriteInt32LittleEndian(fields.AsSpan(9 + 8), 30_000);
            return fields;
        });
        var ex = LoadFailsWithInvalidData();
        StringAssert.Contains(ex.Message, "its architecture (1×30000×30000, 10 classes) would need 107,");
        StringAssert.Contains(ex.Message, "weights, more than a model file holds");
    }

    [TestMethod]
    public void ATruncatedModelKey_IsAClearError()
    {
        Edit(ModelKeyEntry(), bytes => bytes[..(Body + 10)]);
        // ML.NET checks the entry's length against its header before it calls any loader; its FormatException
        // carries no message of its own ("One of the identified items was in an invalid format").
        var ex = LoadFails();
        Assert.IsInstanceOfType<FormatException>(ex);
    }

    public TestContext TestContext { get; set; } = null!;

    // --- Helpers -------------------------------------------------------------------------------------------

    /// <summary>Where the transformer's entries are in the zip ML.NET writes for a bare transformer.</summary>
    private static string ModelDirectory()
    {
        using var zip = new ZipArchive(new MemoryStream(s_zip), ZipArchiveMode.Read);
        var weights = zip.Entries.Select(e => Normalize(e.FullName)).Single(n => n.EndsWith("/" + LeNetBnTransformer.WeightsStreamName, StringComparison.Ordinal));
        return weights[..weights.LastIndexOf('/')];
    }

    private static string WeightsEntry() => $"{ModelDirectory()}/{LeNetBnTransformer.WeightsStreamName}";

    private static string ModelKeyEntry() => $"{ModelDirectory()}/{LeNetBnTransformer.ModelEntryName}";

    private static string Normalize(string name) => name.Replace('\\', '/');

    private byte[] Read(string entryName)
    {
        using var zip = ZipFile.OpenRead(_path);
        using var stream = zip.Entries.Single(e => Normalize(e.FullName) == entryName).Open();
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    }

    /// <summary>Replaces (or with null, deletes) one entry of the copy, keeping its name as ML.NET wrote it.</summary>
    private void Edit(string entryName, Func<byte[], byte[]?> change)
    {
        var bytes = Read(entryName);
        using var zip = ZipFile.Open(_path, ZipArchiveMode.Update);
        var entry = zip.Entries.Single(e => Normalize(e.FullName) == entryName);
        string rawName = entry.FullName;
        entry.Delete();
        var changed = change(bytes);
        if (changed is null) return;
        using var stream = zip.CreateEntry(rawName).Open();
        stream.Write(changed);
    }

    private static byte[] Patch(byte[] bytes, int offset, byte[] values)
    {
        values.CopyTo(bytes, offset);
        return bytes;
    }

    private static byte[] SetVersions(byte[] modelKey, uint written, uint readable)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(modelKey.AsSpan(HeaderVerWritten), written);
        BinaryPrimitives.WriteUInt32LittleEndian(modelKey.AsSpan(HeaderVerReadable), readable);
        return modelKey;
    }

    /// <summary>Rewrites the model entry's fields and their byte count and SHA-256, as a writer would.</summary>
    private void EditFields(Func<byte[], byte[]> change) => Edit(ModelKeyEntry(), bytes =>
    {
        int length = BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(Body + 4));
        var fields = change(bytes[Fields..(Fields + length)]);
        return [.. bytes[..(Body + 4)], .. BitConverter.GetBytes(fields.Length), .. fields, .. SHA256.HashData(fields), .. bytes[(Fields + length + 32)..]];
    });

    private static byte[] SetBodyVersion(byte[] modelKey, uint version)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(modelKey.AsSpan(Body), version);
        return modelKey;
    }

    /// <summary>A weights entry of the current format around <paramref name="stateDict"/>.</summary>
    private static byte[] Weights(byte[] stateDict) =>
        [.. BitConverter.GetBytes((long)stateDict.Length), .. stateDict, .. SHA256.HashData(stateDict)];

    private static byte[] RandomBytes(int count, int seed)
    {
        var bytes = new byte[count];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    private LeNetBnTransformer LoadLeNetBn()
    {
        var loaded = new MLContext(seed: 2).Model.Load(_path, out _);
        Assert.IsInstanceOfType<LeNetBnTransformer>(loaded);
        return (LeNetBnTransformer)loaded;
    }

    private static void AssertSameScores(LeNetBnTransformer loaded)
    {
        var actual = Scores(loaded);
        for (int i = 0; i < s_expectedScores.Count; i++)
            CollectionAssert.AreEqual(s_expectedScores[i], actual[i], $"row {i}");
    }

    private static List<float[]> Scores(ITransformer model) =>
        model.Transform(s_test).GetColumn<VBuffer<float>>("Score").Select(v => v.DenseValues().ToArray()).ToList();

    /// <summary>Model.Load fails with a managed exception (any type: ML.NET wraps what loaders throw).</summary>
    private Exception LoadFails()
    {
        var ex = Assert.Throws<Exception>(() => new MLContext(seed: 2).Model.Load(_path, out _));
        Assert.IsFalse(Chain(ex).Any(e => e is AccessViolationException or SEHException or NullReferenceException or IndexOutOfRangeException), ex.ToString());
        TestContext.WriteLine(Messages(ex));
        return ex;
    }

    /// <summary>Model.Load fails, and our InvalidDataException is in the chain (ML.NET wraps it in a TargetInvocationException).</summary>
    private InvalidDataException LoadFailsWithInvalidData()
    {
        var ex = LoadFails();
        var ours = Chain(ex).OfType<InvalidDataException>().FirstOrDefault();
        Assert.IsNotNull(ours, "Expected an InvalidDataException in: " + ex);
        return ours;
    }

    private sealed class ChainOutput
    {
        public float[] Score { get; set; } = [];

        public string PredictedClass { get; set; } = "";

        [VectorType(784)]
        public float[] Pixels { get; set; } = [];
    }

    private static IEnumerable<Exception> Chain(Exception? ex)
    {
        for (; ex is not null; ex = ex.InnerException)
            yield return ex;
    }

    private static string Messages(Exception ex) => string.Join(" | ", Chain(ex).Select(e => $"{e.GetType().Name}: {e.Message}"));
}
