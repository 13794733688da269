// One copy of the logic that makes TorchSharp's libLibTorchSharp.so load on Linux systems whose
// libstdc++ is older than GCC 13's (Debian 12, Ubuntu 22.04, RHEL 9: newest version GLIBCXX_3.4.30).
//
// Why: TorchSharp 0.107's libLibTorchSharp.so was linked with GCC 13. GCC 13's <iostream> makes every
// translation unit that includes it reference the marker symbol std::ios_base_library_init()
// (_ZSt21ios_base_library_initv, version GLIBCXX_3.4.32). Nothing calls it: it only exists so that the
// linker pulls in libstdc++'s static iostream initialisation. The reference alone adds a version need
// "GLIBCXX_3.4.32" for libstdc++.so.6 to .gnu.version_r, and the dynamic loader refuses the whole file
// when the installed libstdc++ does not define that version, before a single symbol is looked up.
//
// What: rewrite that one need (an Elf64_Vernaux entry) so that it asks for GLIBCXX_3.4.30 instead, by
// pointing its name at the "GLIBCXX_3.4.30" string that the same need list already has in .dynstr and
// storing that string's SysV ELF hash. Exactly the entry's vna_hash and vna_name fields change (8 bytes
// at most); the string table does not grow and no other byte moves. The marker symbol keeps version
// index vna_other, now labelled 3.4.30; it has no relocation that binds it (measured with `ldd -r`:
// no undefined symbols), so the older libstdc++ never has to provide it. On a system with GCC 13+'s
// libstdc++ the patched file loads exactly as before.
//
// Before touching anything the patcher checks that the file is what it expects (ELF64 little-endian,
// a version-need section, a libstdc++.so.6 need list, the 3.4.32 entry used by nothing but the marker
// symbol) and throws ElfPatchException naming the file and what differed otherwise, so that a future
// TorchSharp that needs 3.4.32 for real is never "fixed" into a crash at run time.
//
// This file is compiled in two places: by MSBuild's RoslynCodeTaskFactory from
// LibTorchSharpGlibcxxPatch.targets (the task class below, built against netstandard 2.0, so the code
// keeps to APIs that exist there), and by the unit tests, which define MLNETBN_ELF_PATCHER_NO_TASK to
// leave out the task class and its MSBuild references.
#nullable enable
using System;
using System.Collections.Generic;
using System.IO;
using System.Text;

namespace MlNetBn.Build
{
#if !MLNETBN_ELF_PATCHER_NO_TASK
    /// <summary>
    /// MSBuild task: copies <see cref="SourceFile"/> to <see cref="DestinationFile"/> and, if it needs
    /// GLIBCXX_3.4.32 only for GCC 13's iostream marker, rewrites that need to GLIBCXX_3.4.30.
    /// </summary>
    public sealed class PatchLibTorchSharpGlibcxx : Microsoft.Build.Utilities.Task
    {
        /// <summary>The libLibTorchSharp.so to read (in the NuGet cache; never modified).</summary>
        [Microsoft.Build.Framework.Required]
        public string SourceFile { get; set; } = "";

        /// <summary>Where the patched copy goes (under the intermediate output folder).</summary>
        [Microsoft.Build.Framework.Required]
        public string DestinationFile { get; set; } = "";

        /// <summary>Runs the patch; logs one message saying what was done, or one error saying why not.</summary>
        public override bool Execute()
        {
            try
            {
                ElfPatchResult result = ElfVersionNeedPatcher.PatchFile(SourceFile, DestinationFile);
                Log.LogMessage(Microsoft.Build.Framework.MessageImportance.Normal,
                    "MlNetBn: {0} -> {1}: {2}", SourceFile, DestinationFile, result.Summary);
                return true;
            }
            catch (ElfPatchException ex)
            {
                Log.LogError(null, "MLNETBN0001", null, SourceFile, 0, 0, 0, 0, "{0}", ex.Message);
                return false;
            }
            catch (IOException ex)
            {
                Log.LogError(null, "MLNETBN0002", null, SourceFile, 0, 0, 0, 0,
                    "Could not write the patched copy of libLibTorchSharp.so to '{0}': {1}", DestinationFile, ex.Message);
                return false;
            }
            catch (UnauthorizedAccessException ex)
            {
                Log.LogError(null, "MLNETBN0002", null, SourceFile, 0, 0, 0, 0,
                    "Could not write the patched copy of libLibTorchSharp.so to '{0}': {1}", DestinationFile, ex.Message);
                return false;
            }
        }
    }
#endif

