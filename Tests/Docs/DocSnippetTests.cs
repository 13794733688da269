using System.Collections.Immutable;
using System.Diagnostics;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Runtime.Loader;
using System.Text.Json;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.Emit;
using MlNetBn.Data;
using MlNetBn.Tests.Packaging;

namespace MlNetBn.Tests.Docs;

/// <summary>
/// The C# blocks of README.md and docs/PACKAGE.md, read from the repository, compile as written, and those that are
/// whole programs run. A block is compiled as the Program.cs of a new console project would be: top-level
/// statements, nullable enabled, the SDK's implicit global usings (what <c>dotnet new console</c> gives; every other
/// using is the snippet's own), against the framework and what referencing MlNetBn brings (MlNetBn.Trainers,
/// MlNetBn.Extensions and their packages: Microsoft.ML, TorchSharp...), plus Microsoft.ML.OnnxConverter and
/// Microsoft.ML.OnnxRuntime, which README's ONNX section has the reader add. Warnings fail too.
/// </summary>
/// <remarks>
/// <para>
/// The fence's words say what a block is: <c>```csharp</c> compiles and runs; <c>```csharp compile-only</c> compiles;
/// <c>```csharp fragment</c> (lines that need context) is only parsed. Keep the exceptions rare.
/// </para>
/// <para>
/// A run happens in this process, in an empty working folder, with <c>MLNETBN_DATA_DIR</c> pointing at a cache
/// that holds a tiny Fashion-MNIST (2 training and 1 test image per class from the committed subset, as the four
/// official files put into the cache folder by hand, which docs/DATA.md describes), so a block that downloads the
/// data and trains finishes in about a second and needs no network. The cache starts without its manifest, which
/// only the downloader writes: a block that loads Fashion-MNIST without downloading it first (and so would throw
/// FileNotFoundException on a fresh machine) is caught by the manifest still missing afterwards.
/// </para>
/// <para>
/// Time, measured on the shared 2-core machine: both files 1.5–2.5 s within the full suite; 4–15 s run alone (load
/// average 3–9), then mostly Roslyn's first compilation and TorchSharp's first load. The other tests here: milliseconds.
/// </para>
/// </remarks>
[TestClass]
public sealed class DocSnippetTests
{
    /// <summary>The global usings of a new console project (ImplicitUsings=enable, as <c>dotnet new console</c> sets it).</summary>
    private const string SdkImplicitUsings = """
        global using global::System;
        global using global::System.Collections.Generic;
        global using global::System.IO;
        global using global::System.Linq;
        global using global::System.Net.Http;
        global using global::System.Threading;
        global using global::System.Threading.Tasks;
        """;

    private static readonly Lazy<ImmutableArray<MetadataReference>> s_references = new(LoadReferences);
    private static string s_root = "";
    private static string s_cache = "";

    /// <summary>Writes the tiny Fashion-MNIST cache once for the class.</summary>
    [ClassInitialize]
    public static void WriteTinyFashionMnist(TestContext context)
    {
        s_root = Path.Combine(Path.GetTempPath(), "mlnetbn-doc-snippets-" + Guid.NewGuid().ToString("N"));
        s_cache = Path.Combine(s_root, "data", "fashion-mnist");
        Directory.CreateDirectory(s_cache);
        foreach ((FashionMnistSplit split, int perClass) in new[] { (FashionMnistSplit.Train, 2), (FashionMnistSplit.Test, 1) })
        {
            IdxDataset full = FashionMnist.Read(split, TestData.FashionMnistSmallDirectory);
            (string images, string labels) = FashionMnist.GetFileNames(split);
            full.Select(full.SelectIndices(countPerClass: perClass)).Save(Path.Combine(s_cache, images), Path.Combine(s_cache, labels), gzip: true);
        }
    }

    [ClassCleanup]
    public static void DeleteTemporaryFolder()
    {
        if (s_root.Length > 0 && Directory.Exists(s_root))
        {
            Directory.Delete(s_root, recursive: true);
        }
    }

