using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;

namespace MlNetBn.Tests.Native;

/// <summary>One function a PE image imports: by name (with the loader's hint) or by ordinal.</summary>
/// <param name="Dll">The DLL named in the import descriptor, as written there (Windows compares case-insensitively).</param>
/// <param name="Name">The function name, or <see langword="null"/> for an import by ordinal.</param>
/// <param name="Ordinal">The ordinal, or <see langword="null"/> for an import by name.</param>
/// <param name="Delayed">Whether it comes from the delay-load import table rather than the import table.</param>
internal sealed record PeImport(string Dll, string? Name, int? Ordinal, bool Delayed)
{
    public override string ToString() => Name ?? $"#{Ordinal}";
}

/// <summary>What a PE image exports: names and the ordinals that have a function.</summary>
/// <param name="DllName">The name in the export directory (null when the image exports nothing).</param>
/// <param name="Names">Exported names (case-sensitive, as GetProcAddress compares them).</param>
/// <param name="Ordinals">Ordinals whose address-table entry is not empty.</param>
/// <param name="ForwarderCount">Exports that forward to another DLL instead of pointing at code.</param>
internal sealed record PeExports(string? DllName, IReadOnlySet<string> Names, IReadOnlySet<int> Ordinals, int ForwarderCount);

/// <summary>
/// Reads the import and export tables of Windows PE images (any OS): System.Reflection.PortableExecutable locates
/// the data directories and sections, and the tables are walked here as the PE/COFF specification lays them out.
/// The file stays on disk: PEReader maps the sections it is asked for (torch_cpu.dll is 265 MB).
/// </summary>
internal static class PortableExecutableTables
{
    private const int ImportDescriptorSize = 20;
    private const int DelayImportDescriptorSize = 32;

    /// <summary>Every import of <paramref name="path"/>: the import table, then the delay-load import table.</summary>
    public static IReadOnlyList<PeImport> ReadImports(string path)
    {
        using FileStream stream = File.OpenRead(path);
        return ReadImports(stream, path);
    }

    /// <summary>Every import of the image in <paramref name="stream"/> (left open); <paramref name="name"/> is for error messages.</summary>
    public static IReadOnlyList<PeImport> ReadImports(Stream stream, string name)
    {
        using var pe = new PEReader(stream, PEStreamOptions.LeaveOpen);
        return Read(name, () =>
        {
            PEHeader header = OptionalHeader(pe, name);
            bool pe32Plus = header.Magic == PEMagic.PE32Plus;
            var imports = new List<PeImport>();

            // IMAGE_IMPORT_DESCRIPTOR: OriginalFirstThunk (import lookup table), TimeDateStamp, ForwarderChain,
            // Name, FirstThunk (import address table); an all-zero descriptor ends the array.
            if (header.ImportTableDirectory.Size != 0)
            {
                for (int at = header.ImportTableDirectory.RelativeVirtualAddress; ; at += ImportDescriptorSize)
                {
                    BlobReader descriptor = At(pe, at);
                    int lookupTable = descriptor.ReadInt32();
                    descriptor.Offset += 8;
                    int dllName = descriptor.ReadInt32();
                    int addressTable = descriptor.ReadInt32();
                    if (lookupTable == 0 && dllName == 0 && addressTable == 0)
                    {
                        break;
                    }

                    // Without a lookup table (old linkers) the address table holds the same entries until bound.
                    ReadThunks(pe, CString(pe, dllName), lookupTable != 0 ? lookupTable : addressTable, pe32Plus, 0, delayed: false, imports);
                }
            }

            // ImgDelayDescr: Attributes, DllNameRVA, ModuleHandleRVA, ImportAddressTableRVA, ImportNameTableRVA,
            // BoundImportAddressTableRVA, UnloadInformationTableRVA, TimeDateStamp; ends with a zero name.
            // Attribute bit 0 clear means the fields are virtual addresses (old format), not RVAs.
            if (header.DelayImportTableDirectory.Size != 0)
            {
                for (int at = header.DelayImportTableDirectory.RelativeVirtualAddress; ; at += DelayImportDescriptorSize)
                {
                    BlobReader descriptor = At(pe, at);
                    uint attributes = descriptor.ReadUInt32();
                    uint dllName = descriptor.ReadUInt32();
                    descriptor.Offset += 8;
                    uint nameTable = descriptor.ReadUInt32();
                    if (dllName == 0)
                    {
                        break;
                    }

                    long bias = (attributes & 1) != 0 ? 0 : (long)header.ImageBase;
                    ReadThunks(pe, CString(pe, checked((int)(dllName - bias))), checked((int)(nameTable - bias)), pe32Plus, bias, delayed: true, imports);
                }
            }

            return imports;
        });
    }

    /// <summary>The export directory of <paramref name="path"/>; empty when it has none.</summary>
    public static PeExports ReadExports(string path)
    {
        using FileStream stream = File.OpenRead(path);
        return ReadExports(stream, path);
    }

