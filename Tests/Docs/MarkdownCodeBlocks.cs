namespace MlNetBn.Tests.Docs;

/// <summary>What the documentation snippet tests do with a C# block, from the words after the language in its fence.</summary>
internal enum SnippetKind
{
    /// <summary><c>```csharp</c>: a whole program (top-level statements); compiled and run.</summary>
    Run,

    /// <summary><c>```csharp compile-only</c>: a whole program that is compiled but not run (it needs what a test does not have).</summary>
    CompileOnly,

    /// <summary><c>```csharp fragment</c>: lines that need context (an options table, one call); only parsed.</summary>
    Fragment,
}

/// <summary>A fenced C# code block of a markdown file.</summary>
/// <param name="File">The markdown file's path, as given to <see cref="MarkdownCodeBlocks.Read"/>.</param>
/// <param name="FenceLine">The 1-based line of the opening fence.</param>
/// <param name="Kind">What to do with it.</param>
/// <param name="Code">The block's lines (without the fences and the fence's indentation), joined by '\n'.</param>
internal sealed record CSharpBlock(string File, int FenceLine, SnippetKind Kind, string Code)
{
    /// <summary>The markdown line of the block's <paramref name="codeLine"/>-th line (0-based).</summary>
    public int MarkdownLine(int codeLine) => FenceLine + 1 + codeLine;

    /// <inheritdoc />
    public override string ToString() => $"{File}:{FenceLine} (```csharp{(Kind == SnippetKind.Run ? "" : " " + Words(Kind))})";

    /// <summary>The fence word that selects <paramref name="kind"/>.</summary>
    public static string Words(SnippetKind kind) => kind switch
    {
        SnippetKind.CompileOnly => "compile-only",
        SnippetKind.Fragment => "fragment",
        _ => "",
    };
}

/// <summary>Finds the fenced C# code blocks of a markdown file (CommonMark fences of backticks or tildes, indented or not).</summary>
internal static class MarkdownCodeBlocks
{
    /// <summary>The info-string languages taken for C#.</summary>
    private static readonly string[] CSharpLanguages = ["csharp", "cs", "c#"];

    /// <summary>Every C# block of <paramref name="markdown"/>, in order.</summary>
    /// <param name="file">The file's name, for messages.</param>
    /// <param name="markdown">The file's text.</param>
    /// <exception cref="FormatException">A C# fence is never closed, or names an unknown kind.</exception>
    public static List<CSharpBlock> Read(string file, string markdown)
    {
        string[] lines = markdown.Replace("\r\n", "\n", StringComparison.Ordinal).Split('\n');
        var blocks = new List<CSharpBlock>();
        for (int i = 0; i < lines.Length; i++)
        {
            string line = lines[i];
            int indent = line.Length - line.TrimStart(' ').Length;
            string rest = line[indent..];
            char fenceChar = rest.StartsWith("```", StringComparison.Ordinal) ? '`' : rest.StartsWith("~~~", StringComparison.Ordinal) ? '~' : '\0';
            if (fenceChar == '\0')
            {
                continue;
            }

            int fenceLength = rest.TakeWhile(c => c == fenceChar).Count();
            string[] info = rest[fenceLength..].Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            int close = Array.FindIndex(lines, i + 1, l => IsClosingFence(l, fenceChar, fenceLength));
            bool isCSharp = info.Length > 0 && CSharpLanguages.Contains(info[0], StringComparer.OrdinalIgnoreCase);
            if (isCSharp)
            {
                if (close < 0)
                {
                    throw new FormatException($"{file}:{i + 1}: the C# block is never closed.");
                }

                SnippetKind kind = info.Length == 1 ? SnippetKind.Run
                    : info[1] == CSharpBlock.Words(SnippetKind.CompileOnly) ? SnippetKind.CompileOnly
                    : info[1] == CSharpBlock.Words(SnippetKind.Fragment) ? SnippetKind.Fragment
                    : throw new FormatException($"{file}:{i + 1}: unknown C# block kind '{info[1]}' (known: none, " +
                        $"{CSharpBlock.Words(SnippetKind.CompileOnly)}, {CSharpBlock.Words(SnippetKind.Fragment)}).");
                IEnumerable<string> code = lines[(i + 1)..close].Select(l => l[Math.Min(indent, l.Length - l.TrimStart(' ').Length)..]);
                blocks.Add(new CSharpBlock(file, i + 1, kind, string.Join('\n', code)));
            }

            // Other languages' blocks are skipped whole, so that a fence-like line inside them is not taken for one.
            i = close < 0 ? lines.Length : close;
        }

        return blocks;
    }

    private static bool IsClosingFence(string line, char fenceChar, int fenceLength)
    {
        string trimmed = line.Trim(' ');
        return trimmed.Length >= fenceLength && trimmed.All(c => c == fenceChar);
    }
}
