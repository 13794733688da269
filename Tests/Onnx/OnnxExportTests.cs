using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.Runtime;
using MlNetBn.Data;
using MlNetBn.Modules;
using MlNetBn.Tests.Trainers;
using MlNetBn.Transform;
using static TorchSharp.torch;

namespace MlNetBn.Tests.Onnx;

/// <summary>
/// <c>mlContext.Model.ConvertToOnnx</c> on LeNet-BN models of every option, checked column by column in ONNX Runtime:
/// through ML.NET's <c>ApplyOnnxModel</c> and through ONNX Runtime's own API, on real test images (and rows holding
/// NaN and ±Infinity), against the transformer's <c>Transform</c>.
/// </summary>
[TestClass]
public sealed class OnnxExportTests
{
    /// <summary>Largest accepted |difference| between a probability from ONNX Runtime and from the transformer.</summary>
    private const double Tolerance = 1e-5;

    private const int TestImagesPerClass = 20;

    private static MLContext s_mlContext = null!;
    private static LabelKeyValues s_classNames = null!;
    private static float[] s_trainImages = null!;
    private static float[] s_testImages = null!;

    public TestContext TestContext { get; set; } = null!;

    [ClassInitialize]
    public static void LoadImages(TestContext _)
    {
        s_mlContext = new MLContext(seed: 1);
        var test = TrainerTestData.Test(s_mlContext, TestImagesPerClass);
        s_classNames = LabelKeyValues.From(test.Schema["Label"]) ?? throw new InvalidOperationException("The test subset's Label has no class names.");
        s_testImages = Pixels(test);
        s_trainImages = Pixels(TrainerTestData.Train(s_mlContext, 20));
    }

    /// <summary>Every option of the trainer that changes the network: BN kind, activation, pooling, image shape, BN options, folding.</summary>
    private static readonly Dictionary<string, (LeNetBnArchitecture Architecture, bool Fold)> Cases = new()
    {
        ["scratch BN, sigmoid, average pooling (d2l)"] = (new() { BatchNorm = BatchNormKind.Scratch }, false),
        ["scratch BN, unbiased moving variance, eps 1e-2"] = (new() { BatchNorm = BatchNormKind.Scratch, BatchNormOptions = Statistics(1e-2, MovingVarianceKind.Unbiased) }, false),
        ["scratch BN, ReLU, max pooling"] = (new() { BatchNorm = BatchNormKind.Scratch, Activation = ActivationKind.ReLU, Pooling = PoolingKind.Max }, false),
        ["built-in BN, sigmoid, average pooling"] = (new() { BatchNorm = BatchNormKind.BuiltIn }, false),
        ["built-in BN, ReLU, max pooling, eps 1e-2"] = (new() { BatchNorm = BatchNormKind.BuiltIn, Activation = ActivationKind.ReLU, Pooling = PoolingKind.Max, BatchNormOptions = Statistics(1e-2) }, false),
        ["no BN, sigmoid, average pooling"] = (new() { BatchNorm = BatchNormKind.None }, false),
        ["no BN, ReLU, max pooling"] = (new() { BatchNorm = BatchNormKind.None, Activation = ActivationKind.ReLU, Pooling = PoolingKind.Max }, false),
        ["scratch BN, 3×32×32 images"] = (new() { BatchNorm = BatchNormKind.Scratch, Input = new ImageShape(3, 32, 32) }, false),
        ["built-in BN, ReLU, 3×32×32 images"] = (new() { BatchNorm = BatchNormKind.BuiltIn, Activation = ActivationKind.ReLU, Input = new ImageShape(3, 32, 32) }, false),
        ["scratch BN folded"] = (new() { BatchNorm = BatchNormKind.Scratch }, true),
        ["built-in BN folded, ReLU, max pooling"] = (new() { BatchNorm = BatchNormKind.BuiltIn, Activation = ActivationKind.ReLU, Pooling = PoolingKind.Max }, true),
    };

    public static IEnumerable<object[]> CaseNames => Cases.Keys.Select(name => new object[] { name });

