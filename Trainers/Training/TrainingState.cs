using System.Security.Cryptography;
using System.Text;

namespace MlNetBn.Training;

/// <summary>Why a Fit ended before its last epoch.</summary>
internal enum TrainingStop : byte
{
    None,
    EarlyStopping,
    Callback,
}

/// <summary>
/// Everything besides the network's weights that a checkpoint needs for the rest of a Fit to run exactly as if it
/// had never stopped: the settings and data it belongs to, how far it got, the optimizer's momentum buffers, the
/// shuffling RNG's position, the best epoch and its weights, and the history.
/// </summary>
/// <remarks>
/// Binary format (the checkpoint zip's <see cref="EntryName"/> entry): the 8 ASCII bytes <c>MLNBTRST</c>, uint32
/// format version, int32 byte count of the fields, the fields, their SHA-256. The fields, in order: string options
/// (one <c>Name=value</c> line per setting), 32-byte data fingerprint, int32 training rows, int32 validation rows,
/// int32 seed, int32 epochs done, int32 steps done, 32-byte SHA-256 of the shuffled row order, byte stop reason,
/// int32 best epoch (0: none), double best value, int32 length + best weights (<see cref="Transform.ModelWeights"/>'s
/// format; length 0: none), int32 length + TorchSharp's optimizer state dict, int32 history count, then per epoch:
/// int32 epoch, int32 epochs, double loss, double train accuracy, byte has-validation + double validation loss +
/// double validation accuracy, double learning rate, double examples/s, int64 elapsed ticks.
/// </remarks>
internal sealed class TrainingState
{
    /// <summary>The entry that holds the state inside a checkpoint zip, beside ML.NET's model entries.</summary>
    public const string EntryName = "MlNetBn/TrainingState.bin";

    private const uint FormatVersion = 1;
    private static ReadOnlySpan<byte> Magic => "MLNBTRST"u8;
    private const int MaxFieldBytes = 1 << 30;

    public required string Options { get; init; }
    public required byte[] DataFingerprint { get; init; }
    public required int TrainingRows { get; init; }
    public required int ValidationRows { get; init; }
    public required int Seed { get; init; }
    public required int EpochsDone { get; init; }
    public required int StepsDone { get; init; }
    public required byte[] OrderHash { get; init; }
    public required TrainingStop Stop { get; init; }
    public required int BestEpoch { get; init; }
    public required double BestValue { get; init; }
    public required byte[] BestWeights { get; init; }
    public required byte[] OptimizerState { get; init; }
    public required IReadOnlyList<LeNetBnEpochMetrics> History { get; init; }

    public void Write(Stream stream)
    {
        using var fields = new MemoryStream();
        using (var w = new BinaryWriter(fields, Encoding.UTF8, leaveOpen: true))
        {
            w.Write(Options);
            w.Write(DataFingerprint);
            w.Write(TrainingRows); w.Write(ValidationRows);
            w.Write(Seed); w.Write(EpochsDone); w.Write(StepsDone);
            w.Write(OrderHash);
            w.Write((byte)Stop);
            w.Write(BestEpoch); w.Write(BestValue);
            w.Write(BestWeights.Length); w.Write(BestWeights);
            w.Write(OptimizerState.Length); w.Write(OptimizerState);
            w.Write(History.Count);
            foreach (var m in History)
            {
                w.Write(m.Epoch); w.Write(m.Epochs);
                w.Write(m.Loss); w.Write(m.TrainAccuracy);
                w.Write(m.ValidationLoss.HasValue ? (byte)1 : (byte)0);
                w.Write(m.ValidationLoss ?? 0); w.Write(m.ValidationAccuracy ?? 0);
                w.Write(m.LearningRate); w.Write(m.ExamplesPerSecond); w.Write(m.Elapsed.Ticks);
            }
        }
        var bytes = fields.GetBuffer().AsSpan(0, (int)fields.Length);
        using var writer = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
        writer.Write(Magic);
        writer.Write(FormatVersion);
        writer.Write(bytes.Length);
        writer.Write(bytes);
        writer.Write(SHA256.HashData(bytes));
    }

