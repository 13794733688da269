using System.Diagnostics;

namespace MlNetBn.Tests.Native;

/// <summary>
/// TorchNative's MLNETBN_TORCH_LIB route and its error messages, in child processes (native libraries
/// cannot be unloaded, so each scenario needs a fresh process). The child is Tests/NativeLoadProbe, an
/// application built without libtorch (as with -p:TorchBackend=external); libtorch-cpu-linux-x64's native
/// folder stands in for an installed PyTorch's torch/lib.
/// </summary>
[TestClass]
public sealed class TorchNativeProcessTests
{
    private const string Variable = "MLNETBN_TORCH_LIB";

    [TestMethod]
    public void TorchLibFolder_IsPreloaded_AndTorchSharpComputesWithIt()
    {
        RequireLinux();
        string folder = Path.TrimEndingDirectorySeparator(NativeTestPaths.LibTorchCpuNativeDirectory);

        ProbeResult result = RunProbe(NativeTestPaths.NativeLoadProbe, folder);

        Assert.AreEqual(0, result.ExitCode, result.Output);
        Assert.AreEqual("3", result.Value("SUM"), result.Output);
        Assert.AreEqual(Path.Combine(folder, "libtorch_cpu.so"), result.Value("LIBTORCH_CPU"), "libtorch mapped from the folder");
        string probeNative = Path.Combine(Path.GetDirectoryName(NativeTestPaths.NativeLoadProbe)!, "runtimes", "linux-x64", "native");
        Assert.AreEqual(Path.Combine(probeNative, "libLibTorchSharp.so"), result.Value("LIBTORCHSHARP"), "the application's patched LibTorchSharp");
        string description = result.Value("DESCRIPTION");
        Assert.Contains($"preloaded from {Variable} folder {folder}: libc10.so, libtorch_cpu.so, libtorch.so", description);
        Assert.DoesNotContain("Warning", description);
    }

    [TestMethod]
    public void FolderWithoutLibTorch_GivesAClearError()
    {
        RequireLinux();
        string folder = Directory.CreateTempSubdirectory("mlnetbn-not-torch-").FullName;
        try
        {
            ProbeResult result = RunProbe(NativeTestPaths.NativeLoadProbe, folder);

            Assert.AreEqual(3, result.ExitCode, result.Output);
            string error = result.Value("ERROR");
            Assert.Contains($"{Variable} points at '{folder}', which has no libc10.so", error);
            Assert.Contains("torch/lib", error);
        }
        finally
        {
            Directory.Delete(folder);
        }
    }

    [TestMethod]
    public void MissingFolder_GivesAClearError()
    {
        RequireLinux();
        string folder = Path.Combine(Path.GetTempPath(), "mlnetbn-no-such-folder", "torch", "lib");

        ProbeResult result = RunProbe(NativeTestPaths.NativeLoadProbe, folder);

        Assert.AreEqual(3, result.ExitCode, result.Output);
        Assert.Contains($"{Variable} points at '{folder}', which is not a folder", result.Value("ERROR"));
    }

    [TestMethod]
    public void ApplicationThatShipsLibTorch_IsRefusedBeforeLoading_InsteadOfAborting()
    {
        RequireLinux();
        // Measured without the check: TorchSharp loads the application's libtorch_cpu.so too, the second copy
        // registers its operators with the first one's c10, and the process aborts (SIGABRT, exit 134).
        string app = CopyProbe(native =>
            File.CreateSymbolicLink(Path.Combine(native, "libtorch_cpu.so"),
                Path.Combine(NativeTestPaths.LibTorchCpuNativeDirectory, "libtorch_cpu.so")));
        try
        {
            ProbeResult result = RunProbe(Path.Combine(app, "NativeLoadProbe.dll"),
                Path.TrimEndingDirectorySeparator(NativeTestPaths.LibTorchCpuNativeDirectory));

            Assert.AreEqual(3, result.ExitCode, result.Output);
            string error = result.Value("ERROR");
            Assert.Contains("but the application also ships libtorch", error);
            Assert.Contains("-p:TorchBackend=external", error);
        }
        finally
        {
            Directory.Delete(app, recursive: true);
        }
    }