    /// <summary>The file is not the ELF file the patch was written for; the message says what differed.</summary>
    internal sealed class ElfPatchException : Exception
    {
        public ElfPatchException(string message) : base(message) { }
    }

    internal enum ElfPatchOutcome
    {
        /// <summary>The GLIBCXX_3.4.32 need was rewritten to GLIBCXX_3.4.30.</summary>
        Patched,

        /// <summary>No GLIBCXX_3.4.32 need (already patched, or built with an older GCC): nothing to do.</summary>
        AlreadyCompatible,
    }

    internal sealed class ElfPatchResult
    {
        public ElfPatchResult(ElfPatchOutcome outcome, long vernauxOffset, uint oldHash, uint newHash,
            uint oldNameOffset, uint newNameOffset, string summary)
        {
            Outcome = outcome;
            VernauxOffset = vernauxOffset;
            OldHash = oldHash;
            NewHash = newHash;
            OldNameOffset = oldNameOffset;
            NewNameOffset = newNameOffset;
            Summary = summary;
        }

        public ElfPatchOutcome Outcome { get; }

        /// <summary>File offset of the rewritten Elf64_Vernaux, or -1 when nothing was rewritten.</summary>
        public long VernauxOffset { get; }

        public uint OldHash { get; }
        public uint NewHash { get; }
        public uint OldNameOffset { get; }
        public uint NewNameOffset { get; }

        /// <summary>One line for the build log.</summary>
        public string Summary { get; }
    }

    /// <summary>One Elf64_Vernaux entry: a version that a needed library must define.</summary>
    internal sealed class ElfVersionAux
    {
        public ElfVersionAux(long offset, uint hash, ushort flags, ushort other, uint nameOffset, string name)
        {
            Offset = offset;
            Hash = hash;
            Flags = flags;
            Other = other;
            NameOffset = nameOffset;
            Name = name;
        }

        /// <summary>File offset of the entry.</summary>
        public long Offset { get; }
        public uint Hash { get; }
        public ushort Flags { get; }

        /// <summary>The version index that .gnu.version uses for symbols bound to this version.</summary>
        public ushort Other { get; }
        public uint NameOffset { get; }
        public string Name { get; }
    }

    /// <summary>One Elf64_Verneed entry: a needed library (by soname) and the versions it must define.</summary>
    internal sealed class ElfVersionNeed
    {
        public ElfVersionNeed(string file, IReadOnlyList<ElfVersionAux> versions)
        {
            File = file;
            Versions = versions;
        }

        public string File { get; }
        public IReadOnlyList<ElfVersionAux> Versions { get; }
    }

    /// <summary>Reads the version needs of an ELF64 little-endian shared object and rewrites the one described above.</summary>
    internal static class ElfVersionNeedPatcher
    {
        public const string LibStdCxxSoname = "libstdc++.so.6";
        public const string UnsupportedVersion = "GLIBCXX_3.4.32";
        public const string ReplacementVersion = "GLIBCXX_3.4.30";

        /// <summary>Symbols that may carry the GLIBCXX_3.4.32 need: GCC 13's iostream initialisation marker, nothing else.</summary>
        public static readonly string[] MarkerSymbols = { "_ZSt21ios_base_library_initv" };

