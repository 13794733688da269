using System.Runtime.InteropServices;
using System.Text;

namespace MlNetBn.Examples.Benchmark;

/// <summary>
/// Peak memory per phase. CPU: the process's peak resident set (VmHWM in /proc/self/status), reset at the start of
/// each phase through /proc/self/clear_refs (Linux 4.0+), so each phase reports its own peak. GPU: TorchSharp 0.107
/// does not expose torch.cuda.max_memory_allocated (no binding for the caching allocator's statistics), so the
/// device's used memory is sampled through NVML every few milliseconds instead: device-wide, and including the CUDA
/// context and the caching allocator's reserve, so it is an upper bound of what the tensors took.
/// </summary>
internal sealed class MemoryMeter : IDisposable
{
    private const int SampleMilliseconds = 10;

    private readonly Nvml? _nvml;
    private readonly List<PhaseMemory> _phases = [];
    private double? _processPeakRss;
    private double? _processPeakGpu;

    private MemoryMeter(Nvml? nvml) => _nvml = nvml;

    /// <summary>A meter; GPU sampling only when <paramref name="cuda"/> and NVML is there.</summary>
    public static MemoryMeter Create(bool cuda, int gpuIndex) => new(cuda ? Nvml.TryOpen(gpuIndex) : null);

    /// <summary>The GPU's name from NVML, when sampling the GPU.</summary>
    public string? GpuName => _nvml?.Name;

    /// <summary>Why the GPU column is what it is.</summary>
    public string GpuNote => _nvml is not null
        ? $"GPU: device-wide memory in use from NVML (nvmlDeviceGetMemoryInfo), peak of samples every {SampleMilliseconds} ms; includes the CUDA context and PyTorch's caching-allocator reserve. TorchSharp 0.107 has no torch.cuda.max_memory_allocated."
        : "GPU: not measured (CPU run, or NVML libnvidia-ml.so.1 not found). TorchSharp 0.107 has no torch.cuda.max_memory_allocated.";

    /// <summary>Largest phase peak RSS so far, MiB.</summary>
    public double? ProcessPeakRssMiB => Max(_processPeakRss, ReadHighWaterMarkMiB());

    /// <summary>Largest GPU sample so far, MiB.</summary>
    public double? ProcessPeakGpuMiB => _processPeakGpu;

    /// <summary>Starts a phase; dispose the result to end it and record its peaks.</summary>
    public Phase Start(string name) => new(this, name);

    /// <summary>Takes the phases recorded since the last call.</summary>
    public List<PhaseMemory> TakePhases()
    {
        var taken = _phases.ToList();
        _phases.Clear();
        return taken;
    }

    public void Dispose() => _nvml?.Dispose();

    private static double? Max(double? a, double? b) => a is null ? b : b is null ? a : Math.Max(a.Value, b.Value);

    /// <summary>VmHWM of this process in MiB, or null where /proc is not there.</summary>
    public static double? ReadHighWaterMarkMiB()
    {
        try
        {
            var line = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith("VmHWM:", StringComparison.Ordinal));
            if (line is not null && long.TryParse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], out long kib))
                return kib / 1024.0;
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return null;
    }

    /// <summary>Resets VmHWM to the current RSS ("5" to clear_refs); false where the kernel refuses.</summary>
    private static bool ResetHighWaterMark()
    {
        try
        {
            File.WriteAllText("/proc/self/clear_refs", "5");
            return true;
        }
        catch (IOException) { return false; }
        catch (UnauthorizedAccessException) { return false; }
    }

    /// <summary>One measured phase.</summary>
    public sealed class Phase : IDisposable
    {
        private readonly MemoryMeter _meter;
        private readonly string _name;
        private readonly bool _reset;
        private readonly CancellationTokenSource? _stop;
        private readonly Thread? _sampler;
        private long _gpuPeakBytes;

        internal Phase(MemoryMeter meter, string name)
        {
            _meter = meter;
            _name = name;
            // Before the reset, so that a process peak reached earlier is not lost.
            meter._processPeakRss = Max(meter._processPeakRss, ReadHighWaterMarkMiB());
            _reset = ResetHighWaterMark();
            if (meter._nvml is { } nvml)
            {
                _gpuPeakBytes = nvml.UsedBytes() ?? 0;
                _stop = new CancellationTokenSource();
                var token = _stop.Token;
                _sampler = new Thread(() =>
                {
                    while (!token.IsCancellationRequested)
                    {
                        if (nvml.UsedBytes() is { } used && used > Interlocked.Read(ref _gpuPeakBytes))
                            Interlocked.Exchange(ref _gpuPeakBytes, used);
                        Thread.Sleep(SampleMilliseconds);
                    }
                }) { IsBackground = true, Name = "NVML sampler" };
                _sampler.Start();
            }
        }

        public void Dispose()
        {
            double? gpu = null;
            if (_sampler is not null)
            {
                _stop!.Cancel();
                _sampler.Join();
                _stop.Dispose();
                if (_meter._nvml!.UsedBytes() is { } last && last > _gpuPeakBytes) _gpuPeakBytes = last;
                gpu = _gpuPeakBytes / 1024.0 / 1024.0;
                _meter._processPeakGpu = Max(_meter._processPeakGpu, gpu);
            }
            // Without the reset VmHWM is the process's peak so far, not this phase's: say nothing rather than mislead.
            double? rss = _reset ? ReadHighWaterMarkMiB() : null;
            _meter._processPeakRss = Max(_meter._processPeakRss, ReadHighWaterMarkMiB());
            _meter._phases.Add(new PhaseMemory(_name, rss, gpu));
        }
    }

    /// <summary>The few NVML calls needed (libnvidia-ml.so.1 comes with the NVIDIA driver).</summary>
    private sealed class Nvml : IDisposable
    {
        private const string Library = "libnvidia-ml.so.1";
        private readonly IntPtr _device;

        private Nvml(IntPtr device, string name)
        {
            _device = device;
            Name = name;
        }

        public string Name { get; }

        public static Nvml? TryOpen(int index)
        {
            try
            {
                if (nvmlInit_v2() != 0) return null;
                if (nvmlDeviceGetHandleByIndex_v2((uint)index, out var device) != 0)
                {
                    nvmlShutdown();
                    return null;
                }
                var name = new byte[96];
                string text = nvmlDeviceGetName(device, name, (uint)name.Length) == 0
                    ? Encoding.ASCII.GetString(name, 0, Math.Max(0, Array.IndexOf(name, (byte)0))) : "?";
                return new Nvml(device, text);
            }
            catch (DllNotFoundException) { return null; }
            catch (EntryPointNotFoundException) { return null; }
        }

        public long? UsedBytes() => nvmlDeviceGetMemoryInfo(_device, out var memory) == 0 ? (long)memory.Used : null;

        public void Dispose() => nvmlShutdown();

        [StructLayout(LayoutKind.Sequential)]
        private struct Memory
        {
            public ulong Total;
            public ulong Free;
            public ulong Used;
        }

        [DllImport(Library)] private static extern int nvmlInit_v2();
        [DllImport(Library)] private static extern int nvmlShutdown();
        [DllImport(Library)] private static extern int nvmlDeviceGetHandleByIndex_v2(uint index, out IntPtr device);
        [DllImport(Library)] private static extern int nvmlDeviceGetName(IntPtr device, byte[] name, uint length);
        [DllImport(Library)] private static extern int nvmlDeviceGetMemoryInfo(IntPtr device, out Memory memory);
    }
}
