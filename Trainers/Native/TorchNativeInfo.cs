namespace MlNetBn;

/// <summary>
/// What <see cref="TorchNative.EnsureLoaded"/> loaded and from where, for the trainer's log.
/// The paths are the files the process actually mapped, read back from the operating system after loading.
/// </summary>
public sealed class TorchNativeInfo
{
    internal TorchNativeInfo(
        string? torchLibDirectory,
        IReadOnlyList<string> preloadedLibraries,
        string? libTorchSharpPath,
        string? libTorchCpuPath,
        IReadOnlyList<string> warnings)
    {
        TorchLibDirectory = torchLibDirectory;
        PreloadedLibraries = preloadedLibraries;
        LibTorchSharpPath = libTorchSharpPath;
        LibTorchCpuPath = libTorchCpuPath;
        Warnings = warnings;
        Description = Describe();
    }

    /// <summary>
    /// The PyTorch <c>torch/lib</c> folder libtorch was preloaded from (<see cref="TorchNative.TorchLibDirectory"/>
    /// or the <c>MLNETBN_TORCH_LIB</c> environment variable), or <see langword="null"/> when libtorch came
    /// from the application's own packages.
    /// </summary>
    public string? TorchLibDirectory { get; }

    /// <summary>Full paths of the libraries preloaded from <see cref="TorchLibDirectory"/>, in load order (empty when none).</summary>
    public IReadOnlyList<string> PreloadedLibraries { get; }

    /// <summary>Where TorchSharp's native glue library (libLibTorchSharp.so / LibTorchSharp.dll) was loaded from, when the OS reports it.</summary>
    public string? LibTorchSharpPath { get; }

    /// <summary>Where libtorch's CPU library (libtorch_cpu.so / torch_cpu.dll) was loaded from, when the OS reports it.</summary>
    public string? LibTorchCpuPath { get; }

    /// <summary>Things that loaded but deserve attention (for example two copies of libtorch in one process).</summary>
    public IReadOnlyList<string> Warnings { get; }

    /// <summary>One paragraph saying what was loaded from where, suitable for a log line.</summary>
    public string Description { get; }

    /// <summary>Returns <see cref="Description"/>.</summary>
    public override string ToString() => Description;

    private string Describe()
    {
        var text = new System.Text.StringBuilder("TorchSharp native backend loaded");
        text.Append(": LibTorchSharp from ").Append(LibTorchSharpPath ?? "(path not reported)");
        text.Append("; libtorch_cpu from ").Append(LibTorchCpuPath ?? "(path not reported)");
        if (TorchLibDirectory is not null)
        {
            text.Append("; preloaded from ").Append(TorchNative.TorchLibEnvironmentVariable).Append(" folder ")
                .Append(TorchLibDirectory).Append(": ")
                .Append(string.Join(", ", PreloadedLibraries.Select(Path.GetFileName)));
        }

        foreach (string warning in Warnings)
        {
            text.Append(". Warning: ").Append(warning);
        }

        return text.Append('.').ToString();
    }
}
