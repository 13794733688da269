// Entry point of the build-time publicizer. See AssemblyPublicizer for what it changes and why.
using MlNetBn.Build.Publicizer;

if (args.Length != 2 || args[0].StartsWith('-'))
{
    Console.Error.WriteLine("usage: dotnet Publicizer.dll <input.dll> <output.dll>");
    Console.Error.WriteLine("Writes a copy of <input.dll> whose internal types and members are public (compile-time use only).");
    return 2;
}

try
{
    var stats = AssemblyPublicizer.Publicize(args[0], args[1]);
    // MSBuild shows this line at normal verbosity, which makes it visible when (and only when) the tool reran.
    Console.WriteLine($"Publicizer: {stats}");
    foreach (var kept in stats.PolyfillsKept)
        Console.WriteLine($"Publicizer:   kept internal: {kept}");
    return 0;
}
catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or BadImageFormatException or InvalidOperationException)
{
    // "error :" makes MSBuild's Exec task report a build error with this text rather than only an exit code.
    Console.Error.WriteLine($"Publicizer: error : {ex.Message}");
    return 1;
}
