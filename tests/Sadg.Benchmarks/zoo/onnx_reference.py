# A second, independent reading of an exported ONNX graph for the zoo's export scripts: interpret(model, x) runs the
# graph node by node with torch.nn.functional from the ONNX attributes and initializers (not through the nn.Module
# that was exported), so a script can check that the written file computes what its module computes; export() writes
# a pretrained classifier the way the zoo's pages use it and makes that check. Only the op types the zoo's exports
# write are interpreted; any other stops the check with its name.
import sys, onnx, torch, torch.nn.functional as F
from onnx import numpy_helper

# ONNX TensorProto element types that exports cast to.
_DTYPES = {1: torch.float32, 6: torch.int32, 7: torch.int64, 9: torch.bool, 11: torch.float64}


def _symmetric_pads(a):
    """A Conv's or pool's ONNX pads [top, left, bottom, right] as torch's (height, width)."""
    pads = a.get('pads', [0, 0, 0, 0])
    assert pads[0] == pads[2] and pads[1] == pads[3], "asymmetric pads are not interpreted"
    return pads[:2]


def _slice(x, starts, ends, axes, steps):
    """ONNX Slice; Python's slicing has its semantics (negative indices count from the end, out-of-range ends clamp,
    a negative step walks backwards), so NumPy's does it."""
    index = [slice(None)] * x.dim()
    for k, axis in enumerate(axes):
        index[int(axis)] = slice(int(starts[k]), int(ends[k]), int(steps[k]) if steps is not None else 1)
    return torch.from_numpy(x.numpy()[tuple(index)].copy())


def _pad(x, pads, value):
    """ONNX Pad's [x1_begin, x2_begin, …, x1_end, x2_end, …] as F.pad's last-axis-first pairs (constant mode)."""
    n = x.dim()
    pairs = []
    for axis in reversed(range(n)):
        pairs += [int(pads[axis]), int(pads[axis + n])]
    return F.pad(x, pairs, 'constant', float(value))


def interpret(model, x):
    """The graph's first output for the input x (the graph's first input)."""
    env = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in model.graph.initializer}
    env[model.graph.input[0].name] = x
    for n in model.graph.node:
        a = {at.name: onnx.helper.get_attribute_value(at) for at in n.attribute}
        i = [env[name] if name else None for name in n.input]
        op = n.op_type
        if op == 'Conv':
            y = F.conv2d(i[0], i[1], i[2] if len(i) > 2 else None, a.get('strides', [1, 1]), _symmetric_pads(a),
                         a.get('dilations', [1, 1]), a.get('group', 1))
        elif op == 'BatchNormalization':
            y = F.batch_norm(i[0], i[3], i[4], i[1], i[2], False, 0.0, a.get('epsilon', 1e-5))
        elif op == 'Relu':
            y = F.relu(i[0])
        elif op == 'LeakyRelu':
            y = F.leaky_relu(i[0], a.get('alpha', 0.01))
        elif op == 'Add':
            y = i[0] + i[1]
        elif op == 'Sub':
            y = i[0] - i[1]
        elif op == 'Mul':
            y = i[0] * i[1]
        elif op == 'GlobalAveragePool':
            y = i[0].mean(dim=(2, 3), keepdim=True)
        elif op == 'AveragePool':
            assert not a.get('ceil_mode', 0), "ceil_mode is not interpreted"
            y = F.avg_pool2d(i[0], a['kernel_shape'], a.get('strides', a['kernel_shape']), _symmetric_pads(a),
                             count_include_pad=bool(a.get('count_include_pad', 0)))
        elif op == 'Constant':
            y = torch.from_numpy(numpy_helper.to_array(a['value']).copy())
        elif op == 'ConstantOfShape':
            value = torch.from_numpy(numpy_helper.to_array(a['value']).copy()) if 'value' in a else torch.zeros(1)
            y = value.reshape(()).expand([int(d) for d in i[0]]).clone()
        elif op == 'Shape':
            y = torch.tensor(list(i[0].shape), dtype=torch.int64)
        elif op == 'Gather':
            y = torch.index_select(i[0], a.get('axis', 0), i[1].reshape(-1).long()).reshape(
                list(i[0].shape[:a.get('axis', 0)]) + list(i[1].shape) + list(i[0].shape[a.get('axis', 0) + 1:]))
        elif op == 'Unsqueeze':
            y = i[0]
            for axis in sorted(int(v) for v in i[1]):
                y = y.unsqueeze(axis)
        elif op == 'Concat':
            y = torch.cat(i, a['axis'])
        elif op == 'Cast':
            y = i[0].to(_DTYPES[a['to']])
        elif op == 'Transpose':
            y = i[0].permute(a['perm'])
        elif op == 'Slice':
            y = _slice(i[0], i[1], i[2], i[3] if len(i) > 3 else range(len(i[1])), i[4] if len(i) > 4 else None)
        elif op == 'Pad':
            assert a.get('mode', b'constant') in (b'constant', 'constant'), "only constant Pad is interpreted"
            y = _pad(i[0], i[1], i[2] if len(i) > 2 and i[2] is not None else 0.0)
        elif op == 'Reshape':
            shape = [int(d) if int(d) != 0 else i[0].shape[k] for k, d in enumerate(i[1])]
            y = i[0].reshape(shape)
        elif op == 'Flatten':
            y = i[0].flatten(a.get('axis', 1))
        elif op == 'Gemm':
            b = i[1].t() if a.get('transB', 0) else i[1]
            y = a.get('alpha', 1.0) * i[0] @ b + (a.get('beta', 1.0) * i[2] if len(i) > 2 else 0)
        else:
            raise SystemExit(f"op {op} ({n.name}) is not interpreted here")
        env[n.output[0]] = y
    return env[model.graph.output[0].name]


