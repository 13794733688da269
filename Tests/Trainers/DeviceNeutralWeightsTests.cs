using MlNetBn.Modules;
using MlNetBn.Transform;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetBn.Tests.Trainers;

/// <summary>
/// The weights in a model zip do not depend on the device that trained the model: ModelWeights writes host (CPU)
/// copies taken in a dispose scope that must leave the network's own tensors alone. Without a GPU here, the CUDA side
/// of the round trip (train on CUDA, load on the CPU) runs in scripts/device-check.sh (benchmark export-model /
/// verify-model).
/// </summary>
[TestClass]
public sealed class DeviceNeutralWeightsTests
{
    [TestMethod]
    [DataRow(BatchNormKind.Scratch)]
    [DataRow(BatchNormKind.BuiltIn)]
    public void HostStateDict_IsCpuCopiesOfEveryTensor_AndDisposingThemLeavesTheNetworkWhole(BatchNormKind kind)
    {
        using var network = PerturbedNetwork(kind);
        var names = network.state_dict().Keys.ToList();
        using (var scope = NewDisposeScope())
        {
            var host = ModelWeights.HostStateDict(network.state_dict());
            CollectionAssert.AreEqual(names, host.Keys.ToList(), "the state dict's names, in its order");
            foreach (var (name, value) in host)
            {
                Assert.AreEqual(DeviceType.CPU, value.device_type, $"{name} is handed to the writer on {value.device}");
                Assert.IsFalse(value.requires_grad, $"{name} carries autograd history");
                Assert.IsTrue(value.equal(network.state_dict()[name]).all().item<bool>(), $"{name} differs from the network's");
            }
        }

        // The scope disposed only the copies' handles: the network still has its tensors.
        using var _ = no_grad();
        using var output = network.forward(ones(2, 784));
        Assert.AreEqual(10, output.shape[1]);
    }

    /// <summary>A seeded network whose weights and BN statistics are all away from their initial values.</summary>
    private static LeNetBnNetwork PerturbedNetwork(BatchNormKind kind)
    {
        var network = new LeNetBnNetwork(new LeNetBnArchitecture { BatchNorm = kind }, seed: 11);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var generator = new Generator(12);
        foreach (var parameter in network.parameters())
            parameter.add_(randn(parameter.shape, generator: generator) * 0.1);
        network.train();
        for (int i = 0; i < 3; i++)
            network.forward(rand([16, 784], generator: generator));
        network.eval();
        return network;
    }
}
