using System.Reflection.PortableExecutable;

namespace MlNetBn.Tests.Native;

/// <summary>
/// Windows, checked from here (no Windows machine runs these tests): TorchSharp's win-x64 LibTorchSharp.dll and the
/// DLLs of libtorch-cpu-win-x64, read as files. TorchSharp issue #1567 reports 0.107.0's LibTorchSharp.dll failing to
/// load on win-x64 with ERROR_PROC_NOT_FOUND (0x7F), 16 of its imports missing from libtorch 2.10.0; for the packages
/// as published on nuget.org every import resolves, and these tests pin that.
/// </summary>
/// <remarks>
/// Measured for TorchSharp 0.107.0 and libtorch-cpu-win-x64 2.10.0 (one package, not split in parts): LibTorchSharp.dll
/// imports 143 functions from c10.dll and 1,684 from torch_cpu.dll, all by name, none delay-loaded; torch_cpu.dll exports
/// 60,513 names (read in about 0.3 s) and imports 870 functions from c10.dll and 40 from libiomp5md.dll.
/// </remarks>
[TestClass]
public sealed class WindowsImportsTests
{
    /// <summary>The versions the numbers below were measured on; a version change must re-measure them.</summary>
    private const string MeasuredVersions = "TorchSharp 0.107.0, libtorch-cpu-win-x64 2.10.0";

    private static WindowsImportCheck? s_check;

    private static string LibTorchSharp => NativeTestPaths.WinX64LibTorchSharp;

    private static string LibTorchFolder => NativeTestPaths.LibTorchCpuWinX64NativeDirectory;

    /// <summary>LibTorchSharp.dll and every DLL of the package, resolved against the package's folder.</summary>
    private static WindowsImportCheck PackageCheck()
    {
        if (s_check is null)
        {
            Assert.IsTrue(File.Exists(LibTorchSharp), $"{LibTorchSharp} is missing: TorchSharp was not restored.");
            Assert.IsTrue(Directory.Exists(LibTorchFolder),
                $"{LibTorchFolder} is missing: the test project's PackageDownload of libtorch-cpu-win-x64 did not run.");
            s_check = WindowsImportCheck.Run([LibTorchSharp, .. Directory.GetFiles(LibTorchFolder, "*.dll").Order(StringComparer.Ordinal)], LibTorchFolder);
        }

        return s_check;
    }

    [TestMethod]
    public void TheCheckedPackages_AreTheMeasuredVersions_ForWinX64()
    {
        Assert.AreEqual(MeasuredVersions, NativeTestPaths.WindowsNativeVersions,
            "Directory.Packages.props pins other versions: re-measure the counts in this file (and docs/PACKAGE.md).");
        CollectionAssert.AreEqual(
            new[] { "c10.dll", "libiomp5md.dll", "libiompstubs5md.dll", "torch.dll", "torch_cpu.dll", "torch_global_deps.dll", "uv.dll" },
            Directory.GetFiles(LibTorchFolder).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToArray(),
            "the files of libtorch-cpu-win-x64's runtimes/win-x64/native");
        foreach (string image in Directory.GetFiles(LibTorchFolder, "*.dll").Prepend(LibTorchSharp))
        {
            Assert.AreEqual(Machine.Amd64, PortableExecutableTables.ReadMachine(image), image);
        }
    }