    [TestMethod]
    [DynamicData(nameof(CaseNames))]
    public void ConvertToOnnx_ScoresInOnnxRuntimeAsTheTransformer(string name)
    {
        var (architecture, fold) = Cases[name];
        using var model = Model(architecture, fold);
        var (features, rows) = Images(architecture.Input);
        var data = FeatureView(features, architecture.Input.Size);
        var (expectedScores, expectedLabels) = Read(model.Transform(data), "Score", "PredictedLabel");
        // A network that gave every image the same scores would prove little: some class's probability must vary.
        double spread = ScoreSpread(expectedScores, architecture.NumClasses, rows - 3);
        Assert.IsGreaterThan(0.5, spread, $"{name}: largest range of a class's probability over the images");

        byte[] onnx = Export(model, data);
        var graph = OnnxGraph.Read(onnx);
        CollectionAssert.AreEqual(new[] { "Features" }, graph.Inputs.ToArray(), "the graph reads the features, not the scores");
        AssertHoldsTheNetwork(graph, model.Architecture);

        var (ortScores, ortLabels) = RunOnnxRuntime(onnx, ("Features", features, [rows, architecture.Input.Size]));
        var (mlScores, mlLabels) = ApplyOnnxModel(onnx, data, ["Features"]);

        double ortDifference = AssertScoresEqual(expectedScores, ortScores, $"{name}: ONNX Runtime");
        double mlDifference = AssertScoresEqual(expectedScores, mlScores, $"{name}: ApplyOnnxModel");
        AssertLabelsEqual(expectedScores, expectedLabels, ortLabels, $"{name}: ONNX Runtime");
        AssertLabelsEqual(expectedScores, expectedLabels, mlLabels, $"{name}: ApplyOnnxModel");
        // The last three rows hold NaN, +Infinity and −Infinity: NaN scores and the missing key 0, as Transform gives.
        CollectionAssert.AreEqual(new uint[] { 0, 0, 0 }, ortLabels[^3..], $"{name}: non-finite rows");
        Assert.IsTrue(ortScores[^(3 * architecture.NumClasses)..].All(float.IsNaN), $"{name}: non-finite rows give NaN scores");
        TestContext.WriteLine($"{name}: {rows - 3} images, probability range {spread:F2}; max |ΔScore| ONNX Runtime {ortDifference:G3}, ApplyOnnxModel {mlDifference:G3}");
    }

    /// <summary>ML.NET's lowest opset, 9, holds every operator the graph uses (ML.NET's default is 12).</summary>
    [TestMethod]
    public void ConvertToOnnx_AtOpset9_ScoresAsTheTransformer()
    {
        var architecture = new LeNetBnArchitecture { BatchNorm = BatchNormKind.BuiltIn };
        using var model = Model(architecture, fold: false);
        var (features, rows) = Images(architecture.Input);
        var data = FeatureView(features, architecture.Input.Size);
        var (expectedScores, expectedLabels) = Read(model.Transform(data), "Score", "PredictedLabel");
        byte[] onnx;
        using (var stream = new MemoryStream())
        {
            s_mlContext.Model.ConvertToOnnx(model, data, opSetVersion: 9, stream);
            onnx = stream.ToArray();
        }
        AssertHoldsTheNetwork(OnnxGraph.Read(onnx), architecture);
        var (scores, labels) = RunOnnxRuntime(onnx, ("Features", features, [rows, architecture.Input.Size]));
        AssertScoresEqual(expectedScores, scores, "opset 9");
        AssertLabelsEqual(expectedScores, expectedLabels, labels, "opset 9");
    }

