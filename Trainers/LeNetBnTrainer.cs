using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Runtime;
using MlNetBn.Modules;
using MlNetBn.Training;
using MlNetBn.Transform;

namespace MlNetBn;

/// <summary>
/// The ML.NET estimator that trains a LeNet with batch normalization (Dive into Deep Learning's BNLeNet) through
/// TorchSharp. Create it with <c>mlContext.MulticlassClassification.Trainers.LeNetBn(...)</c>.
/// </summary>
/// <remarks>
/// <list type="table">
/// <listheader><term>Column</term><description>Type and meaning</description></listheader>
/// <item><term>Input: features</term><description>Known-size vector of <see cref="float"/>, C·H·W values per image, channels first, scaled as you like (Fashion-MNIST helpers give [0, 1]).</description></item>
/// <item><term>Input: label</term><description>Key type (use <c>MapValueToKey</c>); its key count is the number of classes.</description></item>
/// <item><term>Output: <c>Score</c></term><description>Vector of <see cref="float"/>: the class probabilities (softmax of the logits).</description></item>
/// <item><term>Output: <c>PredictedLabel</c></term><description>The label's key type, with its key values: the most probable class.</description></item>
/// </list>
/// Trainer characteristics: multiclass classification; needs normalization: no (batch normalization is part of
/// the model); needs caching: no (the data are read once into memory); runs on CPU or CUDA.
/// </remarks>
public sealed class LeNetBnTrainer : IEstimator<LeNetBnTransformer>
{
    /// <summary>
    /// The largest <see cref="Options.PredictionBatchSize"/>: a forward pass of that many 28×28 images already
    /// takes gigabytes of activations, and larger batches are no faster.
    /// </summary>
    public const int MaxPredictionBatchSize = 1 << 16;

    /// <summary>The defaults of the catalog method and of <see cref="Options"/>: Dive into Deep Learning's.</summary>
    public static class Defaults
    {
        /// <summary>Passes over the training data.</summary>
        public const int Epochs = 10;

        /// <summary>Examples per minibatch.</summary>
        public const int BatchSize = 256;

        /// <summary>SGD learning rate.</summary>
        public const double LearningRate = 1.0;

        /// <summary>The label column ML.NET trainers read by default.</summary>
        public const string LabelColumnName = "Label";

        /// <summary>The feature column ML.NET trainers read by default.</summary>
        public const string FeatureColumnName = "Features";

        /// <summary>Examples per forward pass when predicting (Transform).</summary>
        public const int PredictionBatchSize = 1024;
    }

    /// <summary>Options of <see cref="LeNetBnTrainer"/>.</summary>
    public sealed class Options
    {
        /// <summary>Name of the key-typed label column.</summary>
        public string LabelColumnName = Defaults.LabelColumnName;

        /// <summary>Name of the float vector feature column (C·H·W values).</summary>
        public string FeatureColumnName = Defaults.FeatureColumnName;

        /// <summary>Shape of one image; the feature vector must have <see cref="ImageShape.Size"/> values.</summary>
        public ImageShape ImageShape = ImageShape.FashionMnist;

        /// <summary>From-scratch (the seed), built-in TorchSharp, or no batch normalization.</summary>
        public BatchNormKind BatchNorm = BatchNormKind.Scratch;

        /// <summary>Activation after each normalized layer.</summary>
        public ActivationKind Activation = ActivationKind.Sigmoid;

        /// <summary>Pooling after each convolutional block.</summary>
        public PoolingKind Pooling = PoolingKind.Average;

        /// <summary>Passes over the training data.</summary>
        public int Epochs = Defaults.Epochs;

        /// <summary>Examples per minibatch (at least 2 with batch normalization).</summary>
        public int BatchSize = Defaults.BatchSize;

        /// <summary>SGD learning rate (the base rate of the schedule).</summary>
        public double LearningRate = Defaults.LearningRate;

        /// <summary>How the learning rate changes over the epochs.</summary>
        public LearningRateSchedule LearningRateSchedule = LearningRateSchedule.Constant;

