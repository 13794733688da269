using System.Diagnostics;
using System.Reflection.PortableExecutable;
using System.Text.RegularExpressions;
using MlNetBn.Tests.Native;

namespace MlNetBn.Tests.Packaging;

/// <summary>
/// <c>dotnet publish Examples/FashionMnist -r win-x64</c> from this (Linux) machine: the Windows application folder has
/// TorchSharp's LibTorchSharp.dll and libtorch-cpu-win-x64's DLLs, every LibTorchSharp.dll import resolves inside it,
/// and the Linux-only GLIBCXX patch (build/LibTorchSharpGlibcxxPatch.targets) neither ran for it nor left a Linux file in it.
/// No Windows machine runs the result.
/// </summary>
/// <remarks>
/// Everything the publish writes (restore, the build of the example and of its project references, the application
/// folder) goes to a temporary folder (<c>--artifacts-path</c>, <c>-o</c>) that the test deletes; the repository's
/// bin/ and obj/ folders are not touched, so the test can run again at once and next to other builds. Natives are hard
/// links into the NuGet folder where the file system allows. Time: the publish took 57 s by hand and 97–103 s in this
/// test on the shared 2-core machine (about 20 s of CPU), most of it restoring and building Trainers, Extensions and the
/// example afresh; the first run on a machine also downloads the win-x64 app host pack
/// (Microsoft.NETCore.App.Host.win-x64). In the "Packaging" category, like PackageTests.
/// </remarks>
[TestClass]
public sealed class WindowsPublishTests
{
    [TestMethod]
    [TestCategory("Packaging")]
    public void FashionMnistExample_PublishesForWinX64_WithLibTorchSharpAndLibTorch_AndNoLinuxStep()
    {
        string root = Directory.CreateTempSubdirectory("mlnetbn-win-x64-publish-").FullName;
        try
        {
            string output = Path.Combine(root, "app");
            string artifacts = Path.Combine(root, "artifacts");
            var clock = Stopwatch.StartNew();
            (int exitCode, string log) = PackagingTestEnvironment.RunDotnet(PackagingTestEnvironment.RepositoryRoot, TimeSpan.FromMinutes(10),
                "publish", Path.Combine("Examples", "FashionMnist", "FashionMnist.csproj"), "-c", PackagingTestEnvironment.Configuration,
                "-r", "win-x64", "-o", output, "--artifacts-path", artifacts, "--disable-build-servers",
                // What a user gets by default, whatever backend this test build used.
                "-p:TorchBackend=cpu",
                // The vulnerability audit would ask nuget.org for data; not what this test is about.
                "-p:NuGetAudit=false",
                "-p:CreateHardLinksForCopyLocalIfPossible=true", "-p:CreateHardLinksForPublishFilesIfPossible=true");
            TimeSpan publishTime = clock.Elapsed;
            Assert.AreEqual(0, exitCode, $"dotnet publish -r win-x64 failed:\n{PackagingTestEnvironment.Tail(log)}");
            Console.WriteLine($"dotnet publish -r win-x64: {publishTime.TotalSeconds:F1} s");
            Assert.IsTrue(Directory.Exists(Path.Combine(artifacts, "bin", "FashionMnist")), "the build did not go to --artifacts-path");

            // The application folder: an x64 Windows executable, TorchSharp's glue and libtorch-cpu-win-x64's DLLs as the packages have them.
            Assert.AreEqual(Machine.Amd64, PortableExecutableTables.ReadMachine(Path.Combine(output, "FashionMnist.exe")));
            string libTorchSharp = Path.Combine(output, "LibTorchSharp.dll");
            Assert.IsTrue(File.Exists(libTorchSharp), $"LibTorchSharp.dll is not in {output}");
            CollectionAssert.AreEqual(File.ReadAllBytes(NativeTestPaths.WinX64LibTorchSharp), File.ReadAllBytes(libTorchSharp),
                "the published LibTorchSharp.dll differs from TorchSharp's");
            foreach (string packaged in Directory.GetFiles(NativeTestPaths.LibTorchCpuWinX64NativeDirectory, "*.dll"))
            {
                string published = Path.Combine(output, Path.GetFileName(packaged));
                Assert.IsTrue(File.Exists(published), $"{Path.GetFileName(packaged)} (libtorch-cpu-win-x64) is not in {output}");
                Assert.AreEqual(new FileInfo(packaged).Length, new FileInfo(published).Length, $"{published} is not the package's file");
            }

            // Everything LibTorchSharp.dll needs from libtorch is in the folder and exports what it imports.
            WindowsImportCheck check = WindowsImportCheck.Run([libTorchSharp], output);
            Assert.IsEmpty(check.Unresolved, string.Join('\n', check.Unresolved));
            Assert.IsEmpty(check.NotFound, string.Join('\n', check.NotFound));
            Assert.AreEqual(143, check.ImportCounts["LibTorchSharp.dll -> c10.dll"]);
            Assert.AreEqual(1684, check.ImportCounts["LibTorchSharp.dll -> torch_cpu.dll"]);

            // The Linux-only patch: it runs in the RID-less builds of the referenced libraries (which ship no natives) and
            // found no linux-x64 file in the win-x64 application, so wrote nothing for it; nothing Linux was published.
            Assert.IsFalse(Directory.EnumerateDirectories(Path.Combine(artifacts, "obj", "FashionMnist"), "mlnetbn-native", SearchOption.AllDirectories).Any(),
                "the GLIBCXX patch wrote a libLibTorchSharp.so copy for the win-x64 application");
            Assert.IsFalse(Directory.Exists(Path.Combine(output, "runtimes")), "a runtimes/ folder in a RID-specific publish");
            string[] linuxFiles = Directory.GetFiles(output, "*", SearchOption.AllDirectories).Where(IsElf).ToArray();
            Assert.IsEmpty(linuxFiles, "ELF files in the Windows application: " + string.Join(", ", linuxFiles));
            string depsJson = File.ReadAllText(Path.Combine(output, "FashionMnist.deps.json"));
            Assert.Contains("runtimes/win-x64/native/LibTorchSharp.dll", depsJson);
            Assert.DoesNotContain("libLibTorchSharp.so", depsJson);
            Assert.IsFalse(Regex.IsMatch(log, @"MLNETBN\d{4}"), "an MlNetBn build error or warning code in the publish log");
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    private static bool IsElf(string path)
    {
        Span<byte> magic = stackalloc byte[4];
        using FileStream stream = File.OpenRead(path);
        return stream.ReadAtLeast(magic, 4, throwOnEndOfStream: false) == 4 && magic.SequenceEqual("\u007FELF"u8);
    }
}