        // ELF constants (System V gABI and the GNU symbol-versioning extension).
        private const int ElfHeaderSize = 64;
        private const int SectionHeaderSize = 64;
        private const int VerneedSize = 16;
        private const int VernauxSize = 16;
        private const int SymbolSize = 24;
        private const uint ShtStrtab = 3;
        private const uint ShtDynsym = 11;
        private const uint ShtGnuVerneed = 0x6ffffffe;
        private const uint ShtGnuVersym = 0x6fffffff;

        /// <summary>
        /// The SysV ELF hash (gABI, "Hash Table"), which vna_hash must hold for vna_name; the loader
        /// compares it before comparing names.
        /// </summary>
        public static uint ElfHash(string name)
        {
            uint h = 0;
            foreach (byte c in Encoding.ASCII.GetBytes(name))
            {
                h = (h << 4) + c;
                uint g = h & 0xf0000000;
                if (g != 0)
                {
                    h ^= g >> 24;
                }

                h &= ~g;
            }

            return h;
        }

        /// <summary>
        /// Copies <paramref name="sourcePath"/> to <paramref name="destinationPath"/> and patches the copy.
        /// The copy is made with File.Copy (which keeps the file mode) into a temporary file that replaces
        /// the destination only once it is complete and re-verified, so an interrupted build never leaves
        /// a half-patched file that looks up to date to the next incremental build.
        /// </summary>
        public static ElfPatchResult PatchFile(string sourcePath, string destinationPath)
        {
            if (!File.Exists(sourcePath))
            {
                throw new ElfPatchException($"{sourcePath}: file not found.");
            }

            byte[] image = File.ReadAllBytes(sourcePath);
            ElfPatchResult result = Patch(image, sourcePath);

            string? directory = Path.GetDirectoryName(Path.GetFullPath(destinationPath));
            if (!string.IsNullOrEmpty(directory))
            {
                Directory.CreateDirectory(directory);
            }

            string temporary = destinationPath + ".tmp";
            File.Copy(sourcePath, temporary, overwrite: true);
            // The NuGet cache may hold the file read-only; the copy must be writable to be patched.
            File.SetAttributes(temporary, File.GetAttributes(temporary) & ~FileAttributes.ReadOnly);
            if (result.Outcome == ElfPatchOutcome.Patched)
            {
                using (var stream = new FileStream(temporary, FileMode.Open, FileAccess.ReadWrite))
                {
                    // vna_hash at +0 and vna_name at +8; vna_flags and vna_other (+4) stay as they are.
                    WriteRange(stream, image, result.VernauxOffset, 4);
                    WriteRange(stream, image, result.VernauxOffset + 8, 4);
                }

                ElfPatchResult check = Patch(File.ReadAllBytes(temporary), temporary);
                if (check.Outcome != ElfPatchOutcome.AlreadyCompatible)
                {
                    throw new ElfPatchException($"{temporary}: still needs {UnsupportedVersion} after patching.");
                }
            }

            if (File.Exists(destinationPath))
            {
                File.Delete(destinationPath);
            }

            File.Move(temporary, destinationPath);
            return result;
        }

        private static void WriteRange(FileStream stream, byte[] image, long offset, int count)
        {
            stream.Seek(offset, SeekOrigin.Begin);
            stream.Write(image, checked((int)offset), count);
        }

