using System.Buffers.Binary;
using System.Text;

namespace MlNetBn.Tests.Native;

/// <summary>
/// Minimal PE32+ (x64) DLL images, one .rdata section holding the export, import and delay-load import tables that a
/// test asks for; enough for System.Reflection.PortableExecutable and <see cref="PortableExecutableTables"/>, not for
/// Windows to run.
/// </summary>
internal static class SyntheticPe
{
    private const int HeaderSize = 0x200;
    private const int SectionRva = 0x1000;
    private const int OptionalHeaderOffset = 0x58;
    private const int OptionalHeaderSize = 240;

    /// <summary>
    /// A DLL named <paramref name="name"/> that exports <paramref name="exportedNames"/> (ordinals from
    /// <paramref name="ordinalBase"/> in the order given) and then <paramref name="unnamedExports"/> ordinal-only
    /// functions, and imports, per DLL, functions by name (a string) or by ordinal (an int).
    /// </summary>
    public static byte[] Dll(
        string name,
        string[]? exportedNames = null,
        int unnamedExports = 0,
        int ordinalBase = 1,
        (string Dll, object[] Functions)[]? imports = null,
        (string Dll, object[] Functions)[]? delayImports = null)
    {
        var section = new Section();
        // What exported functions point at: outside the export directory, so they are not forwarders.
        int code = section.Allocate(16);
        (int Rva, int Size) exportDirectory = default, importDirectory = default, delayImportDirectory = default;

        if (exportedNames is not null || unnamedExports > 0)
        {
            string[] names = exportedNames ?? [];
            int start = section.Allocate(40);
            int functions = section.Allocate(4 * (names.Length + unnamedExports));
            int namePointers = section.Allocate(4 * names.Length);
            int nameOrdinals = section.Allocate(2 * names.Length);
            section.WriteInt32(start + 12, section.String(name));
            section.WriteInt32(start + 16, ordinalBase);
            section.WriteInt32(start + 20, names.Length + unnamedExports);
            section.WriteInt32(start + 24, names.Length);
            section.WriteInt32(start + 28, functions);
            section.WriteInt32(start + 32, namePointers);
            section.WriteInt32(start + 36, nameOrdinals);
            for (int i = 0; i < names.Length + unnamedExports; i++)
            {
                section.WriteInt32(functions + (4 * i), code);
            }

            // The name pointer table is sorted (the loader binary-searches it); each name keeps its own ordinal.
            int[] byName = Enumerable.Range(0, names.Length).OrderBy(i => names[i], StringComparer.Ordinal).ToArray();
            for (int i = 0; i < byName.Length; i++)
            {
                section.WriteInt32(namePointers + (4 * i), section.String(names[byName[i]]));
                section.WriteUInt16(nameOrdinals + (2 * i), (ushort)byName[i]);
            }

            exportDirectory = (start, section.Length - start);
        }

        if (imports is not null)
        {
            int start = section.Allocate(20 * (imports.Length + 1));
            for (int k = 0; k < imports.Length; k++)
            {
                int lookup = Thunks(section, imports[k].Functions);
                int address = Thunks(section, imports[k].Functions);
                section.WriteInt32(start + (20 * k), lookup);
                section.WriteInt32(start + (20 * k) + 12, section.String(imports[k].Dll));
                section.WriteInt32(start + (20 * k) + 16, address);
            }

            importDirectory = (start, 20 * (imports.Length + 1));
        }

        if (delayImports is not null)
        {
            int start = section.Allocate(32 * (delayImports.Length + 1));
            for (int k = 0; k < delayImports.Length; k++)
            {
                int at = start + (32 * k);
                section.WriteInt32(at, 1); // RVAs, not virtual addresses
                section.WriteInt32(at + 4, section.String(delayImports[k].Dll));
                section.WriteInt32(at + 8, section.Allocate(8));
                section.WriteInt32(at + 12, Thunks(section, delayImports[k].Functions));
                section.WriteInt32(at + 16, Thunks(section, delayImports[k].Functions));
            }

            delayImportDirectory = (start, 32 * (delayImports.Length + 1));
        }

        byte[] data = section.ToArray();
        int rawSize = Align(data.Length, 0x200);
        var image = new byte[HeaderSize + rawSize];
        Span<byte> span = image;
        span[0] = (byte)'M';
        span[1] = (byte)'Z';
        BinaryPrimitives.WriteInt32LittleEndian(span[0x3C..], 0x40);
        "PE\0\0"u8.CopyTo(span[0x40..]);

        Span<byte> coff = span[0x44..];
        BinaryPrimitives.WriteUInt16LittleEndian(coff, 0x8664);                // Machine: AMD64
        BinaryPrimitives.WriteUInt16LittleEndian(coff[2..], 1);                // NumberOfSections
        BinaryPrimitives.WriteUInt16LittleEndian(coff[16..], OptionalHeaderSize);
        BinaryPrimitives.WriteUInt16LittleEndian(coff[18..], 0x2022);          // executable, large address aware, DLL

        Span<byte> optional = span[OptionalHeaderOffset..];
        BinaryPrimitives.WriteUInt16LittleEndian(optional, 0x20B);             // PE32+
        BinaryPrimitives.WriteUInt64LittleEndian(optional[24..], 0x1_8000_0000); // ImageBase
        BinaryPrimitives.WriteInt32LittleEndian(optional[32..], 0x1000);       // SectionAlignment
        BinaryPrimitives.WriteInt32LittleEndian(optional[36..], 0x200);        // FileAlignment
        BinaryPrimitives.WriteUInt16LittleEndian(optional[40..], 6);           // MajorOperatingSystemVersion
        BinaryPrimitives.WriteUInt16LittleEndian(optional[48..], 6);           // MajorSubsystemVersion
        BinaryPrimitives.WriteInt32LittleEndian(optional[56..], SectionRva + Align(data.Length, 0x1000)); // SizeOfImage
        BinaryPrimitives.WriteInt32LittleEndian(optional[60..], HeaderSize);   // SizeOfHeaders
        BinaryPrimitives.WriteUInt16LittleEndian(optional[68..], 3);           // Subsystem: console
        BinaryPrimitives.WriteInt32LittleEndian(optional[108..], 16);          // NumberOfRvaAndSizes
        WriteDirectory(optional, 0, exportDirectory);
        WriteDirectory(optional, 1, importDirectory);
        WriteDirectory(optional, 13, delayImportDirectory);

        Span<byte> header = span[(OptionalHeaderOffset + OptionalHeaderSize)..];
        ".rdata"u8.CopyTo(header);
        BinaryPrimitives.WriteInt32LittleEndian(header[8..], data.Length);     // VirtualSize
        BinaryPrimitives.WriteInt32LittleEndian(header[12..], SectionRva);     // VirtualAddress
        BinaryPrimitives.WriteInt32LittleEndian(header[16..], rawSize);        // SizeOfRawData
        BinaryPrimitives.WriteInt32LittleEndian(header[20..], HeaderSize);     // PointerToRawData
        BinaryPrimitives.WriteUInt32LittleEndian(header[36..], 0x4000_0040);   // initialized data, readable

        data.CopyTo(span[HeaderSize..]);
        return image;
    }