    /// <summary>
    /// The chain the issue names, trained on real images: MapValueToKey → LeNetBn → MapKeyToValue exports whole, and
    /// ONNX Runtime gives the class values ML.NET gives.
    /// </summary>
    [TestMethod]
    public void TrainedChain_WithKeyMappings_ExportsWhole()
    {
        var mlContext = new MLContext(seed: 1);
        var pipeline = mlContext.Transforms.Conversion.MapValueToKey("Label", nameof(TrainerTestData.EditableImage.ClassIndex))
            .Append(mlContext.MulticlassClassification.Trainers.LeNetBn(TrainerTestData.QuickOptions()))
            .Append(mlContext.Transforms.Conversion.MapKeyToValue("PredictedClass", "PredictedLabel"));
        using var model = pipeline.Fit(mlContext.Data.LoadFromEnumerable(TrainerTestData.Images(mlContext, 100)));
        var testImages = mlContext.Data.CreateEnumerable<Image>(TrainerTestData.Test(mlContext, TestImagesPerClass), reuseRowObject: false)
            .Select(i => new TrainerTestData.EditableImage { ClassIndex = i.Label - 1, Features = i.Features }).ToList();
        var data = mlContext.Data.LoadFromEnumerable(testImages);
        var transformed = model.Transform(data);
        var (expectedScores, expectedLabels) = Read(transformed, "Score", "PredictedLabel");
        var expectedClasses = transformed.GetColumn<uint>("PredictedClass").ToArray();

        byte[] onnx;
        using (var stream = new MemoryStream())
        {
            mlContext.Model.ConvertToOnnx(model, data, stream);
            onnx = stream.ToArray();
        }
        var graph = OnnxGraph.Read(onnx);
        CollectionAssert.AreEquivalent(new[] { "ClassIndex", "Features" }, graph.Inputs.ToArray());
        CollectionAssert.IsSubsetOf(new[] { "Score.output", "PredictedLabel.output", "PredictedClass.output", "Label.output" }, graph.Outputs.ToArray());
        AssertHoldsTheNetwork(graph, model.OfType<LeNetBnTransformer>().Single().Architecture);

        int rows = testImages.Count;
        var features = testImages.SelectMany(i => i.Features).ToArray();
        var classIndex = testImages.Select(i => i.ClassIndex).ToArray();
        using var session = new InferenceSession(onnx);
        using var featureValue = OrtValue.CreateTensorValueFromMemory(features, [rows, 784]);
        using var classValue = OrtValue.CreateTensorValueFromMemory(classIndex, [rows, 1]);
        using var options = new RunOptions();
        using var outputs = session.Run(options, ["ClassIndex", "Features"], [classValue, featureValue], ["Score.output", "PredictedLabel.output", "PredictedClass.output"]);
        var ortScores = outputs[0].GetTensorDataAsSpan<float>().ToArray();
        var ortLabels = outputs[1].GetTensorDataAsSpan<uint>().ToArray();
        var ortClasses = outputs[2].GetTensorDataAsSpan<uint>().ToArray();

        double difference = AssertScoresEqual(expectedScores, ortScores, "trained chain");
        AssertLabelsEqual(expectedScores, expectedLabels, ortLabels, "trained chain");
        CollectionAssert.AreEqual(expectedClasses, ortClasses, "PredictedClass: the class values, through MapKeyToValue's ONNX nodes");
        double accuracy = ortClasses.Zip(classIndex).Count(p => p.First == p.Second) / (double)rows;
        Assert.IsGreaterThan(0.5, accuracy, "a trained model, so the comparison is of meaningful scores");
        TestContext.WriteLine($"trained chain: {rows} images, accuracy {accuracy:F3}; max |ΔScore| ONNX Runtime {difference:G3}");
    }

    /// <summary>
    /// ML.NET stops walking a chain back at a transform it cannot export and takes the data from the chain's source;
    /// then the features LeNet-BN reads are not in the graph, and the export fails naming them, rather than writing a
    /// graph without the transform that made them.
    /// </summary>
    [TestMethod]
    public void FeaturesMadeByATransformThatCannotExport_FailTheExport_NamingTheColumn()
    {
        using var model = Model(new LeNetBnArchitecture(), fold: false);
        var pixels = s_mlContext.Data.LoadFromEnumerable(Enumerable.Range(0, 4).Select(_ => new PixelRow { Pixels = new float[784] }));
        var chain = s_mlContext.Transforms.CustomMapping<PixelRow, FeatureRow>((input, output) => output.Features = input.Pixels, contractName: null)
            .Fit(pixels).Append(model);
        var ex = Assert.ThrowsExactly<InvalidOperationException>(() => Export(chain, pixels));
        Assert.AreEqual("Cannot export LeNet-BN to ONNX: its feature column 'Features' is neither an input of the ONNX graph nor the output of a transform that could be exported before it.", ex.Message);
    }

