namespace MlNetBn.Training;

/// <summary>Where training (and the trained model's predictions) run.</summary>
public enum DeviceKind
{
    /// <summary>CUDA when a CUDA device and a CUDA libtorch are available, else the CPU.</summary>
    Auto,

    /// <summary>Always the CPU.</summary>
    Cpu,

    /// <summary>A CUDA device (index from the options or <c>MLContext.GpuDeviceId</c>); an error without one unless <c>MLContext.FallbackToCpu</c>.</summary>
    Cuda,
}