        /// <summary>With <see cref="LearningRateSchedule.StepDecay"/>: epochs between decays.</summary>
        public int StepDecayEpochs = 3;

        /// <summary>With <see cref="LearningRateSchedule.StepDecay"/>: the factor applied at each decay.</summary>
        public double StepDecayFactor = 0.5;

        /// <summary>SGD momentum (0: plain SGD, as the seed).</summary>
        public double SgdMomentum;

        /// <summary>L2 weight decay of SGD (0 as the seed).</summary>
        public double WeightDecay;

        /// <summary>Momentum of the batch normalization moving averages, read per <see cref="BatchNormMomentumConvention"/>.</summary>
        public double BatchNormMomentum = BatchNormOptions.DefaultMomentum;

        /// <summary>How <see cref="BatchNormMomentum"/> is read: d2l's weight of the old value (0.9) or PyTorch's weight of the new (0.1).</summary>
        public MomentumConvention BatchNormMomentumConvention = MomentumConvention.MovingAverageWeight;

        /// <summary>Epsilon added to the variance in batch normalization.</summary>
        public double BatchNormEpsilon = BatchNormOptions.DefaultEpsilon;

        /// <summary>Variance stored in the moving variance; null: the layer kind's own (biased from scratch, unbiased built-in).</summary>
        public MovingVarianceKind? BatchNormMovingVariance;

        /// <summary>Seed for weight initialization and shuffling; null takes one from the <see cref="MLContext"/>'s random source.</summary>
        public int? Seed;

        /// <summary>Where to train: auto (CUDA when available), CPU, or CUDA.</summary>
        public DeviceKind Device = DeviceKind.Auto;

        /// <summary>CUDA device index; null uses <c>MLContext.GpuDeviceId</c>, then 0.</summary>
        public int? GpuDeviceId;

        /// <summary>Data to report validation loss and accuracy on after every epoch (same schema as the training data).</summary>
        public IDataView? ValidationSet;

        /// <summary>Fraction of the training rows held out (seeded) as the validation set, when <see cref="ValidationSet"/> is null; 0 for none.</summary>
        public double ValidationFraction;

        /// <summary>Keep the weights of the epoch with the best validation accuracy instead of the last (needs validation data).</summary>
        public bool RestoreBestEpoch;

        /// <summary>
        /// Stop when the validation metric stops improving and keep the best epoch's weights (needs validation data);
        /// null trains every epoch. Its metric, not accuracy, then decides which epoch <see cref="RestoreBestEpoch"/> keeps.
        /// </summary>
        public EarlyStoppingOptions? EarlyStopping;

        /// <summary>
        /// Called after every epoch (after <see cref="EpochEnded"/>) with its metrics: return true to end training
        /// after this epoch. Fit then returns the model as it is (or the best epoch's, with
        /// <see cref="RestoreBestEpoch"/> or <see cref="EarlyStopping"/>).
        /// </summary>
        public Func<LeNetBnEpochMetrics, bool>? StopTraining;

        /// <summary>
        /// A folder for checkpoints; null writes none. After every <see cref="CheckpointEveryEpochs"/>-th epoch, the
        /// last one and an early stop, Fit writes <c>checkpoint-epoch-NNNN.zip</c> there atomically: an ordinary model
        /// zip (<c>mlContext.Model.Load</c> opens it; <see cref="LeNetBnCheckpoint.FindLatest"/> finds the newest)
        /// that also holds what <see cref="ResumeFromCheckpoint"/> needs to continue exactly.
        /// </summary>
        public string? CheckpointDirectory;

        /// <summary>With <see cref="CheckpointDirectory"/>: epochs between checkpoints.</summary>
        public int CheckpointEveryEpochs = 1;

        /// <summary>With <see cref="CheckpointDirectory"/>: how many of the newest checkpoints to keep.</summary>
        public int CheckpointsToKeep = 2;

        /// <summary>
        /// Continue from the newest good checkpoint in <see cref="CheckpointDirectory"/> (a damaged one is reported
        /// and skipped), with the rest of the run bit-identical to an uninterrupted one on the same device; start
        /// afresh when there is none. The checkpoint must come from the same options and data, or Fit refuses it.
        /// Without this option, Fit refuses a folder that already holds checkpoints rather than mix two runs.
        /// </summary>
        public bool ResumeFromCheckpoint;

