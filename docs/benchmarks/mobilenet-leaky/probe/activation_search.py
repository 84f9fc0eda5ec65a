# The 4- and 3-bit activation range search on the PyTorch MobileNetV1 x0.25 (LeakyReLU) of ../../mobilenet-leaky.md:
# Sadg's one-dimensional search (clip ratio r, zero point z = round(-min / s) fixed by the data's minimum) against the
# two-dimensional one of QDrop's MSEObserver.perform_2D_search (range length and zero point searched together), both
# minimizing mean |x - Q(x)|^2.4, on every LeakyReLU output that feeds a 4-bit input (all but the first), computed on
# 50 real ImageNet images (every 20th of sample-1000; a random 200,000 elements of each tensor).
#
#   python3 -u docs/benchmarks/mobilenet-leaky/probe/activation_search.py mobilenetV1X0.25_pretrain.tar ../shared/bench/imagenet/sample-1000
import glob, os, sys, numpy as np, torch
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '../../../../tests/Sadg.Benchmarks/zoo'))
import retinaface_backbone_to_onnx as export
m = export.load(sys.argv[1])

mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1); std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
def load(f):
    im = Image.open(f).convert('RGB'); w, h = im.size; s = 256 / min(w, h)
    im = im.resize((round(w * s), round(h * s)), Image.BILINEAR); w, h = im.size
    l, t = (w - 224) // 2, (h - 224) // 2; im = im.crop((l, t, l + 224, t + 224))
    return (torch.tensor(np.asarray(im), dtype=torch.float32).permute(2, 0, 1) / 255 - mean) / std
x = torch.stack([load(f) for f in sorted(glob.glob(os.path.join(sys.argv[2], '*', '*.JPEG')))[::20]])

acts = [(n, mod) for n, mod in m.named_modules() if isinstance(mod, torch.nn.LeakyReLU)]
out = {}
for n, mod in acts: mod.register_forward_hook(lambda mod, i, o, n=n: out.__setitem__(n, o.detach().clone()))
with torch.no_grad(): m(x)

P = 2.4
def err(v, s, lo, hi): return (v - (v / s).round().clamp(lo, hi) * s).abs().pow(P).mean().item()
for bits in (4, 3):
    L = 2 ** bits - 1
    total1 = total2 = 0
    for n, _ in acts[1:]:
        v = out[n].flatten()
        if v.numel() > 200_000: v = v[torch.randperm(v.numel(), generator=torch.Generator().manual_seed(0))[:200_000]]
        mn, mx = v.min().item(), v.max().item(); rng = mx - mn
        z0 = min(max(round(-mn * L / rng), 0), L)
        one = min((err(v, r / 100 * rng / L, -z0, L - z0), r / 100, z0) for r in range(1, 101))
        two = min((err(v, i / 100 * rng / L, -zp, L - zp), i / 100, zp) for i in range(1, 101) for zp in range(0, L + 1))
        total1 += one[0]; total2 += two[0]
        print(f"A{bits} {n:11s} 1D {one[0]:.3e} (r {one[1]:.2f}, z {one[2]}) | 2D {two[0]:.3e} (r {two[1]:.2f}, z {two[2]})  ratio {two[0] / one[0]:.2f}")
    print(f"A{bits} sum of errors, 2D / 1D: {total2 / total1:.3f}")
