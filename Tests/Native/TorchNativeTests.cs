using TorchSharp;

namespace MlNetBn.Tests.Native;

/// <summary>TorchNative in the test process itself, which loads libtorch from the packages as an application does.</summary>
[TestClass]
public sealed class TorchNativeTests
{
    [ClassInitialize]
    public static void UseTheApplicationsLibTorch(TestContext context)
    {
        // A developer's MLNETBN_TORCH_LIB must not leak into the test process, which ships its own libtorch.
        _ = context;
        Environment.SetEnvironmentVariable(TorchNative.TorchLibEnvironmentVariable, null);
    }

    [TestMethod]
    public void EnsureLoaded_LoadsTheOutputsPatchedLibTorchSharp_AndTorchComputes()
    {
        TorchNativeInfo info = TorchNative.EnsureLoaded();

        Assert.IsTrue(TorchNative.IsLoaded);
        Assert.AreEqual(3f, torch.ones(3).sum().item<float>());
        if (OperatingSystem.IsLinux())
        {
            Assert.AreEqual(NativeTestPaths.PatchedLibTorchSharp, info.LibTorchSharpPath, info.Description);
            Assert.IsNotNull(info.LibTorchCpuPath);
            Assert.StartsWith(AppContext.BaseDirectory, info.LibTorchCpuPath, "libtorch from the application's own output");
            // TorchSharp's fallback copies the unpatched natives from the NuGet cache into cpu/ when its
            // first load fails; with the patched copy in place the first load succeeds.
            Assert.IsFalse(Directory.Exists(Path.Combine(AppContext.BaseDirectory, "cpu")),
                "TorchSharp fell back to copying natives into cpu/: its first load attempt failed");
        }

        Assert.IsNull(info.TorchLibDirectory);
        Assert.IsEmpty(info.PreloadedLibraries);
        Assert.IsEmpty(info.Warnings);
        Assert.Contains("TorchSharp native backend loaded", info.Description);
    }

    [TestMethod]
    public void EnsureLoaded_IsIdempotentAndThreadSafe()
    {
        TorchNativeInfo first = TorchNative.EnsureLoaded();
        TorchNativeInfo[] results = new TorchNativeInfo[8];
        Parallel.For(0, results.Length, i => results[i] = TorchNative.EnsureLoaded());
        foreach (TorchNativeInfo result in results)
        {
            Assert.AreSame(first, result);
        }
    }

    [TestMethod]
    public void TorchLibDirectory_CannotChangeOnceLoaded()
    {
        TorchNative.EnsureLoaded();
        Assert.ThrowsExactly<InvalidOperationException>(() => TorchNative.TorchLibDirectory = "/opt/pytorch/torch/lib");
        TorchNative.TorchLibDirectory = null; // the value it was loaded with: allowed, no change
    }
}
