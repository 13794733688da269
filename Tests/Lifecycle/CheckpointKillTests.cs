using System.Diagnostics;
using System.Reflection;
using Microsoft.ML;
using MlNetBn.Training;
using static MlNetBn.Tests.Lifecycle.LifecycleTestData;

namespace MlNetBn.Tests.Lifecycle;

/// <summary>
/// Crash and resume, for real: Tests/TrainingHost trains 4 epochs with a checkpoint after each (keeping 2) in a
/// process of its own, is killed with SIGKILL at a chosen point, and a second process resumes from the folder. The
/// resumed run's weights, BN statistics and per-epoch figures must equal an uninterrupted run's bit for bit.
/// </summary>
[TestClass]
public sealed class CheckpointKillTests
{
    private static string s_straight = null!;

    private static string HostPath =>
        typeof(CheckpointKillTests).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == "MlNetBn.Tests.TrainingHost").Value!;

    [ClassInitialize]
    public static void RunStraight(TestContext _)
    {
        s_straight = NewDirectory("kill-straight");
        var output = Run(Path.Combine(s_straight, "checkpoints"), Path.Combine(s_straight, "out"));
        Assert.AreEqual("done", output, "the uninterrupted run");
    }

    [ClassCleanup]
    public static void Cleanup() => Directory.Delete(s_straight, recursive: true);

    /// <param name="pause">Where the first process is killed.</param>
    /// <param name="newestGood">The checkpoint epoch the resume must start from (0: none, from scratch).</param>
    /// <param name="temporaryLeft">Whether the kill left a half- or fully-written temporary file behind.</param>
    [TestMethod]
    [DataRow("--pause-in-epoch 1", 0, false, DisplayName = "in epoch 1, before any checkpoint")]
    [DataRow("--pause-in-epoch 3", 2, false, DisplayName = "in the middle of epoch 3")]
    [DataRow("--pause-at-checkpoint 3:HalfWritten", 2, true, DisplayName = "half-way through writing checkpoint 3")]
    [DataRow("--pause-at-checkpoint 3:Written", 2, true, DisplayName = "checkpoint 3 written, not yet renamed")]
    [DataRow("--pause-at-checkpoint 3:Renamed", 3, false, DisplayName = "checkpoint 3 renamed, older ones not yet pruned")]
    [DataRow("--pause-in-epoch 4", 3, false, DisplayName = "in the middle of epoch 4")]
    public void KilledAndResumed_EqualsTheUninterruptedRun_BitForBit(string pause, int newestGood, bool temporaryLeft)
    {
        string root = NewDirectory("kill");
        try
        {
            string checkpoints = Path.Combine(root, "checkpoints"), output = Path.Combine(root, "out");
            Assert.AreEqual("paused", Run(checkpoints, output, pause.Split(' ')), "the process to kill reached its pause point");

            Assert.AreEqual(newestGood == 0 ? null : Path.Combine(checkpoints, LeNetBnCheckpoint.FileName(newestGood)), LeNetBnCheckpoint.FindLatest(checkpoints));
            Assert.AreEqual(temporaryLeft, File.Exists(Path.Combine(checkpoints, LeNetBnCheckpoint.FileName(3) + ".tmp")));

            Assert.AreEqual("done", Run(checkpoints, output, "--resume"), "the resumed run");
            var mlContext = new MLContext();
            using var expected = Load(mlContext, Path.Combine(s_straight, "out", "model.zip"));
            using var actual = Load(mlContext, Path.Combine(output, "model.zip"));
            AssertSameWeights(expected, actual, $"killed {pause}, then resumed");
            CollectionAssert.AreEqual(File.ReadAllLines(Path.Combine(s_straight, "out", "history.txt")), File.ReadAllLines(Path.Combine(output, "history.txt")));
            CollectionAssert.AreEqual(new[] { LeNetBnCheckpoint.FileName(3), LeNetBnCheckpoint.FileName(4) },
                Directory.GetFiles(checkpoints).Select(Path.GetFileName).Order().ToArray(), "the last two checkpoints, and no temporary file, are left");
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    /// <summary>
    /// Runs the host until it prints "done" and exits, or prints "paused" (then kills it with SIGKILL); returns
    /// that word. Anything else fails the test with the host's output.
    /// </summary>
    private static string Run(string checkpoints, string output, params string[] extra)
    {
        var start = new ProcessStartInfo(Internals.InternalsTestEnvironment.DotnetHost)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in (string[])["exec", HostPath, TestData.FashionMnistSmallDirectory, checkpoints, output, .. extra])
            start.ArgumentList.Add(argument);
        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        var lines = new List<string>();
        var deadline = Stopwatch.StartNew();
        while (process.StandardOutput.ReadLine() is { } line)
        {
            lines.Add(line);
            if (line == "paused")
            {
                // Process.Kill sends SIGKILL on Linux and macOS: no handler, finalizer or flush runs.
                process.Kill(entireProcessTree: true);
                process.WaitForExit();
                return line;
            }
            if (deadline.Elapsed > TimeSpan.FromMinutes(3))
                break;
        }
        if (!process.WaitForExit(TimeSpan.FromMinutes(1)))
            process.Kill(entireProcessTree: true);
        if (process.ExitCode == 0 && lines.LastOrDefault() == "done")
            return "done";
        Assert.Fail($"TrainingHost exited with {process.ExitCode}:\n{string.Join('\n', lines)}\n{stderr.Result}");
        return "";
    }
}