    /// <summary>Reads and checks a state; any damage is an <see cref="InvalidDataException"/> saying what.</summary>
    public static TrainingState Read(Stream stream)
    {
        try
        {
            using var reader = new BinaryReader(stream, Encoding.UTF8, leaveOpen: true);
            if (!reader.ReadBytes(Magic.Length).AsSpan().SequenceEqual(Magic))
                throw new InvalidDataException("it does not start with MLNBTRST");
            uint version = reader.ReadUInt32();
            if (version != FormatVersion)
                throw new InvalidDataException($"its format is {version}, this MlNetBn reads {FormatVersion}");
            int length = reader.ReadInt32();
            if (length is < 1 or > MaxFieldBytes)
                throw new InvalidDataException($"it declares {length:N0} bytes of fields");
            var fields = reader.ReadBytes(length);
            var hash = reader.ReadBytes(32);
            if (fields.Length != length || hash.Length != 32)
                throw new EndOfStreamException("it is truncated");
            if (!CryptographicOperations.FixedTimeEquals(hash, SHA256.HashData(fields)))
                throw new InvalidDataException("its fields do not match their SHA-256");

            using var r = new BinaryReader(new MemoryStream(fields, writable: false), Encoding.UTF8);
            string options = r.ReadString();
            var fingerprint = ReadExactly(r, 32);
            int trainingRows = r.ReadInt32(), validationRows = r.ReadInt32();
            int seed = r.ReadInt32(), epochsDone = r.ReadInt32(), stepsDone = r.ReadInt32();
            var orderHash = ReadExactly(r, 32);
            var stop = (TrainingStop)r.ReadByte();
            if (!Enum.IsDefined(stop))
                throw new InvalidDataException($"unknown stop reason {(byte)stop}");
            int bestEpoch = r.ReadInt32();
            double bestValue = r.ReadDouble();
            var bestWeights = ReadExactly(r, r.ReadInt32());
            var optimizer = ReadExactly(r, r.ReadInt32());
            int count = r.ReadInt32();
            if (epochsDone < 1 || count != epochsDone || bestEpoch < 0 || bestEpoch > epochsDone || (bestEpoch > 0) != (bestWeights.Length > 0))
                throw new InvalidDataException($"{epochsDone} epochs done, {count} in the history and best epoch {bestEpoch} do not fit together");
            var history = new List<LeNetBnEpochMetrics>(count);
            for (int i = 0; i < count; i++)
            {
                int epoch = r.ReadInt32(), epochs = r.ReadInt32();
                double loss = r.ReadDouble(), trainAccuracy = r.ReadDouble();
                bool validated = r.ReadByte() == 1;
                double validationLoss = r.ReadDouble(), validationAccuracy = r.ReadDouble();
                double rate = r.ReadDouble(), speed = r.ReadDouble();
                long ticks = r.ReadInt64();
                if (epoch != i + 1)
                    throw new InvalidDataException($"history entry {i + 1} says epoch {epoch}");
                history.Add(new LeNetBnEpochMetrics(epoch, epochs, loss, trainAccuracy,
                    validated ? validationLoss : null, validated ? validationAccuracy : null, rate, speed, TimeSpan.FromTicks(ticks)));
            }
            if (r.BaseStream.Position != r.BaseStream.Length)
                throw new InvalidDataException("unexpected bytes follow its fields");
            return new TrainingState
            {
                Options = options, DataFingerprint = fingerprint, TrainingRows = trainingRows, ValidationRows = validationRows,
                Seed = seed, EpochsDone = epochsDone, StepsDone = stepsDone, OrderHash = orderHash, Stop = stop,
                BestEpoch = bestEpoch, BestValue = bestValue, BestWeights = bestWeights, OptimizerState = optimizer, History = history,
            };
        }
        catch (Exception e) when (e is EndOfStreamException or ArgumentException or OverflowException or FormatException)
        {
            throw new InvalidDataException($"its training state is damaged: {e.Message}", e);
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"its training state is damaged: {e.Message}", e);
        }
    }

    private static byte[] ReadExactly(BinaryReader r, int count)
    {
        if (count < 0 || count > r.BaseStream.Length - r.BaseStream.Position)
            throw new EndOfStreamException($"a length of {count:N0} bytes runs past the end");
        return r.ReadBytes(count);
    }

    /// <summary>SHA-256 of a row order, to check that replaying the shuffles gave the same permutation.</summary>
    public static byte[] HashOrder(long[] order) => SHA256.HashData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(order.AsSpan()));
}
