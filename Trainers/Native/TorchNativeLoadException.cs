namespace MlNetBn;

/// <summary>
/// TorchSharp's native backend (libtorch and TorchSharp's LibTorchSharp) could not be loaded. The message
/// says why, as far as the operating system's loader told, and what to do about it.
/// </summary>
public sealed class TorchNativeLoadException : InvalidOperationException
{
    /// <summary>Creates the exception with a message and no inner exception.</summary>
    public TorchNativeLoadException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and the exception that TorchSharp or the loader threw.</summary>
    public TorchNativeLoadException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }
}