    private sealed class PixelRow
    {
        [VectorType(784)]
        public float[] Pixels { get; set; } = [];
    }

    /// <summary>The node counts of LeNet-BN's graph: its layers, one node each, then Softmax and the predicted key.</summary>
    private static void AssertHoldsTheNetwork(OnnxGraph graph, LeNetBnArchitecture architecture)
    {
        bool batchNorm = architecture.BatchNorm != BatchNormKind.None && !architecture.BatchNormFolded;
        var expected = new Dictionary<string, int>
        {
            ["Reshape"] = 1,
            ["Conv"] = 2,
            ["BatchNormalization"] = batchNorm ? 4 : 0,
            ["Sigmoid"] = architecture.Activation == ActivationKind.Sigmoid ? 4 : 0,
            ["Relu"] = architecture.Activation == ActivationKind.ReLU ? 4 : 0,
            ["AveragePool"] = architecture.Pooling == PoolingKind.Average ? 2 : 0,
            ["MaxPool"] = architecture.Pooling == PoolingKind.Max ? 2 : 0,
            ["Flatten"] = 1,
            ["Gemm"] = 3,
            ["Softmax"] = 1,
            ["ArgMax"] = 1,
        };
        foreach (var (op, count) in expected)
            Assert.AreEqual(count, graph.Count(op), $"{op} nodes in the exported graph ({string.Join(", ", graph.OpTypes)})");
    }

    /// <summary>
    /// A network of <paramref name="architecture"/> whose BN layers hold values far from their initial ones: γ and β
    /// drawn at random, moving statistics from training-mode passes over real images. Folded when asked. Built, not
    /// trained, so that eleven cases cost a second: the trained chain test covers a trained model.
    /// </summary>
    private static LeNetBnTransformer Model(LeNetBnArchitecture architecture, bool fold)
    {
        var network = new LeNetBnNetwork(architecture with { BatchNormOptions = architecture.BatchNormOptions with { Momentum = 0.5 } }, seed: 3);
        using (var scope = NewDisposeScope())
        using (no_grad())
        {
            var generator = new Generator(7);
            foreach (var (name, p) in network.named_parameters())
            {
                bool bn = name.Contains(".bn", StringComparison.Ordinal);
                if (bn && (name.EndsWith(".gamma", StringComparison.Ordinal) || name.EndsWith(".weight", StringComparison.Ordinal)))
                    p.copy_(rand(p.shape, generator: generator) * 2 + 0.2);
                else if (bn && (name.EndsWith(".beta", StringComparison.Ordinal) || name.EndsWith(".bias", StringComparison.Ordinal)))
                    p.copy_(randn(p.shape, generator: generator));
                else if (architecture.BatchNorm == BatchNormKind.None && name.EndsWith(".weight", StringComparison.Ordinal))
                    p.mul_(10); // without BN, Xavier-initialized sigmoid layers squash every image to nearly the same activations
            }
            network.train();
            var (images, rows) = Images(architecture.Input, s_trainImages, nonFinite: false);
            var x = tensor(images, [rows, architecture.Input.Size]);
            for (int start = 0; start + 50 <= rows; start += 50)
                network.forward(x.narrow(0, start, 50));
            network.eval();
            // Freshly initialized logits hardly vary between images, so every image gets nearly the same scores. Scale
            // the last layer so that each class's logit varies over the images with a standard deviation of 2 around
            // 0, as a trained network's do: W' = f·W, b' = f·(b − mean logit).
            var logits = network.forward(x);
            var mean = logits.mean([0]);
            // At most ×10: a larger factor would blow up the float rounding of the logits along with their spread
            // (ONNX Runtime and libtorch add the same products in different orders).
            double f = Math.Min(10, 2 / (logits - mean).std().item<float>());
            var parameters = network.named_parameters().ToDictionary(p => p.name, p => p.parameter);
            parameters["layers.fc3.weight"].mul_(f);
            parameters["layers.fc3.bias"].sub_(mean).mul_(f);
        }
        foreach (var state in network.GetBatchNormStates())
        {
            Assert.IsTrue(state.MovingMean.Any(m => Math.Abs(m) > 1e-2), $"{state.Name}: moving mean moved");
            Assert.IsTrue(state.MovingVariance.Any(v => Math.Abs(v - 1) > 1e-2), $"{state.Name}: moving variance moved");
        }
        if (fold)
        {
            var folded = network.FoldBatchNorm();
            network.Dispose();
            network = folded;
        }
        return new LeNetBnTransformer((IHostEnvironment)s_mlContext, network, "Features", s_classNames, LeNetBnTrainer.Defaults.PredictionBatchSize, []);
    }

