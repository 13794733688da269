using System.Reflection;
using System.Reflection.Metadata;
using System.Reflection.Metadata.Ecma335;
using System.Reflection.PortableExecutable;
using Microsoft.ML;
using static MlNetBn.Tests.Internals.InternalsTestEnvironment;

namespace MlNetBn.Tests.Internals;

/// <summary>
/// Our persistence code is compiled against ML.NET internals (build/Publicizer) but runs against the real
/// Microsoft.ML.Core. Nothing but these tests notices when an ML.NET update moves or changes those internals,
/// so they reflect over the assemblies actually loaded at run time.
/// </summary>
[TestClass]
public sealed class MlNetInternalsContractTests
{
    private static readonly Assembly MlNetCore = typeof(ModelSaveContext).Assembly;
    private static readonly Assembly Trainers = typeof(LeNetBnTransformer).Assembly;

    /// <summary>
    /// The internals the persistence design relies on, as ApiSignature writes them: those LeNetBnTransformer's
    /// Save/Create use, plus the schema shape, annotation, host and channel helpers of the estimator. Keyed by the
    /// reflection name of the declaring type (nested types use '+').
    /// </summary>
    private static readonly (string Type, string Member, string Signature)[] ExpectedMembers =
    [
        // Version header of each saved model.
        ("Microsoft.ML.VersionInfo", ".ctor",
            "Microsoft.ML.VersionInfo..ctor(System.String, System.UInt32, System.UInt32, System.UInt32, System.String, System.String, System.String)"),

        // Discovery of our loader by ML.NET's ComponentCatalog.
        ("Microsoft.ML.LoadableClassAttribute", ".ctor",
            "Microsoft.ML.LoadableClassAttribute..ctor(System.Type, System.Type, System.Type, System.String, System.String[])"),
        ("Microsoft.ML.SignatureLoadModel", "Invoke",
            "System.Void Microsoft.ML.SignatureLoadModel.Invoke(Microsoft.ML.ModelLoadContext)"),

        // Saving.
        ("Microsoft.ML.ICanSaveModel", "Save",
            "System.Void Microsoft.ML.ICanSaveModel.Save(Microsoft.ML.ModelSaveContext)"),
        ("Microsoft.ML.ModelSaveContext", "CheckAtModel",
            "System.Void Microsoft.ML.ModelSaveContext.CheckAtModel()"),
        ("Microsoft.ML.ModelSaveContext", "SetVersionInfo",
            "System.Void Microsoft.ML.ModelSaveContext.SetVersionInfo(Microsoft.ML.VersionInfo)"),
        ("Microsoft.ML.ModelSaveContext", "Writer",
            "System.IO.BinaryWriter Microsoft.ML.ModelSaveContext.Writer"),
        ("Microsoft.ML.ModelSaveContext", "SaveBinaryStream",
            "System.Void Microsoft.ML.ModelSaveContext.SaveBinaryStream(System.String, System.Action<System.IO.BinaryWriter>)"),
        ("Microsoft.ML.ModelSaveContext", "SaveTextStream",
            "System.Void Microsoft.ML.ModelSaveContext.SaveTextStream(System.String, System.Action<System.IO.TextWriter>)"),
        ("Microsoft.ML.ModelSaveContext", "SaveNonEmptyString",
            "System.Void Microsoft.ML.ModelSaveContext.SaveNonEmptyString(System.String)"),

        // Loading.
        ("Microsoft.ML.ModelLoadContext", "CheckAtModel",
            "System.Void Microsoft.ML.ModelLoadContext.CheckAtModel(Microsoft.ML.VersionInfo)"),
        ("Microsoft.ML.ModelLoadContext", "Reader",
            "System.IO.BinaryReader Microsoft.ML.ModelLoadContext.Reader"),
        ("Microsoft.ML.ModelLoadContext", "Header",
            "Microsoft.ML.ModelHeader Microsoft.ML.ModelLoadContext.Header"),
        ("Microsoft.ML.ModelLoadContext", "Directory",
            "System.String Microsoft.ML.ModelLoadContext.Directory"),
        ("Microsoft.ML.ModelHeader", "ModelSignature",
            "System.UInt64 Microsoft.ML.ModelHeader.ModelSignature"),
        ("Microsoft.ML.ModelHeader", "ModelVerWritten",
            "System.UInt32 Microsoft.ML.ModelHeader.ModelVerWritten"),
        ("Microsoft.ML.ModelHeader", "ModelVerReadable",
            "System.UInt32 Microsoft.ML.ModelHeader.ModelVerReadable"),
        ("Microsoft.ML.VersionInfo", "ModelSignature",
            "System.UInt64 Microsoft.ML.VersionInfo.ModelSignature"),
        ("Microsoft.ML.VersionInfo", "VerWrittenCur",
            "System.UInt32 Microsoft.ML.VersionInfo.VerWrittenCur"),
        ("Microsoft.ML.VersionInfo", "VerWeCanReadBack",
            "System.UInt32 Microsoft.ML.VersionInfo.VerWeCanReadBack"),
        ("Microsoft.ML.ModelLoadContext", "TryLoadBinaryStream",
            "System.Boolean Microsoft.ML.ModelLoadContext.TryLoadBinaryStream(System.String, System.Action<System.IO.BinaryReader>)"),
        ("Microsoft.ML.ModelLoadContext", "TryLoadTextStream",
            "System.Boolean Microsoft.ML.ModelLoadContext.TryLoadTextStream(System.String, System.Action<System.IO.TextReader>)"),
        ("Microsoft.ML.ModelLoadContext", "LoadNonEmptyString",
            "System.String Microsoft.ML.ModelLoadContext.LoadNonEmptyString()"),

        // Estimator output schema.
        ("Microsoft.ML.SchemaShape+Column", ".ctor",
            "Microsoft.ML.SchemaShape.Column..ctor(System.String, Microsoft.ML.SchemaShape.Column.VectorKind, Microsoft.ML.Data.DataViewType, System.Boolean, Microsoft.ML.SchemaShape)"),
        ("Microsoft.ML.Data.AnnotationUtils", "GetTrainerOutputAnnotation",
            "static System.Collections.Generic.IEnumerable<Microsoft.ML.SchemaShape.Column> Microsoft.ML.Data.AnnotationUtils.GetTrainerOutputAnnotation(System.Boolean)"),
        ("Microsoft.ML.Data.AnnotationUtils", "AnnotationsForMulticlassScoreColumn",
            "static System.Collections.Generic.IEnumerable<Microsoft.ML.SchemaShape.Column> Microsoft.ML.Data.AnnotationUtils.AnnotationsForMulticlassScoreColumn(System.Nullable<Microsoft.ML.SchemaShape.Column>)"),
        ("Microsoft.ML.Data.AnnotationUtils", "GetNamesType",
            "static Microsoft.ML.Data.VectorDataViewType Microsoft.ML.Data.AnnotationUtils.GetNamesType(System.Int32)"),
        ("Microsoft.ML.Data.AnnotationUtils", "GetSlotNamesPair",
            "static System.Collections.Generic.KeyValuePair<System.String, Microsoft.ML.Data.DataViewType> Microsoft.ML.Data.AnnotationUtils.GetSlotNamesPair(System.Int32)"),

        // Host, channels, argument and decode checks, cancellation.
        ("Microsoft.ML.Runtime.IHostEnvironment", "Register",
            "Microsoft.ML.Runtime.IHost Microsoft.ML.Runtime.IHostEnvironment.Register(System.String, System.Nullable<System.Int32>, System.Nullable<System.Boolean>)"),
        ("Microsoft.ML.Runtime.HostExtensions", "Info",
            "static System.Void Microsoft.ML.Runtime.HostExtensions.Info(Microsoft.ML.Runtime.IChannel, System.String)"),
        ("Microsoft.ML.Runtime.HostExtensions", "Info",
            "static System.Void Microsoft.ML.Runtime.HostExtensions.Info(Microsoft.ML.Runtime.IChannel, System.String, System.Object[])"),
        ("Microsoft.ML.Runtime.HostExtensions", "Warning",
            "static System.Void Microsoft.ML.Runtime.HostExtensions.Warning(Microsoft.ML.Runtime.IChannel, System.String)"),
        ("Microsoft.ML.Runtime.Contracts", "CheckAlive",
            "static System.Void Microsoft.ML.Runtime.Contracts.CheckAlive(Microsoft.ML.Runtime.IHostEnvironment)"),
        ("Microsoft.ML.Runtime.ICancelable", "get_IsCanceled",
            "System.Boolean Microsoft.ML.Runtime.ICancelable.get_IsCanceled()"),
        ("Microsoft.ML.Runtime.Contracts", "CheckValue",
            "static System.Void Microsoft.ML.Runtime.Contracts.CheckValue<T>(T, System.String)"),
        ("Microsoft.ML.Runtime.Contracts", "CheckValue",
            "static System.Void Microsoft.ML.Runtime.Contracts.CheckValue<T>(Microsoft.ML.Runtime.IExceptionContext, T, System.String)"),
        ("Microsoft.ML.Runtime.Contracts", "CheckParam",
            "static System.Void Microsoft.ML.Runtime.Contracts.CheckParam(Microsoft.ML.Runtime.IExceptionContext, System.Boolean, System.String, System.String)"),
        ("Microsoft.ML.Runtime.Contracts", "CheckDecode",
            "static System.Void Microsoft.ML.Runtime.Contracts.CheckDecode(Microsoft.ML.Runtime.IExceptionContext, System.Boolean)"),
        ("Microsoft.ML.Runtime.Contracts", "CheckDecode",
            "static System.Void Microsoft.ML.Runtime.Contracts.CheckDecode(Microsoft.ML.Runtime.IExceptionContext, System.Boolean, System.String)"),
        ("Microsoft.ML.Runtime.Contracts", "ExceptDecode",
            "static System.Exception Microsoft.ML.Runtime.Contracts.ExceptDecode(Microsoft.ML.Runtime.IExceptionContext, System.String)"),
    ];

