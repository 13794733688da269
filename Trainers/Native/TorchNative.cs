using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using TorchSharp;

namespace MlNetBn;

/// <summary>
/// The one place that initialises TorchSharp's native backend, so that a failure surfaces as one clear
/// <see cref="TorchNativeLoadException"/> instead of TorchSharp's TypeInitializationException, and so that
/// an installed PyTorch can stand in for the libtorch that ships with the application.
/// </summary>
/// <remarks>
/// <para>
/// By default libtorch comes from the application's own output (the libtorch-cpu-* packages) and
/// TorchSharp's LibTorchSharp is the copy that MlNetBn's build patched to load with older libstdc++
/// (see docs/LINUX.md).
/// </para>
/// <para>
/// To use an installed PyTorch instead (typically for CUDA), point <see cref="TorchLibEnvironmentVariable"/>
/// (<c>MLNETBN_TORCH_LIB</c>) or <see cref="TorchLibDirectory"/> at its <c>torch/lib</c> folder. Its c10, torch_cpu,
/// the CUDA libraries when present, and torch are then loaded by full path, in dependency order, before
/// TorchSharp starts; when TorchSharp then loads LibTorchSharp, the loader finds its libtorch dependencies
/// already loaded under the same sonames and binds to those. PyTorch must be the libtorch version that
/// TorchSharp was built against (2.10 for TorchSharp 0.107).
/// </para>
/// </remarks>
public static class TorchNative
{
    /// <summary>The environment variable that names an installed PyTorch's <c>torch/lib</c> folder.</summary>
    public const string TorchLibEnvironmentVariable = "MLNETBN_TORCH_LIB";

    private const string ReadmeHint = "see the \"Linux compatibility\" section of the README (docs/LINUX.md)";

    private static readonly object Gate = new();
    private static string? _torchLibDirectory;
    private static bool _loadAttempted;
    private static TorchNativeInfo? _info;
    private static TorchNativeLoadException? _failure;

    /// <summary>
    /// An installed PyTorch's <c>torch/lib</c> folder to take libtorch from; overrides
    /// <c>MLNETBN_TORCH_LIB</c> when not <see langword="null"/>. Set it before the first
    /// <see cref="EnsureLoaded"/>; changing it afterwards throws <see cref="InvalidOperationException"/>,
    /// since native libraries cannot be unloaded from a process.
    /// </summary>
    public static string? TorchLibDirectory
    {
        get
        {
            lock (Gate)
            {
                return _torchLibDirectory;
            }
        }

        set
        {
            lock (Gate)
            {
                if (_loadAttempted && !string.Equals(value, _torchLibDirectory, StringComparison.Ordinal))
                {
                    throw new InvalidOperationException(
                        $"{nameof(TorchNative)}.{nameof(TorchLibDirectory)} must be set before TorchSharp is loaded; " +
                        "it is already loaded (or failed to load) in this process.");
                }

                _torchLibDirectory = value;
            }
        }
    }

    /// <summary>Whether <see cref="EnsureLoaded"/> has succeeded in this process.</summary>
    public static bool IsLoaded => Volatile.Read(ref _info) is not null;

    /// <summary>
    /// Loads TorchSharp's native backend once per process (later and concurrent calls return the same
    /// result) and says what was loaded from where. Call it before any other TorchSharp use.
    /// </summary>
    /// <returns>What was loaded from where; <see cref="TorchNativeInfo.Description"/> is meant for the log.</returns>
    /// <exception cref="TorchNativeLoadException">
    /// The backend could not be loaded; the message says why and what to do. A failure after TorchSharp itself
    /// was tried is final for the process (TorchSharp cannot retry), and later calls throw it again.
    /// </exception>
    public static TorchNativeInfo EnsureLoaded()
    {
        TorchNativeInfo? info = Volatile.Read(ref _info);
        if (info is not null)
        {
            return info;
        }

        lock (Gate)
        {
            if (_info is not null)
            {
                return _info;
            }

            if (_failure is not null)
            {
                // A new instance, so that each caller gets its own stack trace; same message and cause.
                throw new TorchNativeLoadException(_failure.Message, _failure.InnerException);
            }

            string? directory = _torchLibDirectory;
            string source = $"{nameof(TorchNative)}.{nameof(TorchLibDirectory)}";
            if (directory is null)
            {
                directory = Environment.GetEnvironmentVariable(TorchLibEnvironmentVariable);
                source = TorchLibEnvironmentVariable;
            }

            if (string.IsNullOrWhiteSpace(directory))
            {
                directory = null;
            }

            // Checked before anything is loaded: a wrong folder leaves the process untouched, so it may be fixed and retried.
            IReadOnlyList<string> plan = directory is null ? [] : PlanPreload(directory, source);

            _loadAttempted = true;
            try
            {
                var preloaded = new List<string>();
                foreach (string path in plan)
                {
                    Preload(path, source);
                    preloaded.Add(path);
                }

                InitializeTorchSharp(directory, source);
                TorchNativeInfo loaded = Describe(directory is null ? null : Path.GetFullPath(directory), preloaded);
                Volatile.Write(ref _info, loaded);
                return loaded;
            }
            catch (TorchNativeLoadException ex)
            {
                _failure = ex;
                throw;
            }
        }
    }

