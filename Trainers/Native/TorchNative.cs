using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;
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

    private const string WindowsHint = "See the \"Windows\" section of the package README (docs/PACKAGE.md)";

    private static readonly Regex Win32ErrorPattern = new(@"\b0x8007([0-9A-Fa-f]{4})\b", RegexOptions.CultureInvariant);

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
            (string? probed, string? loaderError) = ProbeLibTorchSharp();
            string message = ExplainFailure(cause.Message, probed, loaderError,
                directory is null ? null : Path.GetFullPath(directory), source, OperatingSystem.IsWindows());
            throw new TorchNativeLoadException(message, cause);
        }
    }

    /// <summary>
    /// The message for a failed start of TorchSharp. Pure (the caller asks the loader), so that every branch can be
    /// tested on any operating system.
    /// </summary>
    /// <param name="torchSharpMessage">What TorchSharp's exception said.</param>
    /// <param name="probed">The LibTorchSharp file that was loaded directly for the loader's own error, if one was found.</param>
    /// <param name="loaderError">The loader's error for <paramref name="probed"/>; null when it loaded or none was found.</param>
    /// <param name="directory">The full path of the PyTorch folder libtorch was preloaded from, if any.</param>
    /// <param name="source">Where <paramref name="directory"/> came from.</param>
    /// <param name="windows">Whether this is Windows, whose loader errors carry a Win32 error code.</param>
    internal static string ExplainFailure(string torchSharpMessage, string? probed, string? loaderError, string? directory, string source, bool windows)
    {
        var message = new StringBuilder("TorchSharp could not load its native backend (libtorch and LibTorchSharp).");
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

        // Without a file to probe (an unusual layout), TorchSharp's own message may still carry the loader's code.
        string? windowsCauses = windows ? ExplainWindowsLoadError(Win32Error(loaderError ?? torchSharpMessage)) : null;
        if (windowsCauses is not null)
        {
            message.Append(' ').Append(windowsCauses);
        }

        if (directory is not null)
        {
            message.Append(
                $" libtorch was preloaded from '{directory}' ({source}); it must be the libtorch version" +
                " TorchSharp was built against (2.10 for TorchSharp 0.107).");
        }
        else if (loaderError is null && windowsCauses is null)
        {
            message.Append(
                " Check that the application references the libtorch-cpu-* (or a TorchSharp-cuda-*) package for this platform," +
                $" or set {TorchLibEnvironmentVariable} to an installed PyTorch's torch/lib folder.");
        }

        message.Append(" TorchSharp said: ").Append(torchSharpMessage);
        return message.ToString();
    }

    /// <summary>
    /// The Win32 error code in a Windows loader message as .NET words it
    /// ("Unable to load DLL '…' or one of its dependencies: The specified module could not be found. (0x8007007E)"),
    /// or null when there is none. The description is localized; the HRESULT is not.
    /// </summary>
    internal static int? Win32Error(string? loaderMessage)
    {
        Match match = loaderMessage is null ? Match.Empty : Win32ErrorPattern.Match(loaderMessage);
        return match.Success ? int.Parse(match.Groups[1].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture) : null;
    }

    /// <summary>
    /// The likely causes of a Windows loader failure of LibTorchSharp.dll or libtorch and what to do about each:
    /// for 0x7E (ERROR_MOD_NOT_FOUND) and 0x7F (ERROR_PROC_NOT_FOUND); null for any other code.
    /// </summary>
    internal static string? ExplainWindowsLoadError(int? win32Error)
    {
        const string redistributable =
            "install the latest Microsoft Visual C++ Redistributable for Visual Studio 2015-2022 (x64), https://aka.ms/vs/17/release/vc_redist.x64.exe";
        const string clearCache =
            "delete the libtorch-cpu-win-x64 and torchsharp folders (and any libtorch-cuda-* ones) under %USERPROFILE%\\.nuget\\packages " +
            "and the application's bin and obj folders, then restore and build again";
        return win32Error switch
        {
            0x7E =>
                "Windows error 0x7E (module not found): LibTorchSharp.dll or a DLL it needs was not found. Likely causes: " +
                "(1) the Microsoft Visual C++ Redistributable (x64) is not installed: libtorch's c10.dll and torch_cpu.dll need " +
                $"MSVCP140.dll, VCRUNTIME140.dll and VCRUNTIME140_1.dll, which no NuGet package ships; {redistributable}. " +
                "(2) A stale or partial NuGet package cache: a libtorch DLL (c10.dll, torch_cpu.dll, libiomp5md.dll) is missing " +
                "from the application's output or truncated, after an interrupted restore or when not every part of a libtorch " +
                $"package that comes in parts was restored; {clearCache}. {WindowsHint}.",
            0x7F =>
                "Windows error 0x7F (procedure not found): a DLL was found but lacks a function that LibTorchSharp.dll or libtorch " +
                "imports. Likely causes: (1) TorchSharp issue #1567 (https://github.com/dotnet/TorchSharp/issues/1567) reports this " +
                "for TorchSharp 0.107.0 with libtorch 2.10.0; MlNetBn's tests read the published packages and find every import of " +
                "TorchSharp 0.107.0's win-x64 LibTorchSharp.dll exported by libtorch-cpu-win-x64 2.10.0, so check that the " +
                "application gets exactly these two versions, and follow the issue if it does. (2) Mixed versions from a stale or " +
                "partial NuGet package cache, or a c10.dll or torch_cpu.dll of another libtorch or PyTorch in the application's " +
                $"folder: {clearCache}. (3) An old Visual C++ runtime (MSVCP140.dll, VCRUNTIME140.dll) on the machine or next to " +
                $"the application: {redistributable}, and remove old copies of those DLLs from the application's folder. {WindowsHint}.",
            _ => null,
        };
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
