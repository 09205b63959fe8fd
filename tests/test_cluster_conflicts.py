"""Stage 2's conflict check and the pair searches it rests on, against brute force on random hashes."""

from __future__ import annotations

import numpy as np
import pytest

from camleak.cluster import (DEFAULT_CLUSTER_PARAMS, _score_chunks, _within_pairs, conflicted, distances,
                             link_and_near_pairs, link_pairs)


def _flip(rng, rows, rate, bits):
    mask = rng.random((len(rows), bits)) < rate
    return rows ^ np.packbits(mask, axis=1).view(">u8").astype(np.uint64)


def _incident(seed, cameras=14, frames=700):
    """Camera-like hashes (a base per camera, frames a few dozen bits off it; some cameras
    look-alikes of others), clusters by camera with some frames put in the wrong cluster, cores
    of a few frames, and every other frame alone in its core."""
    rng = np.random.default_rng(seed)
    base_p = rng.integers(0, 2**64, size=(cameras, 4), dtype=np.uint64)
    base_d = rng.integers(0, 2**64, size=(cameras, 1), dtype=np.uint64)
    for c in range(1, cameras, 4):  # look-alikes: close enough that frames of one score near the other
        base_p[c] = _flip(rng, base_p[c - 1:c], 0.12, 256)[0]
        base_d[c] = _flip(rng, base_d[c - 1:c], 0.12, 64)[0]
    camera = rng.integers(0, cameras, frames)
    rate = rng.uniform(0.02, 0.2, frames)[:, None]
    ph = np.concatenate([_flip(rng, base_p[camera[i:i + 1]], rate[i], 256) for i in range(frames)])
    dh = np.concatenate([_flip(rng, base_d[camera[i:i + 1]], rate[i], 64) for i in range(frames)])
    labels = camera.copy()
    wrong = rng.random(frames) < 0.1
    labels[wrong] = rng.integers(0, cameras, int(wrong.sum()))
    labels[rng.random(frames) < 0.02] = cameras + np.arange(frames)[:1]  # a few in a cluster of their own
    _, labels = np.unique(labels, return_inverse=True)
    cores = np.arange(frames)
    grouped = np.nonzero(rng.random(frames) < 0.5)[0]
    for i in grouped:  # join a core of an earlier frame of the same cluster
        same = np.nonzero((labels == labels[i]) & (np.arange(frames) < i))[0]
        if len(same):
            cores[i] = cores[same[0]]
    _, cores = np.unique(cores, return_inverse=True)
    firsts = np.unique(cores, return_index=True)[1]
    extra = rng.choice(frames, frames // 20, replace=False)
    reps = np.unique(np.r_[firsts, extra])
    return ph, dh, labels, cores, reps


def reference_conflicted(labels, cores, reps, ph, dh, params):
    """The rule as first written: every lone frame scored against every representative."""
    n = len(labels)
    sizes = np.bincount(labels)
    queries = np.nonzero((np.bincount(cores)[cores] == 1) & (sizes[labels] > 1))[0]
    targets = reps[sizes[labels[reps]] > 1]
    w = params.attach_dhash_weight
    bound = params.attach_max + params.attach_margin
    out = []
    for q in queries:
        score = distances(ph, ph[q]).astype(int) + w * distances(dh, dh[q]).astype(int)
        candidates = {int(labels[q])} | {int(labels[t]) for t in targets if t != q and score[t] <= bound}
        best = {}
        for label in candidates:
            members = [m for m in range(n) if labels[m] == label and m != q]
            best[label] = min((score[m] for m in members), default=np.iinfo(np.int32).max)
        own = best.pop(int(labels[q]))
        other = min(best.values(), default=np.iinfo(np.int32).max)
        if other + params.conflict_margin <= own:
            out.append(q)
    return np.array(out, dtype=np.int64)


@pytest.mark.parametrize("seed", range(4))
def test_conflicted_equals_brute_force(seed):
    ph, dh, labels, cores, reps = _incident(seed)
    params = DEFAULT_CLUSTER_PARAMS
    expected = reference_conflicted(labels, cores, reps, ph, dh, params)
    assert len(expected) > 0  # the incident has frames to detach, or the comparison proves nothing
    got = conflicted(labels, cores, reps, ph, dh, params)
    assert got.tolist() == expected.tolist()


@pytest.mark.parametrize("seed", range(4))
def test_conflicted_on_stage_two_pairs_equals_brute_force(seed):
    """The candidate pairs taken from stage 2's one sweep (`link_and_near_pairs`) instead of
    scored again: the same frames detached, and the same links as `link_pairs`."""
    ph, dh, labels, cores, reps = _incident(seed)
    params = DEFAULT_CLUSTER_PARAMS
    links, near = link_and_near_pairs(ph[reps], dh[reps], params)
    pairs = lambda parts: sorted(zip(*(np.concatenate([p[k] for p in parts]).tolist() for k in range(2))))  # noqa: E731
    assert pairs(links) == pairs(link_pairs(ph[reps], dh[reps], params))  # (link_pairs may be the compiled sweep)
    expected = reference_conflicted(labels, cores, reps, ph, dh, params)
    assert len(expected) > 0
    assert conflicted(labels, cores, reps, ph, dh, params, rep_pairs=near).tolist() == expected.tolist()


def test_stage_two_near_pairs_are_every_pair_within_the_conflict_bound():
    ph, dh, *_ = _incident(6, frames=300)
    params = DEFAULT_CLUSTER_PARAMS
    score = distances(ph[:, None], ph[None]).astype(int) + 4 * distances(dh[:, None], dh[None]).astype(int)
    i, j = np.nonzero(np.triu(score <= params.attach_max + params.attach_margin, 1))
    _, near = link_and_near_pairs(ph, dh, params)
    a, b, s = (np.concatenate([part[k] for part in near]) for k in range(3))
    order = np.lexsort((b, a))
    assert np.c_[a, b, s][order].tolist() == np.c_[i, j, score[i, j]].tolist()


def test_conflicted_with_lone_frames_outside_the_representatives():
    ph, dh, labels, cores, reps = _incident(7)
    params = DEFAULT_CLUSTER_PARAMS
    singles = np.nonzero(np.bincount(cores)[cores] == 1)[0]
    reps = np.setdiff1d(reps, singles[::3])  # some lone frames are no representative
    expected = reference_conflicted(labels, cores, reps, ph, dh, params)
    assert conflicted(labels, cores, reps, ph, dh, params).tolist() == expected.tolist()


@pytest.mark.parametrize("rows_per,width,threads", [(3, 7, 1), (5, 64, 2), (32, 8192, 2)])
def test_within_pairs_is_every_close_pair(rows_per, width, threads):
    ph, dh, *_ = _incident(3, frames=300)
    score = distances(ph[:, None], ph[None]).astype(int) + 4 * distances(dh[:, None], dh[None]).astype(int)
    i, j = np.nonzero(np.triu(score <= 150, 1))
    found = [np.c_[a, b, s] for a, b, s in _within_pairs(ph, dh, 150, 4, rows_per=rows_per, width=width, threads=threads)]
    found = np.concatenate(found)
    found = found[np.lexsort((found[:, 1], found[:, 0]))]
    assert found[:, :2].tolist() == np.c_[i, j].tolist()
    assert found[:, 2].tolist() == score[i, j].tolist()


@pytest.mark.parametrize("chunk,tile", [(4, 5), (256, 8192), (7, 100)])
def test_score_chunks_tiles_give_every_score(chunk, tile):
    ph, dh, *_ = _incident(5, frames=120)
    expected = distances(ph[:40, None], ph[None]).astype(int) + 3 * distances(dh[:40, None], dh[None]).astype(int)
    rows_seen = []
    for rows, score in _score_chunks(ph[:40], dh[:40], ph, dh, 3, chunk=chunk, tile=tile):
        assert score.tolist() == expected[rows].tolist()
        rows_seen.extend(rows.tolist())
    assert rows_seen == list(range(40))


@pytest.mark.parametrize("rows_per,width,threads", [(3, 7, 1), (5, 64, 2), (32, 8192, 2)])
def test_within_pairs_both_bars(rows_per, width, threads):
    ph, dh, *_ = _incident(4, frames=300)
    dp, dd = distances(ph[:, None], ph[None]), distances(dh[:, None], dh[None])
    i, j = np.nonzero(np.triu((dp <= 74) & (dd <= 22), 1))
    assert len(i) > 100
    found = np.concatenate([np.c_[a, b, p, d] for a, b, p, d in _within_pairs(
        ph, dh, 0, 0, rows_per=rows_per, width=width, threads=threads, p_max=74, d_max=22)])
    found = found[np.lexsort((found[:, 1], found[:, 0]))]
    assert found.tolist() == np.c_[i, j, dp[i, j], dd[i, j]].tolist()