    [TestMethod]
    [DataRow("README.md")]
    [DataRow("docs/PACKAGE.md")]
    public void CSharpBlocks_CompileAsWritten_AndWholeProgramsRun(string file)
    {
        List<CSharpBlock> blocks = MarkdownCodeBlocks.Read(file, File.ReadAllText(Path.Combine(PackagingTestEnvironment.RepositoryRoot, file)));
        Assert.IsNotEmpty(blocks, $"{file} has no C# block");

        var failures = new List<string>();
        foreach (CSharpBlock block in blocks)
        {
            var clock = Stopwatch.StartNew();
            string? failure = Check(block);
            Console.WriteLine($"{block}: {(failure is null ? "ok" : "FAILED")} in {clock.Elapsed.TotalSeconds:F1} s");
            if (failure is not null)
            {
                failures.Add($"{block}: {failure}");
            }
        }

        Assert.IsEmpty(failures, "\n" + string.Join("\n\n", failures));
    }

    [TestMethod]
    public void Check_ReportsTheMarkdownLineAndTheCompilerDiagnostic()
    {
        string markdown = "# Title\n\ntext\n\n```csharp\nusing MlNetBn.Data;\n\nint x = FashionMnist.ClassCount;\nstring s = x;\n```\n";
        CSharpBlock block = MarkdownCodeBlocks.Read("doc.md", markdown).Single();

        string? failure = Check(block);

        Assert.AreEqual(
            "does not compile:\n  doc.md:9: error CS0029: Cannot implicitly convert type 'int' to 'string'",
            failure);
    }

    [TestMethod]
    public void Check_ReportsAWarningAsAFailure()
    {
        CSharpBlock block = MarkdownCodeBlocks.Read("doc.md", "```csharp\nstring? s = null;\nConsole.WriteLine(s.Length);\n```").Single();

        Assert.AreEqual("does not compile:\n  doc.md:3: warning CS8602: Dereference of a possibly null reference.", Check(block));
    }

    [TestMethod]
    public void Check_ReportsABlockThatLoadsFashionMnistWithoutDownloadingIt()
    {
        const string markdown = """
            ```csharp
            using Microsoft.ML;
            using MlNetBn.Data;

            IDataView train = new MLContext().Data.LoadFashionMnist(FashionMnistSplit.Train);
            Console.WriteLine(train.GetRowCount());
            ```
            """;
        CSharpBlock block = MarkdownCodeBlocks.Read("doc.md", markdown).Single();

        Assert.AreEqual(
            "ran, but loaded Fashion-MNIST without downloading it first (no FashionMnist.DownloadAsync or " +
            "FashionMnistDownloader.EnsureAsync before LoadFashionMnist): on a fresh machine it throws FileNotFoundException. " +
            "It printed:\n20\n",
            Check(block));
    }

    [TestMethod]
    public void Check_ReportsAnExceptionOfARun()
    {
        CSharpBlock block = MarkdownCodeBlocks.Read("doc.md", "```csharp\nthrow new InvalidOperationException(\"boom\");\n```").Single();

        string? failure = Check(block);

        Assert.IsNotNull(failure);
        StringAssert.StartsWith(failure, "compiles, but running it threw System.InvalidOperationException: boom");
    }

    [TestMethod]
    public void Check_ParsesAFragmentWithoutCompilingIt_AndReportsItsSyntaxErrors()
    {
        const string markdown = "```csharp fragment\nvar options = new LeNetBnTrainer.Options { Epochs = 2 };\n```\n\n" +
            "```csharp fragment\nvar options = new LeNetBnTrainer.Options { Epochs = 2 }\n```\n";
        List<CSharpBlock> blocks = MarkdownCodeBlocks.Read("doc.md", markdown);

        Assert.IsNull(Check(blocks[0]), "a fragment's unknown names are not errors");
        Assert.AreEqual("does not parse:\n  doc.md:6: error CS1002: ; expected", Check(blocks[1]));
    }

    [TestMethod]
    public void Read_FindsIndentedAndTildeFences_SkipsOtherLanguages_AndReadsTheKind()
    {
        const string markdown = """
            ```sh
            ```csharp is not a fence inside a sh block
            ```

            - a list item:

              ```csharp compile-only
              int x = 1;
                int y = 2;
              ```

            ~~~cs fragment
            x = 1;
            ~~~
            """;

        List<CSharpBlock> blocks = MarkdownCodeBlocks.Read("doc.md", markdown);

        Assert.HasCount(2, blocks);
        Assert.AreEqual(new CSharpBlock("doc.md", 7, SnippetKind.CompileOnly, "int x = 1;\n  int y = 2;"), blocks[0]);
        Assert.AreEqual(new CSharpBlock("doc.md", 12, SnippetKind.Fragment, "x = 1;"), blocks[1]);
        Assert.AreEqual(9, blocks[0].MarkdownLine(1));
    }

