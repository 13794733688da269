using System.Runtime.InteropServices;
using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetBn.Data;
using MlNetBn.Modules;
using MlNetBn.Training;
using static MlNetBn.Tests.Internals.InternalsTestEnvironment;

namespace MlNetBn.Tests.Trainers;

/// <summary>The estimator/transformer contract, accuracy, persistence across contexts and processes, and input errors.</summary>
[TestClass]
public sealed class LeNetBnTrainerTests
{
    private static MLContext s_mlContext = null!;
    private static LeNetBnTransformer s_model = null!;
    private static IDataView s_train = null!;
    private static IDataView s_test = null!;
    private string _zipPath = null!;

    public TestContext TestContext { get; set; } = null!;

    /// <summary>One model for the read-only tests: 2 epochs on 2,000 real images (200 per class).</summary>
    [ClassInitialize]
    public static void TrainOnce(TestContext _)
    {
        s_mlContext = new MLContext(seed: 1);
        s_train = TrainerTestData.Train(s_mlContext);
        s_test = TrainerTestData.Test(s_mlContext);
        s_model = s_mlContext.MulticlassClassification.Trainers.LeNetBn(TrainerTestData.QuickOptions()).Fit(s_train);
    }

    [ClassCleanup]
    public static void DisposeModel() => s_model.Dispose();

    [TestInitialize]
    public void CreateZipPath() => _zipPath = Path.Combine(Path.GetTempPath(), $"mlnetbn-trainer-{Guid.NewGuid():N}.zip");

    [TestCleanup]
    public void DeleteZip() => File.Delete(_zipPath);

    [TestMethod]
    public void TwoEpochsOn2kImages_BeatSeventyPercentTestAccuracy()
    {
        var metrics = s_mlContext.MulticlassClassification.Evaluate(s_model.Transform(s_test));
        TestContext.WriteLine($"accuracy {metrics.MicroAccuracy:F4}, log-loss {metrics.LogLoss:F4}");
        Assert.IsGreaterThan(0.70, metrics.MicroAccuracy);
        Assert.IsTrue(double.IsFinite(metrics.LogLoss));
        Assert.HasCount(2, s_model.TrainingHistory);
        Assert.IsLessThan(s_model.TrainingHistory[0].Loss, s_model.TrainingHistory[1].Loss, "the loss drops from epoch 1 to 2");
    }

    [TestMethod]
    public void OutputSchema_MatchesBetweenEstimatorAndTransformer_AsMlNetTrainersGiveIt()
    {
        var estimator = s_mlContext.MulticlassClassification.Trainers.LeNetBn();
        var shape = estimator.GetOutputSchema(ShapeOf(s_train.Schema));
        var schema = s_model.Transform(s_test).Schema;
        CollectionAssert.AreEqual(schema.Select(c => (c.Name, c.Type)).ToList(), s_model.GetOutputSchema(s_test.Schema).Select(c => (c.Name, c.Type)).ToList());

        var scoreShape = shape.Single(c => c.Name == "Score");
        Assert.AreEqual(SchemaShape.Column.VectorKind.Vector, scoreShape.Kind);
        Assert.AreEqual(NumberDataViewType.Single, scoreShape.ItemType);
        var predictedShape = shape.Single(c => c.Name == "PredictedLabel");
        Assert.IsTrue(predictedShape.IsKey);
        Assert.IsTrue(predictedShape.Annotations.Any(c => c.Name == "KeyValues"));

        var score = schema["Score"];
        Assert.AreEqual(new VectorDataViewType(NumberDataViewType.Single, 10), score.Type);
        var actualScoreShape = ShapeOf(schema).Single(c => c.Name == "Score");
        Assert.AreEqual(scoreShape.Kind, actualScoreShape.Kind);
        Assert.AreEqual(scoreShape.ItemType, actualScoreShape.ItemType);
        CollectionAssert.IsSubsetOf(scoreShape.Annotations.Select(a => a.Name).ToList(), actualScoreShape.Annotations.Select(a => a.Name).ToList());
        var predicted = schema["PredictedLabel"];
        Assert.AreEqual(s_train.Schema["Label"].Type, predicted.Type, "PredictedLabel has the label's key type");
        VBuffer<ReadOnlyMemory<char>> names = default;
        predicted.GetKeyValues(ref names);
        CollectionAssert.AreEqual(FashionMnist.ClassNames.ToArray(), names.DenseValues().Select(n => n.ToString()).ToArray());
        score.GetSlotNames(ref names);
        CollectionAssert.AreEqual(FashionMnist.ClassNames.ToArray(), names.DenseValues().Select(n => n.ToString()).ToArray());
        Assert.AreEqual(s_train.Schema.Count + 2, schema.Count, "input columns pass through");
    }

