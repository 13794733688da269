using MlNetBn.Training;
using ScottPlot;

namespace MlNetBn.Examples.FashionMnist;

/// <summary>Plots train loss, train accuracy and held-out accuracy per epoch, as d2l's animator does, into a PNG.</summary>
internal static class TrainingCurves
{
    /// <summary>Writes the plot to <paramref name="path"/> (PNG, 640×420).</summary>
    /// <param name="history">One entry per epoch.</param>
    /// <param name="validationLabel">The legend of the held-out accuracy ("test acc" or "valid acc").</param>
    /// <param name="title">The plot's title.</param>
    /// <param name="path">The PNG to write.</param>
    public static void SavePng(IReadOnlyList<LeNetBnEpochMetrics> history, string validationLabel, string title, string path)
    {
        if (history.Count == 0)
            throw new ArgumentException("No epoch to plot.", nameof(history));
        var plot = new Plot();
        double[] epochs = history.Select(m => (double)m.Epoch).ToArray();
        Add(plot, epochs, history.Select(m => m.Loss).ToArray(), "train loss", Colors.C0, LinePattern.Solid);
        Add(plot, epochs, history.Select(m => m.TrainAccuracy).ToArray(), "train acc", Colors.C1, LinePattern.Dashed);
        if (history.All(m => m.ValidationAccuracy is not null))
            Add(plot, epochs, history.Select(m => m.ValidationAccuracy!.Value).ToArray(), validationLabel, Colors.C2, LinePattern.DenselyDashed);

        plot.Title(title);
        plot.XLabel("epoch");
        // Whole epochs only, with a margin so that the first and last markers are not cut in half.
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { IntegerTicksOnly = true };
        double margin = epochs.Length == 1 ? 0.5 : 0.25;
        plot.Axes.SetLimitsX(epochs[0] - margin, epochs[^1] + margin);
        plot.Axes.SetLimitsY(0, Math.Max(1.0, history.Max(m => m.Loss)) * 1.05);
        plot.ShowLegend(Edge.Right); // outside the data area: the curves cross every corner of it
        plot.SavePng(path, 640, 420);
    }

    private static void Add(Plot plot, double[] xs, double[] ys, string label, Color color, LinePattern pattern)
    {
        var line = plot.Add.Scatter(xs, ys, color);
        line.LegendText = label;
        line.LinePattern = pattern;
        line.LineWidth = 2;
        line.MarkerSize = 5;
    }
}
