using System.Globalization;
using System.Reflection;
using System.Runtime.InteropServices;
using TorchSharp;

namespace MlNetBn.Examples.Benchmark;

/// <summary>The machine and software a result was measured on, and the machine's load at the start and end of the run.</summary>
internal sealed record MachineFacts(
    string DateUtc, string CpuModel, int LogicalCores, double? MemoryGiB, string Os, string DotNet, string TorchSharp,
    string LibTorchBuiltAgainst, string? LibTorchRuntime, string TorchNative, int TorchThreads, string Device, string? GpuName,
    string? CudaVisibleDevices, string? OmpWaitPolicy, LoadAverage? LoadAverageStart, LoadAverage? LoadAverageEnd,
    string Benchmark)
{
    /// <summary>
    /// The project's rule: benchmarks run alone, and a run whose 1-minute load average exceeded the core count
    /// (<see cref="LogicalCores"/>) at the start or at the end is void. False where no load average could be read.
    /// </summary>
    public bool IsVoid => LoadAverageStart?.OneMinute > LogicalCores || LoadAverageEnd?.OneMinute > LogicalCores;

    /// <summary>Collects the facts; call after TorchNative.EnsureLoaded and after the device is chosen.</summary>
    public static MachineFacts Collect(TorchSharp.torch.Device device, string torchNative, string? gpuName, LoadAverage? loadAverageStart)
    {
        // TF32 settings are not read here: libtorch's TF32 switches changed API after 2.9, and with a newer PyTorch
        // (MLNETBN_TORCH_LIB) a call into a moved symbol ends the process. PyTorch's defaults: cuDNN TF32 on, cuBLAS off.
        return new MachineFacts(
            DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm:ss 'UTC'", System.Globalization.CultureInfo.InvariantCulture),
            ReadCpuModel(),
            Environment.ProcessorCount,
            ReadMemoryGiB(),
            OsName(),
            RuntimeInformation.FrameworkDescription,
            InformationalVersion(typeof(torch).Assembly),
            torch.__version__,
            ReadLibTorchRuntime(),
            torchNative,
            torch.get_num_threads(),
            device.ToString(),
            gpuName,
            Environment.GetEnvironmentVariable("CUDA_VISIBLE_DEVICES"),
            // libgomp's threads spin while they wait unless OMP_WAIT_POLICY=PASSIVE: on a busy machine that decides the CPU numbers.
            Environment.GetEnvironmentVariable("OMP_WAIT_POLICY"),
            loadAverageStart,
            null,
            InformationalVersion(typeof(MachineFacts).Assembly));
    }

    private static string ReadCpuModel()
    {
        try
        {
            var line = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal));
            if (line is not null) return line[(line.IndexOf(':') + 1)..].Trim();
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return RuntimeInformation.ProcessArchitecture.ToString();
    }

    private static double? ReadMemoryGiB()
    {
        try
        {
            var line = File.ReadLines("/proc/meminfo").FirstOrDefault(l => l.StartsWith("MemTotal:", StringComparison.Ordinal));
            if (line is not null && long.TryParse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], out long kib))
                return Math.Round(kib / 1024.0 / 1024.0, 1);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return null;
    }

    private static string OsName()
    {
        try
        {
            var line = File.ReadLines("/etc/os-release").FirstOrDefault(l => l.StartsWith("PRETTY_NAME=", StringComparison.Ordinal));
            if (line is not null) return $"{line["PRETTY_NAME=".Length..].Trim('"')} ({RuntimeInformation.OSDescription})";
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return RuntimeInformation.OSDescription;
    }

    /// <summary>
    /// The libtorch actually loaded: with MLNETBN_TORCH_LIB, PyTorch's own version file beside torch/lib
    /// (torch/version.py); otherwise the application's libtorch-cpu package (the version TorchSharp was built against).
    /// </summary>
    private static string? ReadLibTorchRuntime()
    {
        var lib = Environment.GetEnvironmentVariable(MlNetBn.TorchNative.TorchLibEnvironmentVariable);
        if (string.IsNullOrWhiteSpace(lib)) return null;
        try
        {
            var versionFile = Path.Combine(Path.GetFullPath(lib), "..", "version.py");
            if (File.Exists(versionFile))
            {
                // Lines such as: __version__ = '2.11.0+cu130'   cuda: Optional[str] = '13.0'
                var values = new Dictionary<string, string>(StringComparer.Ordinal);
                foreach (var pair in File.ReadLines(versionFile).Select(l => l.Split('=', 2)).Where(p => p.Length == 2))
                    values.TryAdd(pair[0].Split(':')[0].Trim(), pair[1].Trim().Trim('\'', '"'));
                values.TryGetValue("__version__", out var version);
                values.TryGetValue("cuda", out var cuda);
                return $"PyTorch {version ?? "?"} (CUDA {cuda ?? "none"}) from {lib}";
            }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return $"from {lib}";
    }

    private static string InformationalVersion(Assembly assembly) =>
        assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? assembly.GetName().Version?.ToString() ?? "?";
}

/// <summary>The machine's load averages (runnable and waiting tasks) over 1, 5 and 15 minutes, from /proc/loadavg.</summary>
internal sealed record LoadAverage(double OneMinute, double FiveMinutes, double FifteenMinutes)
{
    /// <summary>The load averages now; null where there is no /proc/loadavg (not Linux).</summary>
    public static LoadAverage? Read()
    {
        try
        {
            var fields = File.ReadAllText("/proc/loadavg").Split(' ');
            return new LoadAverage(Parse(fields[0]), Parse(fields[1]), Parse(fields[2]));
        }
        catch (IOException) { return null; }
        catch (UnauthorizedAccessException) { return null; }
    }

    /// <summary>"1-minute 5-minute 15-minute", as /proc/loadavg shows them.</summary>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{OneMinute:F2} {FiveMinutes:F2} {FifteenMinutes:F2}");

    private static double Parse(string field) => double.Parse(field, CultureInfo.InvariantCulture);
}