        /// <summary>What to do with rows whose features hold NaN or Infinity.</summary>
        public NonFiniteFeatureHandling NonFiniteFeatures = NonFiniteFeatureHandling.Reject;

        /// <summary>Examples per forward pass when the trained model transforms data.</summary>
        public int PredictionBatchSize = Defaults.PredictionBatchSize;

        /// <summary>
        /// Fold each batch normalization layer into the conv/linear layer before it once training ends, so the
        /// returned model predicts with fewer operations and the same outputs (to float rounding). Its
        /// <see cref="LeNetBnTransformer.GetBatchNormStates"/> is then empty. Off by default; the same as calling
        /// <see cref="LeNetBnTransformer.FoldBatchNorm"/> on the trained model, without having to rebuild the
        /// pipeline's transformer chain around it. Needs <see cref="BatchNorm"/> other than None.
        /// </summary>
        public bool FoldBatchNorm;

        /// <summary>Called after every epoch with its metrics (on the training thread).</summary>
        public Action<LeNetBnEpochMetrics>? EpochEnded;

        /// <summary>
        /// Cancels Fit before the next training step (and while the data are read): Fit then throws
        /// <see cref="OperationCanceledException"/> after at most the step in flight. With
        /// <see cref="CheckpointDirectory"/>, the last checkpoint written stays: a loadable model, and the point
        /// <see cref="ResumeFromCheckpoint"/> continues from.
        /// </summary>
        public CancellationToken CancellationToken;

        /// <summary>Test hook: called on the training thread after every optimizer step with the steps done so far.</summary>
        internal Action<int>? StepEnded;

        /// <summary>Test hook: called at each stage of a checkpoint write.</summary>
        internal Action<CheckpointWriteStage>? CheckpointStageReached;

        /// <summary>The batch normalization settings these options describe.</summary>
        internal BatchNormOptions ToBatchNormOptions() => new()
        {
            Momentum = BatchNormMomentum,
            Convention = BatchNormMomentumConvention,
            Epsilon = BatchNormEpsilon,
            MovingVariance = BatchNormMovingVariance,
        };

        /// <summary>
        /// Throws when an option that needs validation data has none: neither <see cref="ValidationSet"/>,
        /// <see cref="ValidationFraction"/>, nor validation data given to Fit.
        /// </summary>
        internal void RequireValidationData(bool fitHasValidationData)
        {
            if (fitHasValidationData || ValidationSet is not null || ValidationFraction > 0) return;
            if (EarlyStopping is not null)
                throw new ArgumentOutOfRangeException(nameof(EarlyStopping), EarlyStopping,
                    $"LeNetBn option {nameof(EarlyStopping)} = {EarlyStopping}: needs validation data: set ValidationSet or ValidationFraction, or pass validation data to Fit.");
            if (RestoreBestEpoch)
                throw new ArgumentOutOfRangeException(nameof(RestoreBestEpoch), RestoreBestEpoch,
                    $"LeNetBn option {nameof(RestoreBestEpoch)} = True: needs validation data: set ValidationSet or ValidationFraction, or pass validation data to Fit.");
        }