    private static BatchNormOptions Statistics(double epsilon, MovingVarianceKind? variance = null) => new() { Epsilon = epsilon, MovingVariance = variance };

    private static (float[] Features, int Rows) Images(ImageShape shape) => Images(shape, s_testImages, nonFinite: true);

    /// <summary>
    /// Real Fashion-MNIST images in <paramref name="shape"/>: 1×28×28 as they are; 3×32×32 padded by two pixels, as
    /// the image, its mirror and its negative. With <paramref name="nonFinite"/>, three rows follow that hold NaN,
    /// +Infinity and −Infinity in one pixel each.
    /// </summary>
    private static (float[] Features, int Rows) Images(ImageShape shape, float[] source, bool nonFinite)
    {
        int count = source.Length / FashionMnist.FeatureCount;
        var rows = new List<float[]>();
        for (int i = 0; i < count; i++)
        {
            var image = source.AsSpan(i * FashionMnist.FeatureCount, FashionMnist.FeatureCount);
            if (shape == ImageShape.FashionMnist)
            {
                rows.Add(image.ToArray());
                continue;
            }
            Assert.AreEqual(new ImageShape(3, 32, 32), shape, "the test knows two image shapes");
            var row = new float[shape.Size];
            for (int y = 0; y < 28; y++)
            for (int x = 0; x < 28; x++)
            {
                float v = image[y * 28 + x];
                row[0 * 1024 + (y + 2) * 32 + x + 2] = v;
                row[1 * 1024 + (y + 2) * 32 + (31 - 2 - x)] = v;
                row[2 * 1024 + (y + 2) * 32 + x + 2] = 1 - v;
            }
            rows.Add(row);
        }
        if (nonFinite)
        {
            foreach (var (pixel, value) in new[] { (0, float.NaN), (shape.Size / 2, float.PositiveInfinity), (shape.Size - 1, float.NegativeInfinity) })
            {
                var row = rows[rows.Count % count].ToArray();
                row[pixel] = value;
                rows.Add(row);
            }
        }
        return (rows.SelectMany(r => r).ToArray(), rows.Count);
    }

    /// <summary>The features alone, in a view that is no transform: the graph's only input is then <c>Features</c>.</summary>
    private static IDataView FeatureView(float[] features, int size)
    {
        var schema = SchemaDefinition.Create(typeof(FeatureRow));
        schema[nameof(FeatureRow.Features)].ColumnType = new VectorDataViewType(NumberDataViewType.Single, size);
        var rows = features.Chunk(size).Select(f => new FeatureRow { Features = f }).ToList();
        return s_mlContext.Data.LoadFromEnumerable(rows, schema);
    }

    private static float[] Pixels(IDataView data) =>
        s_mlContext.Data.CreateEnumerable<FeatureRow>(data, reuseRowObject: false).SelectMany(r => r.Features).ToArray();

    private static byte[] Export(ITransformer model, IDataView data)
    {
        using var stream = new MemoryStream();
        s_mlContext.Model.ConvertToOnnx(model, data, stream);
        return stream.ToArray();
    }

