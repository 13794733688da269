using System.Diagnostics;
using System.IO.Compression;
using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;
using System.Xml.Linq;

namespace MlNetBn.Tests.Packaging;

/// <summary>
/// The MlNetBn NuGet package: `dotnet pack` of MlNetBn.Extensions (from this build's outputs, into a temporary
/// local feed), its files, metadata and dependencies, and an application that references it and nothing else.
/// </summary>
/// <remarks>
/// Time: packing (no rebuild) takes 3–15 s; the consumer test restores, builds and runs a fresh console app:
/// 39–76 s measured on the shared 2-core machine at load average 12–21 (its build 17–42 s, training one epoch on
/// 40 images and predicting 4–9 s), about 25 s of CPU in all, so roughly 20–30 s on an idle machine. It is in the
/// "Packaging" category: <c>dotnet test --filter TestCategory!=Packaging</c> skips it locally; .ci/run runs it.
/// </remarks>
[TestClass]
public sealed class PackageTests
{
    private const string PackageId = "MlNetBn";
    private const string Lib = "lib/net10.0/";

    private static string s_root = "";
    private static string s_feed = "";
    private static string s_version = "";
    private static string s_nupkg = "";
    private static string s_snupkg = "";

    /// <summary>Packs once for the class, with a unique prerelease version so no NuGet cache can hold an older copy.</summary>
    [ClassInitialize]
    public static void PackIntoLocalFeed(TestContext context)
    {
        s_root = Path.Combine(Path.GetTempPath(), "mlnetbn-package-tests-" + Guid.NewGuid().ToString("N"));
        s_feed = Path.Combine(s_root, "feed");
        Directory.CreateDirectory(s_feed);
        string suffix = "packagetest.t" + Guid.NewGuid().ToString("N")[..12];

        var arguments = new List<string>
        {
            "pack", PackagingTestEnvironment.PackageProject, "-c", PackagingTestEnvironment.Configuration,
            // The test run built the project already; packing again must not rebuild the shared bin/obj folders.
            "--no-build", "-o", s_feed, "--version-suffix", suffix,
            // Keep the generated .nuspec out of the repository's obj/ folder.
            $"-p:NuspecOutputPath={Path.Combine(s_root, "nuspec")}{Path.DirectorySeparatorChar}",
        };
        if (PackagingTestEnvironment.TorchBackend.Length > 0)
        {
            arguments.Add($"-p:TorchBackend={PackagingTestEnvironment.TorchBackend}");
        }

        (int exitCode, string output) = PackagingTestEnvironment.RunDotnet(s_root, TimeSpan.FromMinutes(3), [.. arguments]);
        Assert.AreEqual(0, exitCode, $"dotnet pack failed:\n{PackagingTestEnvironment.Tail(output)}");

        s_nupkg = Directory.GetFiles(s_feed, "*.nupkg").Single();
        s_snupkg = Directory.GetFiles(s_feed, "*.snupkg").Single();
        s_version = Path.GetFileNameWithoutExtension(s_nupkg)[(PackageId.Length + 1)..];
    }

    [ClassCleanup]
    public static void DeleteTemporaryFolder()
    {
        if (s_root.Length > 0 && Directory.Exists(s_root))
        {
            Directory.Delete(s_root, recursive: true);
        }
    }

    [TestMethod]
    public void Package_HoldsBothAssembliesTheirDocsTheReadmeAndTheNativeFix_AndNothingElse()
    {
        string[] expected =
        [
            "MlNetBn.nuspec",
            "README.md",
            "build/MlNetBn.targets",
            "buildTransitive/MlNetBn.targets",
            "buildTransitive/LibTorchSharpGlibcxxPatch.targets",
            "buildTransitive/ElfVersionNeedPatcher.cs",
            Lib + "MlNetBn.Extensions.dll",
            Lib + "MlNetBn.Extensions.xml",
            Lib + "MlNetBn.Trainers.dll",
            Lib + "MlNetBn.Trainers.xml",
        ];
        using ZipArchive package = ZipFile.OpenRead(s_nupkg);
        List<string> actual = ContentEntries(package);
        CollectionAssert.AreEquivalent(expected, actual,
            $"Package files (no Publicizer, Mono.Cecil or publicized ML.NET copy may appear): {string.Join(", ", actual)}");
    }

    [TestMethod]
    public void Package_FilesAreTheBuiltAssembliesAndTheRepositoryFilesUnchanged()
    {
        string repo = PackagingTestEnvironment.RepositoryRoot;
        using ZipArchive package = ZipFile.OpenRead(s_nupkg);
        // The test's own output has copies of both assemblies from the very build the package was made from.
        foreach (string file in new[] { "MlNetBn.Extensions.dll", "MlNetBn.Trainers.dll" })
        {
            AssertSameBytes(Path.Combine(AppContext.BaseDirectory, file), package, Lib + file);
        }

        AssertSameBytes(Path.Combine(repo, "docs", "PACKAGE.md"), package, "README.md");
        AssertSameBytes(Path.Combine(repo, "build", "package", "MlNetBn.targets"), package, "build/MlNetBn.targets");
        AssertSameBytes(Path.Combine(repo, "build", "package", "MlNetBn.targets"), package, "buildTransitive/MlNetBn.targets");
        AssertSameBytes(Path.Combine(repo, "build", "LibTorchSharpGlibcxxPatch.targets"), package, "buildTransitive/LibTorchSharpGlibcxxPatch.targets");
        AssertSameBytes(Path.Combine(repo, "build", "ElfVersionNeedPatcher.cs"), package, "buildTransitive/ElfVersionNeedPatcher.cs");
    }