        /// <summary>
        /// Patches <paramref name="image"/> in memory (the 8 bytes of one Vernaux at most) and says what it did.
        /// <paramref name="fileName"/> only names the file in error messages.
        /// </summary>
        public static ElfPatchResult Patch(byte[] image, string fileName)
        {
            var reader = new ElfReader(image, fileName);
            IReadOnlyList<ElfVersionNeed> needs = reader.ReadVersionNeeds();

            ElfVersionNeed? libstdcxx = null;
            foreach (ElfVersionNeed need in needs)
            {
                if (need.File == LibStdCxxSoname)
                {
                    libstdcxx = need;
                }
            }

            if (libstdcxx == null)
            {
                throw reader.Unexpected($"no version need for {LibStdCxxSoname} in .gnu.version_r (is this libLibTorchSharp.so?)");
            }

            ElfVersionAux? unsupported = null;
            ElfVersionAux? replacement = null;
            foreach (ElfVersionAux aux in libstdcxx.Versions)
            {
                if (aux.Name == UnsupportedVersion && unsupported == null)
                {
                    unsupported = aux;
                }
                else if (aux.Name == ReplacementVersion && replacement == null)
                {
                    replacement = aux;
                }
            }

            if (unsupported == null)
            {
                // Already patched (two entries then carry the 3.4.30 name) or built with a GCC that never
                // added the marker: both load as they are. Anything else is a binary this patch was not
                // written for; say so rather than ship something that may not load on older systems.
                if (replacement == null)
                {
                    throw reader.Unexpected(
                        $"{LibStdCxxSoname} is needed without {UnsupportedVersion} and without {ReplacementVersion} " +
                        $"({Describe(libstdcxx)}); this is not the TorchSharp build this patch was written for. " +
                        "If it loads on your oldest target system, set the MSBuild property MlNetBnPatchLibTorchSharp=false.");
                }

                string newer = NewestGlibcxxAbove(libstdcxx, ReplacementVersion);
                if (newer.Length > 0)
                {
                    throw reader.Unexpected(
                        $"{LibStdCxxSoname} is needed with {newer}, which this patch does not address " +
                        "(only GCC 13's iostream marker needing GLIBCXX_3.4.32 is rewritten).");
                }

                return new ElfPatchResult(ElfPatchOutcome.AlreadyCompatible, -1, 0, 0, 0, 0,
                    $"no {UnsupportedVersion} need; copied unchanged.");
            }

            string newerThanUnsupported = NewestGlibcxxAbove(libstdcxx, UnsupportedVersion);
            if (newerThanUnsupported.Length > 0)
            {
                throw reader.Unexpected(
                    $"{LibStdCxxSoname} is also needed with {newerThanUnsupported}, which this patch does not address.");
            }

            // The rewrite is only sound if no symbol actually resolved at run time is bound to 3.4.32.
            IReadOnlyList<string> users = reader.SymbolsWithVersionIndex((ushort)(unsupported.Other & 0x7fff));
            foreach (string symbol in users)
            {
                if (Array.IndexOf(MarkerSymbols, symbol) < 0)
                {
                    throw reader.Unexpected(
                        $"symbol '{symbol}' needs {UnsupportedVersion}; only GCC 13's marker " +
                        $"{string.Join(", ", MarkerSymbols)} may, or renaming the need would break it at run time.");
                }
            }

            uint newNameOffset;
            if (replacement != null)
            {
                newNameOffset = replacement.NameOffset;
            }
            else
            {
                long found = reader.FindDynamicString(ReplacementVersion);
                if (found < 0)
                {
                    throw reader.Unexpected(
                        $"no \"{ReplacementVersion}\" string in .dynstr to point the {UnsupportedVersion} need at " +
                        "(this patch never grows the string table).");
                }

                newNameOffset = (uint)found;
            }

            uint newHash = ElfHash(ReplacementVersion);
            WriteUInt32(image, unsupported.Offset, newHash);
            WriteUInt32(image, unsupported.Offset + 8, newNameOffset);
            return new ElfPatchResult(ElfPatchOutcome.Patched, unsupported.Offset, unsupported.Hash, newHash,
                unsupported.NameOffset, newNameOffset,
                $"rewrote the {LibStdCxxSoname} need {UnsupportedVersion} (version index {unsupported.Other & 0x7fff}, " +
                $"Vernaux at file offset 0x{unsupported.Offset:x}, used only by {string.Join(", ", users)}) to {ReplacementVersion}.");
        }

        /// <summary>Reads every Verneed/Vernaux entry; for tests and diagnostics.</summary>
        public static IReadOnlyList<ElfVersionNeed> ReadVersionNeeds(byte[] image, string fileName)
        {
            return new ElfReader(image, fileName).ReadVersionNeeds();
        }

