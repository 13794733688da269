using System.Text.Json;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.Extensions.Options;
using Microsoft.Net.Http.Headers;
using MlNetBn.Examples.ImageFiles;

namespace MlNetBn.Examples.Serve;

/// <summary>
/// Serves a LeNet-BN model zip over HTTP:
/// <c>dotnet run --project Examples/Serve -c Release -- --model lenet-bn.zip --urls http://127.0.0.1:5080</c>.
/// </summary>
/// <remarks>Not static: WebApplicationFactory&lt;Program&gt; in the tests names it.</remarks>
public sealed class Program
{
    private Program()
    {
    }

    private static readonly JsonSerializerOptions RequestJson = new(JsonSerializerDefaults.Web) { Converters = { new FiniteSingleConverter() } };

    /// <summary>Starts the service; exits with 1 and a message on standard error when the model cannot be loaded.</summary>
    public static async Task<int> Main(string[] args)
    {
        WebApplication app;
        try
        {
            app = CreateApp(args);
        }
        catch (ModelLoadException e)
        {
            await Console.Error.WriteLineAsync($"Serve: cannot start: {e.Message}");
            return 1;
        }
        await using (app)
            await app.RunAsync();
        return 0;
    }

    /// <summary>
    /// Builds the app with its endpoints and loads the model (so a bad model fails here, before anything listens).
    /// <c>--model PATH</c> is <c>Model:Path</c>; every other ASP.NET Core setting (<c>--urls</c>, environment,
    /// appsettings.json) works as usual. Tests/Stress starts it in-process through this.
    /// </summary>
    public static WebApplication CreateApp(string[] args)
    {
        var builder = WebApplication.CreateBuilder(args);
        builder.Configuration.AddCommandLine(args, new Dictionary<string, string> { ["--model"] = $"{ModelOptions.SectionName}:Path" });
        builder.Services.Configure<ModelOptions>(builder.Configuration.GetSection(ModelOptions.SectionName));
        builder.Services.AddSingleton<ModelService>();
        builder.Services.AddProblemDetails();
        builder.Services.AddHealthChecks().AddCheck<ModelService>("model");

        var app = builder.Build();
        app.UseExceptionHandler();
        app.UseStatusCodePages();
        try
        {
            app.Services.GetRequiredService<ModelService>();
        }
        catch (ModelLoadException)
        {
            ((IDisposable)app).Dispose();
            throw;
        }

        app.MapPost("/predict", PredictAsync);
        app.MapPost("/predict/image", PredictImageAsync);
        app.MapGet("/model", (ModelService model) => TypedResults.Ok(model.Info()));
        app.MapHealthChecks("/healthz");
        return app;
    }

    private static async Task<Results<Ok<PredictResponse>, ProblemHttpResult>> PredictAsync(
        HttpRequest request, ModelService model, IOptions<ModelOptions> options, CancellationToken cancellationToken)
    {
        if (!request.HasJsonContentType())
            return Problem(StatusCodes.Status415UnsupportedMediaType, "Unsupported content type",
                $"The body must be JSON (Content-Type: application/json), not '{request.ContentType}'.");
        var (body, problem) = await ReadBodyAsync(request, options.Value.MaxRequestBytes, cancellationToken);
        if (problem is not null)
            return problem;

        PredictRequest? input;
        try
        {
            input = JsonSerializer.Deserialize<PredictRequest>(body, RequestJson);
        }
        catch (JsonException e)
        {
            // A converter's message, or the parser's; the path says which value (NaN and Infinity are not JSON numbers).
            string where = e.Path is null ? "" : $" at {e.Path}";
            string what = e.Message.Split(" Path:")[0].TrimEnd('.');
            return Problem(StatusCodes.Status400BadRequest, "Malformed JSON",
                $"The body is not a valid {{\"features\": [numbers]}} object{where}: {what}");
        }
        if (input?.Features is not { } features)
            return Problem(StatusCodes.Status400BadRequest, "Missing features",
                $"The body has no \"features\" array; send {{\"features\": [{model.FeatureCount} numbers]}}.");
        return Predict(model, features);
    }