    [TestMethod]
    public void Scores_AreProbabilities_AndPredictedLabelIsTheirArgMax()
    {
        var rows = s_mlContext.Data.CreateEnumerable<Prediction>(s_model.Transform(s_test), reuseRowObject: false).ToList();
        Assert.HasCount(1000, rows);
        foreach (var row in rows)
        {
            Assert.AreEqual(1.0, row.Score.Sum(), 1e-4);
            Assert.AreEqual((uint)Array.IndexOf(row.Score, row.Score.Max()) + 1, row.PredictedLabel);
        }
    }

    [TestMethod]
    public void Chain_MapValueToKey_LeNetBn_MapKeyToValue_PredictsClassNames_AndRoundTrips()
    {
        var mlContext = new MLContext(seed: 2);
        // Start from text labels, as a user with a CSV would.
        var text = mlContext.Transforms.Conversion.MapKeyToValue("Label").Fit(TrainerTestData.Train(mlContext, 100)).Transform(TrainerTestData.Train(mlContext, 100));
        var pipeline = mlContext.Transforms.Conversion.MapValueToKey("Label")
            .Append(mlContext.MulticlassClassification.Trainers.LeNetBn(TrainerTestData.QuickOptions()))
            .Append(mlContext.Transforms.Conversion.MapKeyToValue("PredictedClass", "PredictedLabel"));
        using var model = pipeline.Fit(text);
        var predictions = model.Transform(text);
        var classes = predictions.GetColumn<ReadOnlyMemory<char>>("PredictedClass").Select(c => c.ToString()).ToList();
        Assert.IsTrue(classes.All(FashionMnist.ClassNames.Contains), string.Join(", ", classes.Distinct()));
        var metrics = mlContext.MulticlassClassification.Evaluate(predictions);
        Assert.IsGreaterThan(0.3, metrics.MicroAccuracy, "well above chance (0.1) after two short epochs");

        mlContext.Model.Save(model, text.Schema, _zipPath);
        var loaded = new MLContext(seed: 3).Model.Load(_zipPath, out var schema);
        var reloaded = loaded.Transform(text).GetColumn<ReadOnlyMemory<char>>("PredictedClass").Select(c => c.ToString()).ToList();
        CollectionAssert.AreEqual(classes, reloaded);
        Assert.AreEqual(text.Schema["Label"].Type, schema["Label"].Type);
        (loaded as IDisposable)?.Dispose();
    }

    [TestMethod]
    public void SaveLoad_InANewContext_GivesIdenticalScores_AndPredictionEngineAgrees()
    {
        s_mlContext.Model.Save(s_model, s_train.Schema, _zipPath);
        var other = new MLContext(seed: 99);
        var loaded = other.Model.Load(_zipPath, out var inputSchema);
        Assert.IsInstanceOfType<LeNetBnTransformer>(loaded);
        Assert.AreEqual(s_train.Schema["Features"].Type, inputSchema["Features"].Type);

        var expected = Scores(s_mlContext, s_model.Transform(s_test));
        var actual = Scores(other, loaded.Transform(s_test));
        Assert.HasCount(expected.Count, actual);
        for (int i = 0; i < expected.Count; i++)
            CollectionAssert.AreEqual(expected[i], actual[i], $"row {i}");

        using var engine = other.Model.CreatePredictionEngine<Image, Prediction>(loaded);
        var images = other.Data.CreateEnumerable<Image>(s_test, reuseRowObject: false).Take(20).ToList();
        for (int i = 0; i < images.Count; i++)
        {
            var prediction = engine.Predict(images[i]);
            // One row at a time takes other BLAS paths than a batch of 1,000: equal to float rounding, not to the bit.
            for (int c = 0; c < 10; c++)
                Assert.AreEqual(expected[i][c], prediction.Score[c], 1e-6, $"PredictionEngine row {i}, class {c}");
        }

        var original = s_model.GetBatchNormStates();
        var restored = ((LeNetBnTransformer)loaded).GetBatchNormStates();
        for (int i = 0; i < original.Count; i++)
        {
            CollectionAssert.AreEqual(original[i].Gamma, restored[i].Gamma);
            CollectionAssert.AreEqual(original[i].MovingVariance, restored[i].MovingVariance, "BN buffers travel in the zip");
        }
        ((IDisposable)loaded).Dispose();
    }

