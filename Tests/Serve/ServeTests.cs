using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.ML;
using MlNetBn.Data;
using MlNetBn.Examples.ImageFiles;
using MlNetBn.Examples.Serve;
using MlNetBn.Tests.Internals;
using MlNetBn.Tests.Trainers;
using ServeProgram = MlNetBn.Examples.Serve.Program;

namespace MlNetBn.Tests.Serve;

/// <summary>
/// Examples/Serve against a real model trained here (one epoch, 5 images per class), in-process through
/// WebApplicationFactory: the JSON contract, the scores against a single-threaded PredictionEngine, images against
/// Examples/ImageFiles' conversion of the same files, and every bad input as a 400/415 problem+json.
/// </summary>
[TestClass]
public sealed class ServeTests
{
    private const string ProblemJson = "application/problem+json";
    private const string ColourJpeg = "large-colour.jpg";

    private static string s_folder = "";
    private static string s_modelPath = "";
    private static IReadOnlyList<string> s_pngs = [];
    private static List<float[]> s_features = [];
    private static WebApplicationFactory<ServeProgram> s_factory = null!;
    private static HttpClient s_client = null!;

    [ClassInitialize]
    public static void TrainAndStart(TestContext _)
    {
        s_folder = Directory.CreateTempSubdirectory("mlnetbn-serve-").FullName;
        var ml = new MLContext(seed: 1);
        var train = TrainerTestData.Train(ml, perClass: 5);
        using (var model = ml.MulticlassClassification.Trainers.LeNetBn(TrainerTestData.QuickOptions(epochs: 1)).Fit(train))
        {
            s_modelPath = Path.Combine(s_folder, "model.zip");
            ml.Model.Save(model, train.Schema, s_modelPath);
        }

        var test = FashionMnist.Read(FashionMnistSplit.Test, TestData.FashionMnistSmallDirectory);
        s_pngs = FashionImageFiles.WritePngs(test, test.SelectIndices(countPerClass: 1), FashionMnist.ClassNames, s_folder);
        ImageFiles.ImageFolderTests.WriteColourJpeg(Path.Combine(s_folder, ColourJpeg));
        s_features = ml.Data.CreateEnumerable<FeatureRow>(ml.Data.LoadIdx(test, FashionMnist.ClassNames, countPerClass: 1), reuseRowObject: false)
            .Select(r => r.Features).ToList();

        s_factory = new WebApplicationFactory<ServeProgram>().WithWebHostBuilder(web => web
            .UseEnvironment("Production")
            .UseSetting("Model:Path", s_modelPath));
        s_client = s_factory.CreateClient();
    }

    [ClassCleanup]
    public static void StopAndDelete()
    {
        s_client?.Dispose();
        s_factory?.Dispose();
        Directory.Delete(s_folder, recursive: true);
    }

    [TestMethod]
    public async Task Healthz_IsHealthyWithTheModelLoaded()
    {
        using var response = await s_client.GetAsync("/healthz");
        Assert.AreEqual(HttpStatusCode.OK, response.StatusCode);
        Assert.AreEqual("Healthy", await response.Content.ReadAsStringAsync());
    }

    [TestMethod]
    public async Task Model_DescribesClassesShapeAndBatchNorm()
    {
        using var response = await s_client.GetAsync("/model");
        Assert.AreEqual(HttpStatusCode.OK, response.StatusCode);
        Assert.AreEqual("application/json", response.Content.Headers.ContentType?.MediaType);
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        var root = json.RootElement;
        CollectionAssert.AreEqual(FashionMnist.ClassNames.ToArray(), root.GetProperty("classes").EnumerateArray().Select(c => c.GetString()).ToArray());
        Assert.AreEqual(1, root.GetProperty("imageShape").GetProperty("channels").GetInt32());
        Assert.AreEqual(28, root.GetProperty("imageShape").GetProperty("height").GetInt32());
        Assert.AreEqual(28, root.GetProperty("imageShape").GetProperty("width").GetInt32());
        Assert.AreEqual(784, root.GetProperty("featureCount").GetInt32());
        Assert.AreEqual("Scratch", root.GetProperty("batchNorm").GetString());
        Assert.IsFalse(root.GetProperty("batchNormFolded").GetBoolean());
    }

