# Converts a Keras (2.x, .h5) sequential CNN of the layer kinds keras.applications' MobileNet v1 uses (Conv2D,
# DepthwiseConv2D, BatchNormalization, ReLU with max_value, ZeroPadding2D, GlobalAveragePooling2D, Dropout, Reshape,
# Activation softmax) into an ONNX model (opset 13) with every BatchNormalization kept as a node, input NCHW float
# `input` [N, C, H, W], output `predictions` (softmax probabilities, as Keras writes them). No TensorFlow needed:
# the graph is read from the file's model_config and the weights from its model_weights group.
#
# The converted file is checked before it is written: the written graph, interpreted node by node in NumPy (NCHW,
# ONNX layouts), must compute on random inputs what the Keras layers compute from the .h5 (a second NumPy forward
# pass, NHWC, Keras layouts); the max abs difference is printed and must be < 1e-6. ONNX Runtime's top-1 on real
# images is the benchmark's FP32 row.
#
#   python3 tests/Sadg.Benchmarks/zoo/keras_to_onnx.py MODEL.h5 OUT.onnx    (Debian: apt install python3-h5py python3-onnx)
#
# Used by docs/benchmarks/mobilenet-imagenet.md for STMicroelectronics' Keras MobileNet v1 0.25 (ImageNet, 224²).
import json, sys, numpy as np, h5py, onnx
from onnx import helper, numpy_helper, TensorProto


def layers_of(f):
    cfg = json.loads(f.attrs['model_config'])
    return [(l['class_name'], l['config']) for l in cfg['config']['layers']]


def weights(f, name):
    g = f['model_weights'][name]
    out = {}
    g.visititems(lambda n, o: out.__setitem__(n.split('/')[-1].split(':')[0], np.array(o)) if isinstance(o, h5py.Dataset) else None)
    return out


def same_pads(size, k, s):
    """TensorFlow's 'same' padding of one spatial axis: (begin, end), the odd pixel at the end."""
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2, out