    /// <summary>
    /// Constants are copied into our assembly at compile time: a renamed annotation kind would not fail any
    /// binding, it would silently produce schemas ML.NET no longer understands.
    /// </summary>
    private static readonly (string Type, string Field, string Value)[] ExpectedConstants =
    [
        ("Microsoft.ML.Data.AnnotationUtils+Kinds", "SlotNames", "SlotNames"),
        ("Microsoft.ML.Data.AnnotationUtils+Kinds", "KeyValues", "KeyValues"),
        ("Microsoft.ML.Data.AnnotationUtils+Kinds", "ScoreColumnSetId", "ScoreColumnSetId"),
        ("Microsoft.ML.Data.AnnotationUtils+Kinds", "ScoreColumnKind", "ScoreColumnKind"),
        ("Microsoft.ML.Data.AnnotationUtils+Kinds", "ScoreValueKind", "ScoreValueKind"),
        ("Microsoft.ML.Data.AnnotationUtils+Const+ScoreColumnKind", "MulticlassClassification", "MulticlassClassification"),
        ("Microsoft.ML.Data.AnnotationUtils+Const+ScoreValueKind", "Score", "Score"),
        ("Microsoft.ML.Data.AnnotationUtils+Const+ScoreValueKind", "PredictedLabel", "PredictedLabel"),
    ];

    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    public void MicrosoftMLIsVersion501()
    {
        // AssemblyVersion of every ML.NET assembly is 1.0.0.0; the package version is in the informational version.
        foreach (var assembly in new[] { MlNetCore, typeof(MLContext).Assembly })
        {
            var version = assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion;
            Assert.IsTrue(version == "5.0.1" || version?.StartsWith("5.0.1+", StringComparison.Ordinal) == true,
                $"{assembly.GetName().Name} is {version}, not 5.0.1. {InternalsChangedMessage} (and this test, and the pin in Directory.Packages.props)");
        }
    }