    /// <summary>A process that never touched MlNetBn loads the zip and gives the same scores, to the bit.</summary>
    [TestMethod]
    public void SaveLoad_InASeparateProcess_GivesIdenticalScores()
    {
        var chain = new TransformerChain<ITransformer>(s_model, s_mlContext.Transforms.Conversion.MapKeyToValue("PredictedClass", "PredictedLabel").Fit(s_model.Transform(s_train)));
        s_mlContext.Model.Save(chain, s_train.Schema, _zipPath);
        var images = s_mlContext.Data.CreateEnumerable<Image>(s_test, reuseRowObject: false).Take(16).ToList();
        string featuresPath = _zipPath + ".bin";
        File.WriteAllBytes(featuresPath, MemoryMarshal.AsBytes(images.SelectMany(i => i.Features).ToArray().AsSpan()).ToArray());
        try
        {
            var (exitCode, values, output) = RunModelLoadHost(_zipPath, featuresPath, 784);
            Assert.AreEqual(0, exitCode, output);
            // The host never names an MlNetBn type: ML.NET finds the loader through the assembly name in the zip.
            Assert.AreEqual("False", values["mlnetbn-loaded-before"], output);
            Assert.AreEqual("True", values["mlnetbn-loaded-after"], output);
            Assert.AreEqual(typeof(LeNetBnTransformer).FullName, values["transformer[0].type"], output);
            StringAssert.StartsWith(values["mlnet-version"], "5.0.1");
            var expected = Scores(s_mlContext, s_model.Transform(s_test));
            var predictedNames = s_model.Transform(s_test).GetColumn<uint>("PredictedLabel").Select(k => FashionMnist.ClassNames[(int)k - 1]).ToList();
            for (int i = 0; i < images.Count; i++)
            {
                var scores = values[$"score[{i}]"].Split(',').Select(v => float.Parse(v, System.Globalization.CultureInfo.InvariantCulture)).ToArray();
                CollectionAssert.AreEqual(expected[i], scores, $"row {i} in the other process");
                Assert.AreEqual(predictedNames[i], values[$"predicted-class[{i}]"]);
            }
        }
        finally
        {
            File.Delete(featuresPath);
        }
    }

    /// <summary>Same seed, same data, CPU: bit-identical weights and buffers, also for the built-in BN and a seeded validation split.</summary>
    [TestMethod]
    [DataRow(BatchNormKind.Scratch, 0.0)]
    [DataRow(BatchNormKind.BuiltIn, 0.0)]
    [DataRow(BatchNormKind.Scratch, 0.2)]
    [DataRow(BatchNormKind.BuiltIn, 0.2)]
    public void SameSeed_GivesBitIdenticalWeights_OtherSeed_Differs(BatchNormKind batchNorm, double validationFraction)
    {
        var data = TrainerTestData.Train(s_mlContext, 30);
        LeNetBnTransformer Fit(int seed)
        {
            var options = TrainerTestData.QuickOptions(epochs: 1, seed: seed);
            options.BatchNorm = batchNorm;
            options.ValidationFraction = validationFraction;
            return new MLContext(seed: 5).MulticlassClassification.Trainers.LeNetBn(options).Fit(data);
        }
        using var a = Fit(7);
        using var b = Fit(7);
        using var c = Fit(8);
        using var scope = TorchSharp.torch.NewDisposeScope();
        var sa = a.NetworkForTests.state_dict();
        var sb = b.NetworkForTests.state_dict();
        Assert.HasCount(sa.Count, sb);
        foreach (var (name, value) in sa)
            Assert.IsTrue(value.equal(sb[name]).all().item<bool>(), $"{name} differs between two fits with the same seed");
        Assert.AreEqual(a.TrainingHistory[0].Loss, b.TrainingHistory[0].Loss);
        Assert.AreEqual(a.TrainingHistory[0].ValidationLoss, b.TrainingHistory[0].ValidationLoss, "the same rows were held out");
        Assert.AreEqual(validationFraction > 0, a.TrainingHistory[0].ValidationLoss is not null);
        Assert.IsFalse(sa["layers.conv1.weight"].equal(c.NetworkForTests.state_dict()["layers.conv1.weight"]).all().item<bool>());
    }