    /// <summary>The export directory of the image in <paramref name="stream"/> (left open); <paramref name="name"/> is for error messages.</summary>
    public static PeExports ReadExports(Stream stream, string name)
    {
        using var pe = new PEReader(stream, PEStreamOptions.LeaveOpen);
        return Read(name, () =>
        {
            DirectoryEntry directory = OptionalHeader(pe, name).ExportTableDirectory;
            if (directory.Size == 0)
            {
                return new PeExports(null, new HashSet<string>(), new HashSet<int>(), 0);
            }

            // IMAGE_EXPORT_DIRECTORY: Characteristics, TimeDateStamp, MajorVersion, MinorVersion, Name, Base,
            // NumberOfFunctions, NumberOfNames, AddressOfFunctions, AddressOfNames, AddressOfNameOrdinals.
            BlobReader reader = At(pe, directory.RelativeVirtualAddress);
            reader.Offset += 12;
            int dllName = reader.ReadInt32();
            int ordinalBase = reader.ReadInt32();
            int functionCount = reader.ReadInt32();
            int nameCount = reader.ReadInt32();
            int functionTable = reader.ReadInt32();
            int nameTable = reader.ReadInt32();

            var ordinals = new HashSet<int>();
            int forwarders = 0;
            BlobReader functions = At(pe, functionTable);
            for (int i = 0; i < functionCount; i++)
            {
                int rva = functions.ReadInt32();
                if (rva == 0)
                {
                    continue;
                }

                ordinals.Add(ordinalBase + i);
                // An address inside the export directory is a forwarder string ("OTHER.Function"), not code.
                if (rva >= directory.RelativeVirtualAddress && rva < directory.RelativeVirtualAddress + directory.Size)
                {
                    forwarders++;
                }
            }

            var names = new HashSet<string>(nameCount, StringComparer.Ordinal);
            BlobReader namePointers = At(pe, nameTable);
            for (int i = 0; i < nameCount; i++)
            {
                names.Add(CString(pe, namePointers.ReadInt32()));
            }

            return new PeExports(dllName == 0 ? null : CString(pe, dllName), names, ordinals, forwarders);
        });
    }

    /// <summary>The COFF machine of <paramref name="path"/> (Amd64 for win-x64).</summary>
    public static Machine ReadMachine(string path)
    {
        using FileStream stream = File.OpenRead(path);
        using var pe = new PEReader(stream);
        return pe.PEHeaders.CoffHeader.Machine;
    }

    /// <summary>
    /// An import lookup table: 64-bit entries in PE32+, 32-bit in PE32, zero-terminated. The top bit set means
    /// import by ordinal (low 16 bits); otherwise the low 31 bits are the RVA of a hint (2 bytes) and a name.
    /// </summary>
    private static void ReadThunks(PEReader pe, string dll, int table, bool pe32Plus, long bias, bool delayed, List<PeImport> imports)
    {
        BlobReader thunks = At(pe, table);
        ulong ordinalFlag = pe32Plus ? 1UL << 63 : 1UL << 31;
        while (true)
        {
            ulong thunk = pe32Plus ? thunks.ReadUInt64() : thunks.ReadUInt32();
            if (thunk == 0)
            {
                return;
            }

            if ((thunk & ordinalFlag) != 0)
            {
                imports.Add(new PeImport(dll, null, (int)(thunk & 0xFFFF), delayed));
            }
            else
            {
                int hintName = checked((int)((long)(thunk & 0x7FFF_FFFF) - bias));
                imports.Add(new PeImport(dll, CString(pe, hintName + 2), null, delayed));
            }
        }
    }

    private static PEHeader OptionalHeader(PEReader pe, string name) =>
        pe.PEHeaders.PEHeader ?? throw new InvalidDataException($"{name} has no PE optional header (an object file?).");

    /// <summary>A reader positioned at <paramref name="rva"/>, reaching to the end of its section's data.</summary>
    private static BlobReader At(PEReader pe, int rva)
    {
        PEMemoryBlock block = pe.GetSectionData(rva);
        if (block.Length == 0)
        {
            throw new InvalidDataException($"RVA 0x{rva:X} is in no section.");
        }

        return block.GetReader();
    }

    /// <summary>The NUL-terminated ASCII string at <paramref name="rva"/>.</summary>
    private static string CString(PEReader pe, int rva)
    {
        BlobReader reader = At(pe, rva);
        int length = reader.IndexOf(0);
        if (length < 0)
        {
            throw new InvalidDataException($"The string at RVA 0x{rva:X} has no terminating NUL in its section.");
        }

        return reader.ReadUTF8(length);
    }

    /// <summary>Turns the reader's exceptions for a damaged image into one that names the file.</summary>
    private static T Read<T>(string name, Func<T> read)
    {
        try
        {
            return read();
        }
        catch (Exception ex) when (ex is BadImageFormatException or InvalidDataException or OverflowException)
        {
            throw new InvalidDataException($"{name}: {ex.Message}", ex);
        }
    }
}
