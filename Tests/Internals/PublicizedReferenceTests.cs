using System.Reflection;
using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;
using Microsoft.ML;
using static MlNetBn.Tests.Internals.InternalsTestEnvironment;

namespace MlNetBn.Tests.Internals;

/// <summary>
/// The publicized Microsoft.ML.Core is a compile-time reference only: it must follow the publicizer's rules,
/// keep the real assembly's identity, and never reach an output folder, where it would be loaded instead of
/// the signed original.
/// </summary>
[TestClass]
public sealed class PublicizedReferenceTests
{
    private static string PublicizedCore =>
        PublicizedCopies.Single(p => Path.GetFileName(p) == "Microsoft.ML.Core.dll");

    [TestMethod]
    public void PublicizedCopyKeepsTheRealAssemblyIdentity()
    {
        Assert.IsTrue(File.Exists(PublicizedCore), $"No publicized copy at {PublicizedCore}");
        var copy = AssemblyName.GetAssemblyName(PublicizedCore);
        var original = AssemblyName.GetAssemblyName(NuGetMlNetCorePath);

        Assert.AreEqual(original.FullName, copy.FullName);
        CollectionAssert.AreEqual(original.GetPublicKey(), copy.GetPublicKey());
        CollectionAssert.AreNotEqual(File.ReadAllBytes(NuGetMlNetCorePath),
            File.ReadAllBytes(PublicizedCore), "The publicized copy is identical to the original: the tool changed nothing.");
    }

    /// <summary>
    /// The publicizer's rules as counts over every non-compiler-generated method and field:
    /// internal → public, private protected → protected, everything else unchanged.
    /// </summary>
    [TestMethod]
    public void PublicizedCopyFollowsTheAccessRules()
    {
        var original = CountAccess(NuGetMlNetCorePath);
        var copy = CountAccess(PublicizedCore);

        Assert.IsTrue(original.Get("Assembly") > 0, "The original has no internal members? Then this test checks nothing.");
        Assert.IsTrue(original.Get("FamANDAssem") > 0, "The original has no private protected members? Then this test checks nothing.");
        Assert.IsTrue(original.Get("NotPublicType") > 0, "The original has no internal types? Then this test checks nothing.");

        Assert.AreEqual(0, copy.Get("Assembly"), "internal members left in the copy");
        Assert.AreEqual(0, copy.Get("FamANDAssem"), "private protected members left in the copy");
        Assert.AreEqual(original.Get("Public") + original.Get("Assembly"), copy.Get("Public"), "public = public + internal");
        Assert.AreEqual(original.Get("Family") + original.Get("FamANDAssem"), copy.Get("Family"), "protected = protected + private protected");
        Assert.AreEqual(original.Get("Private"), copy.Get("Private"), "private members must stay private");
        Assert.AreEqual(original.Get("FamORAssem"), copy.Get("FamORAssem"), "protected internal is left alone");
        Assert.AreEqual(0, copy.Get("NotPublicType"), "internal top-level types left in the copy");
        Assert.AreEqual(0, copy.Get("NestedAssemblyType"), "internal nested types left in the copy");
        Assert.AreEqual(original.Get("NestedPrivateType"), copy.Get("NestedPrivateType"), "private nested types must stay private");
    }

    [TestMethod]
    public void RunTimeLoadsTheRealMicrosoftMLCore()
    {
        // What this test process runs on is the NuGet file, byte for byte...
        var loaded = typeof(ModelSaveContext).Assembly.Location;
        CollectionAssert.AreEqual(File.ReadAllBytes(NuGetMlNetCorePath), File.ReadAllBytes(loaded),
            $"{loaded} is not NuGet's Microsoft.ML.Core.dll.");
        // ...so internals are internal at run time, which is why Trainers needs [IgnoresAccessChecksTo].
        var setVersionInfo = typeof(ModelSaveContext).GetMethod("SetVersionInfo", BindingFlags.Instance | BindingFlags.NonPublic);
        Assert.IsNotNull(setVersionInfo);
        Assert.IsTrue(setVersionInfo.IsAssembly, "ModelSaveContext.SetVersionInfo is not internal at run time: the publicized copy was loaded.");
    }

    [TestMethod]
    public void TrainersOutputHasNoPublicizedCopyNorBuildTool()
    {
        var dir = TrainersOutputDirectory;
        Assert.IsTrue(Directory.Exists(dir), dir);
        var core = Path.Combine(dir, "Microsoft.ML.Core.dll");
        if (File.Exists(core))
            CollectionAssert.AreEqual(File.ReadAllBytes(NuGetMlNetCorePath), File.ReadAllBytes(core), $"{core} is not NuGet's.");

        var leaked = Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories)
            .Where(f => Path.GetFileName(f) is "Publicizer.dll" or "Mono.Cecil.dll"
                        || f.Contains($"{Path.DirectorySeparatorChar}publicized{Path.DirectorySeparatorChar}", StringComparison.Ordinal))
            .ToList();
        Assert.IsEmpty(leaked, "Build-time files in the Trainers output: " + string.Join(", ", leaked));