    [TestMethod]
    public async Task Predict_GivesASingleThreadedPredictionEnginesProbabilities()
    {
        var ml = new MLContext();
        var model = ml.Model.Load(s_modelPath, out _);
        using var engine = ml.Model.CreatePredictionEngine<FeatureRow, Prediction>(model); // owns and disposes the model
        foreach (var features in s_features)
        {
            var expected = engine.Predict(new FeatureRow { Features = features });
            var actual = await PredictAsync(features);
            CollectionAssert.AreEqual(expected.Score, actual.Probabilities, "bit for bit");
            Assert.AreEqual(FashionMnist.ClassNames[(int)expected.PredictedLabel - 1], actual.Label);
            CollectionAssert.AreEqual(FashionMnist.ClassNames.ToArray(), actual.Classes.ToArray());
        }
    }

    [TestMethod]
    public async Task Predict_ConcurrentRequests_EachGetTheSingleThreadedProbabilities()
    {
        var ml = new MLContext();
        var model = ml.Model.Load(s_modelPath, out _);
        float[][] expected;
        using (var engine = ml.Model.CreatePredictionEngine<FeatureRow, ScoreRow>(model))
            expected = s_features.Select(f => engine.Predict(new FeatureRow { Features = f }).Score).ToArray();

        // 8 clients × 5 rounds over the 10 images at once: pooled engines, no lock around the model.
        var results = await Task.WhenAll(Enumerable.Range(0, 8).Select(client => Task.Run(async () =>
        {
            int mismatches = 0;
            for (int round = 0; round < 5; round++)
                for (int i = 0; i < s_features.Count; i++)
                    if (!(await PredictAsync(s_features[(i + client) % s_features.Count])).Probabilities.SequenceEqual(expected[(i + client) % s_features.Count]))
                        mismatches++;
            return mismatches;
        })));
        Assert.AreEqual(0, results.Sum());
    }

    [TestMethod]
    public async Task PredictImage_RawAndMultipart_EqualPredictOfTheFeaturesImageFilesComputes()
    {
        foreach (bool invert in new[] { false, true })
        {
            var ml = new MLContext();
            var model = ml.Model.Load(s_modelPath, out _);
            IReadOnlyList<ImageFilePrediction> files;
            try
            {
                files = FashionImageFiles.Classify(ml, model, s_folder, s_pngs.Append(ColourJpeg), invert).Predictions;
            }
            finally
            {
                (model as IDisposable)?.Dispose();
            }
            Assert.HasCount(s_pngs.Count + 1, files);
            foreach (var file in files)
            {
                var expected = await PredictAsync(file.Features);
                byte[] bytes = await File.ReadAllBytesAsync(Path.Combine(s_folder, file.ImagePath));
                string query = invert ? "?invert=true" : "";

                string type = file.ImagePath.EndsWith(".jpg", StringComparison.Ordinal) ? "image/jpeg" : "image/png";
                using var raw = new ByteArrayContent(bytes);
                raw.Headers.ContentType = new MediaTypeHeaderValue(type);
                var fromRaw = await ReadPredictionAsync(await s_client.PostAsync("/predict/image" + query, raw));

                using var form = new MultipartFormDataContent();
                var part = new ByteArrayContent(bytes);
                part.Headers.ContentType = new MediaTypeHeaderValue(type);
                form.Add(part, "file", file.ImagePath);
                var fromForm = await ReadPredictionAsync(await s_client.PostAsync("/predict/image" + query, form));

                foreach (var actual in new[] { fromRaw, fromForm })
                {
                    CollectionAssert.AreEqual(expected.Probabilities, actual.Probabilities, $"{file.ImagePath}, invert {invert}");
                    Assert.AreEqual(expected.Label, actual.Label);
                }
            }
        }
    }