    [TestMethod]
    public void EveryInternalMemberThePersistenceDesignReliesOnStillExists()
    {
        var failures = new List<string>();
        foreach (var (typeName, memberName, expected) in ExpectedMembers)
        {
            var type = MlNetCore.GetType(typeName, throwOnError: false);
            if (type is null)
            {
                failures.Add($"type {typeName} is gone from {MlNetCore.GetName().Name}");
                continue;
            }
            var found = type.GetMember(memberName, MemberTypes.All, AllDeclared).Select(ApiSignature.Of).ToList();
            if (!found.Contains(expected))
            {
                failures.Add($"expected: {expected}" + Environment.NewLine + "    found: " +
                    (found.Count == 0 ? "(no member of that name)" : string.Join(Environment.NewLine + "           ", found)));
            }
        }

        foreach (var (typeName, fieldName, value) in ExpectedConstants)
        {
            var field = MlNetCore.GetType(typeName, throwOnError: false)?.GetField(fieldName, AllDeclared);
            var actual = field is { IsLiteral: true } ? field.GetRawConstantValue() as string : null;
            if (actual != value)
                failures.Add($"constant {typeName}.{fieldName}: expected \"{value}\", found {(field is null ? "no such field" : $"\"{actual}\"")}");
        }

        Assert.IsEmpty(failures, InternalsChangedMessage + Environment.NewLine + string.Join(Environment.NewLine, failures));
    }

    /// <summary>
    /// Every ML.NET type and member that MlNetBn.Trainers' IL refers to must bind against the real ML.NET at
    /// run time, exactly as compiled: the runtime's own resolver checks names and full signatures. Catches what
    /// the list above does not, as the transformer grows.
    /// </summary>
    [TestMethod]
    public void EveryMlNetReferenceInTrainersBindsAtRunTime()
    {
        var module = Trainers.ManifestModule;
        var failures = new List<string>();
        var bound = new List<MemberInfo>();
        var needsGenericContext = new List<string>();

        using (var pe = new PEReader(File.OpenRead(Trainers.Location)))
        {
            var md = pe.GetMetadataReader();
            foreach (var handle in md.TypeReferences)
            {
                if (!IsFromMlNet(md, handle))
                    continue;
                int token = MetadataTokens.GetToken(handle);
                try
                {
                    bound.Add(module.ResolveType(token));
                }
                catch (Exception ex) when (ex is TypeLoadException or FileNotFoundException or BadImageFormatException)
                {
                    failures.Add($"type {Describe(md, handle)}: {ex.GetType().Name}: {ex.Message}");
                }
            }

            foreach (var handle in md.MemberReferences)
            {
                var reference = md.GetMemberReference(handle);
                if (!IsFromMlNet(md, reference.Parent))
                    continue;
                int token = MetadataTokens.GetToken(handle);
                try
                {
                    bound.Add(module.ResolveMember(token)!);
                }
                catch (ArgumentException)
                {
                    // A member of a generic instantiation over our own type parameters: resolvable only with a
                    // generic context. Rare; listed, and still checked by the JIT when the code runs in the tests.
                    needsGenericContext.Add(md.GetString(reference.Name));
                }
                catch (Exception ex) when (ex is MissingMemberException or TypeLoadException or FileNotFoundException or BadImageFormatException)
                {
                    failures.Add($"member {md.GetString(reference.Name)} of {Describe(md, reference.Parent)}: {ex.GetType().Name}: {ex.Message}");
                }
            }
        }

        var internals = bound.Where(m => !ApiSignature.IsAccessibleFromOutside(m))
            .Select(m => (Assembly: (m as Type ?? m.DeclaringType)!.Assembly.GetName().Name!, Signature: ApiSignature.Of(m)))
            .Distinct().OrderBy(x => x.Signature, StringComparer.Ordinal).ToList();
        TestContext.WriteLine($"{bound.Count} ML.NET references bound; {internals.Count} are internal to ML.NET:");
        foreach (var (assembly, signature) in internals)
            TestContext.WriteLine($"  [{assembly}] {signature}");
        if (needsGenericContext.Count > 0)
            TestContext.WriteLine("Not resolvable without a generic context: " + string.Join(", ", needsGenericContext));

        Assert.IsEmpty(failures, InternalsChangedMessage + Environment.NewLine + string.Join(Environment.NewLine, failures));

        // The scan must see the transformer's persistence internals; an empty list means this test stopped testing anything.
        Assert.IsTrue(internals.Any(x => x.Signature.Contains("Microsoft.ML.ModelSaveContext.SetVersionInfo", StringComparison.Ordinal)),
            "The scan found no use of ModelSaveContext.SetVersionInfo in MlNetBn.Trainers.");

        // Each assembly whose internals we use must be exempted from access checks, or the first call throws.
        var exempted = IgnoresAccessChecksTo(Trainers);
        var notExempted = internals.Select(x => x.Assembly).Distinct().Where(a => !exempted.Contains(a)).ToList();
        Assert.IsEmpty(notExempted,
            $"MlNetBn.Trainers uses internals of {string.Join(", ", notExempted)} without [assembly: IgnoresAccessChecksTo]: " +
            "add the assembly to MlNetBnPublicizeAssemblies (build/MlNetBn.Publicize.targets), which also adds the attribute.");
    }

    [TestMethod]
    public void TrainersIsExemptFromAccessChecksToMicrosoftMLCore()
    {
        CollectionAssert.Contains(IgnoresAccessChecksTo(Trainers), "Microsoft.ML.Core");
    }

    internal const BindingFlags AllDeclared =
        BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;

    internal static List<string> IgnoresAccessChecksTo(Assembly assembly) =>
        assembly.GetCustomAttributesData()
            .Where(a => a.AttributeType.FullName == "System.Runtime.CompilerServices.IgnoresAccessChecksToAttribute")
            .Select(a => (string)a.ConstructorArguments[0].Value!)
            .ToList();

    /// <summary>Does this TypeRef/TypeSpec/MemberRef parent live in a Microsoft.ML.* assembly?</summary>
    private static bool IsFromMlNet(MetadataReader md, EntityHandle handle)
    {
        switch (handle.Kind)
        {
            case HandleKind.TypeReference:
                var scope = md.GetTypeReference((TypeReferenceHandle)handle).ResolutionScope;
                if (scope.Kind == HandleKind.TypeReference)
                    return IsFromMlNet(md, scope); // nested type: look at the outermost one
                if (scope.Kind != HandleKind.AssemblyReference)
                    return false;
                var name = md.GetString(md.GetAssemblyReference((AssemblyReferenceHandle)scope).Name);
                return name == "Microsoft.ML" || name.StartsWith("Microsoft.ML.", StringComparison.Ordinal);
            case HandleKind.TypeSpecification:
                // Generic instantiation: GENERICINST (CLASS|VALUETYPE) <generic type> <args...>.
                var blob = md.GetBlobReader(md.GetTypeSpecification((TypeSpecificationHandle)handle).Signature);
                if (blob.ReadSignatureTypeCode() != SignatureTypeCode.GenericTypeInstance)
                    return false;
                blob.ReadCompressedInteger(); // CLASS or VALUETYPE
                return IsFromMlNet(md, blob.ReadTypeHandle());
            default:
                return false;
        }
    }

    private static string Describe(MetadataReader md, EntityHandle handle)
    {
        if (handle.Kind != HandleKind.TypeReference)
            return handle.Kind.ToString();
        var reference = md.GetTypeReference((TypeReferenceHandle)handle);
        var ns = md.GetString(reference.Namespace);
        return (ns.Length > 0 ? ns + "." : "") + md.GetString(reference.Name);
    }
}
