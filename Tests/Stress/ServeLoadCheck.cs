using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.ML;
using MlNetBn.Data;
using ServeProgram = MlNetBn.Examples.Serve.Program;

namespace MlNetBn.Tests.Stress;

/// <summary>
/// Examples/Serve under load: the real app started in this process on a loopback port (127.0.0.1 only),
/// <c>--clients</c> concurrent clients POSTing real test images to <c>/predict</c> for <c>--seconds</c> or
/// <c>--max-requests</c>, whichever ends first. Prints requests/s, p50/p99 latency, errors, the process RSS before
/// and after, and how many responses' probabilities differ from a single-threaded PredictionEngine's for the same
/// image. Exits 1 on any error or mismatch, or RSS growth over <c>--max-growth-mb</c>.
/// </summary>
/// <remarks>The clients run in the same process, so the RSS and the CPU time include theirs.</remarks>
internal sealed class ServeLoadCheck(string directory, string? modelPath, int trainPerClass, int clients, double seconds, int maxRequests, int port, double maxGrowthMb)
{
    public int Run() => RunAsync().GetAwaiter().GetResult();

    private async Task<int> RunAsync()
    {
        var mlContext = new MLContext(seed: 1);
        Console.WriteLine($"Serve load: {clients} clients, up to {seconds:F0} s or {maxRequests:N0} requests, {Environment.ProcessorCount} cores, data {directory}");
        string? tempFolder = null;
        if (modelPath is null)
        {
            tempFolder = Directory.CreateTempSubdirectory("mlnetbn-serve-load-").FullName;
            modelPath = Path.Combine(tempFolder, "model.zip");
            var train = mlContext.Data.LoadFashionMnist(FashionMnistSplit.Train, directory, countPerClass: trainPerClass);
            var options = new LeNetBnTrainer.Options { Epochs = 1, BatchSize = 32, LearningRate = 0.05, SgdMomentum = 0.9, Seed = 1, Device = Training.DeviceKind.Cpu };
            using var trained = mlContext.MulticlassClassification.Trainers.LeNetBn(options).Fit(train);
            mlContext.Model.Save(trained, train.Schema, modelPath);
            Console.WriteLine($"model: trained 1 epoch on {trainPerClass} images per class, saved to {modelPath}");
        }
        try
        {
            return await LoadAsync(mlContext, modelPath);
        }
        finally
        {
            if (tempFolder is not null)
                Directory.Delete(tempFolder, recursive: true);
        }
    }

    private async Task<int> LoadAsync(MLContext mlContext, string model)
    {
        // The test images, their JSON bodies, and a single-threaded engine's scores for them (the reference).
        var images = mlContext.Data.CreateEnumerable<Image>(mlContext.Data.LoadFashionMnist(FashionMnistSplit.Test, directory), reuseRowObject: false).ToList();
        var bodies = images.Select(i => JsonSerializer.SerializeToUtf8Bytes(new { features = i.Features })).ToArray();
        float[][] expected;
        var reference = mlContext.Model.Load(model, out _);
        using (var engine = mlContext.Model.CreatePredictionEngine<FeatureRow, ScoreRow>(reference)) // owns and disposes it
            expected = images.Select(i => engine.Predict(new FeatureRow { Features = i.Features }).Score).ToArray();

        var app = ServeProgram.CreateApp(["--model", model, "--urls", $"http://127.0.0.1:{port}", "--Logging:LogLevel:Default=Warning"]);
        await using var service = app;
        await app.StartAsync();
        var address = new Uri(app.Urls.Single());
        if (!IPAddress.IsLoopback(IPAddress.Parse(address.Host)))
            throw new InvalidOperationException($"The service listens on {address}, not on a loopback address.");
        Console.WriteLine($"service: {address}, model {model}");

        using var handler = new SocketsHttpHandler { MaxConnectionsPerServer = clients, UseProxy = false };
        using var http = new HttpClient(handler) { BaseAddress = address, Timeout = TimeSpan.FromSeconds(30) };

        // Warm-up: every client's connection and a pooled engine each.
        await Task.WhenAll(Enumerable.Range(0, clients).Select(c => SendAsync(http, bodies[c % bodies.Length])));
        var before = MemoryReading.AfterFullCollection();

        long issued = 0, errors = 0, mismatches = 0;
        var latencies = new List<double>[clients];
        var limit = TimeSpan.FromSeconds(seconds);
        var clock = Stopwatch.StartNew();
        var tasks = Enumerable.Range(0, clients).Select(c => Task.Run(async () =>
        {
            var mine = latencies[c] = new List<double>();
            long n;
            while (clock.Elapsed < limit && (n = Interlocked.Increment(ref issued)) <= maxRequests)
            {
                int image = (int)((n - 1) % bodies.Length);
                var watch = Stopwatch.StartNew();
                var (ok, probabilities) = await SendAsync(http, bodies[image]);
                mine.Add(watch.Elapsed.TotalMilliseconds);
                if (!ok)
                    Interlocked.Increment(ref errors);
                else if (!probabilities!.SequenceEqual(expected[image]))
                    Interlocked.Increment(ref mismatches);
            }
        })).ToArray();
        await Task.WhenAll(tasks);
        var elapsed = clock.Elapsed;
        var after = MemoryReading.AfterFullCollection();
        await app.StopAsync();

        var all = latencies.SelectMany(l => l).Order().ToArray();
        double growth = after.RssMb - before.RssMb;
        Console.WriteLine($"requests:      {all.Length:N0} in {elapsed.TotalSeconds:F1} s = {all.Length / elapsed.TotalSeconds:N0} requests/s");
        Console.WriteLine($"latency:       p50 {Percentile(all, 0.50):F2} ms, p99 {Percentile(all, 0.99):F2} ms, max {(all.Length > 0 ? all[^1] : double.NaN):F2} ms");
        Console.WriteLine($"errors:        {errors} (target 0)");
        Console.WriteLine($"mismatches:    {mismatches} responses whose probabilities differ from a single-threaded PredictionEngine's (target 0)");
        Console.WriteLine($"RSS:           {before.RssMb:F1} MB before, {after.RssMb:F1} MB after (full GC and malloc_trim before each), growth {growth:+0.0;-0.0} MB (target ≤ {maxGrowthMb} MB)");
        bool pass = errors == 0 && mismatches == 0 && growth <= maxGrowthMb && all.Length > 0;
        Console.WriteLine(pass ? "PASS" : "FAIL");
        return pass ? 0 : 1;
    }

    private static async Task<(bool Ok, float[]? Probabilities)> SendAsync(HttpClient http, byte[] body)
    {
        try
        {
            using var content = new ByteArrayContent(body);
            content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
            using var response = await http.PostAsync("/predict", content);
            if (response.StatusCode != HttpStatusCode.OK)
                return (false, null);
            await using var stream = await response.Content.ReadAsStreamAsync();
            using var json = await JsonDocument.ParseAsync(stream);
            return (true, json.RootElement.GetProperty("probabilities").EnumerateArray().Select(p => p.GetSingle()).ToArray());
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException or JsonException or KeyNotFoundException)
        {
            return (false, null);
        }
    }

    private static double Percentile(double[] sorted, double q) =>
        sorted.Length == 0 ? double.NaN : sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(q * sorted.Length) - 1)];
}