    /// <summary>Row-major scores and the predicted keys of a scored view.</summary>
    private static (float[] Scores, uint[] Labels) Read(IDataView scored, string scoreColumn, string labelColumn)
    {
        var scores = scored.GetColumn<float[]>(scoreColumn).SelectMany(s => s).ToArray();
        var labelType = scored.Schema[labelColumn].Type;
        var labels = labelType is VectorDataViewType
            ? scored.GetColumn<uint[]>(labelColumn).Select(l => l.Single()).ToArray()
            : scored.GetColumn<uint>(labelColumn).ToArray();
        return (scores, labels);
    }

    /// <summary>ONNX Runtime alone, no ML.NET: the model's Score and PredictedLabel outputs for one input tensor.</summary>
    private static (float[] Scores, uint[] Labels) RunOnnxRuntime(byte[] onnx, (string Name, float[] Values, long[] Shape) input)
    {
        using var session = new InferenceSession(onnx);
        using var value = OrtValue.CreateTensorValueFromMemory(input.Values, input.Shape);
        using var options = new RunOptions();
        using var outputs = session.Run(options, [input.Name], [value], ["Score.output", "PredictedLabel.output"]);
        CollectionAssert.AreEqual(new long[] { input.Shape[0], 1 }, outputs[1].GetTensorTypeAndShape().Shape, "PredictedLabel is N×1");
        return (outputs[0].GetTensorDataAsSpan<float>().ToArray(), outputs[1].GetTensorDataAsSpan<uint>().ToArray());
    }

    /// <summary>ML.NET's ApplyOnnxModel on the exported file.</summary>
    private static (float[] Scores, uint[] Labels) ApplyOnnxModel(byte[] onnx, IDataView data, string[] inputs)
    {
        string path = Path.Combine(Path.GetTempPath(), $"mlnetbn-onnx-{Guid.NewGuid():N}.onnx");
        File.WriteAllBytes(path, onnx);
        try
        {
            using var transformer = s_mlContext.Transforms.ApplyOnnxModel(["Score.output", "PredictedLabel.output"], inputs, path).Fit(data);
            // ApplyOnnxModel names the columns of an ML.NET-made graph's outputs without their ".output" suffix.
            return Read(transformer.Transform(data), "Score", "PredictedLabel");
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>The largest range (max − min) of one class's probability over the first <paramref name="rows"/> images.</summary>
    private static double ScoreSpread(float[] scores, int classes, int rows) =>
        Enumerable.Range(0, classes).Max(c =>
        {
            var column = Enumerable.Range(0, rows).Select(r => scores[r * classes + c]).ToList();
            return column.Max() - column.Min();
        });

    /// <summary>Every probability within <see cref="Tolerance"/>, NaN where the transformer gives NaN; returns the largest difference.</summary>
    private static double AssertScoresEqual(float[] expected, float[] actual, string what)
    {
        Assert.HasCount(expected.Length, actual, $"{what}: score count");
        double max = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            if (float.IsNaN(expected[i]))
            {
                Assert.IsTrue(float.IsNaN(actual[i]), $"{what}: score {i} is {actual[i]}; the transformer gives NaN");
                continue;
            }
            double difference = Math.Abs((double)expected[i] - actual[i]);
            Assert.IsLessThanOrEqualTo(Tolerance, difference, $"{what}: score {i}: {actual[i]} against the transformer's {expected[i]}");
            max = Math.Max(max, difference);
        }
        return max;
    }

    /// <summary>The same predicted keys, except where the transformer's two best classes are closer than the tolerance allows telling apart.</summary>
    private static void AssertLabelsEqual(float[] scores, uint[] expected, uint[] actual, string what)
    {
        Assert.HasCount(expected.Length, actual, $"{what}: label count");
        int classes = scores.Length / expected.Length;
        for (int row = 0; row < expected.Length; row++)
        {
            var top = scores.AsSpan(row * classes, classes).ToArray().OrderDescending().Take(2).ToArray();
            if (top[0] - top[1] > 2 * Tolerance || expected[row] == 0)
                Assert.AreEqual(expected[row], actual[row], $"{what}: PredictedLabel of row {row}");
        }
    }
}