        /// <summary>
        /// The settings that decide a run's result, one <c>Name=value</c> line each: a checkpoint is continued only
        /// under the same ones. Not the seed (stored on its own), the device, or what only concerns the returned model.
        /// </summary>
        /// <param name="classCount">The class count the label's key type gives: it shapes the network too.</param>
        internal string TrainingSettings(int classCount)
        {
            var c = System.Globalization.CultureInfo.InvariantCulture;
            var lines = new (string Name, object? Value)[]
            {
                (nameof(ImageShape), ImageShape), (nameof(BatchNorm), BatchNorm), (nameof(Activation), Activation), (nameof(Pooling), Pooling),
                (nameof(Epochs), Epochs), (nameof(BatchSize), BatchSize), (nameof(LearningRate), LearningRate.ToString("R", c)),
                (nameof(LearningRateSchedule), LearningRateSchedule), (nameof(StepDecayEpochs), StepDecayEpochs), (nameof(StepDecayFactor), StepDecayFactor.ToString("R", c)),
                (nameof(SgdMomentum), SgdMomentum.ToString("R", c)), (nameof(WeightDecay), WeightDecay.ToString("R", c)),
                (nameof(BatchNormMomentum), BatchNormMomentum.ToString("R", c)), (nameof(BatchNormMomentumConvention), BatchNormMomentumConvention),
                (nameof(BatchNormEpsilon), BatchNormEpsilon.ToString("R", c)), (nameof(BatchNormMovingVariance), BatchNormMovingVariance?.ToString() ?? "default"),
                (nameof(ValidationFraction), ValidationFraction.ToString("R", c)), (nameof(RestoreBestEpoch), RestoreBestEpoch),
                (nameof(EarlyStopping), EarlyStopping?.ToString() ?? "none"), (nameof(NonFiniteFeatures), NonFiniteFeatures),
                ("Classes", classCount),
            };
            return string.Join("\n", lines.Select(l => $"{l.Name}={l.Value}"));
        }

        /// <summary>A copy whose fields later changes to this instance do not reach.</summary>
        internal Options Clone() => (Options)MemberwiseClone();

        /// <summary>Throws for a nonsensical value, naming the option and the value.</summary>
        internal void Validate()
        {
            static void Require(bool ok, string option, object? value, string rule)
            {
                if (!ok) throw new ArgumentOutOfRangeException(option, value, $"LeNetBn option {option} = {value ?? "null"}: {rule}");
            }
            Require(!string.IsNullOrWhiteSpace(LabelColumnName), nameof(LabelColumnName), LabelColumnName, "name the key-typed label column.");
            Require(!string.IsNullOrWhiteSpace(FeatureColumnName), nameof(FeatureColumnName), FeatureColumnName, "name the float vector feature column.");
            Require(ImageShape is { Channels: > 0, Height: > 0, Width: > 0 }, nameof(ImageShape), ImageShape, "channels, height and width must be positive.");
            Require(Epochs > 0, nameof(Epochs), Epochs, "train for at least one epoch.");
            Require(BatchSize >= (BatchNorm == BatchNormKind.None ? 1 : 2), nameof(BatchSize), BatchSize,
                "batch normalization needs at least 2 examples per batch (1 without it).");
            Require(double.IsFinite(LearningRate) && LearningRate > 0, nameof(LearningRate), LearningRate, "must be a positive, finite number.");
            Require(Enum.IsDefined(LearningRateSchedule), nameof(LearningRateSchedule), LearningRateSchedule, "unknown schedule.");
            Require(StepDecayEpochs > 0, nameof(StepDecayEpochs), StepDecayEpochs, "must be at least 1.");
            Require(StepDecayFactor > 0 && StepDecayFactor <= 1, nameof(StepDecayFactor), StepDecayFactor, "must be in (0, 1].");
            Require(SgdMomentum >= 0 && SgdMomentum < 1, nameof(SgdMomentum), SgdMomentum, "must be in [0, 1).");
            Require(WeightDecay >= 0 && double.IsFinite(WeightDecay), nameof(WeightDecay), WeightDecay, "must be a non-negative, finite number.");
            Require(BatchNormMomentum >= 0 && BatchNormMomentum <= 1, nameof(BatchNormMomentum), BatchNormMomentum, "must be in [0, 1].");
            Require(BatchNormEpsilon > 0 && double.IsFinite(BatchNormEpsilon), nameof(BatchNormEpsilon), BatchNormEpsilon, "must be a positive, finite number.");
            Require(!(BatchNorm == BatchNormKind.BuiltIn && BatchNormMovingVariance == MovingVarianceKind.Biased), nameof(BatchNormMovingVariance), BatchNormMovingVariance,
                "TorchSharp's built-in BatchNorm stores the unbiased variance; use BatchNorm = Scratch for the biased one.");
            Require(Enum.IsDefined(Device), nameof(Device), Device, "unknown device.");
            Require(GpuDeviceId is null or >= 0, nameof(GpuDeviceId), GpuDeviceId, "must be a non-negative CUDA device index.");
            Require(ValidationFraction >= 0 && ValidationFraction < 1, nameof(ValidationFraction), ValidationFraction, "must be in [0, 1).");
            if (EarlyStopping is { } stopping)
            {
                Require(Enum.IsDefined(stopping.Metric), "EarlyStopping.Metric", stopping.Metric, "unknown metric.");
                Require(stopping.Patience >= 1, "EarlyStopping.Patience", stopping.Patience, "must be at least 1 epoch.");
                Require(stopping.MinDelta >= 0 && double.IsFinite(stopping.MinDelta), "EarlyStopping.MinDelta", stopping.MinDelta, "must be a non-negative, finite number.");
            }
            Require(CheckpointDirectory is null || !string.IsNullOrWhiteSpace(CheckpointDirectory), nameof(CheckpointDirectory), CheckpointDirectory, "name a folder, or leave it null for no checkpoints.");
            Require(CheckpointEveryEpochs >= 1, nameof(CheckpointEveryEpochs), CheckpointEveryEpochs, "must be at least 1.");
            Require(CheckpointsToKeep >= 1, nameof(CheckpointsToKeep), CheckpointsToKeep, "must be at least 1.");
            Require(!(ResumeFromCheckpoint && CheckpointDirectory is null), nameof(ResumeFromCheckpoint), ResumeFromCheckpoint, "needs CheckpointDirectory, the folder to resume from.");
            Require(PredictionBatchSize is > 0 and <= MaxPredictionBatchSize, nameof(PredictionBatchSize), PredictionBatchSize, $"must be 1 to {MaxPredictionBatchSize:N0}.");
            Require(!(FoldBatchNorm && BatchNorm == BatchNormKind.None), nameof(FoldBatchNorm), FoldBatchNorm,
                "there is no batch normalization to fold with BatchNorm = None.");
            // The architecture checks of the network builder (enums, BN options, an image large enough for two conv blocks).
            LeNetBnNetwork.Validate(new LeNetBnArchitecture { Input = ImageShape, BatchNorm = BatchNorm, Activation = Activation, Pooling = Pooling, BatchNormOptions = ToBatchNormOptions() });
        }
    }