    [TestMethod]
    public void EveryImportOfLibTorchSharpDll_FromALibTorchDll_IsExportedByIt()
    {
        WindowsImportCheck check = PackageCheck();

        Assert.IsEmpty(check.Unresolved,
            $"{check.Unresolved.Count} imports do not resolve against {LibTorchFolder} (TorchSharp issue #1567):\n" +
            string.Join('\n', check.Unresolved));
        Assert.IsEmpty(check.NotFound,
            "DLLs that are neither in the package nor known Windows / Visual C++ runtime DLLs (classify them in WindowsImportCheck " +
            "if they are part of Windows):\n" + string.Join('\n', check.NotFound));
        Assert.AreEqual(143, check.ImportCounts["LibTorchSharp.dll -> c10.dll"]);
        Assert.AreEqual(1684, check.ImportCounts["LibTorchSharp.dll -> torch_cpu.dll"]);
        Assert.AreEqual(870, check.ImportCounts["torch_cpu.dll -> c10.dll"]);
        Assert.AreEqual(40, check.ImportCounts["torch_cpu.dll -> libiomp5md.dll"]);
        Assert.AreEqual(60_513, check.FolderDlls["torch_cpu.dll"].Names.Count, "names torch_cpu.dll exports");
        Assert.AreEqual(1_968, check.FolderDlls["c10.dll"].Names.Count, "names c10.dll exports");
        foreach ((string dll, PeExports exports) in check.FolderDlls)
        {
            // A forwarded export would resolve only if its target does; none here, so the check above is complete.
            Assert.AreEqual(0, exports.ForwarderCount, $"{dll} forwards exports");
            Assert.AreEqual(dll, exports.DllName, "the export directory's own name");
        }

        Console.WriteLine("Imports resolved against the package, per importer -> DLL:");
        foreach ((string edge, int count) in check.ImportCounts.Where(e => !IsSystemEdge(e.Key)))
        {
            Console.WriteLine($"  {edge}: {count}");
        }

        Console.WriteLine("Windows and Visual C++ runtime DLLs (not shipped, not checked), with their importers:");
        foreach ((string dll, SortedSet<string> importers) in check.SystemImporters)
        {
            Console.WriteLine($"  {dll}: {string.Join(", ", importers)}");
        }
    }

    [TestMethod]
    public void LibTorchSharpDll_ImportsOnlyLibTorchAndWindows_AndNothingIsDelayLoadedOrByOrdinal()
    {
        IReadOnlyList<PeImport> imports = PortableExecutableTables.ReadImports(LibTorchSharp);

        Assert.HasCount(143 + 1684 + imports.Count(i => WindowsImportCheck.IsWindowsDll(i.Dll)), imports,
            "every import is from c10.dll, torch_cpu.dll or Windows");
        Assert.IsFalse(imports.Any(i => i.Delayed), "delay-loaded imports");
        Assert.IsFalse(imports.Any(i => i.Ordinal is not null), "imports by ordinal");
        // The Visual C++ runtime is static in LibTorchSharp.dll (it uses the Universal CRT, part of Windows 10 and later).
        Assert.IsFalse(imports.Any(i => WindowsImportCheck.VisualCppRuntimeDlls.Contains(i.Dll)), "LibTorchSharp.dll imports the VC++ runtime");
        CollectionAssert.AreEquivalent(
            new[] { "KERNEL32.dll", "ole32.dll" },
            imports.Select(i => i.Dll).Distinct().Where(d => WindowsImportCheck.IsWindowsDll(d) && !d.StartsWith("api-ms-win-crt-", StringComparison.Ordinal)).ToArray(),
            "Windows DLLs other than the Universal CRT");
    }

    /// <summary>What TorchNative's message for ERROR_MOD_NOT_FOUND says about the Visual C++ Redistributable.</summary>
    [TestMethod]
    public void LibTorch_NeedsTheVisualCppRuntime_WhichNoPackageShips()
    {
        WindowsImportCheck check = PackageCheck();

        CollectionAssert.AreEquivalent(new[] { "c10.dll", "torch_cpu.dll" }, check.SystemImporters["MSVCP140.dll"].ToArray());
        CollectionAssert.AreEquivalent(new[] { "c10.dll", "torch_cpu.dll" }, check.SystemImporters["VCRUNTIME140_1.dll"].ToArray());
        CollectionAssert.IsSubsetOf(new[] { "c10.dll", "torch_cpu.dll", "libiomp5md.dll" }, check.SystemImporters["VCRUNTIME140.dll"].ToArray());
        foreach (string dll in WindowsImportCheck.VisualCppRuntimeDlls)
        {
            Assert.IsFalse(File.Exists(Path.Combine(LibTorchFolder, dll)), $"libtorch-cpu-win-x64 ships {dll}");
            Assert.IsFalse(File.Exists(Path.Combine(Path.GetDirectoryName(LibTorchSharp)!, dll)), $"TorchSharp ships {dll}");
        }
    }

