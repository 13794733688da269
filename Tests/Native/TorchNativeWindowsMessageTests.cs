namespace MlNetBn.Tests.Native;

/// <summary>
/// TorchNative's message when TorchSharp fails to load on Windows, built by pure functions so that it is checked here
/// (no Windows machine runs these tests). The loader texts are .NET's wording of LoadLibrary failures on Windows:
/// "Unable to load DLL '…' or one of its dependencies: {description} (0x8007xxxx)".
/// </summary>
[TestClass]
public sealed class TorchNativeWindowsMessageTests
{
    private const string Probed = @"C:\app\runtimes\win-x64\native\LibTorchSharp.dll";
    private const string TorchSharpSaid =
        "This application or script uses TorchSharp but doesn't contain a reference to libtorch-cpu-win-x64, Version=2.10.0.0.";
    private const string Start = "TorchSharp could not load its native backend (libtorch and LibTorchSharp).";

    private const string ModuleNotFound =
        $"Unable to load DLL '{Probed}' or one of its dependencies: The specified module could not be found. (0x8007007E)";
    private const string ProcedureNotFound =
        $"Unable to load DLL '{Probed}' or one of its dependencies: The specified procedure could not be found. (0x8007007F)";
    private const string InitializationFailed =
        $"Unable to load DLL '{Probed}' or one of its dependencies: A dynamic link library (DLL) initialization routine failed. (0x8007045A)";

    private const string Causes7E =
        "Windows error 0x7E (module not found): LibTorchSharp.dll or a DLL it needs was not found. Likely causes: " +
        "(1) the Microsoft Visual C++ Redistributable (x64) is not installed: libtorch's c10.dll and torch_cpu.dll need " +
        "MSVCP140.dll, VCRUNTIME140.dll and VCRUNTIME140_1.dll, which no NuGet package ships; install the latest Microsoft " +
        "Visual C++ Redistributable for Visual Studio 2015-2022 (x64), https://aka.ms/vs/17/release/vc_redist.x64.exe. " +
        "(2) A stale or partial NuGet package cache: a libtorch DLL (c10.dll, torch_cpu.dll, libiomp5md.dll) is missing " +
        "from the application's output or truncated, after an interrupted restore or when not every part of a libtorch " +
        "package that comes in parts was restored; delete the libtorch-cpu-win-x64 and torchsharp folders (and any " +
        @"libtorch-cuda-* ones) under %USERPROFILE%\.nuget\packages and the application's bin and obj folders, then " +
        "restore and build again. See the \"Windows\" section of the package README (docs/PACKAGE.md).";

    private const string Causes7F =
        "Windows error 0x7F (procedure not found): a DLL was found but lacks a function that LibTorchSharp.dll or libtorch " +
        "imports. Likely causes: (1) TorchSharp issue #1567 (https://github.com/dotnet/TorchSharp/issues/1567) reports this " +
        "for TorchSharp 0.107.0 with libtorch 2.10.0; MlNetBn's tests read the published packages and find every import of " +
        "TorchSharp 0.107.0's win-x64 LibTorchSharp.dll exported by libtorch-cpu-win-x64 2.10.0, so check that the " +
        "application gets exactly these two versions, and follow the issue if it does. (2) Mixed versions from a stale or " +
        "partial NuGet package cache, or a c10.dll or torch_cpu.dll of another libtorch or PyTorch in the application's " +
        "folder: delete the libtorch-cpu-win-x64 and torchsharp folders (and any libtorch-cuda-* ones) under " +
        @"%USERPROFILE%\.nuget\packages and the application's bin and obj folders, then restore and build again. " +
        "(3) An old Visual C++ runtime (MSVCP140.dll, VCRUNTIME140.dll) on the machine or next to the application: install " +
        "the latest Microsoft Visual C++ Redistributable for Visual Studio 2015-2022 (x64), " +
        "https://aka.ms/vs/17/release/vc_redist.x64.exe, and remove old copies of those DLLs from the application's folder. " +
        "See the \"Windows\" section of the package README (docs/PACKAGE.md).";

