#:project ../Extensions/MlNetBn.Extensions.csproj
#:property PublishAot=false
// Rebuilds Tests/Data/fashion-mnist-small: the first 300 images of each class of Fashion-MNIST's training split and
// the first 100 of its test split, rows cycling through the classes. Deterministic: the same data give the same bytes.
//   dotnet run scripts/make-test-subset.cs [cache folder]     (downloads Fashion-MNIST when the cache is empty)
using System.Security.Cryptography;
using MlNetBn.Data;

string source = await FashionMnist.DownloadAsync(args.Length > 0 ? args[0] : null);
string target = Path.Combine(AppContext.GetData("EntryPointFileDirectoryPath") as string ?? "scripts", "..", "Tests", "Data", "fashion-mnist-small");
Directory.CreateDirectory(target);
foreach (var (split, perClass) in new[] { (FashionMnistSplit.Train, 300), (FashionMnistSplit.Test, 100) })
{
    var full = FashionMnist.Read(split, source);
    var subset = full.Select(full.SelectIndices(countPerClass: perClass));
    var (images, labels) = FashionMnist.GetFileNames(split);
    subset.Save(Path.Combine(target, images), Path.Combine(target, labels), gzip: true);
    Console.WriteLine($"{split}: {subset.Count} of {full.Count} images");
}
foreach (var folder in new[] { target, source })
    foreach (var name in FashionMnist.FileNames)
        Console.WriteLine($"{Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(Path.Combine(folder, name))))}  {Path.GetFullPath(Path.Combine(folder, name))}");