    [TestMethod]
    public void ValidationSet_IsReportedEveryEpoch_AndRestoreBestEpochKeepsTheBest()
    {
        var validation = TrainerTestData.Test(s_mlContext, 30);
        var reported = new List<LeNetBnEpochMetrics>();
        var options = TrainerTestData.QuickOptions(epochs: 4);
        options.LearningRate = 2.0; // bumpy on purpose, so the best epoch is rarely the last
        options.ValidationSet = validation;
        options.RestoreBestEpoch = true;
        options.EpochEnded = reported.Add;
        using var model = s_mlContext.MulticlassClassification.Trainers.LeNetBn(options).Fit(TrainerTestData.Train(s_mlContext, 100));

        Assert.HasCount(4, reported);
        CollectionAssert.AreEqual(reported, model.TrainingHistory.ToList());
        Assert.IsTrue(reported.All(m => m.ValidationAccuracy is not null && m.ValidationLoss is not null && m.ExamplesPerSecond > 0));
        var accuracy = s_mlContext.MulticlassClassification.Evaluate(model.Transform(validation)).MicroAccuracy;
        Assert.AreEqual(reported.Max(m => m.ValidationAccuracy!.Value), accuracy, 1e-9, "the restored model scores the best epoch's validation accuracy");
    }

    [TestMethod]
    public void ValidationFraction_HoldsOutRows()
    {
        var options = TrainerTestData.QuickOptions(epochs: 1);
        options.ValidationFraction = 0.25;
        using var model = s_mlContext.MulticlassClassification.Trainers.LeNetBn(options).Fit(TrainerTestData.Train(s_mlContext, 20));
        Assert.IsNotNull(model.TrainingHistory.Single().ValidationAccuracy);
    }

    [TestMethod]
    public void Cancellation_StopsFit_WithoutAModel()
    {
        using var cts = new CancellationTokenSource();
        var options = TrainerTestData.QuickOptions(epochs: 5);
        int epochs = 0;
        options.EpochEnded = _ => { epochs++; cts.Cancel(); };
        options.CancellationToken = cts.Token;
        Assert.ThrowsExactly<OperationCanceledException>(() => s_mlContext.MulticlassClassification.Trainers.LeNetBn(options).Fit(TrainerTestData.Train(s_mlContext, 20)));
        Assert.AreEqual(1, epochs, "Fit stopped at the first step after cancellation");
    }

    /// <summary>
    /// Cancelled from another thread in the middle of an epoch, Fit finishes no step after the one in flight: the
    /// training thread waits at step 8 until the other thread has cancelled, and no step 9 starts.
    /// </summary>
    [TestMethod]
    public void CancellationFromAnotherThread_MidEpoch_StopsBeforeTheNextStep()
    {
        const int cancelAfter = 8;
        using var cts = new CancellationTokenSource();
        using var reached = new ManualResetEventSlim();
        using var cancelled = new ManualResetEventSlim();
        var options = TrainerTestData.QuickOptions(epochs: 2); // 1,000 images in batches of 32: 32 steps per epoch
        int steps = 0;
        options.StepEnded = step =>
        {
            steps = step;
            if (step != cancelAfter) return;
            reached.Set();
            cancelled.Wait();
        };
        int epochs = 0;
        options.EpochEnded = _ => epochs++;
        options.CancellationToken = cts.Token;
        var canceller = Task.Factory.StartNew(() =>
        {
            reached.Wait();
            cts.Cancel();
            cancelled.Set();
        }, TaskCreationOptions.LongRunning);

        var trainer = s_mlContext.MulticlassClassification.Trainers.LeNetBn(options);
        var data = TrainerTestData.Train(s_mlContext, 100);
        Assert.ThrowsExactly<OperationCanceledException>(() => trainer.Fit(data));
        canceller.Wait();
        Assert.AreEqual(cancelAfter, steps, "no step after the one in flight when Cancel was called");
        Assert.AreEqual(0, epochs, "the first epoch never ended");
    }