        var deps = Path.Combine(dir, "MlNetBn.Trainers.deps.json");
        if (File.Exists(deps))
        {
            var json = File.ReadAllText(deps);
            Assert.IsFalse(json.Contains("Mono.Cecil", StringComparison.OrdinalIgnoreCase), "Mono.Cecil flows into Trainers' dependencies");
            Assert.IsFalse(json.Contains("Publicizer", StringComparison.OrdinalIgnoreCase), "The publicizer flows into Trainers' dependencies");
        }
    }

    [TestMethod]
    public void TrainersReferencesTheRealStrongNamedMicrosoftMLCore()
    {
        var reference = typeof(LeNetBnTransformer).Assembly.GetReferencedAssemblies()
            .SingleOrDefault(a => a.Name == "Microsoft.ML.Core");
        Assert.IsNotNull(reference, "MlNetBn.Trainers does not reference Microsoft.ML.Core");
        Assert.AreEqual(MlNetPublicKeyToken, Convert.ToHexStringLower(reference.GetPublicKeyToken() ?? []));
        Assert.AreEqual(AssemblyName.GetAssemblyName(NuGetMlNetCorePath).Version, reference.Version);
    }

    private sealed class AccessCounts
    {
        private readonly Dictionary<string, int> _counts = [];

        public void Add(string key) => _counts[key] = Get(key) + 1;

        public int Get(string key) => _counts.GetValueOrDefault(key);
    }

    /// <summary>Counts accessibility levels with the publicizer's own exclusions (compiler-generated, polyfills).</summary>
    private static AccessCounts CountAccess(string path)
    {
        var counts = new AccessCounts();
        using var pe = new PEReader(File.OpenRead(path));
        var md = pe.GetMetadataReader();
        foreach (var typeHandle in md.TypeDefinitions)
        {
            var type = md.GetTypeDefinition(typeHandle);
            if (IsExcluded(md, type))
                continue;
            counts.Add((type.Attributes & TypeAttributes.VisibilityMask) switch
            {
                TypeAttributes.NotPublic => "NotPublicType",
                TypeAttributes.NestedAssembly => "NestedAssemblyType",
                TypeAttributes.NestedFamANDAssem => "NestedAssemblyType",
                TypeAttributes.NestedPrivate => "NestedPrivateType",
                _ => "VisibleType",
            });
            foreach (var handle in type.GetMethods())
            {
                var method = md.GetMethodDefinition(handle);
                if (!IsCompilerGenerated(md, md.GetString(method.Name), method.GetCustomAttributes()))
                    counts.Add((method.Attributes & MethodAttributes.MemberAccessMask).ToString());
            }
            foreach (var handle in type.GetFields())
            {
                var field = md.GetFieldDefinition(handle);
                if (!IsCompilerGenerated(md, md.GetString(field.Name), field.GetCustomAttributes()))
                    counts.Add(((MethodAttributes)(int)(field.Attributes & FieldAttributes.FieldAccessMask)).ToString());
            }
        }
        return counts;
    }

    private static bool IsExcluded(MetadataReader md, TypeDefinition type)
    {
        // Same rules as build/Publicizer: a compiler-generated type or any type nested in one, and polyfills.
        var outer = type;
        while (true)
        {
            if (IsCompilerGenerated(md, md.GetString(outer.Name), outer.GetCustomAttributes()))
                return true;
            if (!outer.GetDeclaringType().IsNil)
                outer = md.GetTypeDefinition(outer.GetDeclaringType());
            else
                break;
        }
        var ns = md.GetString(outer.Namespace);
        return ns == "System" || ns.StartsWith("System.", StringComparison.Ordinal)
            || ns == "Microsoft.CodeAnalysis" || ns.StartsWith("Microsoft.CodeAnalysis.", StringComparison.Ordinal)
            || md.GetString(outer.Name) == "<Module>";
    }

    private static bool IsCompilerGenerated(MetadataReader md, string name, CustomAttributeHandleCollection attributes)
    {
        if (name.StartsWith('<'))
            return true;
        foreach (var handle in attributes)
        {
            var ctor = md.GetCustomAttribute(handle).Constructor;
            if (ctor.Kind != HandleKind.MemberReference)
                continue;
            var parent = md.GetMemberReference((MemberReferenceHandle)ctor).Parent;
            if (parent.Kind == HandleKind.TypeReference
                && md.GetString(md.GetTypeReference((TypeReferenceHandle)parent).Name) == "CompilerGeneratedAttribute")
                return true;
        }
        return false;
    }
}