    [TestMethod]
    public void Nuspec_HasIdVersionLicenseReadmeAndDescription()
    {
        XElement metadata = Nuspec(s_nupkg);
        Assert.AreEqual(PackageId, Child(metadata, "id").Value);
        Assert.AreEqual(s_version, Child(metadata, "version").Value);
        string assemblyVersion = typeof(LeNetBnCatalog).Assembly.GetName().Version!.ToString(3);
        Assert.StartsWith(assemblyVersion + "-packagetest.", s_version, "package version = the assemblies' version + the test's suffix");
        Assert.AreEqual("MlNetBn contributors", Child(metadata, "authors").Value);
        XElement license = Child(metadata, "license");
        Assert.AreEqual("expression", license.Attribute("type")?.Value);
        Assert.AreEqual("MIT", license.Value);
        Assert.AreEqual("README.md", Child(metadata, "readme").Value);
        Assert.Contains("LeNetBn", Child(metadata, "description").Value);
        Assert.Contains("ml.net", Child(metadata, "tags").Value.Split(' '));
    }

    [TestMethod]
    public void Nuspec_DependsOnTheLibrariesPackages_AtTheirPinnedVersions_AndOnNothingBuildOnly()
    {
        if (PackagingTestEnvironment.TorchBackend is not ("" or "cpu"))
        {
            Assert.Inconclusive($"Expectations are for the default backend (cpu); this build used {PackagingTestEnvironment.TorchBackend}.");
        }

        // Central pins (Directory.Packages.props), so a version bump there needs no change here.
        Dictionary<string, string> pins = XDocument.Load(Path.Combine(PackagingTestEnvironment.RepositoryRoot, "Directory.Packages.props"))
            .Descendants("PackageVersion").ToDictionary(e => e.Attribute("Include")!.Value, e => e.Attribute("Version")!.Value);
        // SkiaSharp: TorchSharp's dependency, pinned centrally (transitive pinning), hence a direct dependency.
        string[] expectedIds = ["Microsoft.ML", "TorchSharp", "libtorch-cpu-linux-x64", "libtorch-cpu-win-x64", "SkiaSharp"];

        XElement group = Child(Child(Nuspec(s_nupkg), "dependencies"), "group");
        Assert.AreEqual("net10.0", group.Attribute("targetFramework")?.Value);
        List<XElement> dependencies = group.Elements().Where(e => e.Name.LocalName == "dependency").ToList();
        CollectionAssert.AreEquivalent(expectedIds, dependencies.Select(d => d.Attribute("id")!.Value).ToList(),
            "Dependencies (MlNetBn.Trainers is inside the package; the publicizer and Mono.Cecil are build-only)");
        foreach (XElement dependency in dependencies)
        {
            string id = dependency.Attribute("id")!.Value;
            Assert.AreEqual(pins[id], dependency.Attribute("version")!.Value, id);
            string excluded = dependency.Attribute("exclude")?.Value ?? "";
            foreach (string needed in new[] { "Compile", "Runtime", "Native", "All" })
            {
                Assert.DoesNotContain(needed, excluded.Split(','), $"{id} excludes {excluded}");
            }
        }

        Assert.AreEqual("[5.0.1]", dependencies.Single(d => d.Attribute("id")!.Value == "Microsoft.ML").Attribute("version")!.Value,
            "ML.NET exactly: the persistence code binds to its internals");
    }

    [TestMethod]
    public void SymbolsPackage_HoldsThePortablePdbOfEachAssembly()
    {
        using ZipArchive symbols = ZipFile.OpenRead(s_snupkg);
        using ZipArchive package = ZipFile.OpenRead(s_nupkg);
        CollectionAssert.AreEquivalent(
            new[] { "MlNetBn.nuspec", Lib + "MlNetBn.Extensions.pdb", Lib + "MlNetBn.Trainers.pdb" },
            ContentEntries(symbols));
        foreach (string name in new[] { "MlNetBn.Extensions", "MlNetBn.Trainers" })
        {
            using var dll = new PEReader(new MemoryStream(ReadEntry(package, Lib + name + ".dll")));
            CodeViewDebugDirectoryData codeView = dll.ReadCodeViewDebugDirectoryData(
                dll.ReadDebugDirectory().Single(e => e.Type == DebugDirectoryEntryType.CodeView));
            using var pdb = MetadataReaderProvider.FromPortablePdbStream(new MemoryStream(ReadEntry(symbols, Lib + name + ".pdb")));
            var pdbId = new BlobContentId(pdb.GetMetadataReader().DebugMetadataHeader!.Id);
            Assert.AreEqual(codeView.Guid, pdbId.Guid, $"{name}.pdb does not belong to {name}.dll");
        }
    }

