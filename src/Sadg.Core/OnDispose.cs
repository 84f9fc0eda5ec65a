namespace Sadg;

/// <summary>Runs an action once, on the first <see cref="Dispose"/>: undoes a hook, a pause, a registration.</summary>
internal sealed class OnDispose(Action action) : IDisposable
{
    Action? action = action;

    public void Dispose()
    {
        action?.Invoke();
        action = null;
    }
}