        private static string Describe(ElfVersionNeed need)
        {
            var names = new List<string>();
            foreach (ElfVersionAux aux in need.Versions)
            {
                names.Add(aux.Name);
            }

            return string.Join(", ", names);
        }

        /// <summary>The highest GLIBCXX_3.4.N version needed above <paramref name="limit"/>, or "".</summary>
        private static string NewestGlibcxxAbove(ElfVersionNeed need, string limit)
        {
            int limitMinor = GlibcxxMinor(limit);
            int best = -1;
            string bestName = "";
            foreach (ElfVersionAux aux in need.Versions)
            {
                int minor = GlibcxxMinor(aux.Name);
                if (minor > limitMinor && minor > best)
                {
                    best = minor;
                    bestName = aux.Name;
                }
            }

            return bestName;
        }

        private static int GlibcxxMinor(string name)
        {
            const string prefix = "GLIBCXX_3.4.";
            int value;
            if (name.StartsWith(prefix, StringComparison.Ordinal) &&
                int.TryParse(name.Substring(prefix.Length), System.Globalization.NumberStyles.None,
                    System.Globalization.CultureInfo.InvariantCulture, out value))
            {
                return value;
            }

            return -1;
        }

        private static void WriteUInt32(byte[] image, long offset, uint value)
        {
            int o = checked((int)offset);
            image[o] = (byte)value;
            image[o + 1] = (byte)(value >> 8);
            image[o + 2] = (byte)(value >> 16);
            image[o + 3] = (byte)(value >> 24);
        }

        /// <summary>Bounds-checked reads of the parts of an ELF64 little-endian file that the patch needs.</summary>
        private sealed class ElfReader
        {
            private readonly byte[] _image;
            private readonly string _fileName;
            private readonly List<Section> _sections = new List<Section>();

            public ElfReader(byte[] image, string fileName)
            {
                _image = image;
                _fileName = fileName;
                ReadHeaders();
            }

            public ElfPatchException Unexpected(string what)
            {
                return new ElfPatchException($"{_fileName}: unexpected ELF file: {what}");
            }

            private void ReadHeaders()
            {
                if (_image.Length < 4 || _image[0] != 0x7f || _image[1] != (byte)'E' || _image[2] != (byte)'L' || _image[3] != (byte)'F')
                {
                    throw Unexpected("not an ELF file (no \\x7fELF magic at offset 0).");
                }

                if (_image.Length < ElfHeaderSize)
                {
                    throw Unexpected($"truncated: {_image.Length} bytes, shorter than the {ElfHeaderSize}-byte ELF64 header.");
                }

                if (_image[4] != 2)
                {
                    throw Unexpected($"not ELF64 (EI_CLASS is {_image[4]}, expected 2).");
                }

                if (_image[5] != 1)
                {
                    throw Unexpected($"not little-endian (EI_DATA is {_image[5]}, expected 1).");
                }

                if (_image[6] != 1)
                {
                    throw Unexpected($"unknown ELF version {_image[6]}.");
                }

                ulong shoff = U64(40);
                ushort shentsize = U16(58);
                ushort shnum = U16(60);
                if (shoff == 0 || shnum == 0)
                {
                    throw Unexpected("no section header table.");
                }

                if (shentsize != SectionHeaderSize)
                {
                    throw Unexpected($"section header size is {shentsize}, expected {SectionHeaderSize}.");
                }

                Require(shoff, (ulong)shnum * SectionHeaderSize, "the section header table");
                for (int i = 0; i < shnum; i++)
                {
                    long at = (long)shoff + (long)i * SectionHeaderSize;
                    _sections.Add(new Section(i, U32(at + 4), U64(at + 24), U64(at + 32), U32(at + 40), U32(at + 44)));
                }
            }

