// Prints KEY=value lines for TorchNativeProcessTests; ERROR (which may span lines) comes last.
// Exit codes: 0 loaded and computed, 3 TorchNativeLoadException.
using MlNetBn;
using TorchSharp;

try
{
    TorchNativeInfo info = TorchNative.EnsureLoaded();
    Console.WriteLine("DESCRIPTION=" + info.Description);
    Console.WriteLine("LIBTORCHSHARP=" + info.LibTorchSharpPath);
    Console.WriteLine("LIBTORCH_CPU=" + info.LibTorchCpuPath);
    Console.WriteLine("SUM=" + torch.ones(3).sum().item<float>().ToString(System.Globalization.CultureInfo.InvariantCulture));
    return 0;
}
catch (TorchNativeLoadException ex)
{
    Console.WriteLine("ERROR=" + ex.Message);
    return 3;
}