    [TestMethod]
    public void UnpatchedLibTorchSharp_OnAnOldLibstdcxx_IsExplained()
    {
        RequireLinux();
        if (SystemLibstdcxxHas("GLIBCXX_3.4.32"))
        {
            Assert.Inconclusive("This system's libstdc++ has GLIBCXX_3.4.32: TorchSharp's original file loads here.");
        }

        string app = CopyProbe(native =>
            File.Copy(NativeTestPaths.OriginalLibTorchSharp, Path.Combine(native, "libLibTorchSharp.so"), overwrite: true));
        try
        {
            ProbeResult result = RunProbe(Path.Combine(app, "NativeLoadProbe.dll"),
                Path.TrimEndingDirectorySeparator(NativeTestPaths.LibTorchCpuNativeDirectory));

            Assert.AreEqual(3, result.ExitCode, result.Output);
            string error = result.Value("ERROR");
            Assert.Contains("GLIBCXX_3.4.32", error);
            Assert.Contains("patched copy", error);
            Assert.Contains("docs/LINUX.md", error);
            Assert.Contains("TorchSharp said:", error);
        }
        finally
        {
            Directory.Delete(app, recursive: true);
        }
    }

    private static void RequireLinux()
    {
        if (!OperatingSystem.IsLinux())
        {
            Assert.Inconclusive("Uses the linux-x64 libtorch-cpu package as the PyTorch folder.");
        }
    }

    /// <summary>Whether the libstdc++ this process mapped defines a symbol version (searches its version strings).</summary>
    private static bool SystemLibstdcxxHas(string version)
    {
        using var process = Process.GetCurrentProcess();
        string? path = process.Modules.Cast<ProcessModule>()
            .Select(m => m.FileName)
            .FirstOrDefault(f => Path.GetFileName(f)?.StartsWith("libstdc++.so", StringComparison.Ordinal) == true);
        if (path is null)
        {
            Assert.Inconclusive("libstdc++ is not mapped into the test process.");
        }

        byte[] needle = System.Text.Encoding.ASCII.GetBytes(version + "\0");
        return File.ReadAllBytes(path!).AsSpan().IndexOf(needle) >= 0;
    }

    /// <summary>
    /// Copies the probe's output (its own files and runtimes/linux-x64 only) to a temporary folder, and lets the
    /// test change its runtimes/linux-x64/native folder. Returns the copy's folder.
    /// </summary>
    private static string CopyProbe(Action<string> changeNativeFolder)
    {
        string source = Path.GetDirectoryName(NativeTestPaths.NativeLoadProbe)!;
        string target = Directory.CreateTempSubdirectory("mlnetbn-probe-").FullName;
        foreach (string file in Directory.GetFiles(source))
        {
            File.Copy(file, Path.Combine(target, Path.GetFileName(file)));
        }

        string native = Path.Combine(target, "runtimes", "linux-x64", "native");
        Directory.CreateDirectory(native);
        foreach (string file in Directory.GetFiles(Path.Combine(source, "runtimes", "linux-x64", "native")))
        {
            File.Copy(file, Path.Combine(native, Path.GetFileName(file)));
        }

        changeNativeFolder(native);
        return target;
    }

    private static ProbeResult RunProbe(string probeDll, string torchLib)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(probeDll);
        start.Environment[Variable] = torchLib;
        // When its first load fails TorchSharp copies ~0.5 GB of natives from the NuGet cache next to the app
        // (its "cpu/" fallback); with no cache to find, it gives up at once.
        start.Environment["NUGET_PACKAGES"] = Path.Combine(Path.GetTempPath(), "mlnetbn-no-nuget-cache");

        using Process process = Process.Start(start)!;
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        string stdout = process.StandardOutput.ReadToEnd();
        if (!process.WaitForExit(TimeSpan.FromSeconds(60)))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"{probeDll} did not finish within 60 s.\n{stdout}");
        }

        return new ProbeResult(process.ExitCode, stdout, stderr.Result);
    }

    private sealed record ProbeResult(int ExitCode, string Stdout, string Stderr)
    {
        public string Output => $"exit code {ExitCode}\nstdout:\n{Stdout}\nstderr:\n{Stderr}";

        /// <summary>The value of the probe's "KEY=value" line (values may span lines: ERROR is last).</summary>
        public string Value(string key)
        {
            int at = Stdout.IndexOf(key + "=", StringComparison.Ordinal);
            Assert.IsGreaterThanOrEqualTo(0, at, $"no {key}= line.\n{Output}");
            string rest = Stdout[(at + key.Length + 1)..];
            return key == "ERROR" ? rest.TrimEnd() : rest.Split('\n')[0].TrimEnd('\r');
        }
    }
}