            public IReadOnlyList<ElfVersionNeed> ReadVersionNeeds()
            {
                Section verneed = SingleSection(ShtGnuVerneed, ".gnu.version_r (SHT_GNU_verneed)");
                Section strings = LinkedSection(verneed, ShtStrtab, "string table");
                Require(verneed.Offset, verneed.Size, ".gnu.version_r");

                var needs = new List<ElfVersionNeed>();
                ulong entry = 0;
                // sh_info holds the number of Verneed entries; vn_next chains them. Both must agree,
                // and every offset must stay inside the section (no loops, no reads past its end).
                for (uint n = 0; n < verneed.Info; n++)
                {
                    if (entry + VerneedSize > verneed.Size)
                    {
                        throw Unexpected($"Verneed entry {n} at section offset 0x{entry:x} runs past .gnu.version_r.");
                    }

                    long at = (long)(verneed.Offset + entry);
                    ushort version = U16(at);
                    ushort count = U16(at + 2);
                    uint file = U32(at + 4);
                    uint auxOffset = U32(at + 8);
                    uint next = U32(at + 12);
                    if (version != 1)
                    {
                        throw Unexpected($"Verneed entry {n} has vn_version {version}, expected 1.");
                    }

                    string fileName = ReadString(strings, file);
                    var versions = new List<ElfVersionAux>();
                    ulong aux = entry + auxOffset;
                    for (int a = 0; a < count; a++)
                    {
                        if (aux + VernauxSize > verneed.Size)
                        {
                            throw Unexpected($"Vernaux entry {a} of {fileName} runs past .gnu.version_r.");
                        }

                        long auxAt = (long)(verneed.Offset + aux);
                        uint hash = U32(auxAt);
                        ushort flags = U16(auxAt + 4);
                        ushort other = U16(auxAt + 6);
                        uint name = U32(auxAt + 8);
                        uint auxNext = U32(auxAt + 12);
                        string versionName = ReadString(strings, name);
                        // Cross-checks our hash function against the linker's on every entry: a mismatch
                        // means either is wrong, and then our rewritten hash could be too.
                        if (hash != ElfHash(versionName))
                        {
                            throw Unexpected(
                                $"Vernaux {versionName} of {fileName} has vna_hash 0x{hash:x8}, but its ELF hash is 0x{ElfHash(versionName):x8}.");
                        }

                        versions.Add(new ElfVersionAux(auxAt, hash, flags, other, name, versionName));
                        if (a + 1 < count && auxNext == 0)
                        {
                            throw Unexpected($"the Vernaux chain of {fileName} ends after {a + 1} of {count} entries.");
                        }

                        aux += auxNext;
                    }

                    needs.Add(new ElfVersionNeed(fileName, versions));
                    if (n + 1 < verneed.Info && next == 0)
                    {
                        throw Unexpected($"the Verneed chain ends after {n + 1} of {verneed.Info} entries.");
                    }

                    entry += next;
                }

                if (needs.Count == 0)
                {
                    throw Unexpected(".gnu.version_r has no entries.");
                }

                return needs;
            }

            /// <summary>Names of the dynamic symbols whose .gnu.version index is <paramref name="index"/>.</summary>
            public IReadOnlyList<string> SymbolsWithVersionIndex(ushort index)
            {
                Section versym = SingleSection(ShtGnuVersym, ".gnu.version (SHT_GNU_versym)");
                Section dynsym = LinkedSection(versym, ShtDynsym, "dynamic symbol table");
                Section strings = LinkedSection(dynsym, ShtStrtab, "string table");
                Require(versym.Offset, versym.Size, ".gnu.version");
                Require(dynsym.Offset, dynsym.Size, ".dynsym");
                ulong count = dynsym.Size / SymbolSize;
                if (versym.Size != count * 2)
                {
                    throw Unexpected($".gnu.version has {versym.Size / 2} entries but .dynsym has {count} symbols.");
                }

                var names = new List<string>();
                for (ulong i = 0; i < count; i++)
                {
                    ushort version = (ushort)(U16((long)(versym.Offset + i * 2)) & 0x7fff);
                    if (version == index)
                    {
                        long symbol = (long)(dynsym.Offset + i * SymbolSize);
                        names.Add(ReadString(strings, U32(symbol)));
                    }
                }

                return names;
            }

