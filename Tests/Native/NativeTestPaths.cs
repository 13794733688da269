using System.Reflection;

namespace MlNetBn.Tests.Native;

/// <summary>
/// Paths the test project's build resolved (MlNetBn.Tests.csproj writes them into AssemblyMetadata), so the
/// tests use exactly the files this build used rather than guessing NuGet cache layouts.
/// </summary>
internal static class NativeTestPaths
{
    /// <summary>The patched copy that the build put into this test's own output.</summary>
    public static string PatchedLibTorchSharp =>
        Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "libLibTorchSharp.so");

    /// <summary>TorchSharp's original file in the NuGet cache (never modified).</summary>
    public static string OriginalLibTorchSharp => Metadata("MlNetBn.Tests.OriginalLibTorchSharp");

    /// <summary>libtorch-cpu-linux-x64's runtimes/linux-x64/native folder, standing in for a PyTorch torch/lib folder.</summary>
    public static string LibTorchCpuNativeDirectory => Metadata("MlNetBn.Tests.LibTorchCpuNativeDirectory");

    /// <summary>The NativeLoadProbe console app (a child process that loads TorchSharp through TorchNative).</summary>
    public static string NativeLoadProbe => Metadata("MlNetBn.Tests.NativeLoadProbe");

    /// <summary>TorchSharp's runtimes/win-x64/native/LibTorchSharp.dll in the NuGet folder (the version Directory.Packages.props pins).</summary>
    public static string WinX64LibTorchSharp => Metadata("MlNetBn.Tests.WinX64LibTorchSharp");

    /// <summary>libtorch-cpu-win-x64's runtimes/win-x64/native folder in the NuGet folder (downloaded by the test project whatever TorchBackend is).</summary>
    public static string LibTorchCpuWinX64NativeDirectory => Metadata("MlNetBn.Tests.LibTorchCpuWinX64NativeDirectory");

    /// <summary>"TorchSharp x, libtorch-cpu-win-x64 y": the pinned versions those two paths belong to.</summary>
    public static string WindowsNativeVersions => Metadata("MlNetBn.Tests.WindowsNativeVersions");

    private static string Metadata(string key)
    {
        string? value = typeof(NativeTestPaths).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
            .SingleOrDefault(a => a.Key == key)?.Value;
        if (string.IsNullOrEmpty(value))
        {
            Assert.Fail($"The test build did not record {key} (see Tests/MlNetBn.Tests.csproj).");
        }

        return value!;
    }
}
