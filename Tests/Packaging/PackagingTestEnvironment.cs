using System.Diagnostics;
using System.Reflection;
using MlNetBn.Tests.Internals;

namespace MlNetBn.Tests.Packaging;

/// <summary>
/// What Tests/MlNetBn.Tests.csproj recorded about this build (the package project, configuration, backend and
/// NuGet folder), and a way to run the dotnet CLI in a child process.
/// </summary>
internal static class PackagingTestEnvironment
{
    /// <summary>Extensions/MlNetBn.Extensions.csproj, the project that packs as MlNetBn.</summary>
    public static string PackageProject => Metadata("MlNetBn.Tests.PackageProject", required: true);

    /// <summary>The repository root (the folder of Directory.Packages.props).</summary>
    public static string RepositoryRoot => Path.GetFullPath(Path.Combine(Path.GetDirectoryName(PackageProject)!, ".."));

    /// <summary>The configuration this test assembly (and so MlNetBn.Extensions) was built in.</summary>
    public static string Configuration => Metadata("MlNetBn.Tests.Configuration", required: true);

    /// <summary>-p:TorchBackend of this build; empty for the default (cpu).</summary>
    public static string TorchBackend => Metadata("MlNetBn.Tests.TorchBackend", required: false);

    /// <summary>The NuGet global packages folder this build restored into.</summary>
    public static string NuGetPackageRoot => Metadata("MlNetBn.Tests.NuGetPackageRoot", required: true);

    /// <summary>The consumer application's sources, copied next to the test assembly.</summary>
    public static string ConsumerAppSources => Path.Combine(AppContext.BaseDirectory, "Packaging", "ConsumerApp");

    private static string Metadata(string key, bool required)
    {
        AssemblyMetadataAttribute? attribute = typeof(PackagingTestEnvironment).Assembly
            .GetCustomAttributes<AssemblyMetadataAttribute>().SingleOrDefault(a => a.Key == key);
        if (attribute is null || (required && string.IsNullOrEmpty(attribute.Value)))
        {
            Assert.Fail($"The test build did not record {key} (see Tests/MlNetBn.Tests.csproj).");
        }

        return attribute!.Value ?? "";
    }

    /// <summary>
    /// Runs <c>dotnet</c> (the host running these tests) with <paramref name="arguments"/> in
    /// <paramref name="workingDirectory"/>; fails the test when it runs longer than <paramref name="timeout"/>.
    /// </summary>
    public static (int ExitCode, string Output) RunDotnet(string workingDirectory, TimeSpan timeout, params string[] arguments)
    {
        var start = new ProcessStartInfo(InternalsTestEnvironment.DotnetHost)
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        // `dotnet test` runs us under MSBuild: its MSBUILD* variables (paths of this SDK's MSBuild, node settings)
        // would steer the child's own MSBuild. The child finds its SDK by itself, as a user's command would.
        foreach (string name in start.Environment.Keys.Where(k => k.StartsWith("MSBUILD", StringComparison.OrdinalIgnoreCase)).ToList())
        {
            start.Environment.Remove(name);
        }

        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";
        start.Environment["DOTNET_SKIP_FIRST_TIME_EXPERIENCE"] = "1";

        using Process process = Process.Start(start)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit();
            Assert.Fail($"dotnet {string.Join(' ', arguments)} did not finish within {timeout.TotalMinutes:F0} minutes:\n{stdout.Result}{stderr.Result}");
        }

        process.WaitForExit();
        return (process.ExitCode, stdout.Result + stderr.Result);
    }

    /// <summary>The last lines of a long tool output, for assertion messages.</summary>
    public static string Tail(string output, int lines = 60) =>
        string.Join('\n', output.Split('\n').TakeLast(lines));
}
