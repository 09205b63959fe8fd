"""The compiled kernels (camleak/_native.py, numba) against the numpy paths and brute force: the
same pairs, distances, scores and clusters on random hashes, so either path can be the one a
machine runs."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from camleak import _native
from camleak import cluster as C
from camleak.cluster import DEFAULT_CLUSTER_PARAMS, ClusterParams, cluster_labels, conflicted, distances

from test_cluster import camera_like
from test_cluster_conflicts import _incident, reference_conflicted

needs_numba = pytest.mark.skipif(_native.kernels() is None, reason="numba is not importable (or CAMLEAK_NATIVE=0)")


@pytest.fixture(autouse=True)
def compiled_at_any_size(monkeypatch):
    """These hashes are few: the compiled path is taken anyway (it normally waits for big jobs)."""
    monkeypatch.setattr(_native, "MIN_PAIRS", 0)


@pytest.fixture(params=["native", "numpy"])
def path(request, monkeypatch):
    """Run the test once with the compiled kernels and once with the numpy fallback."""
    if request.param == "native" and _native.kernels() is None:
        pytest.skip("numba is not importable (or CAMLEAK_NATIVE=0)")
    monkeypatch.setattr(_native, "AVAILABLE", request.param == "native")
    return request.param


def _numpy_only(monkeypatch):
    monkeypatch.setattr(_native, "AVAILABLE", False)


def _as_rows(parts):
    if not parts:
        return []
    cols = [np.concatenate([p[k] for p in parts]).astype(np.int64) for k in range(len(parts[0]))]
    order = np.lexsort(cols[::-1])
    return np.stack(cols, axis=1)[order].tolist()


@needs_numba
@pytest.mark.parametrize("tile", [5, 64, 4096])
@pytest.mark.parametrize("seed", range(3))
def test_native_neighbour_pairs_are_the_numpy_sweeps(seed, tile):
    """Every pair within both bars with both distances, as `_within_pairs` finds them (and as
    brute force does), whatever the column tile."""
    ph, dh, *_ = _incident(seed, frames=400)
    p_max, d_max = DEFAULT_CLUSTER_PARAMS.phash_max, DEFAULT_CLUSTER_PARAMS.dhash_max
    got = _as_rows(C._native_neighbour_pairs(ph, dh, p_max, d_max, tile=tile))
    expected = _as_rows(list(C._within_pairs(ph, dh, 0, 0, p_max=p_max, d_max=d_max)))
    dp = distances(ph[:, None], ph[None]).astype(int)
    dd = distances(dh[:, None], dh[None]).astype(int)
    i, j = np.nonzero(np.triu((dp <= p_max) & (dd <= d_max), 1))
    assert len(i) > 100  # the data have pairs to find, or the comparison proves nothing
    assert got == expected == np.c_[i, j, dp[i, j], dd[i, j]].tolist()


@needs_numba
def test_native_neighbour_pairs_over_multiword_dhashes():
    ph, dh, *_ = _incident(4, frames=300)
    dh2 = np.c_[dh, dh[::-1]]  # two dHash words
    got = _as_rows(C._native_neighbour_pairs(ph, dh2, 74, 40, tile=17))
    expected = _as_rows(list(C._within_pairs(ph, dh2, 0, 0, p_max=74, d_max=40)))
    assert len(got) > 10 and got == expected


@pytest.mark.parametrize("seed", range(4))
def test_conflicted_equals_brute_force_on_both_paths(seed, path):
    ph, dh, labels, cores, reps = _incident(seed)
    params = DEFAULT_CLUSTER_PARAMS
    expected = reference_conflicted(labels, cores, reps, ph, dh, params)
    assert len(expected) > 0
    assert conflicted(labels, cores, reps, ph, dh, params).tolist() == expected.tolist()


def test_conflicted_with_lone_frames_outside_the_representatives_on_both_paths(path):
    ph, dh, labels, cores, reps = _incident(7)
    params = DEFAULT_CLUSTER_PARAMS
    singles = np.nonzero(np.bincount(cores)[cores] == 1)[0]
    reps = np.setdiff1d(reps, singles[::3])
    expected = reference_conflicted(labels, cores, reps, ph, dh, params)
    assert conflicted(labels, cores, reps, ph, dh, params).tolist() == expected.tolist()


@needs_numba
@pytest.mark.parametrize("seed", range(3))
def test_native_conflict_bounds_equal_brute_force(seed):
    """The kernel's two outputs, not only the frames detached: each query's nearest own target
    within the bound, and its nearest member of the other clusters a target within the bound
    makes candidates (int32 max where there is none)."""
    ph, dh, labels, cores, reps = _incident(seed, frames=500)
    params = DEFAULT_CLUSTER_PARAMS
    n, none = len(labels), np.iinfo(np.int32).max
    sizes = np.bincount(labels)
    queries = np.nonzero((np.bincount(cores)[cores] == 1) & (sizes[labels] > 1))[0]
    queries = queries[np.isin(queries, reps)]
    targets = reps[sizes[labels[reps]] > 1]
    members = np.nonzero(sizes[labels] > 1)[0]
    by_label = members[np.argsort(labels[members], kind="stable")]
    bound, w = params.attach_max + params.attach_margin, params.attach_dhash_weight
    own, other = C._native_conflicts(queries, targets, labels, by_label, ph, dh, bound, w)
    score = distances(ph[:, None], ph[None]).astype(int) + w * distances(dh[:, None], dh[None]).astype(int)
    want_own, want_other = [], []
    for q in queries:
        near_t = [t for t in targets if t != q and score[q, t] <= bound]
        want_own.append(min((score[q, t] for t in near_t if labels[t] == labels[q]), default=none))
        cands = {labels[t] for t in near_t} - {labels[q]}
        want_other.append(min((score[q, m] for m in range(n) if labels[m] in cands and m != q), default=none))
    assert (np.array(want_other) < none).sum() > 10
    assert own.tolist() == want_own and other.tolist() == want_other
    # with the margin, `other` is exact wherever it can detach the frame, and above that elsewhere
    margin = params.conflict_margin
    own_m, other_m = C._native_conflicts(queries, targets, labels, by_label, ph, dh, bound, w, margin)
    want_own, want_other, own_m, other_m = (np.array(x) for x in (want_own, want_other, own_m, other_m))
    matters = want_other + margin <= want_own
    assert matters.any() and (~matters).any()
    assert own_m.tolist() == want_own.tolist()
    assert other_m[matters].tolist() == want_other[matters].tolist()
    assert (other_m[~matters] + margin > want_own[~matters]).all()


@pytest.mark.parametrize("seed", range(3))
def test_member_scores_equal_brute_force_on_both_paths(seed, path):
    ph, dh, labels, *_ = _incident(seed, frames=400)
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, len(labels), 300)
    cluster = labels[rng.integers(0, len(labels), 300)]
    by_label = np.argsort(labels, kind="stable")
    got = C._member_scores(frames, cluster, by_label, labels, ph, dh, 4, budget=1000)
    score = distances(ph[:, None], ph[None]).astype(int) + 4 * distances(dh[:, None], dh[None]).astype(int)
    none = np.iinfo(np.int32).max
    want = [min((score[f, m] for m in range(len(labels)) if labels[m] == c and m != f), default=none)
            for f, c in zip(frames.tolist(), cluster.tolist())]
    assert got.tolist() == want


@needs_numba
@pytest.mark.parametrize("members", [True, False])
@pytest.mark.parametrize("seed,cameras,frames,noise", [(1, 20, 15, 30), (2, 40, 8, 60), (3, 5, 60, 10), (5, 30, 30, 40)])
def test_native_and_numpy_clusterings_are_identical(seed, cameras, frames, noise, members, monkeypatch):
    """The whole three-stage rule: the same labels (not only the same partition), the same
    frames attached and the same representatives on both paths."""
    rng = np.random.default_rng(seed)
    ph, dh = camera_like(rng, cameras, frames, noise)
    params = ClusterParams(attach_members=members)
    fast = cluster_labels(ph, dh, params)
    _numpy_only(monkeypatch)
    slow = cluster_labels(ph, dh, params)
    assert fast.labels.tolist() == slow.labels.tolist()
    assert fast.attached.tolist() == slow.attached.tolist() and fast.attached.any()
    assert fast.reps.tolist() == slow.reps.tolist()


@needs_numba
def test_native_and_numpy_clusterings_are_identical_with_detached_frames(monkeypatch):
    """Look-alike cameras, so the conflict check detaches frames: the same on both paths."""
    ph, dh, *_ = _incident(2, cameras=20, frames=900)
    params = DEFAULT_CLUSTER_PARAMS
    fast = cluster_labels(ph, dh, params)
    _numpy_only(monkeypatch)
    slow = cluster_labels(ph, dh, params)
    assert fast.labels.tolist() == slow.labels.tolist()
    assert fast.attached.tolist() == slow.attached.tolist()


def test_the_numpy_path_runs_without_numba(monkeypatch):
    """With the kernels off (numba missing, or CAMLEAK_NATIVE=0), clustering still works."""
    _numpy_only(monkeypatch)
    assert not C.native()
    rng = np.random.default_rng(9)
    ph, dh = camera_like(rng, 10, 10, 5)
    assert len(np.unique(cluster_labels(ph, dh).labels)) > 1


def test_small_jobs_and_a_failed_numba_import_take_the_numpy_path(monkeypatch):
    monkeypatch.setattr(_native, "MIN_PAIRS", 1000)
    assert not _native.use(999)
    monkeypatch.setattr(_native, "_loaded", None)
    monkeypatch.setitem(sys.modules, "camleak._kernels", None)  # the import raises ImportError
    monkeypatch.setattr(_native, "AVAILABLE", True)
    assert not _native.use(10**9) and _native.kernels() is None and not _native.AVAILABLE
    rng = np.random.default_rng(9)
    ph, dh = camera_like(rng, 10, 10, 5)
    assert len(np.unique(cluster_labels(ph, dh).labels)) > 1
