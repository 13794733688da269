using MlNetBn.Training;
using TorchSharp;

namespace MlNetBn.Tests.Trainers;

/// <summary>The device decision, tested without a GPU by feeding it what the CUDA probe would say.</summary>
[TestClass]
public sealed class TrainingDeviceTests
{
    private readonly List<string> _log = [];

    private torch.Device Select(DeviceKind kind, int? optionGpu = null, int? contextGpu = null, bool fallback = false, bool cuda = false, int devices = 0) =>
        TrainingDevice.Select(kind, optionGpu, contextGpu, fallback, cuda, devices, _log.Add);

    [TestMethod]
    public void Auto_PicksCudaWhenAvailable_ElseCpu()
    {
        Assert.AreEqual(DeviceType.CUDA, Select(DeviceKind.Auto, cuda: true, devices: 1).type);
        Assert.AreEqual(DeviceType.CPU, Select(DeviceKind.Auto).type);
        StringAssert.Contains(_log[^1], "no CUDA device");
    }

    [TestMethod]
    public void Cpu_IsAlwaysCpu() => Assert.AreEqual(DeviceType.CPU, Select(DeviceKind.Cpu, optionGpu: 0, cuda: true, devices: 1).type);

    [TestMethod]
    public void MLContextGpuDeviceId_IsHonoured_AndTheOptionWins()
    {
        var device = Select(DeviceKind.Auto, contextGpu: 1, cuda: true, devices: 2);
        Assert.AreEqual(1, device.index);
        StringAssert.Contains(_log[^1], "MLContext.GpuDeviceId");
        Assert.AreEqual(0, Select(DeviceKind.Cuda, optionGpu: 0, contextGpu: 1, cuda: true, devices: 2).index);
    }

    [TestMethod]
    public void ExplicitCudaWithoutGpu_IsAClearError_UnlessFallbackToCpu()
    {
        var ex = Assert.ThrowsExactly<InvalidOperationException>(() => Select(DeviceKind.Cuda));
        StringAssert.Contains(ex.Message, "CUDA is not available");
        StringAssert.Contains(ex.Message, "FallbackToCpu");
        ex = Assert.ThrowsExactly<InvalidOperationException>(() => Select(DeviceKind.Auto, contextGpu: 3, cuda: true, devices: 2));
        StringAssert.Contains(ex.Message, "only 2 CUDA device(s)");
        Assert.AreEqual(DeviceType.CPU, Select(DeviceKind.Cuda, fallback: true).type);
        StringAssert.Contains(_log[^1], "FallbackToCpu");
    }

    [TestMethod]
    public void OnThisMachine_FitLogsTheDevice()
    {
        var mlContext = new Microsoft.ML.MLContext(seed: 1);
        var messages = new List<string>();
        mlContext.Log += (_, e) => messages.Add(e.RawMessage);
        var options = TrainerTestData.QuickOptions(epochs: 1);
        options.Device = DeviceKind.Auto;
        using var model = mlContext.MulticlassClassification.Trainers.LeNetBn(options).Fit(TrainerTestData.Train(mlContext, 5));
        Assert.IsTrue(messages.Any(m => m.StartsWith("Training on ", StringComparison.Ordinal)), string.Join("\n", messages));
        if (!torch.cuda.is_available())
        {
            var cuda = TrainerTestData.QuickOptions(epochs: 1);
            cuda.Device = DeviceKind.Cuda;
            Assert.ThrowsExactly<InvalidOperationException>(() => mlContext.MulticlassClassification.Trainers.LeNetBn(cuda).Fit(TrainerTestData.Train(mlContext, 5)));
            mlContext.FallbackToCpu = true;
            using var fallback = mlContext.MulticlassClassification.Trainers.LeNetBn(cuda).Fit(TrainerTestData.Train(mlContext, 5));
            Assert.AreEqual("cpu", fallback.Device.ToLowerInvariant());
        }
    }
}