    [TestMethod]
    public void Read_RejectsAnUnclosedCSharpFenceAndAnUnknownKind()
    {
        FormatException unclosed = Assert.ThrowsExactly<FormatException>(() => MarkdownCodeBlocks.Read("doc.md", "text\n```csharp\nint x = 1;\n"));
        Assert.AreEqual("doc.md:2: the C# block is never closed.", unclosed.Message);
        FormatException unknown = Assert.ThrowsExactly<FormatException>(() => MarkdownCodeBlocks.Read("doc.md", "```csharp runnable\n```\n"));
        Assert.AreEqual("doc.md:1: unknown C# block kind 'runnable' (known: none, compile-only, fragment).", unknown.Message);
    }

    /// <summary>Null when the block is fine; otherwise what is wrong, with markdown line numbers.</summary>
    private static string? Check(CSharpBlock block)
    {
        var parseOptions = new CSharpParseOptions(LanguageVersion.Default,
            kind: block.Kind == SnippetKind.Fragment ? SourceCodeKind.Script : SourceCodeKind.Regular);
        SyntaxTree tree = CSharpSyntaxTree.ParseText(block.Code, parseOptions, path: block.File);
        if (block.Kind == SnippetKind.Fragment)
        {
            return Describe("does not parse", block, tree, tree.GetDiagnostics());
        }

        var options = new CSharpCompilationOptions(OutputKind.ConsoleApplication,
            nullableContextOptions: NullableContextOptions.Enable,
            // The SDK's defaults: all warning waves, and no assembly-unification warnings (NoWarn CS1701;CS1702).
            warningLevel: 9999,
            specificDiagnosticOptions: new Dictionary<string, ReportDiagnostic>
            {
                ["CS1701"] = ReportDiagnostic.Suppress,
                ["CS1702"] = ReportDiagnostic.Suppress,
            });
        CSharpCompilation compilation = CSharpCompilation.Create("Snippet" + Guid.NewGuid().ToString("N"),
            [CSharpSyntaxTree.ParseText(SdkImplicitUsings, parseOptions, path: "GlobalUsings.g.cs"), tree], s_references.Value, options);
        using var image = new MemoryStream();
        EmitResult result = compilation.Emit(image);
        if (Describe("does not compile", block, tree, result.Diagnostics) is { } compileFailure)
        {
            return compileFailure;
        }

        if (block.Kind != SnippetKind.Run)
        {
            return null;
        }

        image.Position = 0;
        return Run(block, AssemblyLoadContext.Default.LoadFromStream(image));
    }

    /// <summary>The errors and warnings of <paramref name="diagnostics"/>, one a line with the markdown line; null when none.</summary>
    private static string? Describe(string what, CSharpBlock block, SyntaxTree tree, IEnumerable<Diagnostic> diagnostics)
    {
        List<string> lines = diagnostics
            .Where(d => d.Severity >= DiagnosticSeverity.Warning && !d.IsSuppressed)
            .Select(d =>
            {
                string where = d.Location.SourceTree == tree
                    ? $"{block.File}:{block.MarkdownLine(d.Location.GetLineSpan().StartLinePosition.Line)}"
                    : d.Location.SourceTree?.FilePath ?? "(no location)";
                return $"  {where}: {d.Severity.ToString().ToLowerInvariant()} {d.Id}: {d.GetMessage(System.Globalization.CultureInfo.InvariantCulture)}";
            })
            .ToList();
        return lines.Count == 0 ? null : $"{what}:\n{string.Join('\n', lines)}";
    }

