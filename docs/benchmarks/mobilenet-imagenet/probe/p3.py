src=open('docs/benchmarks/mobilenet-imagenet/probe/mb.py').read(); exec(src[:src.index("print('fp32'")])
# conv_dw_2 alone at W4: per-channel output shift vs std, and empirical bias correction on 64 images
cal=X[torch.randperm(1000,generator=torch.Generator().manual_seed(0))[:64]]
def inputs_of(k, x):
    with torch.no_grad():
        for i,L in enumerate(layers[:k]):
            p=L['p']; x=F.pad(x,(p[1],p[3],p[0],p[2])); x=F.conv2d(x,L['w'],L['b'],L['s'],0,1,L['g'])
            if L['clip']: x=x.clamp(0,6)
    return x
for name in ['conv_dw_2','conv_pw_2','conv_dw_4','conv_pw_5']:
    k=[L['name'] for L in layers].index(name); L=layers[k]
    for J in layers: J['wq']=J['w']
    L['wq']=qsearch(L['w'],4,per_channel=True)
    x=inputs_of(k,cal); p=L['p']; xp=F.pad(x,(p[1],p[3],p[0],p[2]))
    y=F.conv2d(xp,L['w'],L['b'],L['s'],0,1,L['g']); yq=F.conv2d(xp,L['wq'],L['b'],L['s'],0,1,L['g'])
    d=(yq-y).transpose(0,1).flatten(1); sd=y.transpose(0,1).flatten(1).std(1)
    shift=d.mean(1); ratio=(shift.abs()/sd)
    a0=acc(wq=True)
    b0=L['b']; L['b']=b0-shift; a1=acc(wq=True); L['b']=b0
    print(f"{name}: W4 alone {a0:.1f}, bias-corrected {a1:.1f}; |shift|/std per channel: median {ratio.median():.3f} max {ratio.max():.2f}; noise(std of error)/std median {(d.std(1)/sd).median():.3f} max {(d.std(1)/sd).max():.2f}", flush=True)