    private readonly IHost _host;
    private readonly Options _options;

    /// <summary>Creates the trainer; prefer <c>mlContext.MulticlassClassification.Trainers.LeNetBn(...)</c>.</summary>
    /// <param name="env">The ML.NET environment (an <see cref="MLContext"/>).</param>
    /// <param name="options">Training options; validated and copied here, so later changes to the instance do not
    /// reach this trainer.</param>
    public LeNetBnTrainer(IHostEnvironment env, Options options)
    {
        ArgumentNullException.ThrowIfNull(env);
        ArgumentNullException.ThrowIfNull(options);
        _options = options.Clone();
        _options.Validate();
        _host = env.Register(nameof(LeNetBnTrainer));
    }

    /// <summary>Trains a new network on <paramref name="input"/> and returns the transformer that predicts with it.</summary>
    public LeNetBnTransformer Fit(IDataView input) => Fit(input, validationData: null, initialModel: null);

    /// <summary>
    /// Trains on <paramref name="trainData"/>, reporting loss and accuracy on <paramref name="validationData"/>
    /// after every epoch (it takes the place of <see cref="Options.ValidationSet"/>).
    /// </summary>
    public LeNetBnTransformer Fit(IDataView trainData, IDataView validationData)
    {
        ArgumentNullException.ThrowIfNull(validationData);
        return Fit(trainData, validationData, initialModel: null);
    }

