using Microsoft.ML;

namespace MlNetBn;

/// <summary>Saving a model without ever leaving a broken file in place of a good one.</summary>
public static class ModelFileCatalog
{
    /// <summary>
    /// Saves <paramref name="model"/> like <c>mlContext.Model.Save</c>, but into a temporary file beside
    /// <paramref name="filePath"/> that replaces it only once it is complete and flushed to disk. If saving fails
    /// (a disposed model, a full disk, a crash), the file that was at <paramref name="filePath"/> is left as it was;
    /// <c>Model.Save(model, schema, path)</c> opens the file before the model writes a byte, so a failure there
    /// leaves a broken zip behind.
    /// </summary>
    /// <param name="catalog">The model operations catalog (<c>mlContext.Model</c>).</param>
    /// <param name="model">The model to save.</param>
    /// <param name="inputSchema">The schema of the data the model was trained on, as for <c>Model.Save</c>.</param>
    /// <param name="filePath">The model zip to write or replace.</param>
    public static void SaveReplacing(this ModelOperationsCatalog catalog, ITransformer model, DataViewSchema inputSchema, string filePath)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        ArgumentException.ThrowIfNullOrEmpty(filePath);
        string fullPath = Path.GetFullPath(filePath);
        string temporary = Path.Combine(Path.GetDirectoryName(fullPath)!, $".{Path.GetFileName(fullPath)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write))
            {
                catalog.Save(model, inputSchema, stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temporary, fullPath, overwrite: true);
        }
        finally
        {
            File.Delete(temporary);
        }
    }
}
