using System.Reflection;

namespace MlNetBn.Tests.Internals;

/// <summary>
/// Writes a member's signature as one comparable string, e.g.
/// <c>System.Boolean Microsoft.ML.ModelLoadContext.TryLoadBinaryStream(System.String, System.Action&lt;System.IO.BinaryReader&gt;)</c>.
/// Namespaces are kept (two types with one short name must not compare equal); assembly names are dropped.
/// </summary>
internal static class ApiSignature
{
    internal static string Of(MemberInfo member) => member switch
    {
        ConstructorInfo c => $"{(c.IsStatic ? "static " : "")}{TypeName(c.DeclaringType!)}..ctor({Parameters(c)})",
        MethodInfo m => $"{(m.IsStatic ? "static " : "")}{TypeName(m.ReturnType)} {TypeName(m.DeclaringType!)}.{m.Name}{GenericArguments(m)}({Parameters(m)})",
        FieldInfo f => $"{(f.IsLiteral ? "const " : f.IsStatic ? "static " : "")}{TypeName(f.FieldType)} {TypeName(f.DeclaringType!)}.{f.Name}",
        PropertyInfo p => $"{TypeName(p.PropertyType)} {TypeName(p.DeclaringType!)}.{p.Name}",
        Type t => $"{Kind(t)} {TypeName(t)}",
        _ => member.ToString() ?? member.Name,
    };

    /// <summary>C#-like name with namespace: generic arguments in angle brackets, nested types joined by a dot.</summary>
    internal static string TypeName(Type type)
    {
        if (type.IsByRef)
            return TypeName(type.GetElementType()!) + "&";
        if (type.IsArray)
            return TypeName(type.GetElementType()!) + "[" + new string(',', type.GetArrayRank() - 1) + "]";
        if (type.IsPointer)
            return TypeName(type.GetElementType()!) + "*";
        if (type.IsGenericParameter)
            return type.Name;

        var name = type.Name;
        int tick = name.IndexOf('`');
        if (tick >= 0)
            name = name[..tick];
        var prefix = type.IsNested ? TypeName(type.DeclaringType!.IsGenericType ? type.DeclaringType.GetGenericTypeDefinition() : type.DeclaringType) + "."
            : string.IsNullOrEmpty(type.Namespace) ? "" : type.Namespace + ".";
        if (!type.IsGenericType)
            return prefix + name;
        // Generic arguments of the enclosing type also appear on the nested type: show only this level's.
        var args = type.GetGenericArguments();
        int inherited = type.IsNested ? type.DeclaringType!.GetGenericArguments().Length : 0;
        var own = args.Skip(inherited).ToArray();
        return own.Length == 0 ? prefix + name : $"{prefix}{name}<{string.Join(", ", own.Select(TypeName))}>";
    }

    /// <summary>Visible from another assembly without IgnoresAccessChecksTo? (Protected counts as visible.)</summary>
    internal static bool IsAccessibleFromOutside(MemberInfo member)
    {
        static bool TypeVisible(Type? t) => t is null || t.IsGenericParameter || t.IsVisible;

        return member switch
        {
            Type t => t.IsVisible,
            MethodBase m => TypeVisible(m.DeclaringType) && (m.IsPublic || m.IsFamily || m.IsFamilyOrAssembly),
            FieldInfo f => TypeVisible(f.DeclaringType) && (f.IsPublic || f.IsFamily || f.IsFamilyOrAssembly),
            _ => TypeVisible(member.DeclaringType),
        };
    }

    private static string Kind(Type t) =>
        t.IsInterface ? "interface"
        : t.IsEnum ? "enum"
        : t.IsValueType ? "struct"
        : typeof(Delegate).IsAssignableFrom(t) ? "delegate"
        : "class";

    private static string GenericArguments(MethodInfo m) =>
        m.IsGenericMethod ? "<" + string.Join(", ", m.GetGenericArguments().Select(TypeName)) + ">" : "";

    private static string Parameters(MethodBase m) =>
        string.Join(", ", m.GetParameters().Select(p => TypeName(p.ParameterType)));
}
