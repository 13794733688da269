using Microsoft.ML.Data;
using MlNetBn.Modules;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace MlNetBn.Examples.FashionMnist;

/// <summary>The evaluation, the first BN layer and a few predictions as Spectre.Console tables.</summary>
internal static class ResultTables
{
    /// <summary>Accuracy, macro accuracy and log-loss.</summary>
    public static Table Metrics(MulticlassClassificationMetrics metrics, long imageCount)
    {
        var table = new Table().Border(TableBorder.Rounded).Title("Test set").Caption($"{imageCount:N0} images");
        table.AddColumn("metric");
        table.AddColumn(new TableColumn("value").RightAligned());
        table.AddRow("accuracy", $"{metrics.MicroAccuracy:F4}");
        table.AddRow("macro accuracy", $"{metrics.MacroAccuracy:F4}");
        table.AddRow("log-loss", $"{metrics.LogLoss:F4}");
        return table;
    }

    /// <summary>
    /// The confusion matrix: a row per actual class (with its recall), a column per predicted class (numbered, to
    /// fit 80 columns), precision in the last row. The diagonal is green; a cell holding at least 5% of its row is red.
    /// </summary>
    public static Table ConfusionMatrix(ConfusionMatrix matrix, IReadOnlyList<string> classNames)
    {
        int n = matrix.NumberOfClasses;
        if (classNames.Count != n)
            throw new ArgumentException($"The confusion matrix has {n} classes but {classNames.Count} names were given.", nameof(classNames));
        var table = new Table().Border(TableBorder.Rounded).Title("Confusion matrix")
            .Caption("rows: actual class; columns: predicted class (numbered as the rows)");
        table.AddColumn("actual");
        for (int j = 0; j < n; j++)
            table.AddColumn(new TableColumn($"{j}").RightAligned().Padding(1, 0, 0, 0));
        table.AddColumn(new TableColumn("recall").RightAligned());

        for (int i = 0; i < n; i++)
        {
            double rowTotal = matrix.Counts[i].Sum();
            var cells = new List<IRenderable> { new Markup($"{i} {Markup.Escape(classNames[i])}") };
            for (int j = 0; j < n; j++)
            {
                double count = matrix.Counts[i][j];
                string style = i == j ? "green" : rowTotal > 0 && count >= 0.05 * rowTotal ? "red" : count == 0 ? "grey" : "default";
                cells.Add(new Markup($"[{style}]{count:0}[/]"));
            }
            cells.Add(new Text($"{matrix.PerClassRecall[i]:F3}"));
            table.AddRow(cells);
        }

        var precision = new List<IRenderable> { new Text("precision") };
        precision.AddRange(matrix.PerClassPrecision.Select(p => new Text($"{p:F2}".TrimStart('0'))));
        precision.Add(new Text(""));
        table.AddRow(precision);
        return table;
    }

    /// <summary>The learned scale (gamma) and shift (beta) of a batch normalization layer, with its moving statistics.</summary>
    public static Table BatchNorm(BatchNormLayerState layer)
    {
        var table = new Table().Border(TableBorder.Rounded)
            .Title($"First batch normalization layer ({Markup.Escape(layer.Name)}, {layer.Kind})")
            .Caption("y = gamma * (x - mean) / sqrt(var + eps) + beta");
        table.AddColumn(new TableColumn("channel").RightAligned());
        table.AddColumn(new TableColumn("gamma").RightAligned());
        table.AddColumn(new TableColumn("beta").RightAligned());
        table.AddColumn(new TableColumn("moving mean").RightAligned());
        table.AddColumn(new TableColumn("moving var").RightAligned());
        for (int c = 0; c < layer.Gamma.Length; c++)
            table.AddRow($"{c}", $"{layer.Gamma[c]:F4}", $"{layer.Beta[c]:F4}", $"{layer.MovingMean[c]:F4}", $"{layer.MovingVariance[c]:F4}");
        return table;
    }

    /// <summary>Test images drawn in the terminal, each with the predicted class, its probability and, when wrong, the actual class.</summary>
    public static IRenderable Predictions(IEnumerable<(float[] Pixels, string Predicted, float Probability, string Actual)> items,
        int height, int width, IReadOnlyCapabilities capabilities)
    {
        var cells = items.Select(item =>
        {
            bool right = item.Predicted == item.Actual;
            string caption = right
                ? $"[green]{Markup.Escape(item.Predicted)}[/] {item.Probability * 100:F0}%"
                : $"[red]{Markup.Escape(item.Predicted)}[/] {item.Probability * 100:F0}%\n(is {Markup.Escape(item.Actual)})";
            return (IRenderable)new Rows(TerminalImage.Render(item.Pixels, height, width, capabilities), new Markup(caption));
        });
        return new Columns(cells).Collapse();
    }
}
