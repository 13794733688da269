using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;

namespace MlNetBn.Tests.Data;

/// <summary>
/// A tiny HTTP server on 127.0.0.1 and a free port, serving fixed bytes by path and 404 for anything else.
/// Stands in for the download hosts so that the downloader's tests need no internet.
/// </summary>
internal sealed class LocalHttpServer : IDisposable
{
    private readonly HttpListener _listener = new();
    private readonly Task _loop;

    public LocalHttpServer()
    {
        // HttpListener can't pick a port itself: borrow a free one from the OS, then listen on it.
        int port = FreePort();
        BaseUri = new Uri($"http://127.0.0.1:{port}/");
        _listener.Prefixes.Add(BaseUri.ToString());
        _listener.Start();
        _loop = Task.Run(ServeAsync);
    }

    public Uri BaseUri { get; }

    /// <summary>Bytes served by absolute path (e.g. "/npm/pkg.tgz").</summary>
    public ConcurrentDictionary<string, byte[]> Files { get; } = new(StringComparer.Ordinal);

    /// <summary>Every request received, as "path status".</summary>
    public ConcurrentQueue<string> Requests { get; } = new();

    public static int FreePort()
    {
        var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        int port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        return port;
    }

    public Uri UriOf(string path) => new(BaseUri, path);

    private async Task ServeAsync()
    {
        while (_listener.IsListening)
        {
            HttpListenerContext context;
            try
            {
                context = await _listener.GetContextAsync();
            }
            catch (Exception ex) when (ex is HttpListenerException or ObjectDisposedException or InvalidOperationException)
            {
                return;
            }

            var path = context.Request.Url!.AbsolutePath;
            using var response = context.Response;
            if (Files.TryGetValue(path, out var body))
            {
                response.StatusCode = 200;
                response.ContentLength64 = body.Length;
                Requests.Enqueue($"{path} 200");
                try
                {
                    await response.OutputStream.WriteAsync(body);
                }
                catch (Exception ex) when (ex is HttpListenerException or IOException)
                {
                    // The client went away (a timeout under test): nothing to do.
                }
            }
            else
            {
                response.StatusCode = 404;
                Requests.Enqueue($"{path} 404");
            }
        }
    }

    public void Dispose()
    {
        _listener.Stop();
        _listener.Close();
        _loop.Wait(TimeSpan.FromSeconds(5));
    }
}
