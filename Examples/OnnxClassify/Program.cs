// Classifies Fashion-MNIST test images with the ONNX file Examples/OnnxExport writes, through ONNX Runtime alone: this
// program references Microsoft.ML.OnnxRuntime and nothing else (no ML.NET, no TorchSharp, no libtorch). It reads the
// test images from the IDX files Fashion-MNIST is published in (FashionMnistIdx.cs), feeds them in batches as
// "Features" (N×784 floats, pixel / 255) and reads "PredictedLabel.output" (the 1-based class key),
// "Score.output" (probabilities) and, when the model has it, "PredictedClass.output" (the class name).
using System.Diagnostics;
using MlNetBn.Examples.OnnxClassify;
using Microsoft.ML.OnnxRuntime;

string modelPath = "lenet-bn.onnx";
string? dataDir = null;
int? requested = null;
int show = 8, batchSize = 1000;
for (int i = 0; i < args.Length; i++)
{
    string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value.");
    int Count(string name, int min, int max) =>
        int.TryParse(Value(), out int n) && n >= min && n <= max ? n : throw new ArgumentException($"{name} must be a whole number from {min:N0} to {max:N0}.");
    switch (args[i])
    {
        case "--model": modelPath = Value(); break;
        case "--data-dir": dataDir = Value(); break;
        case "--count": requested = Count("--count", 1, FashionMnistIdx.TestCount); break;
        case "--show": show = Count("--show", 0, FashionMnistIdx.TestCount); break;
        case "--batch-size": batchSize = Count("--batch-size", 1, 65_536); break;
        case "-h" or "--help":
            Console.WriteLine("OnnxClassify [--model lenet-bn.onnx] [--data-dir DIR] [--count N] [--show N] [--batch-size N]");
            Console.WriteLine("Classifies the first N Fashion-MNIST test images with ONNX Runtime (default: all; DIR holds t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz).");
            return 0;
        default:
            Console.Error.WriteLine($"Unknown option '{args[i]}' (--help lists them).");
            return 2;
    }
}

if (!File.Exists(modelPath))
{
    Console.Error.WriteLine($"There is no ONNX file '{Path.GetFullPath(modelPath)}': run Examples/OnnxExport first (it writes lenet-bn.onnx).");
    return 1;
}
string directory = dataDir ?? FashionMnistIdx.DefaultDirectory;
var (images, labels) = FashionMnistIdx.ReadTest(directory, requested);
int count = labels.Length;

using var session = new InferenceSession(modelPath);
bool hasClassNames = session.OutputMetadata.ContainsKey("PredictedClass.output");
string[] outputNames = hasClassNames ? ["Score.output", "PredictedLabel.output", "PredictedClass.output"] : ["Score.output", "PredictedLabel.output"];
var keys = new uint[count];
var topProbability = new float[count];
var names = new string[count];
using var runOptions = new RunOptions();
var clock = Stopwatch.StartNew();
for (int start = 0; start < count; start += batchSize)
{
    int rows = Math.Min(batchSize, count - start);
    var batch = images.AsMemory(start * FashionMnistIdx.Pixels, rows * FashionMnistIdx.Pixels);
    using var input = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, batch, [rows, FashionMnistIdx.Pixels]);
    using var outputs = session.Run(runOptions, ["Features"], [input], outputNames);
    var scores = outputs[0].GetTensorDataAsSpan<float>();
    int classes = scores.Length / rows;
    outputs[1].GetTensorDataAsSpan<uint>().CopyTo(keys.AsSpan(start, rows));
    for (int r = 0; r < rows; r++)
        topProbability[start + r] = keys[start + r] == 0 ? float.NaN : scores[r * classes + (int)keys[start + r] - 1];
    if (hasClassNames)
        outputs[2].GetStringTensorAsArray().CopyTo(names, start);
}
double seconds = clock.Elapsed.TotalSeconds;

for (int i = 0; i < Math.Min(show, count); i++)
{
    string predicted = hasClassNames ? names[i] : FashionMnistIdx.ClassNames[(int)keys[i] - 1];
    string actual = FashionMnistIdx.ClassNames[labels[i]];
    Console.WriteLine($"test image {i,5}: {predicted,-12} p = {topProbability[i]:F3}{(predicted == actual ? "" : $"   (actually {actual})")}");
}
int correct = Enumerable.Range(0, count).Count(i => keys[i] == labels[i] + 1);
Console.WriteLine($"Accuracy {correct / (double)count:F4} on {count:N0} test images; ONNX Runtime {OrtEnv.Instance().GetVersionString()}, " +
                  $"{count / seconds:N0} images/s in batches of {batchSize:N0} (first batch included).");
return 0;