            /// <summary>Offset of <paramref name="value"/> as a whole NUL-terminated string in the version-need string table, or -1.</summary>
            public long FindDynamicString(string value)
            {
                Section verneed = SingleSection(ShtGnuVerneed, ".gnu.version_r (SHT_GNU_verneed)");
                Section strings = LinkedSection(verneed, ShtStrtab, "string table");
                byte[] wanted = Encoding.ASCII.GetBytes(value + "\0");
                for (ulong i = 0; i + (ulong)wanted.Length <= strings.Size; i++)
                {
                    if (i > 0 && _image[(long)(strings.Offset + i - 1)] != 0)
                    {
                        continue;
                    }

                    bool match = true;
                    for (int k = 0; k < wanted.Length && match; k++)
                    {
                        match = _image[(long)(strings.Offset + i) + k] == wanted[k];
                    }

                    if (match)
                    {
                        return (long)i;
                    }
                }

                return -1;
            }

            private Section SingleSection(uint type, string what)
            {
                Section? found = null;
                foreach (Section section in _sections)
                {
                    if (section.Type == type)
                    {
                        if (found != null)
                        {
                            throw Unexpected($"more than one {what} section.");
                        }

                        found = section;
                    }
                }

                if (found == null)
                {
                    throw Unexpected($"no {what} section.");
                }

                return found;
            }

            private Section LinkedSection(Section from, uint type, string what)
            {
                if (from.Link == 0 || from.Link >= _sections.Count || _sections[(int)from.Link].Type != type)
                {
                    throw Unexpected($"section {from.Index} does not link to a {what} (sh_link {from.Link}).");
                }

                Section linked = _sections[(int)from.Link];
                Require(linked.Offset, linked.Size, $"section {linked.Index} ({what})");
                return linked;
            }

            private string ReadString(Section strings, uint offset)
            {
                if (offset >= strings.Size)
                {
                    throw Unexpected($"string offset 0x{offset:x} is outside its string table (size 0x{strings.Size:x}).");
                }

                long start = (long)(strings.Offset + offset);
                long end = start;
                long limit = (long)(strings.Offset + strings.Size);
                while (end < limit && _image[end] != 0)
                {
                    end++;
                }

                if (end == limit)
                {
                    throw Unexpected($"string at offset 0x{offset:x} is not NUL-terminated inside its string table.");
                }

                return Encoding.ASCII.GetString(_image, (int)start, (int)(end - start));
            }

            private void Require(ulong offset, ulong size, string what)
            {
                if (offset > (ulong)_image.Length || size > (ulong)_image.Length - offset)
                {
                    throw Unexpected(
                        $"truncated: {what} spans 0x{offset:x}..0x{offset + size:x} but the file has only 0x{_image.Length:x} bytes.");
                }
            }

            private ushort U16(long at)
            {
                Require((ulong)at, 2, "a field");
                return (ushort)(_image[at] | (_image[at + 1] << 8));
            }

            private uint U32(long at)
            {
                Require((ulong)at, 4, "a field");
                return (uint)(_image[at] | (_image[at + 1] << 8) | (_image[at + 2] << 16) | (_image[at + 3] << 24));
            }

            private ulong U64(long at)
            {
                return U32(at) | ((ulong)U32(at + 4) << 32);
            }

            private sealed class Section
            {
                public Section(int index, uint type, ulong offset, ulong size, uint link, uint info)
                {
                    Index = index;
                    Type = type;
                    Offset = offset;
                    Size = size;
                    Link = link;
                    Info = info;
                }

                public int Index { get; }
                public uint Type { get; }
                public ulong Offset { get; }
                public ulong Size { get; }
                public uint Link { get; }
                public uint Info { get; }
            }
        }
    }
}
