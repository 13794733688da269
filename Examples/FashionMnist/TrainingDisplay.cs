using System.Diagnostics;
using MlNetBn.Training;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace MlNetBn.Examples.FashionMnist;

/// <summary>
/// Shows training as it happens: in a terminal, a table that grows by one row per epoch with a live status line
/// (spinner, epochs done, time in the current epoch, time left); when the output is redirected (CI logs, files),
/// one plain line per epoch as d2l prints it, then the same table once at the end.
/// </summary>
/// <remarks>
/// The trainer calls <see cref="EpochEnded"/> and the ML.NET log on the training thread while a timer redraws the
/// status line; every write and every change to the table happens under one lock, so no frame is drawn from a table
/// that is being changed.
/// </remarks>
internal sealed class TrainingDisplay
{
    private readonly IAnsiConsole _console;
    private readonly int _epochs;
    private readonly string _validationLabel;
    private readonly bool _showLearningRate;
    private readonly bool _live;
    private readonly List<LeNetBnEpochMetrics> _history = [];
    private readonly List<IRenderable> _messages = [];
    private readonly Lock _lock = new();
    private readonly Stopwatch _clock = new();
    private readonly Stopwatch _epochClock = new();
    private Table _table = null!;
    private LiveDisplayContext? _context;
    private int _frame;

    /// <param name="console">Where to draw.</param>
    /// <param name="epochs">Epochs the trainer will run.</param>
    /// <param name="validationLabel">Heading of the per-epoch accuracy on held-out data ("test acc" or "valid acc").</param>
    /// <param name="showLearningRate">Add a learning-rate column (worth it only when a schedule changes it).</param>
    public TrainingDisplay(IAnsiConsole console, int epochs, string validationLabel, bool showLearningRate)
    {
        _console = console;
        _epochs = epochs;
        _validationLabel = validationLabel;
        _showLearningRate = showLearningRate;
        // Cursor movement is what makes a live display; without it every redraw would be appended to the output.
        _live = console.Profile.Capabilities.Interactive && console.Profile.Capabilities.Ansi;
    }

    /// <summary>Runs <paramref name="fit"/> (which trains and calls <see cref="EpochEnded"/>) while showing progress.</summary>
    public T Run<T>(Func<T> fit)
    {
        _table = CreateTable();
        _clock.Restart();
        _epochClock.Restart();
        if (!_live)
        {
            var result = fit();
            _console.Write(_table);
            return result;
        }

        return _console.Live(Compose()).Start(context =>
        {
            lock (_lock)
                _context = context;
            // The status line is the only thing that moves within an epoch (the trainer reports per epoch).
            using var timer = new Timer(_ => Redraw(), null, TimeSpan.Zero, TimeSpan.FromMilliseconds(250));
            try
            {
                return fit();
            }
            finally
            {
                // Without a context a late timer tick draws nothing; the finished table stays on screen.
                lock (_lock)
                {
                    _context = null;
                    context.UpdateTarget(new Rows([.. _messages, _table]));
                }
            }
        });
    }

    /// <summary>The trainer's per-epoch callback (on the training thread).</summary>
    public void EpochEnded(LeNetBnEpochMetrics m)
    {
        lock (_lock)
        {
            _history.Add(m);
            _epochClock.Restart();
            var cells = new List<string>
            {
                $"{m.Epoch}/{m.Epochs}",
                $"{m.Loss:F3}",
                $"{m.TrainAccuracy:F3}",
                m.ValidationAccuracy is { } v ? $"{v:F3}" : "-",
            };
            if (_showLearningRate)
                cells.Add($"{m.LearningRate:G3}");
            cells.Add($"{m.ExamplesPerSecond:N0}");
            cells.Add($"{m.Elapsed.TotalSeconds:F1} s");
            _table.AddRow(cells.Select(c => new Text(c)));

            if (_live)
                Redraw();
            else
                _console.Profile.Out.Writer.WriteLine(
                    $"epoch {m.Epoch}/{m.Epochs}: loss {m.Loss:F3}, train acc {m.TrainAccuracy:F3}"
                    + (m.ValidationAccuracy is { } a ? $", {_validationLabel} {a:F3}" : "")
                    + (_showLearningRate ? $", lr {m.LearningRate:G3}" : "")
                    + $", {m.ExamplesPerSecond:N0} examples/sec, {m.Elapsed.TotalSeconds:F1} s");
        }
    }

    /// <summary>Shows a log message of the training: above the table while live, else as a line.</summary>
    public void Log(string line)
    {
        lock (_lock)
        {
            if (_live)
            {
                // Part of the live display rather than written above it: Spectre leaves bits of the previous frame
                // behind a line written over a live display when the line is shorter.
                _messages.Add(new Text(line));
                Redraw();
            }
            else
            {
                _console.Profile.Out.Writer.WriteLine(line); // unwrapped, as the epoch lines
            }
        }
    }

    private Table CreateTable()
    {
        var table = new Table().Border(TableBorder.Rounded).Title("Training");
        table.AddColumn(new TableColumn("epoch").RightAligned());
        table.AddColumn(new TableColumn("loss").RightAligned());
        table.AddColumn(new TableColumn("train acc").RightAligned());
        table.AddColumn(new TableColumn(_validationLabel).RightAligned());
        if (_showLearningRate)
            table.AddColumn(new TableColumn("lr").RightAligned());
        table.AddColumn(new TableColumn("examples/s").RightAligned());
        table.AddColumn(new TableColumn("time").RightAligned());
        return table;
    }

    private void Redraw()
    {
        lock (_lock)
            _context?.UpdateTarget(Compose());
    }

    private IRenderable Compose() => new Rows([.. _messages, _table, new Markup(StatusLine())]);

    private string StatusLine()
    {
        var frames = Spinner.Known.Dots.Frames;
        string spinner = frames[_frame++ % frames.Count];
        int done = _history.Count;
        const int width = 30;
        int filled = (int)Math.Round(width * (double)done / _epochs);
        string bar = $"[green]{new string('━', filled)}[/][grey]{new string('━', width - filled)}[/]";
        string left = "";
        if (done > 0)
        {
            // Later epochs take about as long as the ones so far (the data and the network do not change).
            var perEpoch = _clock.Elapsed / done;
            var remaining = perEpoch * (_epochs - done) - _epochClock.Elapsed;
            left = $", ~{Format(remaining < TimeSpan.Zero ? TimeSpan.Zero : remaining)} left";
        }
        return $"{spinner} epoch {Math.Min(done + 1, _epochs)}/{_epochs} {bar} {done}/{_epochs} done, "
            + $"this epoch {Format(_epochClock.Elapsed)}, total {Format(_clock.Elapsed)}{left}";
    }

    private static string Format(TimeSpan t) => t.TotalHours >= 1 ? t.ToString(@"h\:mm\:ss") : t.ToString(@"m\:ss");
}