    [TestMethod]
    [DataRow("{\"features\": [1, 2", "Malformed JSON", "The body is not a valid {\"features\": [numbers]} object at $.features", DisplayName = "truncated JSON")]
    [DataRow("{\"features\": [0.5, NaN]}", "Malformed JSON", "at $.features[1]: 'N' is an invalid start of a value", DisplayName = "NaN literal")]
    [DataRow("{\"features\": [0.5, \"Infinity\"]}", "Malformed JSON", "at $.features[1]: a feature must be a number, not a string (NaN and Infinity are not allowed)", DisplayName = "Infinity string")]
    [DataRow("{\"features\": [0.5, 1e39]}", "Malformed JSON", "at $.features[1]: the number 1e39 does not fit a 32-bit float (largest magnitude 3.4028235E+38)", DisplayName = "overflows float")]
    [DataRow("{\"features\": [0.5, -1e400]}", "Malformed JSON", "at $.features[1]: the number -1e400 does not fit a 32-bit float", DisplayName = "overflows double")]
    [DataRow("{\"pixels\": [0.5]}", "Missing features", "The body has no \"features\" array; send {\"features\": [784 numbers]}.", DisplayName = "no features")]
    [DataRow("{\"features\": [0.5, 0.25]}", "Wrong feature count", "\"features\" has 2 values; the model takes 1×28×28 = 784.", DisplayName = "wrong length")]
    [DataRow("", "Empty body", "The request body is empty.", DisplayName = "empty body")]
    public async Task Predict_BadBody_Is400ProblemThatSaysWhat(string body, string title, string detail)
    {
        using var content = new StringContent(body, Encoding.UTF8, "application/json");
        await AssertProblemAsync(await s_client.PostAsync("/predict", content), HttpStatusCode.BadRequest, title, detail);
        await AssertStillServingAsync();
    }

    [TestMethod]
    public async Task Predict_BodyOverTheLimit_Is400()
    {
        string body = "{\"features\": [" + string.Join(",", Enumerable.Repeat("0.123456789", 120_000)) + "]}";
        using var content = new StringContent(body, Encoding.UTF8, "application/json");
        await AssertProblemAsync(await s_client.PostAsync("/predict", content), HttpStatusCode.BadRequest, "Body too large",
            $"The body is {Encoding.UTF8.GetByteCount(body)} bytes; the limit is 1048576 bytes (Model:MaxRequestBytes).");
        await AssertStillServingAsync();
    }

    [TestMethod]
    public async Task Predict_NotJson_Is415()
    {
        using var content = new StringContent("0.5", Encoding.UTF8, "text/plain");
        await AssertProblemAsync(await s_client.PostAsync("/predict", content), HttpStatusCode.UnsupportedMediaType, "Unsupported content type",
            "The body must be JSON (Content-Type: application/json), not 'text/plain; charset=utf-8'.");
    }

    [TestMethod]
    public async Task PredictImage_BadUploads_Are400ProblemsThatSayWhat()
    {
        byte[] png = await File.ReadAllBytesAsync(Path.Combine(s_folder, s_pngs[0]));
        var cases = new (byte[] Bytes, string Title, string Detail)[]
        {
            (Encoding.UTF8.GetBytes("just some notes"), "Not a readable image",
                "The upload cannot be read: it is not an image in a format the decoder reads (PNG, JPEG, BMP, GIF, WebP, ICO, WBMP)."),
            (png[..(png.Length / 2)], "Not a readable image", "The upload cannot be read: the Png data end early: the file is truncated."),
            (new byte[(1 << 20) + 1], "Body too large", "The body is 1048577 bytes; the limit is 1048576 bytes (Model:MaxRequestBytes)."),
            ([], "Empty body", "The request body is empty."),
        };
        foreach (var (bytes, title, detail) in cases)
        {
            using var raw = new ByteArrayContent(bytes);
            raw.Headers.ContentType = new MediaTypeHeaderValue("image/png");
            await AssertProblemAsync(await s_client.PostAsync("/predict/image", raw), HttpStatusCode.BadRequest, title, detail);
        }

        using (var form = new MultipartFormDataContent { { new ByteArrayContent(Encoding.UTF8.GetBytes("just some notes")), "file", "notes.png" } })
            await AssertProblemAsync(await s_client.PostAsync("/predict/image", form), HttpStatusCode.BadRequest, "Not a readable image",
                "The upload cannot be read: it is not an image in a format the decoder reads (PNG, JPEG, BMP, GIF, WebP, ICO, WBMP).");
        using (var empty = new MultipartFormDataContent { { new StringContent("x"), "note" } })
            await AssertProblemAsync(await s_client.PostAsync("/predict/image", empty), HttpStatusCode.BadRequest, "Expected one file",
                "Send exactly one image file in the form; this one has 0.");
        using (var raw = new ByteArrayContent(png) { Headers = { ContentType = new MediaTypeHeaderValue("image/png") } })
            await AssertProblemAsync(await s_client.PostAsync("/predict/image?invert=yes", raw), HttpStatusCode.BadRequest, "Invalid query",
                "invert must be true or false, not 'yes'.");
        using (var json = new StringContent("{}", Encoding.UTF8, "application/json"))
            await AssertProblemAsync(await s_client.PostAsync("/predict/image", json), HttpStatusCode.UnsupportedMediaType, "Unsupported content type",
                "Send the image as a multipart/form-data file or as the body with an image content type (image/png, image/jpeg), not 'application/json; charset=utf-8'.");
        await AssertStillServingAsync();
    }

