#:project ../../../Extensions/MlNetBn.Extensions.csproj
#:project ../../../Trainers/MlNetBn.Trainers.csproj
#:property PublishAot=false
// Writes lenet-bn-model.zip and lenet-bn-model.expected.json beside this file (see README.md):
//   dotnet run Tests/Trainers/Fixtures/make-fixture.cs
using System.Text.Json;
using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetBn;
using MlNetBn.Modules;

string outDir = AppContext.GetData("EntryPointFileDirectoryPath") as string ?? ".";
var mlContext = new MLContext(seed: 1);
var rng = new Random(5);
var rows = new List<Row>();
for (int i = 0; i < 96; i++)
{
    bool top = i % 2 == 0;
    var f = new float[256];
    for (int p = 0; p < 256; p++)
        f[p] = (float)(((p < 128) == top ? 0.8 : 0.2) + 0.3 * (rng.NextDouble() - 0.5));
    rows.Add(new Row { Class = top ? "top" : "bottom", Features = f });
}
var data = mlContext.Data.LoadFromEnumerable(rows);
data = mlContext.Transforms.Conversion.MapValueToKey("Label", "Class").Fit(data).Transform(data);
// Non-default BN options and prediction batch size, so every field of the format holds something to check.
var options = new LeNetBnTrainer.Options
{
    ImageShape = new ImageShape(1, 16, 16),
    Epochs = 3,
    BatchSize = 16,
    LearningRate = 0.5,
    Seed = 3,
    BatchNorm = BatchNormKind.Scratch,
    BatchNormEpsilon = 1e-3,
    BatchNormMomentumConvention = MomentumConvention.BatchStatisticWeight,
    BatchNormMomentum = 0.2,
    BatchNormMovingVariance = MovingVarianceKind.Unbiased,
    Device = MlNetBn.Training.DeviceKind.Cpu,
    PredictionBatchSize = 7,
};
using var model = mlContext.MulticlassClassification.Trainers.LeNetBn(options).Fit(data);
mlContext.Model.Save(model, data.Schema, Path.Combine(outDir, "lenet-bn-model.zip"));
var sample = mlContext.Data.TakeRows(data, 6);
var features = sample.GetColumn<float[]>("Features").ToArray();
var scores = model.Transform(sample).GetColumn<float[]>("Score").ToArray();
File.WriteAllText(Path.Combine(outDir, "lenet-bn-model.expected.json"), JsonSerializer.Serialize(new { features, scores }));
Console.WriteLine(string.Join(" | ", scores.Select(s => string.Join(", ", s))));

sealed class Row
{
    public string Class { get; set; } = "";
    [VectorType(256)]
    public float[] Features { get; set; } = [];
}
