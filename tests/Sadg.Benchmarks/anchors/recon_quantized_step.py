#!/usr/bin/env python3
"""PyTorch-eager anchor for Sadg's block-reconstruction step as Sadg runs it, not a float lower bound: the first
depthwise + pointwise block of MobileNetV1 alpha=0.25 at 8x112x112 (BN folded into the convolutions, ReLU6 as a clip),
batch 32 drawn from 64 stored images, written the way the Genie / QDrop reference code writes it in eager mode:
QDrop on the block input (each element float or quantized, p = 1/2), an LSQ activation quantizer with its own QDrop
mix before each convolution, AdaRound weights (floor(w / s0) + h(V), per-channel learned scale), the loss
sum over channels of the squared error averaged over batch and positions plus the rounding regularizer, and one
Adam each for the rounding variables, the weight scales and the activation scales.
Usage: recon_quantized_step.py [batch] (2 threads, Debian's python3-torch). Prints median ms per step."""
import sys
import torch, torch.nn.functional as F
from timing import median_ms
torch.set_num_threads(2); torch.manual_seed(0)
B = int(sys.argv[1]) if len(sys.argv) > 1 else 32
C, H, W, OUT, BITS, P = 8, 112, 112, 16, 4, 0.5
ZETA, GAMMA = 1.1, -0.1

def ste_round(x): return (x.round() - x).detach() + x

class ActQ(torch.nn.Module):  # LSQ per tensor, unsigned 4-bit, QDrop in training
    def __init__(s): super().__init__(); s.s = torch.nn.Parameter(torch.tensor([6.0 / 15]))
    def forward(s, x):
        q = torch.clamp(ste_round(x / s.s), 0, 2 ** BITS - 1) * s.s
        return torch.where(torch.rand_like(x) < P, x, q)

class AdaRoundW(torch.nn.Module):  # per output channel, signed 4-bit
    def __init__(s, w):
        super().__init__()
        s0 = w.abs().flatten(1).max(1)[0].clamp_min(1e-8) / (2 ** (BITS - 1) - 1)
        s.s = torch.nn.Parameter(s0.clone()); s.register_buffer("floor", torch.floor(w / s0.view(-1, 1, 1, 1)))
        frac = w / s0.view(-1, 1, 1, 1) - s.floor
        s.V = torch.nn.Parameter(-torch.log((ZETA - GAMMA) / (frac - GAMMA) - 1))
    def h(s): return torch.clamp(torch.sigmoid(s.V) * (ZETA - GAMMA) + GAMMA, 0, 1)
    def forward(s):
        lo, hi = -(2 ** (BITS - 1)), 2 ** (BITS - 1) - 1
        return s.s.view(-1, 1, 1, 1) * torch.clamp(s.floor + s.h(), lo, hi)
    def reg(s, beta): return (1 - (2 * s.h() - 1).abs().pow(beta)).sum()

wdw, bdw = torch.randn(C, 1, 3, 3) * 0.3, torch.randn(C) * 0.1
wpw, bpw = torch.randn(OUT, C, 1, 1) * 0.3, torch.randn(OUT) * 0.1
qdw, qpw, a1, a2 = AdaRoundW(wdw), AdaRoundW(wpw), ActQ(), ActQ()
def block(x):
    x = torch.clamp(F.conv2d(a1(x), qdw(), bdw, padding=1, groups=C), 0, 6)
    return torch.clamp(F.conv2d(a2(x), qpw(), bpw), 0, 6)

x_fp = torch.randn(2 * B, C, H, W).clamp(0, 6); x_q = x_fp + 0.05 * torch.randn_like(x_fp)
y_fp = torch.randn(2 * B, OUT, H, W).clamp(0, 6)
o_v = torch.optim.Adam([qdw.V, qpw.V], lr=1e-3)
o_w = torch.optim.Adam([qdw.s, qpw.s], lr=1e-4)
o_a = torch.optim.Adam([a1.s, a2.s], lr=4e-5)

def step():
    idx = torch.randint(0, x_fp.shape[0], (B,))
    fp, q, y = x_fp[idx], x_q[idx], y_fp[idx]
    x = torch.where(torch.rand_like(fp) < P, fp, q)
    loss = (block(x) - y).pow(2).sum(1).mean() + 0.01 * (qdw.reg(10.0) + qpw.reg(10.0))
    o_v.zero_grad(); o_w.zero_grad(); o_a.zero_grad()
    loss.backward()
    o_v.step(); o_w.step(); o_a.step()
    with torch.no_grad():
        for t in (qdw.s, qpw.s, a1.s, a2.s): t.clamp_(min=1e-8)


a1.train(); a2.train()
print(f"torch {torch.__version__} threads {torch.get_num_threads()} batch {B}")
print(f"mbv1_first_block_quantized_recon_step_ms {median_ms(step):.1f}")
