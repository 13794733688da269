using System.Globalization;
using MlNetBn.Build;
using MlNetBn.Data;
using MlNetBn.Tests.Native;

namespace MlNetBn.Tests.Packaging;

/// <summary>
/// What an application built outside the repository (ConsumerApp/Program.cs, through the package or through project
/// references) must have done and have in its output: trained, saved, loaded and predicted, with the patched
/// libLibTorchSharp.so in its output and loaded from there.
/// </summary>
internal static class ConsumerAppChecks
{
    /// <summary>Copies ConsumerApp/Program.cs into <paramref name="app"/>, with empty Directory.Build.* / Directory.Packages.props files there.</summary>
    /// <param name="app">The application's folder (created).</param>
    /// <param name="project">The text of the application's ConsumerApp.csproj.</param>
    public static void CreateApp(string app, string project)
    {
        Directory.CreateDirectory(app);
        File.Copy(Path.Combine(PackagingTestEnvironment.ConsumerAppSources, "Program.cs"), Path.Combine(app, "Program.cs"));
        File.WriteAllText(Path.Combine(app, "ConsumerApp.csproj"), project);

        // Stop MSBuild's upward search for Directory.Build.* / Directory.Packages.props outside the app.
        foreach (string stop in new[] { "Directory.Build.props", "Directory.Build.targets", "Directory.Packages.props" })
        {
            File.WriteAllText(Path.Combine(app, stop), "<Project />\n");
        }
    }

    /// <summary>
    /// Runs the built application on the committed Fashion-MNIST subset and checks its key=value lines, its model file
    /// and the native glue in <paramref name="output"/>.
    /// </summary>
    /// <param name="app">The application's folder (the working directory).</param>
    /// <param name="output">The application's output folder (holding ConsumerApp.dll).</param>
    /// <param name="model">Where the application saves its model zip.</param>
    /// <returns>The application's output, for the test log.</returns>
    public static string RunAndCheck(string app, string output, string model)
    {
        (int runExit, string runOutput) = PackagingTestEnvironment.RunDotnet(app, TimeSpan.FromMinutes(3),
            "exec", Path.Combine(output, "ConsumerApp.dll"), TestData.FashionMnistSmallDirectory, model);
        Assert.AreEqual(0, runExit, $"Consumer app failed:\n{runOutput}");

        Dictionary<string, string> values = runOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Where(l => l.Contains('=')).ToDictionary(l => l[..l.IndexOf('=')], l => l[(l.IndexOf('=') + 1)..]);
        Assert.AreEqual("40", values["train_rows"], "4 images of each of the 10 classes");
        Assert.AreEqual("10", values["test_rows"]);
        Assert.AreEqual("1", values["epochs_trained"]);
        Assert.AreEqual(0f, float.Parse(values["max_score_difference_after_reload"], CultureInfo.InvariantCulture),
            "the reloaded model must give the trained model's scores exactly");
        Assert.IsLessThanOrEqualTo(1e-5f, float.Parse(values["max_score_difference_prediction_engine"], CultureInfo.InvariantCulture));
        foreach (string sum in values["score_sums"].Split(','))
        {
            Assert.AreEqual(1.0, double.Parse(sum, CultureInfo.InvariantCulture), 1e-3, "scores are probabilities");
        }

        string[] predicted = values["predicted"].Split(',');
        Assert.HasCount(10, predicted);
        foreach (string name in predicted)
        {
            Assert.Contains(name, FashionMnist.ClassNames);
        }

        Assert.AreEqual(new FileInfo(model).Length.ToString(CultureInfo.InvariantCulture), values["model_bytes"]);

        string glue = Path.Combine(output, "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        Assert.IsTrue(File.Exists(glue), $"{glue} is missing");
        byte[] image = File.ReadAllBytes(glue);
        ElfVersionNeed libstdcxx = ElfVersionNeedPatcher.ReadVersionNeeds(image, glue).Single(n => n.File == ElfVersionNeedPatcher.LibStdCxxSoname);
        Assert.IsFalse(libstdcxx.Versions.Any(v => v.Name == ElfVersionNeedPatcher.UnsupportedVersion),
            $"{glue} still needs {ElfVersionNeedPatcher.UnsupportedVersion}: TorchSharp's unpatched file reached the application's output");
        CollectionAssert.AreEqual(File.ReadAllBytes(NativeTestPaths.PatchedLibTorchSharp), image,
            "the consumer's copy differs from the one this repository's build patched");
        Assert.IsFalse(Directory.Exists(Path.Combine(output, "cpu")), "TorchSharp fell back to copying libtorch into cpu/");
        if (OperatingSystem.IsLinux())
        {
            Assert.AreEqual(glue, values["loaded_libLibTorchSharp"], "the app loaded another libLibTorchSharp.so");
        }

        return runOutput;
    }
}