    /// <summary>
    /// Fine-tunes: trains on <paramref name="trainData"/> starting from <paramref name="initialModel"/>'s weights and
    /// batch normalization statistics (ML.NET's warm start, as its online trainers take their previous model), with
    /// this trainer's learning rate, schedule and epochs. The model, freshly trained or loaded from a zip, must have
    /// the options' image shape, BN kind, BN epsilon and moving-variance kind, activation and pooling, and the label's
    /// class count and key values; it must not be BN-folded. It is left unchanged; the result is a new transformer.
    /// </summary>
    /// <exception cref="ArgumentException">The model does not fit the options or the data; the message names each difference.</exception>
    public LeNetBnTransformer Fit(IDataView trainData, LeNetBnTransformer initialModel)
    {
        ArgumentNullException.ThrowIfNull(initialModel);
        return Fit(trainData, validationData: null, initialModel);
    }

    private LeNetBnTransformer Fit(IDataView input, IDataView? validationData, LeNetBnTransformer? initialModel)
    {
        ArgumentNullException.ThrowIfNull(input);
        var o = _options;
        o.RequireValidationData(validationData is not null);
        var validationSource = validationData ?? o.ValidationSet;
        int classCount = LeNetBnSchema.CheckTrainingSchema(input.Schema, o.FeatureColumnName, o.LabelColumnName, o.ImageShape, "training data");
        if (validationSource is not null)
        {
            int validationClasses = LeNetBnSchema.CheckTrainingSchema(validationSource.Schema, o.FeatureColumnName, o.LabelColumnName, o.ImageShape, "validation set");
            if (validationClasses != classCount)
                throw new ArgumentException(
                    $"The validation set's label column '{o.LabelColumnName}' has {validationClasses} key values; the training data's has {classCount}. Map both with the same MapValueToKey transformer.",
                    validationData is null ? nameof(Options.ValidationSet) : nameof(validationData));
        }
        var labelKeyValues = LeNetBnSchema.GetKeyValues(input.Schema[o.LabelColumnName]);
        var architecture = new LeNetBnArchitecture
        {
            Input = o.ImageShape,
            NumClasses = classCount,
            BatchNorm = o.BatchNorm,
            BatchNormOptions = o.ToBatchNormOptions(),
            Activation = o.Activation,
            Pooling = o.Pooling,
        };
        if (initialModel is not null)
            CheckCanFineTune(initialModel, architecture, labelKeyValues);
        var folder = o.CheckpointDirectory is null ? null : new CheckpointFolder(o.CheckpointDirectory);
        if (folder is not null && !o.ResumeFromCheckpoint && folder.List() is [var (_, existing), ..])
            throw new InvalidOperationException(
                $"The checkpoint folder '{folder.Directory}' already holds checkpoints ({Path.GetFileName(existing)}). Set ResumeFromCheckpoint to continue that run, or choose an empty folder.");

        TorchNative.EnsureLoaded();
        using var channel = _host.Start("Training LeNet-BN");
        void ThrowIfCancelled()
        {
            o.CancellationToken.ThrowIfCancellationRequested();
            _host.CheckAlive();
        }

        using var all = TrainingSet.Read(input, o.FeatureColumnName, o.LabelColumnName, o.ImageShape.Size, classCount, o.NonFiniteFeatures, "training data", ThrowIfCancelled);
        var train = all;
        if (train.SkippedRows > 0)
            channel.Warning(MessageSensitivity.None, $"Skipped {train.SkippedRows} training rows whose features hold NaN or Infinity.");
        if (train.Count == 0)
            throw new InvalidOperationException($"The training data has no rows{(train.SkippedRows > 0 ? " left after skipping non-finite ones" : "")}; LeNetBn needs at least one batch.");
        using var validationSet = validationSource is null ? null : TrainingSet.Read(validationSource, o.FeatureColumnName, o.LabelColumnName, o.ImageShape.Size, classCount, o.NonFiniteFeatures, "validation set", ThrowIfCancelled);

        CheckpointPlan? checkpoints = null;
        if (folder is not null)
        {
            checkpoints = PlanCheckpoints(folder, all, validationSet, initialModel, input.Schema, labelKeyValues, classCount, channel);
            if (checkpoints.Resume is null)
                channel.Info(MessageSensitivity.None, $"Writing checkpoints to '{folder.Directory}'" + (o.ResumeFromCheckpoint ? " (none to resume from yet)." : "."));
        }
        // The checkpoint's model only lends its weights to the training network; it goes with this Fit.
        using var resumeModel = checkpoints?.Resume?.Model;
        int seed = o.Seed ?? checkpoints?.Resume?.State.Seed ?? _host.Rand.Next();
        if (checkpoints?.Resume is { } resume)
            CheckResumable(resume, checkpoints, seed);

        TrainingSet? validation = validationSet;
        if (validation is null && o.ValidationFraction > 0)
            (train, validation) = train.Split(o.ValidationFraction, seed);
        if (validation is { Count: 0 })
            throw new InvalidOperationException("The validation set has no rows.");
        if (o.BatchNorm != BatchNormKind.None && train.Count < 2)
            throw new InvalidOperationException(
                $"Batch normalization needs at least 2 training rows (a batch of one has no variance); the training data has {train.Count}"
                + (validation is not null && validationSet is null ? $" after holding out {validation.Count} for validation" : "")
                + (train.SkippedRows > 0 ? $" after skipping {train.SkippedRows} with non-finite features" : "")
                + ". Add rows, or set BatchNorm = None.");

        var device = TrainingDevice.Select(o.Device, o.GpuDeviceId, _host, channel);
        channel.Info(MessageSensitivity.None,
            $"{(initialModel is null ? "Training" : "Fine-tuning")} LeNet-BN ({o.BatchNorm} BN, {o.Activation}, {o.Pooling} pooling) on {train.Count:N0} images of {o.ImageShape}, {classCount} classes, "
            + $"{o.Epochs} epochs, batch {o.BatchSize}, lr {o.LearningRate} ({o.LearningRateSchedule}), seed {seed}"
            + (validation is null ? "" : $", {validation.Count:N0} validation images")
            + (o.EarlyStopping is { } stopping ? $", early stopping on {stopping}" : "") + ".");

        var loop = new LeNetBnTrainingLoop(o, channel, device);
        var (network, history) = loop.Run(architecture, train, validation, seed, initialModel, checkpoints, ThrowIfCancelled);
        if (o.FoldBatchNorm)
        {
            using (var trained = network)
                network = trained.FoldBatchNorm();
            channel.Info(MessageSensitivity.None, "Folded batch normalization into the conv/linear layers for prediction.");
        }
        return new LeNetBnTransformer(_host, network, o.FeatureColumnName, labelKeyValues, o.PredictionBatchSize, history);
    }

