using System.Reflection;

namespace Sadg.Graph.Ops;

/// <summary>
/// The ONNX operators the executor runs: every <see cref="OnnxOp"/> subclass in this assembly that carries
/// <see cref="OnnxOperatorAttribute"/> and a constructor taking an <see cref="OpContext"/>.
/// </summary>
public static class OperatorRegistry
{
    static readonly Lazy<IReadOnlyDictionary<string, Func<OpContext, OnnxOp>>> Factories = new(Discover);

    /// <summary>The op types of the default domain that the executor claims, sorted.</summary>
    public static IReadOnlyList<string> SupportedOpTypes => Factories.Value.Keys.Order(StringComparer.Ordinal).ToList();

    public static bool IsSupported(string domain, string opType) =>
        domain is "" or "ai.onnx" && Factories.Value.ContainsKey(opType);

    public static OnnxOp Create(OpContext context) =>
        Factories.Value.TryGetValue(context.Node.OpType, out var factory) && context.Node.Domain is "" or "ai.onnx"
            ? factory(context)
            : throw context.Error(SadgErrorCode.UnsupportedOperator, "this operator is not supported");

    static IReadOnlyDictionary<string, Func<OpContext, OnnxOp>> Discover()
    {
        var result = new Dictionary<string, Func<OpContext, OnnxOp>>(StringComparer.Ordinal);
        foreach (var type in typeof(OnnxOp).Assembly.GetTypes())
        {
            if (type.IsAbstract || !typeof(OnnxOp).IsAssignableFrom(type)) continue;
            var ctor = type.GetConstructor(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance, [typeof(OpContext)]);
            foreach (var attribute in type.GetCustomAttributes<OnnxOperatorAttribute>())
            {
                if (ctor is null)
                    throw new InvalidOperationException($"{type.Name} must have a constructor taking an OpContext.");
                if (!result.TryAdd(attribute.OpType, context => Construct(ctor, context)))
                    throw new InvalidOperationException($"Two implementations claim ONNX op '{attribute.OpType}'.");
            }
        }
        return result;
    }

    static OnnxOp Construct(ConstructorInfo ctor, OpContext context)
    {
        try
        {
            return (OnnxOp)ctor.Invoke([context]);
        }
        catch (TargetInvocationException e) when (e.InnerException is not null)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(e.InnerException);
            throw;
        }
    }
}