def checkpoint_state(path):
    """A PyTorch checkpoint's `state_dict`, without the `module.` prefix that nn.DataParallel gives its keys."""
    state = torch.load(path, map_location='cpu', weights_only=False)['state_dict']
    return {k.replace('module.', '', 1): v for k, v in state.items()}


def check(module, model, x, tolerance=1e-4):
    """Stops the script unless the interpreted graph computes what the module computes on x; prints the difference."""
    with torch.no_grad():
        expected, actual = module(x), interpret(model, x)
    diff = (expected - actual).abs().max().item()
    print(f"written graph (interpreted) vs the module: max abs difference {diff:.2e}, max output "
          f"{expected.abs().max().item():.3f}; argmax equal: {bool((expected.argmax(1) == actual.argmax(1)).all())}")
    if not diff < tolerance:
        raise SystemExit("the written graph does not compute what the module computes")


def export(module, input_shape, out, constant_folding=True):
    """Writes an image classifier (eval mode) as ONNX opset 13 with every BatchNormalization kept as a node, input
    `input` [N, *input_shape] with a dynamic batch, output `logits`; checks the file (ONNX's checker, then check() on
    eight seeded random inputs) and prints its node counts. constant_folding is torch.onnx.export's
    do_constant_folding (its default True)."""
    torch.onnx.export(module, torch.randn(1, *input_shape), out, input_names=['input'], output_names=['logits'],
                      dynamic_axes={'input': {0: 'N'}, 'logits': {0: 'N'}}, opset_version=13,
                      training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=constant_folding)
    model = onnx.load(out)
    onnx.checker.check_model(model)
    check(module, model, torch.randn(8, *input_shape, generator=torch.Generator().manual_seed(0)))
    ops = [n.op_type for n in model.graph.node]
    print(f"wrote {out}: {len(ops)} nodes, " + ", ".join(f"{ops.count(t)} {t}" for t in sorted(set(ops), key=ops.count, reverse=True)))


def main(load, usage):
    """The command line of an export script: CHECKPOINT OUT.onnx; load(checkpoint) gives (module, input_shape, constant_folding)."""
    if len(sys.argv) != 3:
        raise SystemExit(f"usage: {usage} CHECKPOINT OUT.onnx")
    module, input_shape, constant_folding = load(sys.argv[1])
    export(module, input_shape, sys.argv[2], constant_folding)