    /// <summary>
    /// A console app in a temporary folder whose NuGet.config lists the local feed and nuget.org references the
    /// package, builds with warnings as errors, trains, saves, loads and predicts. Its output folder has the
    /// patched libLibTorchSharp.so (the package's buildTransitive targets ran in the consumer's build) and
    /// the process loaded that very file, on this Debian 12 machine whose libstdc++ stops at GLIBCXX_3.4.30.
    /// </summary>
    [TestMethod]
    [TestCategory("Packaging")]
    public void ConsumerApp_ReferencingOnlyThePackage_BuildsTrainsSavesLoadsAndPredicts()
    {
        string app = Path.Combine(s_root, "consumer");
        string packages = Path.Combine(s_root, "packages");
        ConsumerAppChecks.CreateApp(app, File.ReadAllText(Path.Combine(PackagingTestEnvironment.ConsumerAppSources, "ConsumerApp.csproj")));

        // The local feed and nuget.org; MlNetBn may only come from the feed (source mapping), so a package of
        // that name on nuget.org can never stand in for the one just built.
        File.WriteAllText(Path.Combine(app, "NuGet.config"), $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <packageSources>
                <clear />
                <add key="local" value="{s_feed}" />
                <add key="nuget.org" value="https://api.nuget.org/v3/index.json" protocolVersion="3" />
              </packageSources>
              <packageSourceMapping>
                <packageSource key="local"><package pattern="{PackageId}" /></packageSource>
                <packageSource key="nuget.org"><package pattern="*" /></packageSource>
              </packageSourceMapping>
            </configuration>
            """);

        var clock = Stopwatch.StartNew();
        (int buildExit, string buildOutput) = PackagingTestEnvironment.RunDotnet(app, TimeSpan.FromMinutes(6),
            "build", "ConsumerApp.csproj", "-c", "Release", "--disable-build-servers", "-warnaserror",
            $"-p:MlNetBnPackageVersion={s_version}",
            // The package goes into a folder of this test's own; everything else (about 1 GB of libtorch) is taken
            // read-only from the machine's NuGet folder, with no download and nothing added to it.
            $"-p:RestorePackagesPath={packages}",
            $"-p:RestoreFallbackFolders={PackagingTestEnvironment.NuGetPackageRoot}",
            // The vulnerability audit would ask nuget.org for data; not what this test is about.
            "-p:NuGetAudit=false",
            // Hard links instead of copies of the ~0.8 GB of native files (same output layout; a fraction of the time).
            "-p:CreateHardLinksForCopyLocalIfPossible=true");
        TimeSpan buildTime = clock.Elapsed;
        Assert.AreEqual(0, buildExit, $"Consumer build failed:\n{PackagingTestEnvironment.Tail(buildOutput)}");
        Assert.IsTrue(Directory.Exists(Path.Combine(packages, PackageId.ToLowerInvariant(), s_version)),
            $"{PackageId} {s_version} was not restored from the local feed into {packages}");

        string output = Path.Combine(app, "bin", "Release", "net10.0");
        clock.Restart();
        string runOutput = ConsumerAppChecks.RunAndCheck(app, output, Path.Combine(s_root, "model.zip"));
        Console.WriteLine($"consumer build {buildTime.TotalSeconds:F1} s, run {clock.Elapsed.TotalSeconds:F1} s\n{runOutput}");
    }

    /// <summary>Entry names, without the OPC bookkeeping every package has (_rels/, package/, [Content_Types].xml).</summary>
    private static List<string> ContentEntries(ZipArchive archive) =>
        archive.Entries.Select(e => e.FullName)
            .Where(n => !n.StartsWith("_rels/", StringComparison.Ordinal) && !n.StartsWith("package/", StringComparison.Ordinal)
                && n != "[Content_Types].xml")
            .ToList();

    private static byte[] ReadEntry(ZipArchive archive, string name)
    {
        ZipArchiveEntry entry = archive.GetEntry(name) ?? throw new AssertFailedException($"{name} is not in the package");
        using Stream stream = entry.Open();
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    }

    private static void AssertSameBytes(string expectedFile, ZipArchive package, string entry) =>
        CollectionAssert.AreEqual(File.ReadAllBytes(expectedFile), ReadEntry(package, entry), $"{entry} differs from {expectedFile}");

    private static XElement Nuspec(string nupkg)
    {
        using ZipArchive package = ZipFile.OpenRead(nupkg);
        using var stream = new MemoryStream(ReadEntry(package, PackageId + ".nuspec"));
        return Child(XDocument.Load(stream).Root!, "metadata");
    }

    private static XElement Child(XElement parent, string localName) =>
        parent.Elements().SingleOrDefault(e => e.Name.LocalName == localName)
        ?? throw new AssertFailedException($"<{parent.Name.LocalName}> has no <{localName}>");
}
