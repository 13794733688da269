using System.Diagnostics;
using System.Reflection;
using System.Runtime.InteropServices;

namespace MlNetBn.Tests.Internals;

/// <summary>Paths that Internals.targets baked into this assembly, and a way to run the model-load host.</summary>
internal static class InternalsTestEnvironment
{
    internal const string InternalsChangedMessage =
        "ML.NET internals changed: update build/Publicizer and the persistence code.";

    /// <summary>Public key token of every Microsoft.ML.* assembly.</summary>
    internal const string MlNetPublicKeyToken = "cc7b13ffcd2ddd51";

    internal static string ModelLoadHostPath => Metadata("MlNetBn.ModelLoadHost");

    internal static string TrainersOutputDirectory => Metadata("MlNetBn.TrainersOutputDir");

    internal static string NuGetMlNetCorePath => Metadata("MlNetBn.NuGetMlNetCore");

    internal static IReadOnlyList<string> PublicizedCopies =>
        Metadata("MlNetBn.PublicizedCopies").Split(';', StringSplitOptions.RemoveEmptyEntries);

    private static string Metadata(string key)
    {
        var value = typeof(InternalsTestEnvironment).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
            .SingleOrDefault(a => a.Key == key)?.Value;
        Assert.IsFalse(string.IsNullOrWhiteSpace(value),
            $"[AssemblyMetadata(\"{key}\")] is missing: Tests/Internals/Internals.targets did not run.");
        return value!;
    }

    /// <summary>The dotnet host running these tests (so the child uses the same runtime).</summary>
    internal static string DotnetHost
    {
        get
        {
            var fromCli = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
            if (!string.IsNullOrEmpty(fromCli) && File.Exists(fromCli))
                return fromCli;
            var exe = RuntimeInformation.IsOSPlatform(OSPlatform.Windows) ? "dotnet.exe" : "dotnet";
            if (Path.GetFileName(Environment.ProcessPath) == exe)
                return Environment.ProcessPath!;
            // <root>/shared/Microsoft.NETCore.App/<version>/ -> <root>/dotnet
            var runtimeDir = RuntimeEnvironment.GetRuntimeDirectory();
            var root = Path.GetFullPath(Path.Combine(runtimeDir, "..", "..", ".."));
            var candidate = Path.Combine(root, exe);
            return File.Exists(candidate) ? candidate : exe;
        }
    }

    /// <summary>Runs Tests/ModelLoadHost on a zip in a new process and returns its key=value lines.</summary>
    /// <param name="zipPath">The model zip.</param>
    /// <param name="featuresPath">Optional raw float32 rows to transform in the host.</param>
    /// <param name="featureCount">Values per row of <paramref name="featuresPath"/>.</param>
    internal static (int ExitCode, Dictionary<string, string> Values, string Output) RunModelLoadHost(string zipPath, string? featuresPath = null, int featureCount = 0)
    {
        var start = new ProcessStartInfo(DotnetHost)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add("exec");
        start.ArgumentList.Add(ModelLoadHostPath);
        start.ArgumentList.Add(zipPath);
        if (featuresPath is not null)
        {
            start.ArgumentList.Add(featuresPath);
            start.ArgumentList.Add(featureCount.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }

        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        var stdout = process.StandardOutput.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromMinutes(2)))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail("ModelLoadHost did not finish within 2 minutes.");
        }
        process.WaitForExit();
        var output = stdout.Result + stderr.Result;
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var line in stdout.Result.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            int eq = line.IndexOf('=');
            if (eq > 0)
                values[line[..eq]] = line[(eq + 1)..];
        }
        return (process.ExitCode, values, output);
    }
}
