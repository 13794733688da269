using Spectre.Console;
using Spectre.Console.Rendering;

namespace MlNetBn.Examples.FashionMnist;

/// <summary>Draws a grayscale image (values in [0, 1], row-major) as text, two pixel rows per text line.</summary>
/// <remarks>
/// A character cell is about twice as tall as it is wide, so one cell per pixel column and two pixel rows per cell
/// keeps the picture's proportions. With 256 or more colours each cell is an upper half block whose foreground is
/// the top pixel and whose background is the bottom one (full resolution); without colour (redirected output) each
/// cell is a shade character for the mean of its two pixels, so a log file still shows the picture.
/// </remarks>
internal static class TerminalImage
{
    private const string UnicodeShades = " ░▒▓█";
    private const string AsciiShades = " .:-=+*#%@";

    /// <summary>The image as a renderable suited to <paramref name="capabilities"/>.</summary>
    public static IRenderable Render(ReadOnlySpan<float> pixels, int height, int width, IReadOnlyCapabilities capabilities)
    {
        if (pixels.Length != height * width)
            throw new ArgumentException($"{pixels.Length} pixels cannot form a {height}×{width} image.", nameof(pixels));
        var text = new Paragraph();
        // Colours only reach the reader through ANSI sequences; redirected output has none even when TERM has colours.
        bool halfBlocks = capabilities.Ansi && capabilities.Unicode && capabilities.ColorSystem >= ColorSystem.EightBit;
        string shades = capabilities.Unicode ? UnicodeShades : AsciiShades;
        for (int row = 0; row < height; row += 2)
        {
            for (int column = 0; column < width; column++)
            {
                float top = pixels[row * width + column];
                float bottom = row + 1 < height ? pixels[(row + 1) * width + column] : 0f;
                if (halfBlocks)
                    text.Append("▀", new Style(Gray(top), Gray(bottom)));
                else
                    text.Append(shades[Math.Clamp((int)((top + bottom) / 2 * shades.Length), 0, shades.Length - 1)].ToString());
            }
            if (row + 2 < height)
                text.Append("\n");
        }
        return text;
    }

    private static Color Gray(float value)
    {
        byte level = (byte)Math.Clamp(MathF.Round(value * 255f), 0f, 255f);
        return new Color(level, level, level);
    }
}
