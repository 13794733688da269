// TorchSharp's native state (threads, default dtype, RNG) is process-wide: run test classes one at a time.
[assembly: DoNotParallelize]