def convert(f):
    layers = layers_of(f)
    nodes, inits = [], []
    shape = None  # (C, H, W) of the current tensor
    cur = 'input'
    pending = (0, 0, 0, 0)  # a ZeroPadding2D's (top, left, bottom, right), folded into the next conv

    def init(name, value):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value.astype(np.float32)), name))
        return name

    for kind, c in layers:
        name = c['name']
        if kind == 'InputLayer':
            _, h, w, ch = c['batch_input_shape']
            shape = (ch, h, w)
            continue
        if kind == 'ZeroPadding2D':
            (t, b), (l, r) = c['padding']
            pending = (t, l, b, r)
            shape = (shape[0], shape[1] + t + b, shape[2] + l + r)
            continue
        if kind in ('Conv2D', 'DepthwiseConv2D'):
            w = weights(f, name)
            k = c['kernel_size']; s = c['strides']
            if kind == 'Conv2D':
                kernel = w['kernel'].transpose(3, 2, 0, 1)  # (kh, kw, in, out) -> (out, in, kh, kw)
                group = 1
            else:
                assert c.get('depth_multiplier', 1) == 1, 'depth_multiplier > 1 is not converted'
                kernel = w['depthwise_kernel'].transpose(2, 3, 0, 1)  # (kh, kw, in, 1) -> (in, 1, kh, kw)
                group = kernel.shape[0]
            if c['padding'] == 'same':
                pt, pb, oh = same_pads(shape[1], k[0], s[0])
                pl, pr, ow = same_pads(shape[2], k[1], s[1])
            else:
                pt = pb = pl = pr = 0
                oh = (shape[1] - k[0]) // s[0] + 1
                ow = (shape[2] - k[1]) // s[1] + 1
            t, l, b, r = pending
            pads = [pt + t, pl + l, pb + b, pr + r]
            pending = (0, 0, 0, 0)
            inputs = [cur, init(name + '.weight', kernel)]
            bias = w.get('bias') if c['use_bias'] else None
            if bias is not None:
                inputs.append(init(name + '.bias', bias))
            nodes.append(helper.make_node('Conv', inputs, [name], name=name, kernel_shape=k, strides=s, pads=pads, group=group))
            shape = (kernel.shape[0], oh, ow)
            assert c.get('activation', 'linear') == 'linear', f'{name}: fused activation {c["activation"]}'
        elif kind == 'BatchNormalization':
            w = weights(f, name)
            gamma = w.get('gamma', np.ones_like(w['moving_mean'])); beta = w.get('beta', np.zeros_like(w['moving_mean']))
            nodes.append(helper.make_node('BatchNormalization',
                                          [cur, init(name + '.scale', gamma), init(name + '.bias', beta),
                                           init(name + '.mean', w['moving_mean']), init(name + '.var', w['moving_variance'])],
                                          [name], name=name, epsilon=c['epsilon']))
        elif kind == 'ReLU':
            assert c.get('negative_slope', 0) == 0 and c.get('threshold', 0) == 0
            hi = c.get('max_value')
            if hi is None:
                nodes.append(helper.make_node('Relu', [cur], [name], name=name))
            else:
                nodes.append(helper.make_node('Clip', [cur, init(name + '.min', np.array(0.0)), init(name + '.max', np.array(hi))], [name], name=name))
        elif kind == 'GlobalAveragePooling2D':
            assert c.get('keepdims', False), 'GlobalAveragePooling2D without keepdims is not converted'
            nodes.append(helper.make_node('GlobalAveragePool', [cur], [name], name=name))
            shape = (shape[0], 1, 1)
        elif kind == 'Dropout':
            continue  # inference: nothing
        elif kind == 'Reshape':
            target = c['target_shape']
            assert len(target) == 1 and target[0] == shape[0] * shape[1] * shape[2]
            inits.append(numpy_helper.from_array(np.array([-1] + target, np.int64), name + '.shape'))
            nodes.append(helper.make_node('Reshape', [cur, name + '.shape'], [name], name=name))
            shape = tuple(target)
        elif kind == 'Activation':
            assert c['activation'] == 'softmax', f'{name}: activation {c["activation"]}'
            nodes.append(helper.make_node('Softmax', [cur], [name], name=name, axis=1))
        else:
            raise SystemExit(f'{f.filename}: layer {name} of kind {kind} is not converted')
        cur = name

    _, h, w, ch = layers[0][1]['batch_input_shape']
    graph = helper.make_graph(nodes, 'keras_' + json.loads(f.attrs['model_config'])['config']['name'],
                              [helper.make_tensor_value_info('input', TensorProto.FLOAT, ['N', ch, h, w])],
                              [helper.make_tensor_value_info(cur, TensorProto.FLOAT, ['N'] + list(shape))], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 13)], producer_name='keras-h5-to-onnx')
    onnx.checker.check_model(model)
    return model, (ch, h, w)


def keras_forward(f, x):
    """The Keras layers computed from the .h5 itself, NHWC and Keras's weight layouts, in float64."""
    def conv(x, k, s, group):  # x: NHWC already padded; k: (kh, kw, in/group, out)
        n, hh, ww, _ = x.shape
        kh, kw, cg, cout = k.shape
        oh = (hh - kh) // s[0] + 1; ow = (ww - kw) // s[1] + 1
        y = np.zeros((n, oh, ow, cout))
        per = cout // group
        for g in range(group):
            xs = x[..., g * cg:(g + 1) * cg]
            for i in range(kh):
                for j in range(kw):
                    y[..., g * per:(g + 1) * per] += xs[:, i:i + s[0] * oh:s[0], j:j + s[1] * ow:s[1]] @ k[i, j, :, g * per:(g + 1) * per]
        return y
    for kind, c in layers_of(f):
        if kind in ('InputLayer', 'Dropout'):
            continue
        w = weights(f, c['name']) if kind in ('Conv2D', 'DepthwiseConv2D', 'BatchNormalization') else None
        if kind == 'ZeroPadding2D':
            (t, b), (l, r) = c['padding']
            x = np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)))
        elif kind in ('Conv2D', 'DepthwiseConv2D'):
            k = w['kernel'] if kind == 'Conv2D' else w['depthwise_kernel'].transpose(0, 1, 3, 2)  # (kh, kw, 1, in)
            group = 1 if kind == 'Conv2D' else x.shape[3]
            if c['padding'] == 'same':
                pt, pb, _ = same_pads(x.shape[1], k.shape[0], c['strides'][0])
                pl, pr, _ = same_pads(x.shape[2], k.shape[1], c['strides'][1])
                x = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
            x = conv(x, k, c['strides'], group)
            if c['use_bias']:
                x = x + w['bias']
        elif kind == 'BatchNormalization':
            x = (x - w['moving_mean']) / np.sqrt(w['moving_variance'] + c['epsilon']) * w['gamma'] + w['beta']
        elif kind == 'ReLU':
            x = np.clip(x, 0, c.get('max_value') or np.inf)
        elif kind == 'GlobalAveragePooling2D':
            x = x.mean(axis=(1, 2), keepdims=True)
        elif kind == 'Reshape':
            x = x.reshape(x.shape[0], *c['target_shape'])
        elif kind == 'Activation':
            e = np.exp(x - x.max(axis=1, keepdims=True)); x = e / e.sum(axis=1, keepdims=True)
    return x


