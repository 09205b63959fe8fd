"""The clustering stages one by one at a given size: wall and CPU seconds and resident memory
(now and peak, from /proc/self/status) after each, so a run too long to finish on this machine
still says how far it got and where the memory went. Same synthetic fingerprints and the same
stage calls as `camleak.cluster.cluster_labels` (benchmarks/cluster.py).

    nice -n 10 python benchmarks/cluster_stages.py 10000000
"""
import sys, time, os, resource
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np
from cluster import camera_like
from camleak import cluster as C
from camleak.cluster import DEFAULT_CLUSTER_PARAMS as P

def mem():
    d = {}
    for line in open('/proc/self/status'):
        k, _, v = line.partition(':')
        if k in ('VmRSS', 'VmHWM'): d[k] = int(v.split()[0]) / 2**20
    return f"rss {d['VmRSS']:.2f} GB, peak {d['VmHWM']:.2f} GB"

T0 = time.perf_counter(); C0 = time.process_time()
def log(what):
    print(f"{time.perf_counter()-T0:8.1f}s wall {time.process_time()-C0:8.1f}s cpu  {what}: {mem()}", flush=True)

n = int(sys.argv[1])
ph, dh, truth = camera_like(n, 1 + n)
del truth
log(f"generated {n}")
params = P
rows, cols = C.core_pairs(ph, dh, params)
log(f"core pairs {len(rows)} ({rows.dtype})")
cores = C.components(n, [(rows, cols)])
log(f"cores {cores.max()+1}")
reps = C.exemplars(cores, ph, params)
log(f"exemplars {len(reps)}")
lp = C.link_pairs(ph[reps], dh[reps], params)
joins = [(reps[r], reps[c]) for r, c in lp]
log(f"joins {sum(len(j[0]) for j in joins)}")
core = (rows, cols)
labels = C.components(n, [core, *joins])
log("components")
detached = C.conflicted(labels, cores, reps, ph, dh, params)
log(f"conflicted {len(detached)}")
if len(detached):
    gone = np.zeros(n, dtype=bool); gone[detached] = True
    joins = [(r[~(gone[r] | gone[c])], c[~(gone[r] | gone[c])]) for r, c in joins]
    labels = C.components(n, [core, *joins])
labels, attached = C.attach_singletons(labels, reps, ph, dh, params)
log(f"attached {int(attached.sum())}, clusters {len(np.unique(labels))}")
