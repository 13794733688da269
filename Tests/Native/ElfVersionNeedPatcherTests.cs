using MlNetBn.Build;

namespace MlNetBn.Tests.Native;

/// <summary>
/// The ELF patch behind build/LibTorchSharpGlibcxxPatch.targets, on TorchSharp's real libLibTorchSharp.so
/// (the NuGet original and the copy this test project's build put into its output) and on damaged copies.
/// </summary>
[TestClass]
public sealed class ElfVersionNeedPatcherTests
{
    private const string OriginalName = "libLibTorchSharp.so (NuGet original)";

    private static byte[] Original() => File.ReadAllBytes(NativeTestPaths.OriginalLibTorchSharp);

    private static ElfVersionNeed LibStdCxx(byte[] image) =>
        ElfVersionNeedPatcher.ReadVersionNeeds(image, OriginalName).Single(n => n.File == "libstdc++.so.6");

    private static ElfVersionAux Version(byte[] image, string name) => LibStdCxx(image).Versions.First(v => v.Name == name);

    [TestMethod]
    public void ElfHash_MatchesEveryVnaHashTheLinkerWrote()
    {
        IReadOnlyList<ElfVersionNeed> needs = ElfVersionNeedPatcher.ReadVersionNeeds(Original(), OriginalName);
        int checkedCount = 0;
        foreach (ElfVersionAux version in needs.SelectMany(n => n.Versions))
        {
            Assert.AreEqual(version.Hash, ElfVersionNeedPatcher.ElfHash(version.Name), version.Name);
            checkedCount++;
        }

        Assert.IsGreaterThanOrEqualTo(20, checkedCount, "libLibTorchSharp.so needs at least 20 versions");
        Assert.AreEqual(0u, ElfVersionNeedPatcher.ElfHash(""));
        // Published value (glibc's own version hashes are well known); long names exercise the high-nibble fold.
        Assert.AreEqual(0x09691a75u, ElfVersionNeedPatcher.ElfHash("GLIBC_2.2.5"));
    }

    [TestMethod]
    public void Original_NeedsGlibcxx3432_OnlyForTheIostreamMarker()
    {
        byte[] image = Original();
        Assert.IsTrue(LibStdCxx(image).Versions.Any(v => v.Name == "GLIBCXX_3.4.32"),
            "If TorchSharp stopped needing GLIBCXX_3.4.32, the patch (and these tests) can go.");
        Assert.IsTrue(LibStdCxx(image).Versions.Any(v => v.Name == "GLIBCXX_3.4.30"));
    }

    [TestMethod]
    public void BuildOutputCopy_HasNoGlibcxx3432Need()
    {
        byte[] patched = File.ReadAllBytes(NativeTestPaths.PatchedLibTorchSharp);
        ElfVersionNeed libstdcxx = LibStdCxx(patched);
        Assert.IsFalse(libstdcxx.Versions.Any(v => v.Name == "GLIBCXX_3.4.32"),
            $"{NativeTestPaths.PatchedLibTorchSharp} still needs GLIBCXX_3.4.32: the build did not ship the patched copy.");
        Assert.AreEqual(2, libstdcxx.Versions.Count(v => v.Name == "GLIBCXX_3.4.30"));
    }

    [TestMethod]
    public void BuildOutputCopy_DiffersFromOriginal_OnlyInThatVernauxHashAndName()
    {
        byte[] original = Original();
        byte[] patched = File.ReadAllBytes(NativeTestPaths.PatchedLibTorchSharp);
        Assert.AreEqual(original.Length, patched.Length);

        long vernaux = Version(original, "GLIBCXX_3.4.32").Offset;
        var allowed = new HashSet<long>();
        for (long i = 0; i < 4; i++)
        {
            allowed.Add(vernaux + i);     // vna_hash
            allowed.Add(vernaux + 8 + i); // vna_name
        }

        List<long> changed = Enumerable.Range(0, original.Length).Where(i => original[i] != patched[i]).Select(i => (long)i).ToList();
        Assert.IsNotEmpty(changed);
        Assert.IsLessThanOrEqualTo(8, changed.Count);
        foreach (long offset in changed)
        {
            Assert.Contains(offset, allowed, $"byte 0x{offset:x} changed outside the vernaux's vna_hash and vna_name");
        }

        ElfVersionAux rewritten = LibStdCxx(patched).Versions.Single(v => v.Offset == vernaux);
        ElfVersionAux before = Version(original, "GLIBCXX_3.4.32");
        Assert.AreEqual("GLIBCXX_3.4.30", rewritten.Name);
        Assert.AreEqual(ElfVersionNeedPatcher.ElfHash("GLIBCXX_3.4.30"), rewritten.Hash);
        Assert.AreEqual(Version(original, "GLIBCXX_3.4.30").NameOffset, rewritten.NameOffset, "points at the existing string");
        Assert.AreEqual(before.Other, rewritten.Other, "version index unchanged");
        Assert.AreEqual(before.Flags, rewritten.Flags, "flags unchanged");
    }

