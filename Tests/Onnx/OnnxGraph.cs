using System.Text;
using Google.Protobuf;

namespace MlNetBn.Tests.Onnx;

/// <summary>
/// What an exported ONNX file holds, read with Google.Protobuf's wire-format reader (ML.NET's ONNX classes are
/// internal to its converter): the operator of every node, and the graph's input and output names. Enough to prove
/// the network is in the file, since ML.NET drops a transform it cannot export with only a logged warning.
/// </summary>
internal sealed class OnnxGraph
{
    // Field numbers of onnx.proto: ModelProto.graph = 7; GraphProto.node = 1, input = 11, output = 12;
    // NodeProto.op_type = 4; ValueInfoProto.name = 1.
    private OnnxGraph(byte[] model)
    {
        var graph = Fields(model, 7).Single();
        OpTypes = Fields(graph, 1).Select(node => Text(Fields(node, 4).Single())).ToList();
        Inputs = Fields(graph, 11).Select(value => Text(Fields(value, 1).Single())).ToList();
        Outputs = Fields(graph, 12).Select(value => Text(Fields(value, 1).Single())).ToList();
    }

    public IReadOnlyList<string> OpTypes { get; }

    public IReadOnlyList<string> Inputs { get; }

    public IReadOnlyList<string> Outputs { get; }

    public static OnnxGraph Read(byte[] model) => new(model);

    public int Count(string opType) => OpTypes.Count(op => op == opType);

    private static string Text(byte[] bytes) => Encoding.UTF8.GetString(bytes);

    /// <summary>The length-delimited fields numbered <paramref name="number"/> of a message, in order.</summary>
    private static List<byte[]> Fields(byte[] message, int number)
    {
        var fields = new List<byte[]>();
        var input = new CodedInputStream(message);
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            if (WireFormat.GetTagFieldNumber(tag) == number && WireFormat.GetTagWireType(tag) == WireFormat.WireType.LengthDelimited)
                fields.Add(input.ReadBytes().ToByteArray());
            else
                input.SkipLastField();
        }
        return fields;
    }
}
