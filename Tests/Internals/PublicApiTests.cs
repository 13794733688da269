using System.Reflection;

namespace MlNetBn.Tests.Internals;

/// <summary>
/// MlNetBn.Trainers compiles against a Microsoft.ML.Core whose internals are public, so the compiler cannot tell
/// when one of ML.NET's internal types slips into our public API (it would for a normal reference: CS0050/CS0051).
/// Consumers compile against the real ML.NET, where such an API would be unusable. This test does the check the
/// compiler cannot, against the real assemblies loaded at run time.
/// </summary>
[TestClass]
public sealed class PublicApiTests
{
    private const BindingFlags Visible =
        BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;

    [TestMethod]
    public void TrainersPublicApiExposesNoMlNetInternals()
    {
        var leaks = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var type in typeof(LeNetBnTransformer).Assembly.GetExportedTypes())
        {
            Check(type.BaseType, $"base type of {type}", leaks);
            foreach (var i in type.GetInterfaces())
                Check(i, $"interface of {type}", leaks);
            foreach (var member in type.GetMembers(Visible))
            {
                switch (member)
                {
                    case MethodBase m when IsVisibleOutside(m.IsPublic, m.IsFamily, m.IsFamilyOrAssembly):
                        if (m is MethodInfo mi)
                            Check(mi.ReturnType, ApiSignature.Of(m), leaks);
                        foreach (var p in m.GetParameters())
                            Check(p.ParameterType, ApiSignature.Of(m), leaks);
                        break;
                    case PropertyInfo p when p.GetAccessors(nonPublic: true).Any(a => IsVisibleOutside(a.IsPublic, a.IsFamily, a.IsFamilyOrAssembly)):
                        Check(p.PropertyType, ApiSignature.Of(p), leaks);
                        break;
                    case FieldInfo f when IsVisibleOutside(f.IsPublic, f.IsFamily, f.IsFamilyOrAssembly):
                        Check(f.FieldType, ApiSignature.Of(f), leaks);
                        break;
                    case EventInfo e when e.AddMethod is { } add && IsVisibleOutside(add.IsPublic, add.IsFamily, add.IsFamilyOrAssembly):
                        Check(e.EventHandlerType, $"event {type}.{e.Name}", leaks);
                        break;
                }
            }
        }

        Assert.IsEmpty(leaks,
            "Public API of MlNetBn.Trainers uses types that are internal in the real ML.NET (make the member internal):" +
            Environment.NewLine + string.Join(Environment.NewLine, leaks));
    }

    private static bool IsVisibleOutside(bool isPublic, bool isFamily, bool isFamilyOrAssembly) =>
        isPublic || isFamily || isFamilyOrAssembly;

    private static void Check(Type? type, string where, ISet<string> leaks)
    {
        if (type is null || type.IsGenericParameter)
            return;
        if (type.HasElementType)
        {
            Check(type.GetElementType(), where, leaks);
            return;
        }
        if (type.IsGenericType && !type.IsGenericTypeDefinition)
        {
            foreach (var argument in type.GetGenericArguments())
                Check(argument, where, leaks);
            type = type.GetGenericTypeDefinition();
        }
        var assembly = type.Assembly.GetName().Name ?? "";
        if (assembly.StartsWith("Microsoft.ML", StringComparison.Ordinal) && !type.IsVisible)
            leaks.Add($"{ApiSignature.TypeName(type)} in {where}");
    }
}