    [TestMethod]
    public void Patch_InMemory_ReproducesTheBuildOutput_AndIsIdempotent()
    {
        byte[] image = Original();
        ElfPatchResult first = ElfVersionNeedPatcher.Patch(image, OriginalName);
        Assert.AreEqual(ElfPatchOutcome.Patched, first.Outcome);
        CollectionAssert.AreEqual(File.ReadAllBytes(NativeTestPaths.PatchedLibTorchSharp), image);

        byte[] again = (byte[])image.Clone();
        ElfPatchResult second = ElfVersionNeedPatcher.Patch(again, OriginalName);
        Assert.AreEqual(ElfPatchOutcome.AlreadyCompatible, second.Outcome);
        CollectionAssert.AreEqual(image, again);
    }

    [TestMethod]
    public void PatchFile_WritesThePatchedCopy_AndLeavesTheSourceAlone()
    {
        string directory = Directory.CreateTempSubdirectory("mlnetbn-elf-").FullName;
        try
        {
            byte[] source = Original();
            string destination = Path.Combine(directory, "sub", "libLibTorchSharp.so");
            ElfPatchResult result = ElfVersionNeedPatcher.PatchFile(NativeTestPaths.OriginalLibTorchSharp, destination);
            Assert.AreEqual(ElfPatchOutcome.Patched, result.Outcome);
            CollectionAssert.AreEqual(source, Original(), "the NuGet cache file must not change");
            CollectionAssert.AreEqual(File.ReadAllBytes(NativeTestPaths.PatchedLibTorchSharp), File.ReadAllBytes(destination));
            Assert.IsFalse(File.Exists(destination + ".tmp"));

            // An already patched file is copied as it is.
            string copy = Path.Combine(directory, "copy.so");
            Assert.AreEqual(ElfPatchOutcome.AlreadyCompatible, ElfVersionNeedPatcher.PatchFile(destination, copy).Outcome);
            CollectionAssert.AreEqual(File.ReadAllBytes(destination), File.ReadAllBytes(copy));
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [TestMethod]
    public void NotAnElfFile_IsRejectedClearly()
    {
        byte[] text = System.Text.Encoding.ASCII.GetBytes("/* GNU ld script */ INPUT(libfoo.so.1)\n");
        AssertRejected(text, "not an ELF file");
    }

    [TestMethod]
    public void TruncatedFile_IsRejectedClearly()
    {
        AssertRejected(Original().AsSpan(0, 40).ToArray(), "truncated");
        // The header is whole, but the section header table (at the end of the file) is cut off.
        AssertRejected(Original().AsSpan(0, 64 * 1024).ToArray(), "truncated");
    }

    [TestMethod]
    public void Elf32OrBigEndian_IsRejectedClearly()
    {
        byte[] elf32 = Original();
        elf32[4] = 1;
        AssertRejected(elf32, "not ELF64");

        byte[] bigEndian = Original();
        bigEndian[5] = 2;
        AssertRejected(bigEndian, "not little-endian");
    }

    [TestMethod]
    public void NoVersionNeedSection_IsRejectedClearly()
    {
        byte[] image = Original();
        (long header, _, _) = Section(image, 0x6ffffffe);
        WriteUInt32(image, header + 4, 1); // sh_type: SHT_PROGBITS
        AssertRejected(image, "no .gnu.version_r");
    }

    [TestMethod]
    public void NeitherGlibcxx3432Nor3430_IsRejectedAsAnUnknownTorchSharp()
    {
        // What a TorchSharp built with an older GCC (or needing other versions) could look like.
        byte[] image = Original();
        ElfVersionAux older = Version(image, "GLIBCXX_3.4.29");
        foreach (string name in new[] { "GLIBCXX_3.4.32", "GLIBCXX_3.4.30" })
        {
            ElfVersionAux entry = Version(image, name);
            WriteUInt32(image, entry.Offset, older.Hash);
            WriteUInt32(image, entry.Offset + 8, older.NameOffset);
        }

        ElfPatchException ex = AssertRejected(image, "without GLIBCXX_3.4.32 and without GLIBCXX_3.4.30");
        Assert.Contains("MlNetBnPatchLibTorchSharp=false", ex.Message);
    }

    [TestMethod]
    public void RealSymbolBoundToGlibcxx3432_IsNotRenamedIntoARuntimeFailure()
    {
        byte[] image = Original();
        ushort index = Version(image, "GLIBCXX_3.4.32").Other;
        ushort otherIndex = Version(image, "GLIBCXX_3.4.29").Other;
        (_, long versym, long size) = Section(image, 0x6fffffff);
        long entry = Enumerable.Range(0, (int)(size / 2)).Select(i => versym + 2L * i)
            .First(at => (BitConverter.ToUInt16(image, (int)at) & 0x7fff) == otherIndex);
        image[entry] = (byte)index;
        image[entry + 1] = (byte)(index >> 8);
        ElfPatchException ex = AssertRejected(image, "needs GLIBCXX_3.4.32");
        Assert.Contains("symbol '", ex.Message);
    }

    [TestMethod]
    public void NoGlibcxx3430StringToPointAt_IsRejectedRatherThanGrowingTheStringTable()
    {
        byte[] image = Original();
        ElfVersionAux existing = Version(image, "GLIBCXX_3.4.30");
        (_, long dynstr, _) = Section(image, 3, linkedFrom: 0x6ffffffe);
        long lastChar = dynstr + existing.NameOffset + "GLIBCXX_3.4.30".Length - 1;
        image[lastChar] = (byte)'X'; // the only "GLIBCXX_3.4.30" becomes "GLIBCXX_3.4.3X"
        WriteUInt32(image, existing.Offset, ElfVersionNeedPatcher.ElfHash("GLIBCXX_3.4.3X"));
        AssertRejected(image, "no \"GLIBCXX_3.4.30\" string in .dynstr");
    }

    [TestMethod]
    public void MissingSourceFile_IsRejectedClearly()
    {
        string missing = Path.Combine(Path.GetTempPath(), "mlnetbn-does-not-exist", "libLibTorchSharp.so");
        ElfPatchException ex = Assert.ThrowsExactly<ElfPatchException>(
            () => ElfVersionNeedPatcher.PatchFile(missing, missing + ".out"));
        Assert.Contains(missing, ex.Message);
        Assert.Contains("not found", ex.Message);
    }

    private static ElfPatchException AssertRejected(byte[] image, string expected)
    {
        const string name = "/somewhere/libLibTorchSharp.so";
        ElfPatchException ex = Assert.ThrowsExactly<ElfPatchException>(() => ElfVersionNeedPatcher.Patch(image, name));
        Assert.StartsWith(name + ": unexpected ELF file:", ex.Message);
        Assert.Contains(expected, ex.Message);
        return ex;
    }

    /// <summary>
    /// (offset of the section header, file offset, size) of the first section of a type, or of the one that
    /// the section of type <paramref name="linkedFrom"/> links to. Test-side only, to damage files on purpose.
    /// </summary>
    private static (long Header, long Offset, long Size) Section(byte[] image, uint type, uint? linkedFrom = null)
    {
        long shoff = (long)BitConverter.ToUInt64(image, 40);
        int count = BitConverter.ToUInt16(image, 60);
        long HeaderOf(int i) => shoff + (64L * i);
        uint TypeOf(int i) => BitConverter.ToUInt32(image, (int)HeaderOf(i) + 4);
        int index = Enumerable.Range(0, count).First(i => TypeOf(i) == (linkedFrom ?? type));
        if (linkedFrom is not null)
        {
            index = (int)BitConverter.ToUInt32(image, (int)HeaderOf(index) + 40);
            Assert.AreEqual(type, TypeOf(index));
        }

        long header = HeaderOf(index);
        return (header, (long)BitConverter.ToUInt64(image, (int)header + 24), (long)BitConverter.ToUInt64(image, (int)header + 32));
    }

    private static void WriteUInt32(byte[] image, long offset, uint value) =>
        BitConverter.TryWriteBytes(image.AsSpan((int)offset, 4), value);
}