    [TestMethod]
    public void Win32Error_ReadsTheHresultOfDotnetsLoaderMessage()
    {
        Assert.AreEqual(0x7E, TorchNative.Win32Error(ModuleNotFound));
        Assert.AreEqual(0x7F, TorchNative.Win32Error(ProcedureNotFound));
        Assert.AreEqual(0x45A, TorchNative.Win32Error(InitializationFailed));
        Assert.AreEqual(0x7F, TorchNative.Win32Error("Le module spécifié est introuvable. (0x8007007f)"), "lower case, localized text");
        Assert.IsNull(TorchNative.Win32Error("libLibTorchSharp.so: cannot open shared object file: No such file or directory"));
        Assert.IsNull(TorchNative.Win32Error("(0x80131524)"), "an HRESULT that is not a Win32 error");
        Assert.IsNull(TorchNative.Win32Error(null));
    }

    [TestMethod]
    public void ModuleNotFound_OnWindows_NamesTheVisualCppRuntimeAndAStaleCache()
    {
        string message = TorchNative.ExplainFailure(TorchSharpSaid, Probed, ModuleNotFound, null, "MLNETBN_TORCH_LIB", windows: true);

        Assert.AreEqual(
            $"{Start} Loading {Probed} directly fails with: {ModuleNotFound} {Causes7E} TorchSharp said: {TorchSharpSaid}",
            message);
    }

    [TestMethod]
    public void ProcedureNotFound_OnWindows_NamesIssue1567AStaleCacheAndAnOldVisualCppRuntime()
    {
        string message = TorchNative.ExplainFailure(TorchSharpSaid, Probed, ProcedureNotFound, null, "MLNETBN_TORCH_LIB", windows: true);

        Assert.AreEqual(
            $"{Start} Loading {Probed} directly fails with: {ProcedureNotFound} {Causes7F} TorchSharp said: {TorchSharpSaid}",
            message);
    }

    [TestMethod]
    public void OtherWindowsError_GetsTheLoadersTextOnly()
    {
        string message = TorchNative.ExplainFailure(TorchSharpSaid, Probed, InitializationFailed, null, "MLNETBN_TORCH_LIB", windows: true);

        Assert.AreEqual($"{Start} Loading {Probed} directly fails with: {InitializationFailed} TorchSharp said: {TorchSharpSaid}", message);
        Assert.IsNull(TorchNative.ExplainWindowsLoadError(0x45A));
        Assert.IsNull(TorchNative.ExplainWindowsLoadError(null));
    }

    [TestMethod]
    public void ProcedureNotFound_InTorchSharpsMessage_WhenNoFileWasProbed()
    {
        string said = $"{TorchSharpSaid} Trace: loading LibTorchSharp failed: {ProcedureNotFound}";

        string message = TorchNative.ExplainFailure(said, null, null, null, "MLNETBN_TORCH_LIB", windows: true);

        Assert.AreEqual($"{Start} {Causes7F} TorchSharp said: {said}", message);
    }

    [TestMethod]
    public void ProcedureNotFound_WithAPreloadedPyTorch_AlsoSaysWhereLibTorchCameFrom()
    {
        const string folder = @"C:\Python\Lib\site-packages\torch\lib";

        string message = TorchNative.ExplainFailure(TorchSharpSaid, Probed, ProcedureNotFound, folder, "MLNETBN_TORCH_LIB", windows: true);

        Assert.AreEqual(
            $"{Start} Loading {Probed} directly fails with: {ProcedureNotFound} {Causes7F} libtorch was preloaded from '{folder}' " +
            $"(MLNETBN_TORCH_LIB); it must be the libtorch version TorchSharp was built against (2.10 for TorchSharp 0.107). " +
            $"TorchSharp said: {TorchSharpSaid}",
            message);
    }

    [TestMethod]
    public void WindowsCodes_AreNotExplainedOnOtherSystems()
    {
        string message = TorchNative.ExplainFailure(TorchSharpSaid, Probed, ModuleNotFound, null, "MLNETBN_TORCH_LIB", windows: false);

        Assert.AreEqual($"{Start} Loading {Probed} directly fails with: {ModuleNotFound} TorchSharp said: {TorchSharpSaid}", message);
    }
}