    /// <summary>Refuses a model to fine-tune that differs from the options or the data, naming every difference.</summary>
    private void CheckCanFineTune(LeNetBnTransformer model, LeNetBnArchitecture wanted, LabelKeyValues? keyValues)
    {
        var have = model.Architecture;
        if (have.BatchNormFolded)
            throw new ArgumentException(
                "The model to fine-tune has its batch normalization folded into the conv/linear weights (FoldBatchNorm), so its BN layers no longer exist. Fine-tune the model before folding it.",
                "initialModel");
        var differences = new List<string>();
        void Compare(string what, object? model, object? options)
        {
            if (!Equals(model, options)) differences.Add($"{what}: the model's is {model ?? "none"}, this Fit's {options ?? "none"}");
        }
        Compare("image shape (ImageShape)", have.Input, wanted.Input);
        Compare($"class count (key values of label column '{_options.LabelColumnName}')", have.NumClasses, wanted.NumClasses);
        Compare("batch normalization (BatchNorm)", have.BatchNorm, wanted.BatchNorm);
        Compare("activation (Activation)", have.Activation, wanted.Activation);
        Compare("pooling (Pooling)", have.Pooling, wanted.Pooling);
        if (wanted.BatchNorm != BatchNormKind.None)
        {
            Compare("BN epsilon (BatchNormEpsilon)", have.BatchNormOptions.Epsilon, wanted.BatchNormOptions.Epsilon);
            Compare("BN moving variance (BatchNormMovingVariance)", have.BatchNormOptions.MovingVariance, wanted.BatchNormOptions.MovingVariance);
        }
        if (have.NumClasses == wanted.NumClasses && model.ClassNames is { } modelNames && keyValues?.Names is { } dataNames && !modelNames.SequenceEqual(dataNames))
            differences.Add($"class names (key values of label column '{_options.LabelColumnName}'): the model's are {string.Join(", ", modelNames.Take(12))}, the training data's {string.Join(", ", dataNames.Take(12))}");
        if (differences.Count > 0)
            throw new ArgumentException($"The model to fine-tune does not match this Fit: {string.Join("; ", differences)}.", "initialModel");
    }

