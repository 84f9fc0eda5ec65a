# Probe (docs/benchmarks/mobilenet-leaky.md): for every depthwise Conv of an ONNX model: the per-channel mean shift that b-bit round-to-nearest weights cause,
# relative to the channel's output std, predicted from BatchNorm statistics alone.
#   shift_c = sum_k dw_ck * E[x_c];  r_c = |shift_c| / sigma_out_c
# E[x_c]: the BN before the conv gives N(beta, gamma^2) per channel, pushed through the activation nodes between it
# and the conv (Monte Carlo). sigma_out_c: sqrt(running_var) of the BN after the conv (the conv output's std).
#   /usr/bin/python3 predicted_shift.py MODEL.onnx BITS     (Debian: python3-onnx, python3-numpy)
import sys, numpy as np, onnx
from onnx import numpy_helper, helper

def quantize(w, bits):
    """Per-channel asymmetric grid, clip ratio searched for mean |w - Q(w)|^2.4 (BRECQ's search)."""
    out = np.empty_like(w)
    levels = 2 ** bits - 1
    for c in range(w.shape[0]):
        v = w[c].ravel(); best = None
        for r in np.arange(100, 0, -1) / 100:
            lo, hi = min(v.min() * r, 0), max(v.max() * r, 0)
            s = max((hi - lo) / levels, 1e-12); z = np.round(-lo / s)
            q = (np.clip(np.round(v / s) + z, 0, levels) - z) * s
            e = np.mean(np.abs(v - q) ** 2.4)
            if best is None or e < best[0]: best = (e, q)
        out[c] = best[1].reshape(w[c].shape)
    return out

def main(path, bits):
    m = onnx.load(path); g = m.graph
    init = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    for n in g.node:
        if n.op_type == 'Constant':
            init[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    producer = {o: n for n in g.node for o in n.output}
    consumers = {}
    for n in g.node:
        for i in n.input: consumers.setdefault(i, []).append(n)
    rows = []
    for n in g.node:
        if n.op_type != 'Conv': continue
        w = init.get(n.input[1])
        group = next((helper.get_attribute_value(a) for a in n.attribute if a.name == 'group'), 1)
        if w is None or group == 1 or group != w.shape[0]: continue
        # the BN after
        after = consumers.get(n.output[0], [])
        bn_after = next((c for c in after if c.op_type == 'BatchNormalization'), None)
        if bn_after is None: continue
        eps = next((helper.get_attribute_value(a) for a in bn_after.attribute if a.name == 'epsilon'), 1e-5)
        sigma_out = np.sqrt(init[bn_after.input[4]] + eps)
        # walk back along first inputs to the BN before; the nodes between are evaluated from its output
        t = n.input[0]
        while t in producer and producer[t].op_type != 'BatchNormalization':
            t = producer[t].input[0]
        if t not in producer: continue
        bn = producer[t]
        gamma, beta = init[bn.input[1]], init[bn.input[2]]
        rng = np.random.default_rng(0)
        x = beta[:, None] + np.abs(gamma)[:, None] * rng.standard_normal((gamma.size, 20000))
        vals = {t: x}
        def ev(name):
            if name in vals: return vals[name]
            if name in init: return init[name]
            if name == '': return None
            node = producer[name]
            a = {at.name: helper.get_attribute_value(at) for at in node.attribute}
            ins = [ev(i) for i in node.input]
            if node.op_type == 'Relu': y = np.maximum(ins[0], 0)
            elif node.op_type == 'Clip':
                lo = ins[1] if len(ins) > 1 and ins[1] is not None else a.get('min', -np.inf)
                hi = ins[2] if len(ins) > 2 and ins[2] is not None else a.get('max', np.inf)
                y = np.clip(ins[0], lo, hi)
            elif node.op_type == 'LeakyRelu': y = np.where(ins[0] > 0, ins[0], a.get('alpha', 0.01) * ins[0])
            elif node.op_type == 'HardSigmoid': y = np.clip(a.get('alpha', 0.2) * ins[0] + a.get('beta', 0.5), 0, 1)
            elif node.op_type == 'HardSwish': y = ins[0] * np.clip(ins[0] / 6 + 0.5, 0, 1)
            elif node.op_type == 'Sigmoid': y = 1 / (1 + np.exp(-ins[0]))
            elif node.op_type == 'Mul': y = ins[0] * ins[1]
            elif node.op_type == 'Add': y = ins[0] + ins[1]
            elif node.op_type == 'Div': y = ins[0] / ins[1]
            else: raise SystemExit(f'{node.op_type} in the chain of {n.name}')
            vals[name] = y
            return y
        mean_x = ev(n.input[0]).mean(1)
        dw = quantize(w, bits) - w
        shift = dw.reshape(w.shape[0], -1).sum(1) * mean_x
        r = np.abs(shift) / sigma_out
        rows.append((n.name, w.shape[0], r))
    allr = np.concatenate([r for _, _, r in rows])
    for name, c, r in rows:
        print(f'{name:50s} C={c:4d} median {np.median(r):.3f} p90 {np.percentile(r, 90):.3f} max {r.max():.3f} mean r^2 {np.mean(r**2):.4f}')
    print(f'{path} W{bits}: {len(rows)} depthwise convs, {allr.size} channels: median {np.median(allr):.3f}, p90 {np.percentile(allr, 90):.3f}, '
          f'share r>0.5 {np.mean(allr > 0.5):.3f}, mean r^2 {np.mean(allr**2):.4f}, max {allr.max():.2f}')

if __name__ == '__main__':
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 4)