    [TestMethod]
    [DataRow("missing", DisplayName = "missing model file")]
    [DataRow("damaged", DisplayName = "damaged model file")]
    public void BadModelFile_StopsStartupWithAMessageAndExitCode1(string kind)
    {
        string path = Path.Combine(s_folder, kind + ".zip");
        if (kind == "damaged")
            File.WriteAllBytes(path, File.ReadAllBytes(s_modelPath)[..1000]);
        string dll = Path.Combine(AppContext.BaseDirectory, "MlNetBn.Examples.Serve.dll");
        var start = new ProcessStartInfo(InternalsTestEnvironment.DotnetHost)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            ArgumentList = { dll, "--model", path, "--urls", "http://127.0.0.1:0" },
        };
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        string stderr = process.StandardError.ReadToEnd();
        Assert.IsTrue(process.WaitForExit(60_000), "exits");
        Assert.AreEqual(1, process.ExitCode, stderr + stdout.Result);
        string expected = kind == "missing"
            ? $"Serve: cannot start: The model file {path} does not exist."
            : $"Serve: cannot start: The model file {path} could not be loaded (";
        Assert.StartsWith(expected, stderr.Trim(), stderr);
    }

    /// <summary>640×480 in colour, a bright ellipse on a dark background: resized, cropped and made gray on the way.</summary>
    private static async Task<PredictResponse> PredictAsync(float[] features)
    {
        using var response = await s_client.PostAsJsonAsync("/predict", new { features });
        return await ReadPredictionAsync(response);
    }

    private static async Task<PredictResponse> ReadPredictionAsync(HttpResponseMessage response)
    {
        using (response)
        {
            string body = await response.Content.ReadAsStringAsync();
            Assert.AreEqual(HttpStatusCode.OK, response.StatusCode, body);
            Assert.AreEqual("application/json", response.Content.Headers.ContentType?.MediaType);
            return JsonSerializer.Deserialize<PredictResponse>(body, JsonSerializerOptions.Web)!;
        }
    }

    private static async Task AssertProblemAsync(HttpResponseMessage response, HttpStatusCode status, string title, string detail)
    {
        using (response)
        {
            string body = await response.Content.ReadAsStringAsync();
            Assert.AreEqual(status, response.StatusCode, body);
            Assert.AreEqual(ProblemJson, response.Content.Headers.ContentType?.MediaType, body);
            using var json = JsonDocument.Parse(body);
            Assert.AreEqual((int)status, json.RootElement.GetProperty("status").GetInt32());
            Assert.AreEqual(title, json.RootElement.GetProperty("title").GetString());
            string actual = json.RootElement.GetProperty("detail").GetString()!;
            if (detail.EndsWith(": ", StringComparison.Ordinal) || detail.EndsWith('(') || !detail.EndsWith('.'))
                Assert.Contains(detail, actual);
            else
                Assert.AreEqual(detail, actual);
        }
    }

    private static async Task AssertStillServingAsync() =>
        Assert.IsNotEmpty((await PredictAsync(s_features[0])).Probabilities);
}