    /// <summary>The files to load from a PyTorch <c>torch/lib</c> folder, in dependency order; throws if the folder is not one.</summary>
    private static IReadOnlyList<string> PlanPreload(string directory, string source)
    {
        string folder = Path.GetFullPath(directory);
        const string how = "Set it to an installed PyTorch's torch/lib folder " +
            "(python -c \"import torch, os; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))\"), " +
            "or leave it unset to use the libtorch that ships with the application";
        if (!Directory.Exists(folder))
        {
            throw new TorchNativeLoadException($"{source} points at '{folder}', which is not a folder. {how}.");
        }

        // c10 first (everything needs it), then torch_cpu, the CUDA pair when PyTorch has them, and torch
        // last: libtorch.so is a thin library that needs torch_cpu (and torch_cuda in a CUDA build).
        (string Name, bool Required)[] order =
        [
            ("c10", true), ("torch_cpu", true), ("c10_cuda", false), ("torch_cuda", false), ("torch", true),
        ];
        string? shipped = FindApplicationLibTorch(folder);
        if (shipped is not null)
        {
            // Measured: TorchSharp's own start-up loads the application's torch_cpu by full path as well; two
            // copies of libtorch then register the same operators with one c10 and the process aborts
            // ("Tried to register multiple backend fallbacks..."). Say so now, while nothing is loaded.
            throw new TorchNativeLoadException(
                $"{source} points at '{folder}', but the application also ships libtorch ('{shipped}'). TorchSharp would load " +
                "that copy too, and two copies of libtorch in one process abort it. Leave libtorch out of the application " +
                "(building MlNetBn from source: -p:TorchBackend=external; with the package: a PackageReference to " +
                "libtorch-cpu-linux-x64 and libtorch-cpu-win-x64 with ExcludeAssets=\"all\"), or unset " +
                $"{TorchLibEnvironmentVariable} to use the application's libtorch; {ReadmeHint}.");
        }

        var plan = new List<string>();
        foreach ((string name, bool required) in order)
        {
            string path = Path.Combine(folder, NativeFileName(name));
            if (File.Exists(path))
            {
                plan.Add(path);
            }
            else if (required)
            {
                throw new TorchNativeLoadException(
                    $"{source} points at '{folder}', which has no {NativeFileName(name)} " +
                    $"(a PyTorch torch/lib folder has {NativeFileName("c10")}, {NativeFileName("torch_cpu")} and {NativeFileName("torch")}). {how}.");
            }
        }

        return plan;
    }

    /// <summary>
    /// A torch_cpu library that TorchSharp would find by name in the application's native search
    /// directories (from deps.json) or in its folder, other than the one in <paramref name="folder"/>.
    /// </summary>
    private static string? FindApplicationLibTorch(string folder)
    {
        var directories = new List<string>();
        if (AppContext.GetData("NATIVE_DLL_SEARCH_DIRECTORIES") is string searchDirectories)
        {
            directories.AddRange(searchDirectories.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries));
        }

        // TorchSharp also searches next to TorchSharp.dll, which is the application's folder (Assembly.Location
        // is not used: it is empty in single-file applications).
        directories.Add(AppContext.BaseDirectory);

        string external = Path.TrimEndingDirectorySeparator(folder);
        foreach (string directory in directories)
        {
            string candidate = Path.Combine(directory, NativeFileName("torch_cpu"));
            string candidateFolder = Path.TrimEndingDirectorySeparator(Path.GetFullPath(directory));
            if (File.Exists(candidate) && !string.Equals(candidateFolder, external, StringComparison.Ordinal))
            {
                return Path.GetFullPath(candidate);
            }
        }

