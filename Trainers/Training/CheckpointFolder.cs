using System.Globalization;
using System.IO.Compression;
using Microsoft.ML;
using Microsoft.ML.Runtime;
using MlNetBn.Modules;

namespace MlNetBn.Training;

/// <summary>Points in a checkpoint write where tests stop the process (see Tests/TrainingHost).</summary>
internal enum CheckpointWriteStage
{
    /// <summary>Half of the temporary file is on disk.</summary>
    HalfWritten,
    /// <summary>The temporary file is complete and flushed, not yet renamed.</summary>
    Written,
    /// <summary>Renamed into place; older checkpoints not yet pruned.</summary>
    Renamed,
}

/// <summary>
/// A folder of checkpoints, <c>checkpoint-epoch-NNNN.zip</c>: each an ordinary ML.NET model zip (what
/// <c>mlContext.Model.Save</c> writes for the LeNet-BN transformer alone) with one more entry,
/// <see cref="TrainingState.EntryName"/>. Written atomically: the whole file goes to <c>….zip.tmp</c>, is flushed to
/// disk and then renamed over its final name, so a crash at any moment leaves every earlier checkpoint intact and
/// never a half-written one under a checkpoint's name.
/// </summary>
internal sealed class CheckpointFolder(string directory)
{
    private const string Prefix = "checkpoint-epoch-";
    private const string Extension = ".zip";
    private const string TemporarySuffix = ".tmp";

    public string Directory { get; } = Path.GetFullPath(directory);

    /// <summary>A checkpoint read back whole: its training state and its model (owned by the caller).</summary>
    public sealed record Loaded(string Path, TrainingState State, LeNetBnTransformer Model);

    public static string FileName(int epoch) => $"{Prefix}{epoch.ToString("D4", CultureInfo.InvariantCulture)}{Extension}";

    /// <summary>The checkpoint files, newest epoch first.</summary>
    public IReadOnlyList<(int Epoch, string Path)> List()
    {
        if (!System.IO.Directory.Exists(Directory)) return [];
        var found = new List<(int, string)>();
        foreach (var path in System.IO.Directory.EnumerateFiles(Directory, $"{Prefix}*{Extension}"))
        {
            var digits = Path.GetFileNameWithoutExtension(path)[Prefix.Length..];
            if (int.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out int epoch) && epoch > 0)
                found.Add((epoch, path));
        }
        return [.. found.OrderByDescending(f => f.Item1)];
    }

    /// <summary>
    /// Writes the checkpoint of <paramref name="state"/>'s epoch: <paramref name="saveModel"/> writes the model zip,
    /// the state is added to it, then the file is written atomically. Keeps the <paramref name="keep"/> newest.
    /// </summary>
    public string Write(TrainingState state, Action<Stream> saveModel, int keep, Action<CheckpointWriteStage>? stageReached = null)
    {
        System.IO.Directory.CreateDirectory(Directory);
        using var zip = new MemoryStream();
        saveModel(zip);
        using (var archive = new ZipArchive(zip, ZipArchiveMode.Update, leaveOpen: true))
        using (var entry = archive.CreateEntry(TrainingState.EntryName, CompressionLevel.Fastest).Open())
            state.Write(entry);

        string path = Path.Combine(Directory, FileName(state.EpochsDone));
        string temporary = path + TemporarySuffix;
        var bytes = zip.GetBuffer().AsSpan(0, (int)zip.Length);
        using (var file = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            int half = bytes.Length / 2;
            file.Write(bytes[..half]);
            file.Flush(flushToDisk: true);
            stageReached?.Invoke(CheckpointWriteStage.HalfWritten);
            file.Write(bytes[half..]);
            file.Flush(flushToDisk: true);
        }
        stageReached?.Invoke(CheckpointWriteStage.Written);
        File.Move(temporary, path, overwrite: true);
        stageReached?.Invoke(CheckpointWriteStage.Renamed);

        foreach (var (_, old) in List().Skip(keep))
            File.Delete(old);
        // Left by a crash in the middle of an earlier write.
        foreach (var stale in System.IO.Directory.EnumerateFiles(Directory, $"{Prefix}*{Extension}{TemporarySuffix}"))
            File.Delete(stale);
        return path;
    }

    /// <summary>
    /// The newest checkpoint that reads back whole. Each damaged newer one is reported on
    /// <paramref name="channel"/> and skipped; none is ever loaded in part. Null when there is no good one.
    /// </summary>
    public Loaded? FindLatest(IChannel? channel)
    {
        foreach (var (_, path) in List())
        {
            try
            {
                return Load(path);
            }
            catch (InvalidDataException e)
            {
                channel?.Warning(MessageSensitivity.None, $"{e.Message} Skipping it for the checkpoint before it.");
            }
        }
        return null;
    }

    /// <summary>Reads a checkpoint: its training state (hash-checked) and its model (through ML.NET's loader).</summary>
    /// <exception cref="InvalidDataException">The file is damaged, naming it and what is wrong.</exception>
    public static Loaded Load(string path)
    {
        try
        {
            var bytes = File.ReadAllBytes(path);
            TrainingState state;
            using (var archive = new ZipArchive(new MemoryStream(bytes, writable: false), ZipArchiveMode.Read))
            {
                var entry = archive.GetEntry(TrainingState.EntryName)
                    ?? throw new InvalidDataException($"it has no '{TrainingState.EntryName}' entry");
                using var stream = entry.Open();
                state = TrainingState.Read(stream);
            }
            // ML.NET's public loader; a fresh context will do, the model does not depend on the one that loads it.
            ITransformer loaded;
            using (var stream = new MemoryStream(bytes, writable: false))
                loaded = new MLContext().Model.Load(stream, out _);
            if (loaded is not LeNetBnTransformer model)
            {
                (loaded as IDisposable)?.Dispose();
                throw new InvalidDataException($"its model is a {loaded.GetType().Name}, not a LeNet-BN transformer");
            }
            return new Loaded(path, state, model);
        }
        catch (Exception e) when (e is not OperationCanceledException and not OutOfMemoryException)
        {
            var inner = e is System.Reflection.TargetInvocationException { InnerException: { } cause } ? cause : e;
            throw new InvalidDataException($"The checkpoint '{path}' is damaged: {inner.Message.TrimEnd('.')}.", e);
        }
    }
}

/// <summary>What one Fit does with checkpoints: where, how often, and what identifies its run.</summary>
internal sealed class CheckpointPlan
{
    public required CheckpointFolder Folder { get; init; }
    public required int EveryEpochs { get; init; }
    public required int Keep { get; init; }

    /// <summary>The settings that decide the result, one <c>Name=value</c> line each.</summary>
    public required string Options { get; init; }

    /// <summary>SHA-256 of the training and validation rows (and of the initial model's weights when fine-tuning).</summary>
    public required byte[] DataFingerprint { get; init; }

    public required int TrainingRows { get; init; }
    public required int ValidationRows { get; init; }

    /// <summary>Writes the network as an ordinary model zip.</summary>
    public required Action<LeNetBnNetwork, Stream> SaveModel { get; init; }

    /// <summary>The checkpoint to continue from, if any (Fit disposes its model).</summary>
    public CheckpointFolder.Loaded? Resume { get; init; }

    public Action<CheckpointWriteStage>? StageReached { get; init; }
}
