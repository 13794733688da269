namespace MlNetBn.Tests.Native;

/// <summary>
/// The Windows loader's static resolution, done from the files: starting from some images, each DLL they import is
/// taken from one folder (an application's folder, or a package's native folder) when it is there, or must be a DLL
/// of Windows itself or of the Visual C++ runtime; every function imported from a folder DLL must be among that DLL's
/// exports (by name, or by ordinal). Folder DLLs that get imported are checked in turn.
/// </summary>
internal sealed class WindowsImportCheck
{
    /// <summary>The Visual C++ runtime's DLLs (the "Microsoft Visual C++ Redistributable"): not part of Windows, shipped by no package here.</summary>
    public static readonly IReadOnlySet<string> VisualCppRuntimeDlls =
        new HashSet<string>(["MSVCP140.dll", "VCRUNTIME140.dll", "VCRUNTIME140_1.dll"], StringComparer.OrdinalIgnoreCase);

    /// <summary>
    /// DLLs of Windows that TorchSharp's and libtorch's images import, besides the api-ms-win-* API sets (which include
    /// the Universal CRT, part of Windows since Windows 10). A DLL in neither list fails the check until classified here.
    /// </summary>
    public static readonly IReadOnlySet<string> WindowsDlls = new HashSet<string>(
        [
            "KERNEL32.dll", "ADVAPI32.dll", "USER32.dll", "ole32.dll", "WS2_32.dll", "dbghelp.dll", "WINTRUST.dll",
            "imagehlp.dll", "PSAPI.DLL", "IPHLPAPI.DLL", "USERENV.dll",
        ],
        StringComparer.OrdinalIgnoreCase);

    private readonly Dictionary<string, PeExports> _folderDlls = new(StringComparer.OrdinalIgnoreCase);
    private readonly SortedDictionary<string, int> _importCounts = new(StringComparer.Ordinal);
    private readonly List<string> _unresolved = [];
    private readonly SortedSet<string> _notFound = new(StringComparer.Ordinal);
    private readonly SortedDictionary<string, SortedSet<string>> _systemImporters = new(StringComparer.OrdinalIgnoreCase);

    private WindowsImportCheck()
    {
    }

    /// <summary>Imports per edge, keyed "importer.dll -> imported.dll" (file names as on disk / as in the import table).</summary>
    public IReadOnlyDictionary<string, int> ImportCounts => _importCounts;

    /// <summary>Imported functions that the folder's DLL does not export, one line each ("a.dll imports F from b.dll").</summary>
    public IReadOnlyList<string> Unresolved => _unresolved;

    /// <summary>Imported DLLs found neither in the folder nor among the Windows and Visual C++ runtime DLLs ("x.dll (imported by a.dll)").</summary>
    public IReadOnlyCollection<string> NotFound => _notFound;

    /// <summary>Windows and Visual C++ runtime DLLs imported, each with the images that import it; not checked further.</summary>
    public IReadOnlyDictionary<string, SortedSet<string>> SystemImporters => _systemImporters;

    /// <summary>The exports of each folder DLL that a checked image imports from.</summary>
    public IReadOnlyDictionary<string, PeExports> FolderDlls => _folderDlls;

    /// <summary>Checks <paramref name="roots"/> and, transitively, the DLLs they take from <paramref name="folder"/>.</summary>
    public static WindowsImportCheck Run(IEnumerable<string> roots, string folder)
    {
        Dictionary<string, string> inFolder = Directory.GetFiles(folder, "*.dll")
            .ToDictionary(p => Path.GetFileName(p), StringComparer.OrdinalIgnoreCase);
        var check = new WindowsImportCheck();
        var visited = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        var pending = new Queue<string>(roots);
        while (pending.TryDequeue(out string? image))
        {
            string importer = Path.GetFileName(image);
            if (!visited.Add(importer))
            {
                continue;
            }

            foreach (IGrouping<string, PeImport> fromDll in PortableExecutableTables.ReadImports(image).GroupBy(i => i.Dll, StringComparer.OrdinalIgnoreCase))
            {
                string dll = fromDll.Key;
                check._importCounts[$"{importer} -> {dll}"] = fromDll.Count();
                if (inFolder.TryGetValue(dll, out string? path))
                {
                    PeExports exports = check.Exports(dll, path);
                    foreach (PeImport import in fromDll)
                    {
                        bool exported = import.Name is not null ? exports.Names.Contains(import.Name) : exports.Ordinals.Contains(import.Ordinal!.Value);
                        if (!exported)
                        {
                            check._unresolved.Add($"{importer} imports {import} from {dll}");
                        }
                    }

                    pending.Enqueue(path);
                }
                else if (IsWindowsDll(dll) || VisualCppRuntimeDlls.Contains(dll))
                {
                    if (!check._systemImporters.TryGetValue(dll, out SortedSet<string>? importers))
                    {
                        check._systemImporters[dll] = importers = new SortedSet<string>(StringComparer.OrdinalIgnoreCase);
                    }

                    importers.Add(importer);
                }
                else
                {
                    check._notFound.Add($"{dll} (imported by {importer})");
                }
            }
        }

        return check;
    }

    /// <summary>Whether <paramref name="dll"/> is part of Windows (an API set or a listed system DLL).</summary>
    public static bool IsWindowsDll(string dll) =>
        dll.StartsWith("api-ms-win-", StringComparison.OrdinalIgnoreCase) || WindowsDlls.Contains(dll);

    private PeExports Exports(string dll, string path)
    {
        if (!_folderDlls.TryGetValue(dll, out PeExports? exports))
        {
            _folderDlls[dll] = exports = PortableExecutableTables.ReadExports(path);
        }

        return exports;
    }
}