        return null;
    }

    private static void Preload(string path, string source)
    {
        try
        {
            NativeLibrary.Load(path);
        }
        catch (Exception ex) when (ex is DllNotFoundException or BadImageFormatException)
        {
            throw new TorchNativeLoadException(
                $"Could not load {path} (from {source}): {ex.Message} " +
                "The folder must hold PyTorch's libtorch for this operating system and architecture, " +
                "the version TorchSharp was built against (2.10 for TorchSharp 0.107), with its own dependencies installed.",
                ex);
        }
    }

    private static void InitializeTorchSharp(string? directory, string source)
    {
        try
        {
            // Runs TorchSharp's static constructor, which loads torch_cpu and LibTorchSharp (and throws
            // TypeInitializationException, for good, when it cannot).
            torch.InitializeDeviceType(DeviceType.CPU);
        }
        catch (Exception ex)
        {
            Exception cause = ex is TypeInitializationException { InnerException: { } inner } ? inner : ex;
            throw new TorchNativeLoadException(ExplainFailure(cause, directory, source), cause);
        }
    }

    private static string ExplainFailure(Exception cause, string? directory, string source)
    {
        var message = new StringBuilder("TorchSharp could not load its native backend (libtorch and LibTorchSharp).");
        (string? probed, string? loaderError) = ProbeLibTorchSharp();
        if (loaderError is not null && loaderError.Contains("GLIBCXX_", StringComparison.Ordinal))
        {
            message.Append(
                $" The system's libstdc++ is older than {probed} asks for: {loaderError}" +
                " That file is TorchSharp's original libLibTorchSharp.so, which asks for GLIBCXX_3.4.32 (GCC 13's libstdc++)" +
                " only because of a marker symbol that GCC 13's <iostream> adds; MlNetBn's build puts a patched copy" +
                " without that need into the output, and this application's output does not have it." +
                " Build or publish the application through the MlNetBn package (its build targets patch the copy)" +
                " or, building from source, import build/LibTorchSharpGlibcxxPatch.targets, and without" +
                $" -p:MlNetBnPatchLibTorchSharp=false; {ReadmeHint}." +
                " Do not replace the system's libstdc++.");
        }
        else if (loaderError is not null)
        {
            message.Append($" Loading {probed} directly fails with: {loaderError}");
        }

        if (directory is not null)
        {
            message.Append(
                $" libtorch was preloaded from '{Path.GetFullPath(directory)}' ({source}); it must be the libtorch version" +
                " TorchSharp was built against (2.10 for TorchSharp 0.107).");
        }
        else if (loaderError is null)
        {
            message.Append(
                " Check that the application references the libtorch-cpu-* (or a TorchSharp-cuda-*) package for this platform," +
                $" or set {TorchLibEnvironmentVariable} to an installed PyTorch's torch/lib folder.");
        }

        message.Append(" TorchSharp said: ").Append(cause.Message);
        return message.ToString();
    }

    /// <summary>
    /// Loads the application's LibTorchSharp by full path, only to get the loader's own error text
    /// (TorchSharp's exception does not carry it). Returns the path tried and the error, if any.
    /// </summary>
    private static (string? Path, string? Error) ProbeLibTorchSharp()
    {
        string file = NativeFileName("LibTorchSharp");
        string baseDirectory = AppContext.BaseDirectory;
        string[] candidates =
        [
            Path.Combine(baseDirectory, "runtimes", RuntimeInformation.RuntimeIdentifier, "native", file),
            Path.Combine(baseDirectory, "runtimes", PortableRuntimeIdentifier(), "native", file),
            Path.Combine(baseDirectory, file),
        ];
        foreach (string candidate in candidates)
        {
            if (!File.Exists(candidate))
            {
                continue;
            }

            try
            {
                NativeLibrary.Load(candidate);
                return (candidate, null);
            }
            catch (Exception ex) when (ex is DllNotFoundException or BadImageFormatException)
            {
                return (candidate, ex.Message);
            }
        }

        return (null, null);
    }

    private static string PortableRuntimeIdentifier()
    {
        string os = OperatingSystem.IsWindows() ? "win" : OperatingSystem.IsMacOS() ? "osx" : "linux";
        return $"{os}-{RuntimeInformation.ProcessArchitecture.ToString().ToLowerInvariant()}";
    }

    private static string NativeFileName(string name) =>
        OperatingSystem.IsWindows() ? $"{name}.dll" :
        OperatingSystem.IsMacOS() ? $"lib{name}.dylib" :
        $"lib{name}.so";

    /// <summary>Reads back from the OS which files the process mapped, rather than assuming where the loader found them.</summary>
    private static TorchNativeInfo Describe(string? directory, IReadOnlyList<string> preloaded)
    {
        var paths = new List<string>();
        try
        {
            using var process = Process.GetCurrentProcess();
            foreach (ProcessModule module in process.Modules)
            {
                if (!string.IsNullOrEmpty(module.FileName))
                {
                    paths.Add(module.FileName);
                }
            }
        }
        catch (Exception ex) when (ex is InvalidOperationException or NotSupportedException or System.ComponentModel.Win32Exception)
        {
            // Some sandboxes hide the module list; the description then says the paths were not reported.
        }

        List<string> Named(string name) => paths
            .Where(p => string.Equals(Path.GetFileName(p), NativeFileName(name), StringComparison.OrdinalIgnoreCase))
            .Distinct(StringComparer.Ordinal)
            .ToList();

        List<string> libTorchSharp = Named("LibTorchSharp");
        List<string> torchCpu = Named("torch_cpu");
        var warnings = new List<string>();
        if (torchCpu.Count > 1)
        {
            // Normally refused before loading (FindApplicationLibTorch); kept in case a copy came from elsewhere.
            warnings.Add(
                $"{NativeFileName("torch_cpu")} is loaded from {torchCpu.Count} places ({string.Join(", ", torchCpu)}); " +
                "two copies of libtorch in one process are not supported");
        }

        if (directory is not null && torchCpu.Count > 0 &&
            !torchCpu.Any(p => string.Equals(Path.GetDirectoryName(p), directory, StringComparison.Ordinal)))
        {
            warnings.Add($"libtorch_cpu was not loaded from '{directory}' although it was preloaded from there");
        }

        return new TorchNativeInfo(directory, preloaded,
            libTorchSharp.FirstOrDefault(), torchCpu.FirstOrDefault(), warnings);
    }
}
