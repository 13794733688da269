using Mono.Cecil;

namespace MlNetBn.Build.Publicizer;

/// <summary>
/// Rewrites the accessibility of an assembly's types and members so that C# code compiled against
/// the copy can name what the original keeps internal.
/// </summary>
/// <remarks>
/// The copy is a compile-time reference only. At run time the real, strong-named assembly from NuGet
/// is loaded, and our assembly declares <c>[IgnoresAccessChecksTo]</c> so CoreCLR lets it through.
///
/// Rules (ECMA-335 access values):
/// <list type="bullet">
/// <item>internal (Assembly) becomes public: this is the whole point.</item>
/// <item><c>private protected</c> (FamANDAssem) becomes <c>protected</c> (Family), not public: a member that
/// only derived classes may touch stays that way, so deriving from an ML.NET base class still looks like
/// C# would expect, and the compiler keeps rejecting odd uses.</item>
/// <item><c>protected</c>, <c>protected internal</c> and <c>private</c> are left alone. Keeping private
/// private keeps implementation details (and their names, which change freely) out of reach.</item>
/// <item>Nested types follow the same mapping (NestedAssembly to NestedPublic, NestedFamANDAssem to
/// NestedFamily); a type nested in a private type stays unreachable, as it should.</item>
/// <item>Properties and events carry no accessibility of their own in metadata: the compiler derives it
/// from their accessors, so rewriting the accessor methods is enough.</item>
/// <item>Explicit interface implementations are private methods with an override record: untouched.</item>
/// <item>Compiler-generated types and members (lambdas' closures, local functions, state machines,
/// backing fields, <c>&lt;PrivateImplementationDetails&gt;</c>) keep their accessibility: nobody can name
/// them from C#, and exposing them would only add noise.</item>
/// <item>Internal polyfills in <c>System.*</c> and <c>Microsoft.CodeAnalysis.*</c> (for example
/// <c>IsExternalInit</c> or nullable attributes compiled into older libraries) stay internal: made public,
/// they would clash with the framework's own types and turn into CS0433/CS1685 in every build.</item>
/// </list>
/// The assembly's identity (name, version, culture, public key) is kept, so references compiled against
/// the copy bind to the real assembly at run time. The copy's strong-name signature is no longer valid;
/// the compiler does not check it and the copy is never loaded, so it is not re-signed.
/// </remarks>
public static class AssemblyPublicizer
{
    /// <summary>Reads <paramref name="inputPath"/>, publicizes it and writes <paramref name="outputPath"/> atomically.</summary>
    public static PublicizeStats Publicize(string inputPath, string outputPath)
    {
        inputPath = Path.GetFullPath(inputPath);
        outputPath = Path.GetFullPath(outputPath);
        if (!File.Exists(inputPath))
            throw new FileNotFoundException($"Input assembly not found: {inputPath}", inputPath);
        if (string.Equals(inputPath, outputPath, StringComparison.OrdinalIgnoreCase))
            throw new InvalidOperationException("The publicized copy must not overwrite its input (the NuGet package's assembly).");

        using var resolver = new DefaultAssemblyResolver();
        // Resolving is rarely needed (the rewrite touches flags only), but sibling assemblies of the input
        // are the right place to look if Cecil has to decode a custom attribute or a type forwarder.
        resolver.AddSearchDirectory(Path.GetDirectoryName(inputPath)!);

        // InMemory: no file handle is kept on the NuGet cache's copy (Windows would otherwise lock it).
        var readerParameters = new ReaderParameters { AssemblyResolver = resolver, InMemory = true, ReadSymbols = false };
        using var assembly = AssemblyDefinition.ReadAssembly(inputPath, readerParameters);

        var stats = new PublicizeStats(assembly.Name.Name, assembly.Name.Version);
        foreach (var module in assembly.Modules)
        {
            foreach (var type in module.Types)
                PublicizeType(type, stats);
        }

        var directory = Path.GetDirectoryName(outputPath)!;
        Directory.CreateDirectory(directory);
        // Write next to the target and move into place: a cancelled or failed build never leaves a truncated
        // copy whose fresh timestamp would make MSBuild's incremental check skip the next run.
        var tempPath = Path.Combine(directory, $".{Path.GetFileName(outputPath)}.{Environment.ProcessId}.tmp");
        try
        {
            assembly.Write(tempPath);
            File.Move(tempPath, outputPath, overwrite: true);
        }
        finally
        {
            if (File.Exists(tempPath))
                File.Delete(tempPath);
        }

        stats.OutputPath = outputPath;
        return stats;
    }