    /// <summary>Runs the program in an empty working folder with the tiny cache; null when it succeeded as it should.</summary>
    private static string? Run(CSharpBlock block, Assembly program)
    {
        string work = Path.Combine(s_root, "run-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(work);
        string manifest = Path.Combine(s_cache, "manifest.json");
        File.Delete(manifest);

        string? savedDataDirectory = Environment.GetEnvironmentVariable(FashionMnist.DataDirectoryEnvironmentVariable);
        string savedWorkingDirectory = Environment.CurrentDirectory;
        TextWriter savedOut = Console.Out;
        using var output = new StringWriter();
        try
        {
            Environment.SetEnvironmentVariable(FashionMnist.DataDirectoryEnvironmentVariable, Path.GetDirectoryName(s_cache));
            Environment.CurrentDirectory = work;
            Console.SetOut(output);
            MethodInfo main = program.EntryPoint ?? throw new InvalidOperationException("the program has no entry point");
            main.Invoke(null, main.GetParameters().Length == 0 ? null : [Array.Empty<string>()]);
        }
        catch (TargetInvocationException ex) when (ex.InnerException is not null)
        {
            return $"compiles, but running it threw {ex.InnerException}";
        }
        finally
        {
            Console.SetOut(savedOut);
            Environment.CurrentDirectory = savedWorkingDirectory;
            Environment.SetEnvironmentVariable(FashionMnist.DataDirectoryEnvironmentVariable, savedDataDirectory);
        }

        Console.WriteLine($"{block} printed:\n{output}");
        if (block.Code.Contains(nameof(FashionMnistCatalogExtensions.LoadFashionMnist), StringComparison.Ordinal) && !File.Exists(manifest))
        {
            return "ran, but loaded Fashion-MNIST without downloading it first (no FashionMnist.DownloadAsync or " +
                "FashionMnistDownloader.EnsureAsync before LoadFashionMnist): on a fresh machine it throws FileNotFoundException. " +
                $"It printed:\n{output}";
        }

        return null;
    }

    /// <summary>
    /// The framework's assemblies and the runtime closure of MlNetBn.Extensions and MlNetBn.Trainers in this test's
    /// deps.json: what an application that references MlNetBn compiles against (no MSTest, Roslyn or ImageAnalytics).
    /// </summary>
    private static ImmutableArray<MetadataReference> LoadReferences()
    {
        string runtimeDirectory = Path.TrimEndingDirectorySeparator(RuntimeEnvironment.GetRuntimeDirectory());
        var paths = ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!).Split(Path.PathSeparator)
            .Where(p => Path.GetDirectoryName(p) == runtimeDirectory)
            .ToList();

        string depsFile = Path.Combine(AppContext.BaseDirectory, typeof(DocSnippetTests).Assembly.GetName().Name + ".deps.json");
        using JsonDocument deps = JsonDocument.Parse(File.ReadAllText(depsFile));
        Dictionary<string, JsonElement> libraries = deps.RootElement.GetProperty("targets").EnumerateObject().First().Value
            .EnumerateObject().ToDictionary(l => l.Name[..l.Name.IndexOf('/')], l => l.Value, StringComparer.OrdinalIgnoreCase);
        // MlNetBn, and the two ONNX packages README's "Export to ONNX" tells the reader to add.
        var pending = new Queue<string>(["MlNetBn.Extensions", "MlNetBn.Trainers", "Microsoft.ML.OnnxConverter", "Microsoft.ML.OnnxRuntime"]);
        var seen = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        while (pending.TryDequeue(out string? name))
        {
            if (!seen.Add(name) || !libraries.TryGetValue(name, out JsonElement library))
            {
                continue;
            }

            if (library.TryGetProperty("runtime", out JsonElement assets))
            {
                paths.AddRange(assets.EnumerateObject().Select(a => Path.Combine(AppContext.BaseDirectory, Path.GetFileName(a.Name))));
            }

            if (library.TryGetProperty("dependencies", out JsonElement dependencies))
            {
                foreach (JsonProperty dependency in dependencies.EnumerateObject())
                {
                    pending.Enqueue(dependency.Name);
                }
            }
        }

        Assert.Contains(Path.Combine(AppContext.BaseDirectory, "MlNetBn.Trainers.dll"), paths, $"{depsFile} does not list MlNetBn.Trainers");
        return [.. paths.Distinct(StringComparer.Ordinal).Select(p => (MetadataReference)MetadataReference.CreateFromFile(p))];
    }
}