    /// <summary>Options are copied when the trainer is made: changing the instance afterwards does not reach Fit.</summary>
    [TestMethod]
    public void OptionsChangedAfterTheTrainerWasMade_DoNotReachFit()
    {
        var options = TrainerTestData.QuickOptions(epochs: 2);
        var trainer = s_mlContext.MulticlassClassification.Trainers.LeNetBn(options);
        options.Epochs = 0;
        options.BatchSize = 0;
        options.PredictionBatchSize = int.MaxValue;
        using var model = trainer.Fit(TrainerTestData.Train(s_mlContext, 10));
        Assert.HasCount(2, model.TrainingHistory);
        Assert.AreEqual(LeNetBnTrainer.Defaults.PredictionBatchSize, model.PredictionBatchSize);
    }

    [TestMethod]
    public void OnePredictionBatchTooLarge_IsRefusedAtConstruction()
    {
        var options = new LeNetBnTrainer.Options { PredictionBatchSize = int.MaxValue };
        var ex = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => s_mlContext.MulticlassClassification.Trainers.LeNetBn(options));
        Assert.AreEqual("PredictionBatchSize", ex.ParamName);
        StringAssert.StartsWith(ex.Message, "LeNetBn option PredictionBatchSize = 2147483647: must be 1 to 65,536.");
    }

    /// <summary>"Train until I cancel": Epochs = int.MaxValue trains, epoch after epoch, until cancelled.</summary>
    [TestMethod]
    public void EpochsIntMaxValue_TrainsUntilCancelled()
    {
        using var cts = new CancellationTokenSource();
        var options = TrainerTestData.QuickOptions(epochs: int.MaxValue);
        var seen = new List<LeNetBnEpochMetrics>();
        options.EpochEnded = metrics =>
        {
            seen.Add(metrics);
            if (seen.Count == 2) cts.Cancel();
        };
        options.CancellationToken = cts.Token;
        Assert.ThrowsExactly<OperationCanceledException>(() => s_mlContext.MulticlassClassification.Trainers.LeNetBn(options).Fit(TrainerTestData.Train(s_mlContext, 5)));
        Assert.HasCount(2, seen);
        Assert.AreEqual(int.MaxValue, seen[1].Epochs);
    }

    /// <summary>Batch normalization cannot train on one row; the message says so (it used to report a NaN loss).</summary>
    [TestMethod]
    public void OneTrainingRowWithBatchNorm_IsAClearError()
    {
        var images = s_mlContext.Data.CreateEnumerable<Image>(TrainerTestData.Train(s_mlContext, 1), reuseRowObject: false).ToList();
        var one = s_mlContext.Data.LoadFromEnumerable(images.Take(1));
        var ex = Assert.ThrowsExactly<InvalidOperationException>(() => s_mlContext.MulticlassClassification.Trainers.LeNetBn(TrainerTestData.QuickOptions(epochs: 1)).Fit(one));
        Assert.AreEqual("Batch normalization needs at least 2 training rows (a batch of one has no variance); the training data has 1. Add rows, or set BatchNorm = None.", ex.Message);

        var split = TrainerTestData.QuickOptions(epochs: 1);
        split.ValidationFraction = 0.5;
        var three = s_mlContext.Data.LoadFromEnumerable(images.Take(3));
        ex = Assert.ThrowsExactly<InvalidOperationException>(() => s_mlContext.MulticlassClassification.Trainers.LeNetBn(split).Fit(three));
        Assert.AreEqual("Batch normalization needs at least 2 training rows (a batch of one has no variance); the training data has 1 after holding out 2 for validation. Add rows, or set BatchNorm = None.", ex.Message);

        var withoutBn = TrainerTestData.QuickOptions(epochs: 1);
        withoutBn.BatchNorm = BatchNormKind.None;
        using var model = s_mlContext.MulticlassClassification.Trainers.LeNetBn(withoutBn).Fit(one);
        Assert.HasCount(1, model.TrainingHistory);
    }

    [TestMethod]
    public void MissingOrWrongColumns_AreNamedBeforeTraining()
    {
        var trainers = s_mlContext.MulticlassClassification.Trainers;
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => trainers.LeNetBn(featureColumnName: "Pixels").Fit(s_train));
        StringAssert.Contains(ex.Message, "no feature column 'Pixels'");
        ex = Assert.Throws<ArgumentOutOfRangeException>(() => trainers.LeNetBn(labelColumnName: "Class").Fit(s_train));
        StringAssert.Contains(ex.Message, "no label column 'Class'");

        var wrongShape = new LeNetBnTrainer.Options { ImageShape = new ImageShape(1, 32, 32) };
        ex = Assert.Throws<ArgumentOutOfRangeException>(() => trainers.LeNetBn(wrongShape).Fit(s_train));
        StringAssert.Contains(ex.Message, "has 784 values per row; the image shape 1×32×32 needs 1024");

        var floatLabel = s_mlContext.Data.LoadFromEnumerable(new[] { new FloatLabelImage { Label = 3 } });
        ex = Assert.Throws<ArgumentOutOfRangeException>(() => trainers.LeNetBn().Fit(floatLabel));
        StringAssert.Contains(ex.Message, "must be a key type");
        StringAssert.Contains(ex.Message, "MapValueToKey");

        var estimatorEx = Assert.Throws<ArgumentOutOfRangeException>(() => trainers.LeNetBn().GetOutputSchema(ShapeOf(floatLabel.Schema)));
        StringAssert.Contains(estimatorEx.Message, "MapValueToKey");
        ex = Assert.Throws<ArgumentOutOfRangeException>(() => s_model.Transform(s_mlContext.Data.LoadFromEnumerable(new[] { new { X = 1f } })));
        StringAssert.Contains(ex.Message, "no feature column 'Features'");
    }

    [TestMethod]
    public void NonsensicalOptions_AreRejectedByName()
    {
        var trainers = s_mlContext.MulticlassClassification.Trainers;
        Assert.AreEqual("Epochs", Assert.Throws<ArgumentOutOfRangeException>(() => trainers.LeNetBn(epochs: 0)).ParamName);
        Assert.AreEqual("BatchSize", Assert.Throws<ArgumentOutOfRangeException>(() => trainers.LeNetBn(batchSize: 1)).ParamName);
        Assert.AreEqual("LearningRate", Assert.Throws<ArgumentOutOfRangeException>(() => trainers.LeNetBn(learningRate: -0.1)).ParamName);
        Assert.AreEqual("LearningRate", Assert.Throws<ArgumentOutOfRangeException>(() => trainers.LeNetBn(learningRate: double.NaN)).ParamName);
        Assert.AreEqual("RestoreBestEpoch", Assert.Throws<ArgumentOutOfRangeException>(() => trainers.LeNetBn(new LeNetBnTrainer.Options { RestoreBestEpoch = true }).Fit(TrainerTestData.Train(s_mlContext, 5))).ParamName);
        Assert.AreEqual("ValidationFraction", Assert.Throws<ArgumentOutOfRangeException>(() => trainers.LeNetBn(new LeNetBnTrainer.Options { ValidationFraction = 1 })).ParamName);
        // Without BN a batch of one is fine.
        trainers.LeNetBn(batchSize: 1, batchNorm: BatchNormKind.None);
    }

    [TestMethod]
    public void MissingLabelKey_IsReportedWithTheRow()
    {
        // MapValueToKey with key data lacking "Bag" maps those labels to the missing key 0.
        var mlContext = new MLContext(seed: 1);
        var text = mlContext.Transforms.Conversion.MapKeyToValue("Label").Fit(TrainerTestData.Train(mlContext, 5)).Transform(TrainerTestData.Train(mlContext, 5));
        var keys = mlContext.Data.LoadFromEnumerable(FashionMnist.ClassNames.Where(n => n != "Bag").Select(n => new { Label = n }));
        var keyed = mlContext.Transforms.Conversion.MapValueToKey("Label", keyData: keys).Fit(text).Transform(text);
        var ex = Assert.Throws<InvalidOperationException>(() => mlContext.MulticlassClassification.Trainers.LeNetBn(TrainerTestData.QuickOptions(1)).Fit(keyed));
        StringAssert.Contains(ex.Message, "Label column 'Label' of the training data has a missing value (key 0) at row");
    }

    [TestMethod]
    public void NonFiniteFeatures_AreRejectedByDefault_OrSkipped()
    {
        var mlContext = new MLContext(seed: 1);
        var images = TrainerTestData.Images(mlContext, 5);
        images[3].Features[100] = float.NaN;
        images[7].Features[5] = float.PositiveInfinity;
        var data = TrainerTestData.FromImages(mlContext, images);
        var ex = Assert.Throws<InvalidOperationException>(() => mlContext.MulticlassClassification.Trainers.LeNetBn(TrainerTestData.QuickOptions(1)).Fit(data));
        StringAssert.Contains(ex.Message, "Feature column 'Features' of the training data holds NaN or Infinity at row 3");

        var options = TrainerTestData.QuickOptions(1);
        options.NonFiniteFeatures = NonFiniteFeatureHandling.SkipRow;
        var warnings = new List<string>();
        mlContext.Log += (_, e) => { if (e.Kind == Microsoft.ML.Runtime.ChannelMessageKind.Warning) warnings.Add(e.RawMessage); };
        using var model = mlContext.MulticlassClassification.Trainers.LeNetBn(options).Fit(data);
        CollectionAssert.Contains(warnings, "Skipped 2 training rows whose features hold NaN or Infinity.");
    }

    [TestMethod]
    public void EmptyTrainingData_IsAClearError()
    {
        var empty = s_mlContext.Data.SkipRows(s_train, 1_000_000);
        var ex = Assert.Throws<InvalidOperationException>(() => s_mlContext.MulticlassClassification.Trainers.LeNetBn(TrainerTestData.QuickOptions(1)).Fit(empty));
        StringAssert.Contains(ex.Message, "training data has no rows");
    }

    [TestMethod]
    public void Divergence_NeverYieldsAModelWithNaN()
    {
        // ReLU without batch normalization and an absurd learning rate: the weights blow up within a few steps.
        var options = TrainerTestData.QuickOptions(2);
        options.BatchNorm = BatchNormKind.None;
        options.Activation = ActivationKind.ReLU;
        options.LearningRate = 1e12;
        var ex = Assert.Throws<InvalidOperationException>(() => s_mlContext.MulticlassClassification.Trainers.LeNetBn(options).Fit(TrainerTestData.Train(s_mlContext, 10)));
        StringAssert.Contains(ex.Message, "no model was produced");
    }

    [TestMethod]
    public void Transformer_ExposesTheTrainedNetwork()
    {
        Assert.AreEqual(10, s_model.ClassCount);
        CollectionAssert.AreEqual(FashionMnist.ClassNames.ToArray(), s_model.ClassNames!.ToArray());
        Assert.AreEqual(BatchNormKind.Scratch, s_model.Architecture.BatchNorm);
        var bn = s_model.GetBatchNormStates();
        Assert.HasCount(4, bn);
        Assert.IsTrue(bn[0].Gamma.Any(g => g != 1f), "gamma learned");
        Assert.IsTrue(bn[0].MovingMean.Any(m => m != 0f), "moving mean tracked");
        Assert.AreEqual("cpu", s_model.Device.ToLowerInvariant());
    }

    /// <summary>ML.NET's SchemaShape.Create is internal; users get shapes from estimators. Tests call it by reflection.</summary>
    private static SchemaShape ShapeOf(DataViewSchema schema) =>
        (SchemaShape)typeof(SchemaShape).GetMethod("Create", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static, [typeof(DataViewSchema)])!
            .Invoke(null, [schema])!;

    private static List<float[]> Scores(MLContext mlContext, IDataView data) =>
        mlContext.Data.CreateEnumerable<Prediction>(data, reuseRowObject: false).Select(p => p.Score).ToList();

    private sealed class FloatLabelImage
    {
        public float Label { get; set; }

        [VectorType(784)]
        public float[] Features { get; set; } = new float[784];
    }
}
