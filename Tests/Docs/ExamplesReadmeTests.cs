using MlNetBn.Tests.Packaging;

namespace MlNetBn.Tests.Docs;

/// <summary>Examples/README.md describes every project under Examples/, and only those.</summary>
[TestClass]
public sealed class ExamplesReadmeTests
{
    /// <summary>
    /// Each example has a section headed "## &lt;folder&gt;: what it does" and a row in the table at the top; a section
    /// headed that way names a folder that exists (so a removed or merged example takes its section along).
    /// </summary>
    [TestMethod]
    public void EveryExampleProject_HasASectionAndATableRow_AndEverySectionNamesAnExample()
    {
        string examples = Path.Combine(PackagingTestEnvironment.RepositoryRoot, "Examples");
        List<string> projects = Directory.GetDirectories(examples)
            .Where(d => Directory.GetFiles(d, "*.csproj").Length > 0)
            .Select(d => Path.GetFileName(d)!)
            .Order(StringComparer.Ordinal)
            .ToList();
        string[] lines = File.ReadAllLines(Path.Combine(examples, "README.md"));
        List<string> sections = lines
            .Where(l => l.StartsWith("## ", StringComparison.Ordinal) && l.Contains(':', StringComparison.Ordinal))
            .Select(l => l[3..l.IndexOf(':', StringComparison.Ordinal)])
            .Where(name => !name.Contains(' ', StringComparison.Ordinal))
            .Order(StringComparer.Ordinal)
            .ToList();

        Assert.IsNotEmpty(projects);
        CollectionAssert.AreEqual(projects, sections,
            $"Examples/ has {string.Join(", ", projects)}; Examples/README.md has sections for {string.Join(", ", sections)}");
        foreach (string project in projects)
        {
            Assert.IsTrue(lines.Any(l => l.StartsWith($"| [{project}](#", StringComparison.Ordinal)),
                $"Examples/README.md's table has no row for {project}");
        }
    }
}
