using Microsoft.ML.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetBn.Training;

/// <summary>
/// Picks the training device the way ML.NET's own TorchSharp trainers read <c>MLContext.GpuDeviceId</c> and
/// <c>MLContext.FallbackToCpu</c>, plus an explicit choice in the options; logs the choice and the reason.
/// </summary>
internal static class TrainingDevice
{
    /// <summary>The device to train on.</summary>
    /// <param name="kind">The option: auto, CPU or CUDA.</param>
    /// <param name="gpuDeviceId">The option's CUDA index, if any.</param>
    /// <param name="env">The environment, for <c>GpuDeviceId</c> and <c>FallbackToCpu</c>.</param>
    /// <param name="channel">Where the choice is logged.</param>
    public static Device Select(DeviceKind kind, int? gpuDeviceId, IHostEnvironment env, IChannel channel)
    {
        var settings = env as IHostEnvironmentInternal;
        int? contextGpu = settings?.GpuDeviceId;
        bool fallbackToCpu = settings?.FallbackToCpu ?? false;
        return Select(kind, gpuDeviceId, contextGpu, fallbackToCpu, cuda.is_available(), cuda.device_count(), message => channel.Info(MessageSensitivity.None, message));
    }

    /// <summary>The decision itself, separated from TorchSharp's CUDA probe so it can be tested without a GPU.</summary>
    internal static Device Select(DeviceKind kind, int? optionGpu, int? contextGpu, bool fallbackToCpu, bool cudaAvailable, int cudaDevices, Action<string> log)
    {
        if (kind == DeviceKind.Cpu)
        {
            log("Training on the CPU (Device = Cpu).");
            return CPU;
        }
        int? requested = optionGpu ?? contextGpu;
        bool explicitCuda = kind == DeviceKind.Cuda || requested is not null;
        if (!explicitCuda)
        {
            if (cudaAvailable)
            {
                log("Training on cuda:0 (Device = Auto and CUDA is available).");
                return new Device(DeviceType.CUDA, 0);
            }
            log("Training on the CPU (Device = Auto and no CUDA device or CUDA libtorch was found).");
            return CPU;
        }

        int index = requested ?? 0;
        string source = optionGpu is not null ? "the GpuDeviceId option" : contextGpu is not null ? "MLContext.GpuDeviceId" : "Device = Cuda";
        if (cudaAvailable && index < cudaDevices)
        {
            log($"Training on cuda:{index} (asked for by {source}).");
            return new Device(DeviceType.CUDA, index);
        }
        string why = cudaAvailable
            ? $"cuda:{index} was asked for by {source}, but only {cudaDevices} CUDA device(s) exist"
            : $"cuda:{index} was asked for by {source}, but CUDA is not available (no GPU, or a CPU-only libtorch: build with -p:TorchBackend=cuda-linux|cuda-windows or set MLNETBN_TORCH_LIB to a CUDA PyTorch's torch/lib)";
        if (fallbackToCpu)
        {
            log($"Training on the CPU: {why}, and MLContext.FallbackToCpu is set.");
            return CPU;
        }
        throw new InvalidOperationException($"{why}. Set MLContext.FallbackToCpu = true to train on the CPU instead.");
    }
}