    /// <summary>A zero-terminated 64-bit lookup table: ordinals with the top bit set, names as RVAs of hint/name entries.</summary>
    private static int Thunks(Section section, object[] functions)
    {
        int table = section.Allocate(8 * (functions.Length + 1));
        for (int i = 0; i < functions.Length; i++)
        {
            ulong thunk = functions[i] switch
            {
                int ordinal => (1UL << 63) | (ushort)ordinal,
                string function => (ulong)section.HintName(function),
                _ => throw new ArgumentException("A function is a name (string) or an ordinal (int).", nameof(functions)),
            };
            section.WriteUInt64(table + (8 * i), thunk);
        }

        return table;
    }

    private static void WriteDirectory(Span<byte> optional, int index, (int Rva, int Size) directory)
    {
        BinaryPrimitives.WriteInt32LittleEndian(optional[(112 + (8 * index))..], directory.Rva);
        BinaryPrimitives.WriteInt32LittleEndian(optional[(116 + (8 * index))..], directory.Size);
    }

    private static int Align(int value, int alignment) => (value + alignment - 1) / alignment * alignment;

    /// <summary>The section's bytes, addressed by RVA, growing as pieces are allocated.</summary>
    private sealed class Section
    {
        private byte[] _bytes = new byte[0x400];

        public int Length { get; private set; }

        public int Allocate(int size)
        {
            int offset = Align(Length, 8);
            Length = offset + size;
            if (Length > _bytes.Length)
            {
                Array.Resize(ref _bytes, Math.Max(Length, 2 * _bytes.Length));
            }

            return SectionRva + offset;
        }

        public int String(string value)
        {
            byte[] ascii = Encoding.ASCII.GetBytes(value);
            int rva = Allocate(ascii.Length + 1);
            ascii.CopyTo(_bytes, rva - SectionRva);
            return rva;
        }

        /// <summary>An IMAGE_IMPORT_BY_NAME entry: hint 0 (the loader then searches by name), then the name.</summary>
        public int HintName(string function)
        {
            byte[] ascii = Encoding.ASCII.GetBytes(function);
            int rva = Allocate(2 + ascii.Length + 1);
            ascii.CopyTo(_bytes, rva - SectionRva + 2);
            return rva;
        }

        public void WriteInt32(int rva, int value) => BinaryPrimitives.WriteInt32LittleEndian(_bytes.AsSpan(rva - SectionRva), value);

        public void WriteUInt16(int rva, ushort value) => BinaryPrimitives.WriteUInt16LittleEndian(_bytes.AsSpan(rva - SectionRva), value);

        public void WriteUInt64(int rva, ulong value) => BinaryPrimitives.WriteUInt64LittleEndian(_bytes.AsSpan(rva - SectionRva), value);

        public byte[] ToArray() => _bytes[..Length];
    }
}
