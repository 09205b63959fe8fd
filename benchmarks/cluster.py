"""Clustering time and memory for 10^4 .. 10^6 fingerprints, and exactness against brute force.

The rule is camleak's three stages (cores by multi-index hashing, corroborated joins between
core exemplars, conflicted lone frames detached, strays attached as leaves); the brute-force reference differs only in finding
the cores by comparing every pair. The fingerprints are synthetic but shaped like real cameras: many cameras with heavy-tailed
frame counts, one or two modes each (day and night, ~60 pHash bits apart), every frame a noisy
near-duplicate of its mode, plus a share of random frames that match nothing. On the smaller
sizes the same rule is also computed by brute force (every pair compared, no index) and the
partitions must be identical.

    python benchmarks/cluster.py --sizes 10000 100000 1000000 --exact-up-to 20000
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import tracemalloc

import numpy as np

from camleak.cluster import (DEFAULT_CLUSTER_PARAMS, ClusterParams, attach_singletons, cluster_labels, components, conflicted, distances,
                            exemplars, link_pairs)


def _flip(rng: np.random.Generator, modes: np.ndarray, rate: np.ndarray, bits: int) -> np.ndarray:
    """Each row of `modes` (packed uint64) with bits flipped independently at its row's rate."""
    out = np.empty_like(modes)
    for start in range(0, len(modes), 50_000):
        stop = min(len(modes), start + 50_000)
        mask = rng.random((stop - start, bits), dtype=np.float32) < rate[start:stop, None]
        out[start:stop] = modes[start:stop] ^ np.packbits(mask, axis=1).view(">u8").astype(np.uint64)
    return out


def camera_like(n: int, seed: int, mean_frames: float = 100.0, noise_share: float = 0.03) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pHash rows (n, 4), dHash rows (n, 1), true camera per row or -1 for noise)."""
    rng = np.random.default_rng(seed)
    real = n - int(n * noise_share)
    counts = np.maximum(1, rng.lognormal(np.log(mean_frames) - 0.5, 1.0, size=max(1, int(real / mean_frames * 1.2))).astype(int))
    counts = counts[: np.searchsorted(np.cumsum(counts), real) + 1]
    counts[-1] -= counts.sum() - real
    counts = counts[counts > 0]
    cameras = len(counts)
    camera = np.repeat(np.arange(cameras), counts)
    day_p = rng.integers(0, 2**64, size=(cameras, 4), dtype=np.uint64)
    day_d = rng.integers(0, 2**64, size=(cameras, 1), dtype=np.uint64)
    night_p = _flip(rng, day_p, np.full(cameras, 60 / 256), 256)
    night_d = _flip(rng, day_d, np.full(cameras, 14 / 64), 64)
    night = (rng.random(real) < 0.4) & (rng.random(cameras) < 0.6)[camera]
    mode_p = np.where(night[:, None], night_p[camera], day_p[camera])
    mode_d = np.where(night[:, None], night_d[camera], day_d[camera])
    rate = rng.uniform(0.0, 10 / 256, real).astype(np.float32)  # 0-10 bits from the mode: most pairs within 15
    ph = _flip(rng, mode_p, rate, 256)
    dh = _flip(rng, mode_d, rate * 2, 64)
    noise = n - real
    ph = np.vstack([ph, rng.integers(0, 2**64, size=(noise, 4), dtype=np.uint64)])
    dh = np.vstack([dh, rng.integers(0, 2**64, size=(noise, 1), dtype=np.uint64)])
    truth = np.r_[camera, np.full(noise, -1)]
    order = rng.permutation(n)
    return ph[order], dh[order], truth[order]


def brute_force(ph: np.ndarray, dh: np.ndarray, params: ClusterParams, chunk: int = 512) -> np.ndarray:
    """The same rule with every pair compared for the cores (no index)."""
    n = len(ph)
    rows, cols = [], []
    for start in range(0, n, chunk):
        close = (distances(ph[start:start + chunk, None, :], ph[None, :, :]) <= params.core_phash_max) & (
            distances(dh[start:start + chunk, None, :], dh[None, :, :]) <= params.core_dhash_max)
        r, c = np.nonzero(close)
        rows.append(r + start), cols.append(c)
    core = (np.concatenate(rows), np.concatenate(cols))
    cores = components(n, [core])
    reps = exemplars(cores, ph, params)
    joins = [(reps[r], reps[c]) for r, c in link_pairs(ph[reps], dh[reps], params)]
    labels = components(n, [core, *joins])
    gone = np.zeros(n, dtype=bool)
    gone[conflicted(labels, cores, reps, ph, dh, params)] = True
    joins = [(r[~(gone[r] | gone[c])], c[~(gone[r] | gone[c])]) for r, c in joins]
    return attach_singletons(components(n, [core, *joins]), reps, ph, dh, params)[0]


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    return len(set(zip(a.tolist(), b.tolist()))) == len(set(a.tolist())) == len(set(b.tolist()))


def purity(labels: np.ndarray, truth: np.ndarray) -> tuple[int, int]:
    """(clusters holding frames of two cameras, cameras split over several multi-frame clusters)."""
    real = truth >= 0
    pairs = np.unique(np.c_[labels[real], truth[real]], axis=0)
    mixed = int((np.bincount(pairs[:, 0]) > 1).sum())
    split = int((np.bincount(pairs[:, 1]) > 1).sum())
    return mixed, split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--exact-up-to", type=int, default=20_000, help="brute-force check for sizes up to this")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--noise-share", type=float, default=0.03)
    args = parser.parse_args()
    params = DEFAULT_CLUSTER_PARAMS
    print(f"# load average {os.getloadavg()[0]:.2f} (wall seconds suffer from other work; CPU seconds do not)")
    print("size\tcameras\tcores\trepresentatives\tattached\tclusters\tmixed\tsplit\tcluster_s\tcluster_cpu_s\tpeak_MB\tbrute_s\texact\tspeedup")
    for n in args.sizes:
        ph, dh, truth = camera_like(n, args.seed + n, noise_share=args.noise_share)
        tracemalloc.start()
        started, cpu_started = time.perf_counter(), time.process_time()
        result = cluster_labels(ph, dh, params)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        mixed, split = purity(result.labels, truth)
        brute_s, exact, speedup = "-", "-", "-"
        if n <= args.exact_up_to:
            started = time.perf_counter()
            reference = brute_force(ph, dh, params)
            brute = time.perf_counter() - started
            brute_s, exact, speedup = f"{brute:.2f}", str(same_partition(result.labels, reference)), f"{brute / seconds:.1f}x"
        print(f"{n}\t{int(truth.max()) + 1}\t{result.cores}\t{result.representatives}\t{int(result.attached.sum())}\t"
              f"{len(np.unique(result.labels))}\t{mixed}\t{split}\t{seconds:.2f}\t{cpu:.2f}\t{peak:.0f}\t{brute_s}\t{exact}\t{speedup}",
              flush=True)
    print(f"# max RSS of the process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB", file=sys.stdout)


if __name__ == "__main__":
    main()