    /// <summary>The checkpoint plan of this Fit, with the checkpoint to resume from when asked for and present.</summary>
    private CheckpointPlan PlanCheckpoints(CheckpointFolder folder, TrainingSet all, TrainingSet? validationSet, LeNetBnTransformer? initialModel,
        DataViewSchema inputSchema, LabelKeyValues? keyValues, int classCount, IChannel channel)
    {
        var o = _options;
        using var hash = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        all.AppendTo(hash);
        validationSet?.AppendTo(hash);
        if (initialModel is not null)
        {
            using var weights = new MemoryStream();
            initialModel.WriteWeights(weights);
            hash.AppendData(weights.GetBuffer(), 0, (int)weights.Length);
        }
        // The network as an ordinary model zip: a transformer around the training network, which it must not dispose.
        void SaveModel(LeNetBnNetwork network, Stream stream)
        {
            var model = new LeNetBnTransformer(_host, network, o.FeatureColumnName, keyValues, o.PredictionBatchSize, []);
            new MLContext().Model.Save(model, inputSchema, stream);
        }
        return new CheckpointPlan
        {
            Folder = folder,
            EveryEpochs = o.CheckpointEveryEpochs,
            Keep = o.CheckpointsToKeep,
            Options = o.TrainingSettings(classCount),
            DataFingerprint = hash.GetHashAndReset(),
            TrainingRows = all.Count,
            ValidationRows = validationSet?.Count ?? 0,
            SaveModel = SaveModel,
            Resume = o.ResumeFromCheckpoint ? folder.FindLatest(channel) : null,
            StageReached = o.CheckpointStageReached,
        };
    }

    /// <summary>Refuses a checkpoint of another run: other settings, seed or data.</summary>
    private static void CheckResumable(CheckpointFolder.Loaded resume, CheckpointPlan plan, int seed)
    {
        var state = resume.State;
        static IEnumerable<(string Name, string Value)> Settings(string lines) =>
            lines.Split('\n').Select(line => line.Split('=', 2)).Select(pair => (pair[0], pair[1]));
        var saved = Settings(state.Options).ToDictionary(s => s.Name, s => s.Value);
        var differences = Settings(plan.Options)
            .Where(now => saved.GetValueOrDefault(now.Name) != now.Value)
            .Select(now => $"{now.Name} was {saved.GetValueOrDefault(now.Name, "not set")}, is {now.Value} now")
            .ToList();
        if (state.Seed != seed)
            differences.Add($"Seed was {state.Seed}, is {seed} now");
        if (differences.Count > 0)
            throw new InvalidOperationException(
                $"The checkpoint '{resume.Path}' was made with other options: {string.Join("; ", differences)}. Resume with the options it was made with, or use another CheckpointDirectory.");
        if (!state.DataFingerprint.AsSpan().SequenceEqual(plan.DataFingerprint))
            throw new InvalidOperationException(
                $"The checkpoint '{resume.Path}' was made from other data: it trained on {state.TrainingRows:N0} rows read with {state.ValidationRows:N0} validation rows, "
                + $"fingerprint {Convert.ToHexString(state.DataFingerprint)[..16]}; this Fit has {plan.TrainingRows:N0} and {plan.ValidationRows:N0}, fingerprint {Convert.ToHexString(plan.DataFingerprint)[..16]} "
                + "(the SHA-256 of every feature and label, and of the initial model when fine-tuning). Resume with the same data, or use another CheckpointDirectory.");
    }

    /// <summary>The schema after the trained transformer: the input plus <c>Score</c> and <c>PredictedLabel</c>.</summary>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema) =>
        LeNetBnSchema.GetOutputSchemaShape(inputSchema, _options.FeatureColumnName, _options.LabelColumnName);
}