    private static void PublicizeType(TypeDefinition type, PublicizeStats stats)
    {
        if (IsCompilerGenerated(type))
            return;
        if (IsPolyfill(type))
        {
            stats.PolyfillsKept.Add(type.FullName);
            return;
        }

        var oldVisibility = type.Attributes & TypeAttributes.VisibilityMask;
        var newVisibility = oldVisibility switch
        {
            TypeAttributes.NotPublic => TypeAttributes.Public,
            TypeAttributes.NestedAssembly => TypeAttributes.NestedPublic,
            TypeAttributes.NestedFamANDAssem => TypeAttributes.NestedFamily,
            _ => oldVisibility,
        };
        if (newVisibility != oldVisibility)
        {
            type.Attributes = (type.Attributes & ~TypeAttributes.VisibilityMask) | newVisibility;
            stats.Types++;
        }

        foreach (var method in type.Methods)
        {
            if (IsCompilerGenerated(method))
                continue;
            var access = method.Attributes & MethodAttributes.MemberAccessMask;
            if (access == MethodAttributes.Assembly)
            {
                method.Attributes = (method.Attributes & ~MethodAttributes.MemberAccessMask) | MethodAttributes.Public;
                stats.Methods++;
            }
            else if (access == MethodAttributes.FamANDAssem)
            {
                method.Attributes = (method.Attributes & ~MethodAttributes.MemberAccessMask) | MethodAttributes.Family;
                stats.PrivateProtected++;
            }
        }

        foreach (var field in type.Fields)
        {
            if (IsCompilerGenerated(field))
                continue;
            var access = field.Attributes & FieldAttributes.FieldAccessMask;
            if (access == FieldAttributes.Assembly)
            {
                field.Attributes = (field.Attributes & ~FieldAttributes.FieldAccessMask) | FieldAttributes.Public;
                stats.Fields++;
            }
            else if (access == FieldAttributes.FamANDAssem)
            {
                field.Attributes = (field.Attributes & ~FieldAttributes.FieldAccessMask) | FieldAttributes.Family;
                stats.PrivateProtected++;
            }
        }

        foreach (var nested in type.NestedTypes)
            PublicizeType(nested, stats);
    }

    private static bool IsCompilerGenerated(IMemberDefinition member)
    {
        // Unspeakable names (<>c, <Foo>b__0_0, <X>k__BackingField, <PrivateImplementationDetails>) are the
        // compiler's; the attribute covers the rest (fixed buffers, some state machines).
        if (member.Name.StartsWith('<'))
            return true;
        foreach (var attribute in member.CustomAttributes)
        {
            if (attribute.AttributeType.FullName == "System.Runtime.CompilerServices.CompilerGeneratedAttribute")
                return true;
        }
        return false;
    }

    private static bool IsPolyfill(TypeDefinition type)
    {
        var ns = GetNamespace(type);
        if (ns == "System" || ns.StartsWith("System.", StringComparison.Ordinal) ||
            ns == "Microsoft.CodeAnalysis" || ns.StartsWith("Microsoft.CodeAnalysis.", StringComparison.Ordinal))
            return true;
        // Types the compiler embeds into assemblies (NullableAttribute, IsReadOnlyAttribute...) carry this marker.
        foreach (var attribute in type.CustomAttributes)
        {
            if (attribute.AttributeType.FullName == "Microsoft.CodeAnalysis.EmbeddedAttribute")
                return true;
        }
        return false;
    }

    private static string GetNamespace(TypeDefinition type)
    {
        while (type.IsNested)
            type = type.DeclaringType;
        return type.Namespace ?? "";
    }
}

/// <summary>What one run changed; printed by the tool so a build log shows when it reran.</summary>
public sealed class PublicizeStats(string assemblyName, Version assemblyVersion)
{
    /// <summary>Types whose visibility changed.</summary>
    public int Types { get; set; }

    /// <summary>Internal methods (including property and event accessors) made public.</summary>
    public int Methods { get; set; }

    /// <summary>Internal fields made public.</summary>
    public int Fields { get; set; }

    /// <summary>Members turned from <c>private protected</c> into <c>protected</c>.</summary>
    public int PrivateProtected { get; set; }

    /// <summary>Internal <c>System.*</c>/<c>Microsoft.CodeAnalysis.*</c> types deliberately left internal.</summary>
    public List<string> PolyfillsKept { get; } = [];

    /// <summary>Where the copy was written.</summary>
    public string OutputPath { get; set; } = "";

    /// <inheritdoc />
    public override string ToString() =>
        $"{assemblyName} {assemblyVersion} -> {OutputPath} ({Types} types, {Methods} methods, {Fields} fields made public; {PrivateProtected} private protected -> protected; {PolyfillsKept.Count} polyfill types kept internal)";
}
