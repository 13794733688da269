using TorchSharp;

namespace MlNetBn.Tests.Stress;

/// <summary>One reading of the process's memory: resident set (native and managed), peak, managed heap, live tensors.</summary>
internal readonly record struct MemoryReading(double RssMb, double PeakRssMb, double ManagedMb, long LiveTensors)
{
    /// <summary>
    /// Reads /proc/self/status (VmRSS, VmHWM) on Linux, the working set elsewhere. No forced GC: the figure is what
    /// the process holds as a user would see it; the managed heap is printed beside it to tell the two apart.
    /// </summary>
    public static MemoryReading Now()
    {
        double rss = Environment.WorkingSet / 1048576.0, peak = double.NaN;
        if (File.Exists("/proc/self/status"))
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
            {
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal)) rss = Kb(line) / 1024.0;
                else if (line.StartsWith("VmHWM:", StringComparison.Ordinal)) peak = Kb(line) / 1024.0;
            }
        }
        return new(rss, peak, GC.GetTotalMemory(forceFullCollection: false) / 1048576.0, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
    }

    /// <summary>
    /// The same after a full, compacting collection (large objects included), the finalizers, and glibc's
    /// malloc_trim: what is left is memory in use, native and managed, without the garbage the GC has not
    /// collected and the freed blocks malloc keeps for reuse. Forcing the finalizers hides no leak of ours:
    /// <see cref="LiveTensors"/> still counts any tensor left to them.
    /// </summary>
    public static MemoryReading AfterFullCollection()
    {
        System.Runtime.GCSettings.LargeObjectHeapCompactionMode = System.Runtime.GCLargeObjectHeapCompactionMode.CompactOnce;
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        TrimMalloc();
        return Now();
    }

    private static bool s_canTrim = OperatingSystem.IsLinux();

    private static void TrimMalloc()
    {
        if (!s_canTrim) return;
        try
        {
            malloc_trim(0);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            s_canTrim = false; // not glibc (musl, for one)
        }
    }

    [System.Runtime.InteropServices.DllImport("libc", ExactSpelling = true)]
    private static extern int malloc_trim(nuint pad);

    private static long Kb(string line) => long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture);

    public override string ToString() => $"RSS {RssMb,7:F1} MB (peak {PeakRssMb,7:F1}), managed {ManagedMb,6:F1} MB, live tensors {LiveTensors,5}";
}