    /// <summary>
    /// #1567's first example: LibTorchSharp.dll calls AOTIModelPackageLoader's 5-parameter constructor (string, string,
    /// bool, size_t, DeviceIndex) and the issue finds only the 3-parameter one in torch_cpu.dll. The published
    /// torch_cpu.dll 2.10.0 exports the 5-parameter one.
    /// </summary>
    [TestMethod]
    public void TorchSharpIssue1567_FirstExample_IsExportedByTorchCpu210()
    {
        const string constructor =
            "??0AOTIModelPackageLoader@inductor@torch@@QEAA@AEBV?$basic_string@DU?$char_traits@D@std@@V?$allocator@D@2@@std@@0_N_KC@Z";

        Assert.IsTrue(PortableExecutableTables.ReadImports(LibTorchSharp).Any(i => i.Dll == "torch_cpu.dll" && i.Name == constructor));
        Assert.Contains(constructor, PackageCheck().FolderDlls["torch_cpu.dll"].Names);
    }

    /// <summary>The reader and the check on two small images written here: names, ordinals, delay loads, and failures.</summary>
    [TestMethod]
    public void Check_ReportsMissingNamesOrdinalsAndDlls_OnSyntheticImages()
    {
        string folder = Directory.CreateTempSubdirectory("mlnetbn-pe-").FullName;
        try
        {
            string alpha = Path.Combine(folder, "alpha.dll");
            string root = Path.Combine(folder, "root.dll");
            File.WriteAllBytes(alpha, SyntheticPe.Dll("alpha.dll", exportedNames: ["alpha_two", "alpha_one"], unnamedExports: 1, ordinalBase: 5));
            File.WriteAllBytes(root, SyntheticPe.Dll("root.dll",
                imports: [("alpha.dll", ["alpha_one", 7, "alpha_missing", 9]), ("KERNEL32.dll", ["GetLastError"])],
                delayImports: [("gamma.dll", ["gamma_function"])]));

            PeExports exports = PortableExecutableTables.ReadExports(alpha);
            Assert.AreEqual("alpha.dll", exports.DllName);
            CollectionAssert.AreEquivalent(new[] { "alpha_one", "alpha_two" }, exports.Names.ToArray());
            CollectionAssert.AreEquivalent(new[] { 5, 6, 7 }, exports.Ordinals.ToArray());
            Assert.AreEqual(0, exports.ForwarderCount);

            CollectionAssert.AreEqual(
                new[]
                {
                    new PeImport("alpha.dll", "alpha_one", null, false),
                    new PeImport("alpha.dll", null, 7, false),
                    new PeImport("alpha.dll", "alpha_missing", null, false),
                    new PeImport("alpha.dll", null, 9, false),
                    new PeImport("KERNEL32.dll", "GetLastError", null, false),
                    new PeImport("gamma.dll", "gamma_function", null, true),
                },
                PortableExecutableTables.ReadImports(root).ToArray());

            WindowsImportCheck check = WindowsImportCheck.Run([root], folder);
            CollectionAssert.AreEqual(
                new[] { "root.dll imports alpha_missing from alpha.dll", "root.dll imports #9 from alpha.dll" },
                check.Unresolved.ToArray());
            CollectionAssert.AreEqual(new[] { "gamma.dll (imported by root.dll)" }, check.NotFound.ToArray());
            CollectionAssert.AreEqual(new[] { "root.dll" }, check.SystemImporters["KERNEL32.dll"].ToArray());
            Assert.AreEqual(4, check.ImportCounts["root.dll -> alpha.dll"]);

            File.WriteAllBytes(alpha, new byte[100]);
            InvalidDataException damaged = Assert.ThrowsExactly<InvalidDataException>(() => PortableExecutableTables.ReadExports(alpha));
            Assert.StartsWith($"{alpha}: ", damaged.Message);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    private static bool IsSystemEdge(string edge)
    {
        string dll = edge[(edge.IndexOf("-> ", StringComparison.Ordinal) + 3)..];
        return WindowsImportCheck.IsWindowsDll(dll) || WindowsImportCheck.VisualCppRuntimeDlls.Contains(dll);
    }
}
