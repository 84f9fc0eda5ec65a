src=open('docs/benchmarks/mobilenet-imagenet/probe/mb.py').read(); exec(src[:src.index("print('fp32'")])
cal=X[torch.randperm(1000,generator=torch.Generator().manual_seed(0))[:64]]
def run(wb, ab, correct):
    for i,L in enumerate(layers):
        L['wq']=L['w'] if i in (0,len(layers)-1) or wb is None else qsearch(L['w'],wb,per_channel=True); L['bq']=L['b']
    # sequential: float path and quantized path side by side on the calibration images
    xf=cal; xq=cal; scales={}
    with torch.no_grad():
        for i,L in enumerate(layers):
            p=L['p']
            if ab and i>=1:
                bits=8 if i in (1,len(layers)-1) else ab
                scales[i]=qsearch(xf,bits); s,lo,n=scales[i]; xq=torch.clamp(torch.round(xq/s),lo,n)*s
            yf=F.conv2d(F.pad(xf,(p[1],p[3],p[0],p[2])),L['w'],L['b'],L['s'],0,1,L['g'])
            yq=F.conv2d(F.pad(xq,(p[1],p[3],p[0],p[2])),L['wq'],L['b'],L['s'],0,1,L['g'])
            if correct:
                shift=(yq-yf).mean((0,2,3)); L['bq']=L['b']-shift; yq=yq-shift[None,:,None,None]
            if L['clip']: yf=yf.clamp(0,6); yq=yq.clamp(0,6)
            if L.get('gap_after'): yf=yf.mean((2,3),keepdim=True); yq=yq.mean((2,3),keepdim=True)
            xf,xq=yf,yq
    for L in layers: L['b'],L['bf']=L['bq'],L['b']
    a=acc(wq=True,aq=ab,scales=scales) if ab else acc(wq=True)
    for L in layers: L['b']=L['bf']
    return a
for wb,ab in [(4,None),(4,4),(None,4),(6,None)]:
    print(f"W{wb or 'float'} A{ab or 'float'} RTN: {run(wb,ab,False):.1f}   + sequential bias correction (64 real images): {run(wb,ab,True):.1f}", flush=True)
