#!/usr/bin/env python3
"""PyTorch-eager anchor for a SADAG refinement step on an ImageNet-size model, a lower bound in the form of
../shared/anchors/resnet20_steps.py's sadag_step (Q0 is a float copy of the model, so no fake quantization is timed):
Keras-style MobileNetV1 alpha=0.25 at 3x224x224 with BN, a Genie-D generator of widths C0 -> C1, batch B. One step:
the generator's images through the model and Q0, the BN-statistics loss, the gradient-matching term at the neighbour
z - d (d the normalized gradient of the alignment with respect to z, as Sadg's default neighbour), the diversity term
on the batch's similarity matrix, backward, and one Adam step each for z and the generator.
Usage: mobilenet_v1_224_sadag_step.py [batch] [C0] [C1] (2 threads, Debian's python3-torch). Prints median ms per step."""
import copy, sys
import torch, torch.nn as nn, torch.nn.functional as F
from timing import median_ms
torch.set_num_threads(2); torch.manual_seed(0)
B = int(sys.argv[1]) if len(sys.argv) > 1 else 32
C0 = int(sys.argv[2]) if len(sys.argv) > 2 else 32
C1 = int(sys.argv[3]) if len(sys.argv) > 3 else C0 // 2

def conv_bn_relu6(cin, cout, k, stride, groups=1):
    return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU6()]

class MobileNetV1(nn.Module):
    def __init__(self, alpha=0.25):
        super().__init__()
        width = lambda n: int(n * alpha)
        layers, cin = conv_bn_relu6(3, width(32), 3, 2), width(32)
        for cout, stride in [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]:
            layers += conv_bn_relu6(cin, cin, 3, stride, groups=cin) + conv_bn_relu6(cin, width(cout), 1, 1)
            cin = width(cout)
        self.features, self.fc = nn.Sequential(*layers), nn.Linear(cin, 1000)
    def forward(self, x): return self.fc(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))

class Generator(nn.Module):
    def __init__(self, size=224, channels=3, latent=256):
        super().__init__(); self.start = size // 4
        self.linear = nn.Linear(latent, C0 * self.start * self.start)
        self.net = nn.Sequential(nn.BatchNorm2d(C0), nn.Upsample(scale_factor=2), nn.Conv2d(C0, C1, 3, 1, 1),
                                 nn.BatchNorm2d(C1), nn.LeakyReLU(0.2), nn.Upsample(scale_factor=2),
                                 nn.Conv2d(C1, channels, 3, 1, 1), nn.Tanh(), nn.BatchNorm2d(channels, affine=False))
    def forward(self, z): return self.net(self.linear(z).view(z.shape[0], C0, self.start, self.start))

model = MobileNetV1().eval(); [p.requires_grad_(False) for p in model.parameters()]
q0 = copy.deepcopy(model)
stats, features = [], {}
for m in model.modules():
    if isinstance(m, nn.BatchNorm2d): m.register_forward_hook(lambda mod, inp, out: stats.append((mod, inp[0])))
q0.fc.register_forward_hook(lambda mod, inp, out: features.__setitem__("a", inp[0]))

def bn_loss():
    loss = 0
    for mod, x in stats:
        sd, mu = torch.std_mean(x, [0, 2, 3])
        loss = loss + ((mu - mod.running_mean) ** 2).sum() / mu.numel() + ((sd - (mod.running_var + 1e-5).sqrt()) ** 2).sum() / sd.numel()
    stats.clear(); return loss

g = Generator(); z = torch.randn(B, 256, requires_grad=True)
opt_z = torch.optim.Adam([z], lr=0.1); opt_g = torch.optim.Adam(g.parameters(), lr=0.01)

def sadag_step():
    opt_z.zero_grad(); opt_g.zero_grad()
    x = g(z); f = model(x); q = q0(x); a = F.normalize(features["a"]); e = F.normalize(f - q); lb = bn_loss()
    s = ((a * a.detach()).sum(1) * (e * e.detach()).sum(1)).mean()
    d = F.normalize(torch.autograd.grad(s, z, retain_graph=True)[0])
    x2 = g(z - d); f2 = model(x2); q2 = q0(x2); stats.clear()
    a2 = F.normalize(features["a"]); e2 = F.normalize(f2 - q2)
    l_gm = 1 - ((a2 * a).sum(1) * (e2 * e).sum(1)).mean()
    sim = (a @ a.detach().T) * (e @ e.detach().T); sim = sim - torch.diag(torch.diag(sim))
    (lb + l_gm + sim.abs().max(1)[0].mean()).backward(); opt_z.step(); opt_g.step()


print(f"torch {torch.__version__} threads {torch.get_num_threads()} batch {B} generator {C0}->{C1}")
print(f"mbv1_sadag_step_ms {median_ms(sadag_step):.1f}")
