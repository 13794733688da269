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
    /// Exactly the ML.NET internals MlNetBn.Trainers' IL refers to, as "[assembly] signature" (ApiSignature), sorted:
    /// persistence (version header, loader discovery, save and load contexts), the estimator's schema shape, the
    /// catalog's environment and its GPU settings, the host's liveness check, and ONNX export (the transformed view
    /// as an ITransformCanSaveOnnx, the OnnxContext/OnnxNode calls of Trainers/Transform/OnnxExport.cs). A new use of
    /// an internal fails the test until it is added here on purpose; an entry no longer used fails it too.
    /// </summary>
    private static readonly string[] PinnedInternals =
    [
        "[Microsoft.ML.Core] Microsoft.ML.LoadableClassAttribute..ctor(System.Type, System.Type, System.Type, System.String, System.String[])",
        "[Microsoft.ML.Data] Microsoft.ML.Model.OnnxConverter.OnnxNode Microsoft.ML.Model.OnnxConverter.OnnxContext.CreateNode(System.String, System.Collections.Generic.IEnumerable<System.String>, System.Collections.Generic.IEnumerable<System.String>, System.String, System.String)",
        "[Microsoft.ML.Data] Microsoft.ML.Model.OnnxConverter.OnnxNode Microsoft.ML.Model.OnnxConverter.OnnxContext.CreateNode(System.String, System.String, System.String, System.String, System.String)",
        "[Microsoft.ML.Core] Microsoft.ML.ModelHeader Microsoft.ML.ModelLoadContext.Header",
        "[Microsoft.ML.Data] Microsoft.ML.Runtime.IHostEnvironment Microsoft.ML.Data.IInternalCatalog.get_Environment()",
        "[Microsoft.ML.Core] Microsoft.ML.SchemaShape.Column..ctor(System.String, Microsoft.ML.SchemaShape.Column.VectorKind, Microsoft.ML.Data.DataViewType, System.Boolean, Microsoft.ML.SchemaShape)",
        "[Microsoft.ML.Core] Microsoft.ML.VersionInfo..ctor(System.String, System.UInt32, System.UInt32, System.UInt32, System.String, System.String, System.String)",
        "[Microsoft.ML.Data] System.Boolean Microsoft.ML.Model.OnnxConverter.OnnxContext.ContainsColumn(System.String)",
        "[Microsoft.ML.Core] System.Boolean Microsoft.ML.ModelLoadContext.TryLoadBinaryStream(System.String, System.Action<System.IO.BinaryReader>)",
        "[Microsoft.ML.Core] System.Boolean Microsoft.ML.Runtime.IHostEnvironmentInternal.get_FallbackToCpu()",
        "[Microsoft.ML.Core] System.Boolean Microsoft.ML.SchemaShape.TryFindColumn(System.String, Microsoft.ML.SchemaShape.Column&)",
        "[Microsoft.ML.Core] System.IO.BinaryReader Microsoft.ML.ModelLoadContext.Reader",
        "[Microsoft.ML.Core] System.IO.BinaryWriter Microsoft.ML.ModelSaveContext.Writer",
        "[Microsoft.ML.Core] System.Nullable<System.Int32> Microsoft.ML.Runtime.IHostEnvironmentInternal.get_GpuDeviceId()",
        "[Microsoft.ML.Data] System.String Microsoft.ML.Model.OnnxConverter.OnnxContext.AddInitializer(System.Collections.Generic.IEnumerable<System.Int64>, System.Collections.Generic.IEnumerable<System.Int64>, System.String, System.Boolean)",
        "[Microsoft.ML.Data] System.String Microsoft.ML.Model.OnnxConverter.OnnxContext.AddInitializer(System.Collections.Generic.IEnumerable<System.Single>, System.Collections.Generic.IEnumerable<System.Int64>, System.String, System.Boolean)",
        "[Microsoft.ML.Data] System.String Microsoft.ML.Model.OnnxConverter.OnnxContext.AddInitializer(System.Int64, System.String, System.Boolean)",
        "[Microsoft.ML.Data] System.String Microsoft.ML.Model.OnnxConverter.OnnxContext.AddIntermediateVariable(Microsoft.ML.Data.DataViewType, System.String, System.Boolean)",
        "[Microsoft.ML.Data] System.String Microsoft.ML.Model.OnnxConverter.OnnxContext.GetNodeName(System.String)",
        "[Microsoft.ML.Data] System.String Microsoft.ML.Model.OnnxConverter.OnnxContext.GetVariableName(System.String)",
        "[Microsoft.ML.Core] System.String Microsoft.ML.ModelLoadContext.Directory",
        "[Microsoft.ML.Core] System.UInt32 Microsoft.ML.ModelHeader.ModelVerReadable",
        "[Microsoft.ML.Core] System.UInt32 Microsoft.ML.ModelHeader.ModelVerWritten",
        "[Microsoft.ML.Core] System.UInt32 Microsoft.ML.VersionInfo.VerWeCanReadBack",
        "[Microsoft.ML.Core] System.UInt32 Microsoft.ML.VersionInfo.VerWrittenCur",
        "[Microsoft.ML.Core] System.UInt64 Microsoft.ML.ModelHeader.ModelSignature",
        "[Microsoft.ML.Core] System.UInt64 Microsoft.ML.VersionInfo.ModelSignature",
        "[Microsoft.ML.Data] System.Void Microsoft.ML.Model.OnnxConverter.OnnxContext.CheckOpSetVersion(System.Int32, System.String)",
        "[Microsoft.ML.Data] System.Void Microsoft.ML.Model.OnnxConverter.OnnxNode.AddAttribute(System.String, System.Collections.Generic.IEnumerable<System.Int64>)",
        "[Microsoft.ML.Data] System.Void Microsoft.ML.Model.OnnxConverter.OnnxNode.AddAttribute(System.String, System.Double)",
        "[Microsoft.ML.Data] System.Void Microsoft.ML.Model.OnnxConverter.OnnxNode.AddAttribute(System.String, System.Int64)",
        "[Microsoft.ML.Data] System.Void Microsoft.ML.Model.OnnxConverter.OnnxNode.AddAttribute(System.String, System.Type)",
        "[Microsoft.ML.Core] System.Void Microsoft.ML.ModelLoadContext.CheckAtModel(Microsoft.ML.VersionInfo)",
        "[Microsoft.ML.Core] System.Void Microsoft.ML.ModelSaveContext.CheckAtModel()",
        "[Microsoft.ML.Core] System.Void Microsoft.ML.ModelSaveContext.SaveBinaryStream(System.String, System.Action<System.IO.BinaryWriter>)",
        "[Microsoft.ML.Core] System.Void Microsoft.ML.ModelSaveContext.SetVersionInfo(Microsoft.ML.VersionInfo)",
        "[Microsoft.ML.Core] class Microsoft.ML.Data.AnnotationBuilderExtensions",
        "[Microsoft.ML.Core] class Microsoft.ML.LoadableClassAttribute",
        "[Microsoft.ML.Data] class Microsoft.ML.Model.OnnxConverter.OnnxContext",
        "[Microsoft.ML.Data] class Microsoft.ML.Model.OnnxConverter.OnnxNode",
        "[Microsoft.ML.Core] class Microsoft.ML.ModelLoadContext",
        "[Microsoft.ML.Core] class Microsoft.ML.Runtime.Contracts",
        "[Microsoft.ML.Core] delegate Microsoft.ML.SignatureLoadModel",
        "[Microsoft.ML.Data] interface Microsoft.ML.Data.IDataTransform",
        "[Microsoft.ML.Data] interface Microsoft.ML.Data.IInternalCatalog",
        "[Microsoft.ML.Data] interface Microsoft.ML.Model.OnnxConverter.ICanSaveOnnx",
        "[Microsoft.ML.Data] interface Microsoft.ML.Model.OnnxConverter.ISaveAsOnnx",
        "[Microsoft.ML.Data] interface Microsoft.ML.Model.OnnxConverter.ITransformCanSaveOnnx",
        "[Microsoft.ML.Core] interface Microsoft.ML.Runtime.IHostEnvironmentInternal",
        "[Microsoft.ML.Core] static System.Void Microsoft.ML.Data.AnnotationBuilderExtensions.AddSlotNames(Microsoft.ML.DataViewSchema.Annotations.Builder, System.Int32, Microsoft.ML.ValueGetter<Microsoft.ML.Data.VBuffer<System.ReadOnlyMemory<System.Char>>>)",
        "[Microsoft.ML.Core] static System.Void Microsoft.ML.Runtime.Contracts.CheckAlive(Microsoft.ML.Runtime.IHostEnvironment)",
        "[Microsoft.ML.Core] struct Microsoft.ML.ModelHeader",
        "[Microsoft.ML.Core] struct Microsoft.ML.VersionInfo",
    ];

    /// <summary>
    /// Constants are copied into our assembly at compile time: a renamed annotation kind would not fail any
    /// binding, it would silently produce schemas ML.NET no longer understands.
    /// </summary>
    private static readonly (string Type, string Field, string Value)[] ExpectedConstants =
    [
        ("Microsoft.ML.Data.AnnotationUtils+Kinds", "SlotNames", "SlotNames"),
        ("Microsoft.ML.Data.AnnotationUtils+Kinds", "KeyValues", "KeyValues"),
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

    /// <summary>The annotation kinds copied into our code (Trainers/Transform/LabelKeyValues.cs) still have ML.NET's values.</summary>
    [TestMethod]
    public void TheAnnotationKindsWeCopyStillHaveTheirValues()
    {
        var failures = new List<string>();
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
    /// run time, exactly as compiled (the runtime's own resolver checks names and full signatures), and the
    /// internal ones must be exactly <see cref="PinnedInternals"/>.
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

        var used = internals.Select(x => $"[{x.Assembly}] {x.Signature}").ToList();
        var added = used.Except(PinnedInternals).ToList();
        var unused = PinnedInternals.Except(used).ToList();
        Assert.IsTrue(added.Count == 0 && unused.Count == 0,
            "MlNetBn.Trainers' use of ML.NET internals differs from PinnedInternals." + Environment.NewLine
            + (added.Count > 0 ? "Newly used (pin them, and check they exist in the ML.NET version bound):" + Environment.NewLine + "  " + string.Join(Environment.NewLine + "  ", added) + Environment.NewLine : "")
            + (unused.Count > 0 ? "No longer used (remove them):" + Environment.NewLine + "  " + string.Join(Environment.NewLine + "  ", unused) : ""));

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
