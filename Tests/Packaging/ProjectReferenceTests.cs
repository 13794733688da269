using System.Diagnostics;

namespace MlNetBn.Tests.Packaging;

/// <summary>
/// An application outside the repository that references MlNetBn.Trainers and MlNetBn.Extensions with
/// <c>&lt;ProjectReference&gt;</c> (no package, none of the repository's Directory.Build.* files): it builds, and at run
/// time loads libtorch and the patched libLibTorchSharp.so from its own output, which Trainers hands down
/// (build/LibTorchSharpProjectReference.targets; docs/PACKAGE.md).
/// </summary>
/// <remarks>
/// Time, measured on the shared 2-core machine: 22–45 s, of which the consumer's build 18–39 s (the repository's
/// projects are not built again, see below) and the run, the same program as the package test's, 4–6 s. In the
/// "Packaging" category with the package tests.
/// </remarks>
[TestClass]
public sealed class ProjectReferenceTests
{
    /// <summary>
    /// ConsumerApp/Program.cs in a temporary folder with a project that references both MlNetBn projects by path.
    /// Before the fix its output had TorchSharp's unpatched file, and the process failed with TorchSharp's
    /// "doesn't contain a reference to libtorch-cpu-linux-x64" on this Debian 12 machine.
    /// </summary>
    [TestMethod]
    [TestCategory("Packaging")]
    public void ConsumerApp_WithProjectReferencesFromOutsideTheRepository_BuildsTrainsSavesLoadsAndPredicts()
    {
        string root = Path.Combine(Path.GetTempPath(), "mlnetbn-projectreference-test-" + Guid.NewGuid().ToString("N"));
        string repo = PackagingTestEnvironment.RepositoryRoot;
        Assert.IsFalse(root.StartsWith(repo, StringComparison.Ordinal), $"{root} must be outside the repository {repo}");
        try
        {
            string app = Path.Combine(root, "consumer");
            ConsumerAppChecks.CreateApp(app, $"""
                <Project Sdk="Microsoft.NET.Sdk">
                  <PropertyGroup>
                    <OutputType>Exe</OutputType>
                    <TargetFramework>net10.0</TargetFramework>
                    <Nullable>enable</Nullable>
                    <ImplicitUsings>enable</ImplicitUsings>
                    <!-- The vulnerability audit would ask nuget.org for data; not what this test is about. -->
                    <NuGetAudit>false</NuGetAudit>
                  </PropertyGroup>
                  <ItemGroup>
                    <ProjectReference Include="{Path.Combine(repo, "Trainers", "MlNetBn.Trainers.csproj")}" />
                    <ProjectReference Include="{Path.Combine(repo, "Extensions", "MlNetBn.Extensions.csproj")}" />
                  </ItemGroup>
                </Project>
                """);

            var arguments = new List<string>
            {
                "build", "ConsumerApp.csproj", "-c", PackagingTestEnvironment.Configuration, "--disable-build-servers", "-warnaserror",
                // This test run built (and restored) the referenced projects already, in this configuration. Doing it
                // again from inside the run would write into their bin/obj folders while it uses them: the app alone is
                // built (--no-dependencies) and restored (RestoreRecursive=false; the referenced projects are still read
                // for their packages), against the referenced projects' outputs, with the same project-reference
                // protocol (GetTargetPath, GetCopyToOutputDirectoryItems) as a full build. No other global property is
                // passed but this run's TorchBackend: global properties reach the referenced projects too.
                "--no-dependencies", "-p:RestoreRecursive=false",
            };
            if (PackagingTestEnvironment.TorchBackend.Length > 0)
            {
                arguments.Add($"-p:TorchBackend={PackagingTestEnvironment.TorchBackend}");
            }

            var clock = Stopwatch.StartNew();
            (int buildExit, string buildOutput) = PackagingTestEnvironment.RunDotnet(app, TimeSpan.FromMinutes(6), [.. arguments]);
            TimeSpan buildTime = clock.Elapsed;
            Assert.AreEqual(0, buildExit, $"Consumer build failed:\n{PackagingTestEnvironment.Tail(buildOutput)}");

            string output = Path.Combine(app, "bin", PackagingTestEnvironment.Configuration, "net10.0");
            if (PackagingTestEnvironment.TorchBackend is "" or "cpu")
            {
                Assert.IsTrue(File.Exists(Path.Combine(output, "runtimes", "linux-x64", "native", "libtorch_cpu.so")),
                    "libtorch-cpu-linux-x64's natives did not reach the application's output through the project references");
            }

            clock.Restart();
            string runOutput = ConsumerAppChecks.RunAndCheck(app, output, Path.Combine(root, "model.zip"));
            Console.WriteLine($"consumer build {buildTime.TotalSeconds:F1} s, run {clock.Elapsed.TotalSeconds:F1} s\n{runOutput}");
        }
        finally
        {
            if (Directory.Exists(root))
            {
                Directory.Delete(root, recursive: true);
            }
        }
    }
}
