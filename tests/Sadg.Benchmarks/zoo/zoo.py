# Architectures of the kinds real exports have (MobileNetV3, EfficientNet, DenseNet, ShuffleNet (also with its input
# normalization in the graph), Inception, pre-activation ResNet, ConvNeXt, SqueezeNet, an encoder-decoder with
# ConvTranspose, bilinear/bicubic interpolation and GroupNorm, a ResNeXt-style network with dilation, ELU and a softmax output), small, trained two epochs on Fashion-MNIST (pixels x/255, random horizontal flips), each
# exported to ONNX by PyTorch's TorchScript exporter at the opset and options named in MODELS: NAME.onnx as exported by
# default (every BatchNorm fused into the Conv before it, or kept where nothing precedes it to fuse into) and, for a
# network with BatchNorm, NAME-bn.onnx with training=TrainingMode.PRESERVE (BatchNormalization kept). Used by
# docs/benchmarks/zoo.md.
#
#   python3 tests/Sadg.Benchmarks/zoo/zoo.py OUT_FOLDER [NAME ...]     (Debian: apt install python3-torch; 1 thread)
import gzip, os, sys, numpy as np, torch, torch.nn as nn, torch.nn.functional as F
torch.set_num_threads(1); torch.manual_seed(0)
D='/usr/share/datasets/fashion-mnist/'
def idx(f, off): return np.frombuffer(gzip.open(D+f).read(), np.uint8, offset=off)
X = torch.tensor(idx('train-images-idx3-ubyte.gz',16).reshape(-1,1,28,28).astype(np.float32)/255)
Y = torch.tensor(idx('train-labels-idx1-ubyte.gz',8).astype(np.int64))
Xt = torch.tensor(idx('t10k-images-idx3-ubyte.gz',16).reshape(-1,1,28,28).astype(np.float32)/255)
Yt = torch.tensor(idx('t10k-labels-idx1-ubyte.gz',8).astype(np.int64))
def cbr(i,o,k=3,s=1,g=1,act=nn.ReLU): return nn.Sequential(nn.Conv2d(i,o,k,s,k//2,groups=g,bias=False), nn.BatchNorm2d(o), act())
class SE(nn.Module):
    def __init__(s,c,r=4,act=nn.ReLU,gate=nn.Hardsigmoid): super().__init__(); s.f=nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c,c//r,1), act(), nn.Conv2d(c//r,c,1), gate())
    def forward(s,x): return x*s.f(x)
class IR(nn.Module):  # inverted residual, MobileNetV3 / EfficientNet style
    def __init__(s,i,o,e,st,act,se,gate=nn.Hardsigmoid):
        super().__init__(); h=i*e
        s.b=nn.Sequential(cbr(i,h,1,act=act), cbr(h,h,3,st,g=h,act=act), *( [SE(h,act=nn.ReLU if act!=nn.SiLU else nn.SiLU,gate=gate)] if se else []), nn.Conv2d(h,o,1,bias=False), nn.BatchNorm2d(o))
        s.res = st==1 and i==o
    def forward(s,x): y=s.b(x); return x+y if s.res else y
class MBV3(nn.Module):
    def __init__(s):
        super().__init__(); s.f=nn.Sequential(cbr(1,16,3,2,act=nn.Hardswish), IR(16,16,2,1,nn.ReLU,True), IR(16,24,3,2,nn.ReLU,False), IR(24,24,3,1,nn.Hardswish,True), IR(24,40,4,2,nn.Hardswish,True), cbr(40,96,1,act=nn.Hardswish))
        s.c=nn.Sequential(nn.Linear(96,128), nn.Hardswish(), nn.Dropout(0.2), nn.Linear(128,10))
    def forward(s,x): return s.c(torch.flatten(F.adaptive_avg_pool2d(s.f(x),1),1))
class Eff(nn.Module):  # SiLU + SE with sigmoid gate, 1x1-conv head
    def __init__(s):
        super().__init__(); s.f=nn.Sequential(cbr(1,16,3,1,act=nn.SiLU), IR(16,16,1,1,nn.SiLU,True,nn.Sigmoid), IR(16,24,4,2,nn.SiLU,True,nn.Sigmoid), IR(24,24,4,1,nn.SiLU,True,nn.Sigmoid), IR(24,40,4,2,nn.SiLU,True,nn.Sigmoid), cbr(40,128,1,act=nn.SiLU), nn.AdaptiveAvgPool2d(1), nn.Dropout(0.2), nn.Conv2d(128,10,1))
    def forward(s,x): return s.f(x).flatten(1)
class Dense(nn.Module):  # pre-activation BN-ReLU-Conv with concatenation (DenseNet)
    def __init__(s,g=12):
        super().__init__(); s.stem=nn.Conv2d(1,24,3,1,1,bias=False); c=24; s.blocks=nn.ModuleList(); s.trans=nn.ModuleList()
        for b in range(3):
            layers=nn.ModuleList()
            for l in range(3): layers.append(nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c,g,3,1,1,bias=False))); c+=g
            s.blocks.append(layers)
            if b<2: s.trans.append(nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c,c//2,1,bias=False), nn.AvgPool2d(2))); c//=2
        s.bn=nn.BatchNorm2d(c); s.fc=nn.Linear(c,10)
    def forward(s,x):
        x=s.stem(x)
        for i,b in enumerate(s.blocks):
            for l in b: x=torch.cat([x,l(x)],1)
            if i<2: x=s.trans[i](x)
        return s.fc(F.relu(s.bn(x)).mean((2,3)))
def shuffle(x,g):
    n,c,h,w=x.shape; return x.view(n,g,c//g,h,w).transpose(1,2).reshape(n,c,h,w)
class SB(nn.Module):
    def __init__(s,c,st):
        super().__init__(); s.st=st; h=c//2
        if st==1: s.r=nn.Sequential(cbr(h,h,1), nn.Conv2d(h,h,3,1,1,groups=h,bias=False), nn.BatchNorm2d(h), cbr(h,h,1))
        else:
            s.l=nn.Sequential(nn.Conv2d(c,c,3,2,1,groups=c,bias=False), nn.BatchNorm2d(c), cbr(c,c,1))
            s.r=nn.Sequential(cbr(c,c,1), nn.Conv2d(c,c,3,2,1,groups=c,bias=False), nn.BatchNorm2d(c), cbr(c,c,1))
    def forward(s,x):
        if s.st==1: a,b=x.chunk(2,1); return shuffle(torch.cat([a,s.r(b)],1),2)
        return shuffle(torch.cat([s.l(x),s.r(x)],1),2)
class Shuffle(nn.Module):
    def __init__(s):
        super().__init__(); s.f=nn.Sequential(cbr(1,24,3,1), nn.MaxPool2d(3,2,1), SB(24,2), SB(48,1), SB(48,2), SB(96,1), cbr(96,128,1)); s.fc=nn.Linear(128,10)
    def forward(s,x): return s.fc(s.f(x).mean((2,3)))
class ShuffleNorm(Shuffle):  # the ShuffleNet-style network with its input normalization in the graph ((x - mean) / std, Fashion-MNIST's)
    def forward(s,x): return super().forward((x-0.2860)/0.3530)
class Incep(nn.Module):  # multi-branch with max-pool branch, BN with conv bias, flatten + two Gemm with dropout
    def __init__(s):
        super().__init__(); s.stem=nn.Sequential(nn.Conv2d(1,32,3,1,1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2))
        s.b1=cbr(32,16,1); s.b2=nn.Sequential(cbr(32,16,1), cbr(16,24,3)); s.b3=nn.Sequential(cbr(32,8,1), cbr(8,12,5)); s.b4=nn.Sequential(nn.MaxPool2d(3,1,1), cbr(32,12,1))
        s.post=nn.Sequential(cbr(64,64,3,2), nn.AvgPool2d(2))
        s.c=nn.Sequential(nn.Flatten(), nn.Linear(64*3*3,128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128,10))
    def forward(s,x):
        x=s.stem(x); x=torch.cat([s.b1(x),s.b2(x),s.b3(x),s.b4(x)],1); return s.c(s.post(x))
class PreRes(nn.Module):  # ResNet v2 with the normalization in the graph (Sub/Div), ReLU6 clip
    def __init__(s):
        super().__init__(); s.stem=nn.Conv2d(1,32,3,1,1,bias=False)
        def blk(i,o,st): return nn.ModuleDict(dict(a=nn.Sequential(nn.BatchNorm2d(i), nn.ReLU6()), c=nn.Sequential(nn.Conv2d(i,o,3,st,1,bias=False), nn.BatchNorm2d(o), nn.ReLU6(), nn.Conv2d(o,o,3,1,1,bias=False)), sc=nn.Conv2d(i,o,1,st,bias=False) if st!=1 or i!=o else nn.Identity()))
        s.blocks=nn.ModuleList([blk(32,32,1), blk(32,64,2), blk(64,64,1), blk(64,128,2)]); s.bn=nn.BatchNorm2d(128); s.fc=nn.Linear(128,10)
    def forward(s,x):
        x=(x-0.2860)/0.3530; x=s.stem(x)
        for b in s.blocks: a=b['a'](x); x=b['c'](a)+b['sc'](a if not isinstance(b['sc'],nn.Identity) else x)
        return s.fc(F.adaptive_avg_pool2d(F.relu6(s.bn(x)),1).flatten(1))
class LN2d(nn.Module):  # LayerNorm over channels, written as ConvNeXt writes it: to channels-last, LayerNorm, back
    def __init__(s,c): super().__init__(); s.n=nn.LayerNorm(c, eps=1e-6)
    def forward(s,x): return s.n(x.permute(0,2,3,1)).permute(0,3,1,2)
class CNB(nn.Module):  # ConvNeXt block: depthwise 7x7, LayerNorm, Linear-GELU-Linear (channels-last), layer scale, residual
    def __init__(s,c):
        super().__init__(); s.dw=nn.Conv2d(c,c,7,1,3,groups=c); s.n=nn.LayerNorm(c, eps=1e-6); s.p1=nn.Linear(c,4*c); s.p2=nn.Linear(4*c,c); s.g=nn.Parameter(torch.full((c,),0.1))
    def forward(s,x):
        y=s.n(s.dw(x).permute(0,2,3,1)); y=s.p2(F.gelu(s.p1(y)))*s.g; return x+y.permute(0,3,1,2)
class ConvNeXt(nn.Module):  # no BatchNorm anywhere; patchify stem, LayerNorm before each downsampling and the head
    def __init__(s):
        super().__init__(); s.f=nn.Sequential(nn.Conv2d(1,32,2,2), LN2d(32), CNB(32), LN2d(32), nn.Conv2d(32,64,2,2), CNB(64), CNB(64))
        s.n=nn.LayerNorm(64, eps=1e-6); s.fc=nn.Linear(64,10)
    def forward(s,x): return s.fc(s.n(s.f(x).mean((2,3))))
class Fire(nn.Module):
    def __init__(s,i,q,e): super().__init__(); s.s=nn.Conv2d(i,q,1); s.a=nn.Conv2d(q,e,1); s.b=nn.Conv2d(q,e,3,1,1); s.r=nn.PReLU(q)
    def forward(s,x): x=s.r(s.s(x)); return torch.cat([F.relu(s.a(x)),F.relu(s.b(x))],1)
class Squeeze(nn.Module):  # SqueezeNet-style: no BatchNorm, PReLU, ceil-mode max-pools, fire modules, dropout + 1x1-conv classifier
    def __init__(s):
        super().__init__(); s.f=nn.Sequential(nn.Conv2d(1,32,3,1,1), nn.LeakyReLU(0.1), nn.MaxPool2d(3,2,ceil_mode=True), Fire(32,8,24), Fire(48,12,32), nn.MaxPool2d(3,2,ceil_mode=True), Fire(64,16,48))
        s.c=nn.Sequential(nn.Dropout(0.5), nn.Conv2d(96,10,1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
    def forward(s,x): return torch.flatten(s.c(s.f(x)),1)
class FPN(nn.Module):  # encoder-decoder classifier: ConvTranspose, bilinear and bicubic interpolate, GroupNorm
    def __init__(s):
        super().__init__(); s.s1=cbr(1,16,3,2); s.s2=cbr(16,32,3,2)
        s.up=nn.Sequential(nn.ConvTranspose2d(32,16,2,2,bias=False), nn.BatchNorm2d(16), nn.ReLU()); s.lat=nn.Conv2d(16,16,1)
        s.gn=nn.Sequential(nn.Conv2d(16,24,3,1,1), nn.GroupNorm(4,24), nn.ReLU()); s.head=cbr(24,48,3,2); s.fc=nn.Linear(48+32,10)
    def forward(s,x):
        a=s.s1(x); b=s.s2(a); m=s.up(b)+s.lat(a)
        y=s.gn(F.interpolate(m, scale_factor=2, mode='bilinear', align_corners=False))
        z=F.interpolate(b, size=(14,14), mode='bicubic', align_corners=True)
        return s.fc(torch.cat([s.head(y).mean((2,3)), z.mean((2,3))],1))
class XNet(nn.Module):  # ResNeXt bottleneck (grouped 3x3), dilated conv + ELU, padded average pool, flatten of a 4x4 map into two Gemm, softmax output
    def __init__(s):
        super().__init__(); s.stem=cbr(1,32,3)
        s.b=nn.Sequential(cbr(32,32,1), cbr(32,32,3,g=4), nn.Conv2d(32,64,1,bias=False), nn.BatchNorm2d(64)); s.sc=nn.Sequential(nn.Conv2d(32,64,1,bias=False), nn.BatchNorm2d(64))
        s.d=nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(64,64,3,1,2,dilation=2,bias=False), nn.BatchNorm2d(64), nn.ELU(), nn.AvgPool2d(3,2,1), cbr(64,96,3,2))
        s.c=nn.Sequential(nn.Flatten(), nn.Linear(96*4*4,128), nn.ReLU(), nn.Dropout(0.3), nn.Linear(128,10))
    def forward(s,x):
        x=s.stem(x); z=s.c(s.d(F.relu(s.b(x)+s.sc(x))))
        return z if s.training else F.softmax(z,1)  # trained on logits, exported with probabilities as its output
NBATCH=dict(dynamic_axes={'input':{0:'N'},'logits':{0:'N'}})  # a dynamic batch named N
MODELS=dict(mbv3=(MBV3,13,{}), eff=(Eff,11,{}), dense=(Dense,17,{}), shuffle=(Shuffle,13,NBATCH), shufnorm=(ShuffleNorm,13,NBATCH), incep=(Incep,9,dict(do_constant_folding=False)), preres=(PreRes,12,dict(dynamic_axes={'input':{0:'batch'}})),
    convnext=(ConvNeXt,17,dict(dynamic_axes={'input':{0:'n'}})), squeeze=(Squeeze,9,dict(keep_initializers_as_inputs=True)), fpn=(FPN,13,{}), xnet=(XNet,17,NBATCH))
out=sys.argv[1]; os.makedirs(out, exist_ok=True)
for name in sys.argv[2:] or list(MODELS):
    cls,opset,kw=MODELS[name]; torch.manual_seed(0); m=cls(); opt=torch.optim.Adam(m.parameters(),2e-3)
    for ep in range(2):
        m.train(); perm=torch.randperm(60000)
        for i in range(0,60000,128):
            j=perm[i:i+128]; x=X[j]; x=torch.where(torch.rand(len(j),1,1,1)<0.5, x, x.flip(3))
            loss=F.cross_entropy(m(x),Y[j]); opt.zero_grad(); loss.backward(); opt.step()
    m.eval()
    with torch.no_grad(): acc=(torch.cat([m(Xt[i:i+1000]).argmax(1) for i in range(0,10000,1000)])==Yt).float().mean().item()
    torch.onnx.export(m, torch.zeros(1,1,28,28), f'{out}/{name}.onnx', opset_version=opset, input_names=['input'], output_names=['logits'], **kw)
    if not any(isinstance(x, nn.BatchNorm2d) for x in m.modules()): print(name, 'opset', opset, 'torch top-1', round(acc*100,2), '(no BatchNorm: one export)', flush=True); continue
    torch.onnx.export(m, torch.zeros(1,1,28,28), f'{out}/{name}-bn.onnx', opset_version=opset, input_names=['input'], output_names=['logits'], training=torch.onnx.TrainingMode.PRESERVE, **kw)
    print(name, 'opset', opset, 'torch top-1', round(acc*100,2), flush=True)
