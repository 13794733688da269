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
