# Probe (not part of Sadg): where the 4-bit loss of the ImageNet MobileNet v1 0.25 is, in PyTorch 1.13 (Debian
# python3-torch, python3-onnx, python3-pil), float32, 1 thread. BN folded into the convs; weights per output channel,
# asymmetric, clip ratio searched (1.00 … 0.21) for the least mean |w − Q(w)|^2.4, round to nearest; activations per
# tensor, the input of every conv but the first (8-bit for the second and the last, as Sadg's bit policy), scale
# searched on 64 of the images the same way. Images: the 1,000 of ../shared/bench/imagenet/sample-1000, shorter side
# to 256 (PIL bilinear), centre 224², x/127.5 − 1. Run from the repository root:
#   /usr/bin/python3 docs/benchmarks/mobilenet-imagenet/probe/mb.py   (then p2.py, p3.py, p4.py; outputs *.out.txt)
import os, sys, numpy as np, torch, torch.nn.functional as F, onnx
from onnx import numpy_helper, helper
from PIL import Image
torch.set_num_threads(1)
M='/work/shared/bench/imagenet/mobilenet_v1_0.25_224.onnx'; D='/work/shared/bench/imagenet/sample-1000'
m=onnx.load(M); W={i.name: torch.tensor(numpy_helper.to_array(i).copy()) for i in m.graph.initializer}
# fold BN into the conv before it
layers=[]
nodes=list(m.graph.node)
for i,n in enumerate(nodes):
    a={x.name: helper.get_attribute_value(x) for x in n.attribute}
    if n.op_type=='Conv':
        w=W[n.input[1]]; b=W[n.input[2]] if len(n.input)>2 else torch.zeros(w.shape[0],dtype=torch.float32)
        layers.append(dict(name=n.name,w=w,b=b,s=a['strides'],p=a['pads'],g=a['group'],clip=None))
    elif n.op_type=='BatchNormalization':
        L=layers[-1]; sc=W[n.input[1]]; bi=W[n.input[2]]; mu=W[n.input[3]]; var=W[n.input[4]]
        f=sc/torch.sqrt(var+a['epsilon']); L['w']=L['w']*f[:,None,None,None]; L['b']=(L['b']-mu)*f+bi
    elif n.op_type=='Clip': layers[-1]['clip']=6.0
    elif n.op_type=='GlobalAveragePool': layers[-1]['gap_after']=True
names=sorted(os.listdir(D))
if os.path.exists('/tmp/mbi-images.pt'): X,Y=torch.load('/tmp/mbi-images.pt')
else:
    xs=[];ys=[]
    for c,wn in enumerate(names):
        for f in sorted(os.listdir(os.path.join(D,wn))):
            im=Image.open(os.path.join(D,wn,f)).convert('RGB'); w,h=im.size; s=256/min(w,h)
            im=im.resize((int(w*s),int(h*s)),Image.BILINEAR); w,h=im.size; l=round((w-224)/2); t=round((h-224)/2)
            im=im.crop((l,t,l+224,t+224)); xs.append(torch.tensor(np.asarray(im,dtype=np.float32)).permute(2,0,1)/127.5-1); ys.append(c)
    X=torch.stack(xs); Y=torch.tensor(ys); torch.save((X,Y),'/tmp/mbi-images.pt')
def qsearch(x, bits, signed_ok=True, per_channel=False, p=2.4):
    # asymmetric per-channel for weights, symmetric unsigned/signed per-tensor for activations
    best=None
    if per_channel:
        xf=x.flatten(1); lo=xf.min(1).values.clamp(max=0); hi=xf.max(1).values.clamp(min=0); n=2**bits-1
        bestq=None; beste=torch.full((xf.shape[0],),float('inf'),dtype=x.dtype)
        for r in np.arange(1.0,0.2,-0.01):
            l=lo*r; h=hi*r; s=((h-l)/n).clamp(min=1e-12); z=torch.round(-l/s)
            q=(torch.clamp(torch.round(xf/s[:,None])+z[:,None],0,n)-z[:,None])*s[:,None]
            e=(q-xf).abs().pow(p).mean(1); better=e<beste; beste=torch.where(better,e,beste)
            bestq=q if bestq is None else torch.where(better[:,None],q,bestq)
        return bestq.view_as(x)
    neg=bool((x<0).any()); mx=x.abs().max(); n=2**(bits-1)-1 if neg else 2**bits-1; lo=-n-1 if neg else 0
    best=None; beste=float('inf')
    for r in np.arange(1.0,0.01,-0.01):
        s=mx*r/n; q=torch.clamp(torch.round(x/s),lo,n)*s; e=(q-x).abs().pow(p).mean().item()
        if e<beste: beste=e; best=s.item()
    return best, lo, n
def forward(x, wq=None, aq=None, scales=None, collect=None):
    for i,L in enumerate(layers):
        if aq and i>=1:
            bits=8 if i in (1,len(layers)-1) else aq
            if collect is not None: collect.append((i,bits,x))
            else:
                s,lo,n=scales[i]; x=torch.clamp(torch.round(x/s),lo,n)*s
        w=L['w'] if not wq else L.get('wq',L['w'])
        p=L['p']; x=F.pad(x,(p[1],p[3],p[0],p[2])); x=F.conv2d(x,w,L['b'],L['s'],0,1,L['g'])
        if L['clip']: x=x.clamp(0,6)
        if L.get('gap_after'): x=x.mean((2,3),keepdim=True)
    return x.flatten(1)
def acc(**k):
    with torch.no_grad():
        return sum((forward(X[i:i+100],**k).argmax(1)==Y[i:i+100]).sum().item() for i in range(0,1000,100))/10
print('fp32', acc())
for wb in [4,6]:
    for i,L in enumerate(layers):
        L['wq']=L['w'] if i in (0,len(layers)-1) else qsearch(L['w'],wb,per_channel=True)
    print(f'W{wb} A-float', acc(wq=True))
cal=X[torch.randperm(1000,generator=torch.Generator().manual_seed(0))[:64]]
for ab in [4,6,8]:
    col=[]
    with torch.no_grad(): forward(cal,aq=ab,collect=col)
    scales={i:qsearch(x,b) for i,b,x in col}
    print(f'Wfloat A{ab}', acc(aq=ab,scales=scales))
    if ab==4:
        for i,b,x in col[:6]+col[-4:]:
            c=x.transpose(0,1).flatten(1).amax(1); print('  layer',i,layers[i]['name'],'input channel max: median %.3f max %.3f, frac<0.1*max %.2f, scale %.3f'%(c.median(),c.max(),(c<0.1*c.max()).float().mean(),scales[i][0]))