def onnx_forward(model, x):
    """The written ONNX graph interpreted node by node (the operators this converter writes), NCHW, in float64."""
    v = {i.name: numpy_helper.to_array(i).astype(np.float64 if i.data_type == TensorProto.FLOAT else np.int64) for i in model.graph.initializer}
    v['input'] = x
    for n in model.graph.node:
        a = {at.name: helper.get_attribute_value(at) for at in n.attribute}
        i = [v[name] for name in n.input]
        if n.op_type == 'Conv':
            t, l, b, r = a['pads']
            xp = np.pad(i[0], ((0, 0), (0, 0), (t, b), (l, r)))
            w = i[1]; s = a['strides']; group = a['group']
            cout, cg, kh, kw = w.shape
            oh = (xp.shape[2] - kh) // s[0] + 1; ow = (xp.shape[3] - kw) // s[1] + 1
            y = np.zeros((xp.shape[0], cout, oh, ow)); per = cout // group
            for g in range(group):
                for p in range(kh):
                    for q in range(kw):
                        y[:, g * per:(g + 1) * per] += np.einsum('nchw,oc->nohw', xp[:, g * cg:(g + 1) * cg, p:p + s[0] * oh:s[0], q:q + s[1] * ow:s[1]], w[g * per:(g + 1) * per, :, p, q])
            out = y + (i[2][None, :, None, None] if len(i) > 2 else 0)
        elif n.op_type == 'BatchNormalization':
            sc, bi, m, var = (t[None, :, None, None] for t in i[1:])
            out = (i[0] - m) / np.sqrt(var + a['epsilon']) * sc + bi
        elif n.op_type == 'Clip':
            out = np.clip(i[0], i[1], i[2])
        elif n.op_type == 'Relu':
            out = np.maximum(i[0], 0)
        elif n.op_type == 'GlobalAveragePool':
            out = i[0].mean(axis=(2, 3), keepdims=True)
        elif n.op_type == 'Reshape':
            out = i[0].reshape([int(d) for d in i[1]])
        elif n.op_type == 'Softmax':
            e = np.exp(i[0] - i[0].max(axis=1, keepdims=True)); out = e / e.sum(axis=1, keepdims=True)
        else:
            raise SystemExit(f'no interpreter for {n.op_type}')
        v[n.output[0]] = out
    return v[model.graph.output[0].name]


def main():
    src, dst = sys.argv[1], sys.argv[2]
    with h5py.File(src, 'r') as f:
        model, (ch, h, w) = convert(f)
        x = np.random.default_rng(0).uniform(-1, 1, (2, ch, h, w))
        got = onnx_forward(model, x)
        want = keras_forward(f, x.transpose(0, 2, 3, 1))
    diff = float(np.abs(got - want).max())
    print(f'written graph vs the Keras layers (both in NumPy): max abs difference {diff:.3g}, max output {float(want.max()):.3g}; '
          f'argmax equal: {bool((got.argmax(1) == want.argmax(1)).all())}')
    if not diff < 1e-6:
        raise SystemExit('the converted model does not compute what the Keras layers compute')
    onnx.save(model, dst)
    print(f'wrote {dst}: {len(model.graph.node)} nodes, {sum(n.op_type == "BatchNormalization" for n in model.graph.node)} BatchNormalization')


if __name__ == '__main__':
    main()
