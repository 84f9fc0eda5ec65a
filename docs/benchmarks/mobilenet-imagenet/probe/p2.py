src=open('docs/benchmarks/mobilenet-imagenet/probe/mb.py').read(); exec(src[:src.index("print('fp32'")])
import time
for i,L in enumerate(layers):
    if i in (0,len(layers)-1): continue
    for J in layers: J['wq']=J['w']
    L['wq']=qsearch(L['w'],4,per_channel=True)
    w=L['w'].flatten(1); r=(w.abs().amax(1)/w.pow(2).mean(1).sqrt()); err=((L['wq']-L['w']).pow(2).sum()/L['w'].pow(2).sum()).item()
    print(f"{L['name']:12s} W4 alone: top-1 {acc(wq=True):5.1f}  rel. weight error {err:.4f}  max/rms per channel median {r.median():.1f} max {r.max():.1f}", flush=True)
