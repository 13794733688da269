using Microsoft.ML;
using MlNetBn.Modules;

namespace MlNetBn;

/// <summary>The <c>mlContext.MulticlassClassification.Trainers.LeNetBn(...)</c> entry points.</summary>
public static class LeNetBnCatalog
{
    /// <summary>
    /// Creates a <see cref="LeNetBnTrainer"/>: a LeNet with batch normalization trained by minibatch SGD through
    /// TorchSharp (Dive into Deep Learning's defaults: 10 epochs, batch 256, learning rate 1.0).
    /// </summary>
    /// <param name="catalog">The multiclass classification trainers catalog.</param>
    /// <param name="labelColumnName">The key-typed label column.</param>
    /// <param name="featureColumnName">The float vector feature column (1×28×28 = 784 values by default).</param>
    /// <param name="epochs">Passes over the training data.</param>
    /// <param name="batchSize">Examples per minibatch.</param>
    /// <param name="learningRate">SGD learning rate.</param>
    /// <param name="batchNorm">From-scratch (the seed), built-in or no batch normalization.</param>
    public static LeNetBnTrainer LeNetBn(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
        string labelColumnName = LeNetBnTrainer.Defaults.LabelColumnName,
        string featureColumnName = LeNetBnTrainer.Defaults.FeatureColumnName,
        int epochs = LeNetBnTrainer.Defaults.Epochs,
        int batchSize = LeNetBnTrainer.Defaults.BatchSize,
        double learningRate = LeNetBnTrainer.Defaults.LearningRate,
        BatchNormKind batchNorm = BatchNormKind.Scratch) =>
        LeNetBn(catalog, new LeNetBnTrainer.Options
        {
            LabelColumnName = labelColumnName,
            FeatureColumnName = featureColumnName,
            Epochs = epochs,
            BatchSize = batchSize,
            LearningRate = learningRate,
            BatchNorm = batchNorm,
        });

    /// <summary>Creates a <see cref="LeNetBnTrainer"/> with every option.</summary>
    /// <param name="catalog">The multiclass classification trainers catalog.</param>
    /// <param name="options">Training options.</param>
    public static LeNetBnTrainer LeNetBn(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
        LeNetBnTrainer.Options options)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        return new LeNetBnTrainer(Internal.CatalogEnvironment.GetEnvironment(catalog), options);
    }
}