    private static async Task<Results<Ok<PredictResponse>, ProblemHttpResult>> PredictImageAsync(
        HttpRequest request, ModelService model, IOptions<ModelOptions> options, string? invert, CancellationToken cancellationToken)
    {
        bool inverted = false;
        if (invert is not null && !bool.TryParse(invert, out inverted))
            return Problem(StatusCodes.Status400BadRequest, "Invalid query", $"invert must be true or false, not '{invert}'.");
        int limit = options.Value.MaxRequestBytes;
        byte[] image;
        if (request.HasFormContentType)
        {
            if (request.ContentLength > limit)
                return TooLarge(request.ContentLength.Value, limit);
            IFormCollection form;
            try
            {
                form = await request.ReadFormAsync(new Microsoft.AspNetCore.Http.Features.FormOptions { MultipartBodyLengthLimit = limit }, cancellationToken);
            }
            catch (InvalidDataException e)
            {
                return Problem(StatusCodes.Status400BadRequest, "Malformed form", $"The multipart form could not be read: {e.Message} (limit {limit} bytes).");
            }
            if (form.Files.Count != 1)
                return Problem(StatusCodes.Status400BadRequest, "Expected one file",
                    $"Send exactly one image file in the form; this one has {form.Files.Count}.");
            var file = form.Files[0];
            using var buffer = new MemoryStream();
            await file.CopyToAsync(buffer, cancellationToken);
            image = buffer.ToArray();
        }
        else if (MediaTypeHeaderValue.TryParse(request.ContentType, out var type) && type.Type.Equals("image", StringComparison.OrdinalIgnoreCase))
        {
            var (body, problem) = await ReadBodyAsync(request, limit, cancellationToken);
            if (problem is not null)
                return problem;
            image = body;
        }
        else
        {
            return Problem(StatusCodes.Status415UnsupportedMediaType, "Unsupported content type",
                $"Send the image as a multipart/form-data file or as the body with an image content type (image/png, image/jpeg), not '{request.ContentType}'.");
        }

        if (FashionImageFiles.CheckDecodes(image) is { } reason)
            return Problem(StatusCodes.Status400BadRequest, "Not a readable image", $"The upload cannot be read: {reason}.");
        return Predict(model, model.ImageToFeatures(image, inverted));
    }

    private static Results<Ok<PredictResponse>, ProblemHttpResult> Predict(ModelService model, float[] features)
    {
        if (features.Length != model.FeatureCount)
        {
            var shape = model.Network.Architecture.Input;
            return Problem(StatusCodes.Status400BadRequest, "Wrong feature count",
                $"\"features\" has {features.Length} values; the model takes {shape} = {model.FeatureCount}.");
        }
        int bad = Array.FindIndex(features, f => !float.IsFinite(f));
        if (bad >= 0)
            return Problem(StatusCodes.Status400BadRequest, "Not a finite number", $"features[{bad}] is {features[bad]}; every feature must be finite.");
        return TypedResults.Ok(model.Predict(features));
    }

    /// <summary>The whole body, up to <paramref name="limit"/> bytes; a problem when it is empty or longer.</summary>
    private static async Task<(byte[] Body, ProblemHttpResult? Problem)> ReadBodyAsync(HttpRequest request, int limit, CancellationToken cancellationToken)
    {
        if (request.ContentLength > limit)
            return ([], TooLarge(request.ContentLength.Value, limit));
        using var buffer = new MemoryStream();
        var chunk = new byte[81920];
        int read;
        while ((read = await request.Body.ReadAsync(chunk, cancellationToken)) > 0)
        {
            if (buffer.Length + read > limit)
                return ([], TooLarge(null, limit));
            buffer.Write(chunk, 0, read);
        }
        if (buffer.Length == 0)
            return ([], Problem(StatusCodes.Status400BadRequest, "Empty body", "The request body is empty."));
        return (buffer.ToArray(), null);
    }

    private static ProblemHttpResult TooLarge(long? length, int limit) =>
        Problem(StatusCodes.Status400BadRequest, "Body too large",
            $"The body is {(length is { } n ? $"{n} bytes" : "longer than the limit")}; the limit is {limit} bytes (Model:MaxRequestBytes).");

    private static ProblemHttpResult Problem(int status, string title, string detail) =>
        TypedResults.Problem(detail: detail, statusCode: status, title: title);
}
