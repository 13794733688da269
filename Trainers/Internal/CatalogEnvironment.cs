using Microsoft.ML.Data;
using Microsoft.ML.Runtime;

namespace MlNetBn.Internal;

/// <summary>The ML.NET environment behind a catalog, which ML.NET 5 exposes only to its own assemblies.</summary>
internal static class CatalogEnvironment
{
    /// <summary>The <see cref="IHostEnvironment"/> a catalog (for example <c>mlContext.MulticlassClassification.Trainers</c>) was made from.</summary>
    public static IHostEnvironment GetEnvironment(object catalog) =>
        catalog is IInternalCatalog internalCatalog
            ? internalCatalog.Environment
            : throw new ArgumentException($"{catalog.GetType()} is not an ML.NET catalog.", nameof(catalog));
}
