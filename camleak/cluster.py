"""Cluster stage: group frames by the camera they came from, from their hashes alone.

The rule, in three stages, each exact (the same groups as comparing every pair):

1. *Cores*: frames whose 256-bit pHash is within `core_phash_max` bits (and dHash within
   `core_dhash_max`) are linked, single-link. A static camera's frames are near-duplicates, so
   most frames land in a core; every such pair is pure (two homes' frames are never that close).
   These pairs are found by multi-index hashing: the pHash is cut into more 16-bit blocks than
   the radius, so any close pair agrees exactly on one block, and only frames sharing a block
   value are compared. Sub-quadratic: at a million frames a random block bucket holds ~15.
2. *Joins*: every core is represented by a few exemplars (a greedy cover of its members), and
   the exemplars plus the frames in no core are compared all-pairs under the looser rule: two
   are *neighbours* when both hash kinds agree (pHash <= `phash_max`, dHash <= `dhash_max`); a
   neighbour pair is linked when it is close (both within the tighter bar) or a third
   representative neighbours both. Single-link over one loose threshold chains two homes
   together through one borderline pair; two hash kinds and corroboration stop that. This stage
   costs the square of the representatives, not of the frames.
   *Conflicts*: a frame in no core that the joins put in a multi-frame cluster is checked with
   the stage-3 score: its own cluster scored on its other members, the stage-3 candidates of
   the other clusters on theirs. When another scores at least `conflict_margin` better, its
   stage-2 links are dropped (it may still corroborate others' links) and it is left to stage 3.
   Cost: half the square of the representatives (each pair scored once, in cache-sized tiles;
   pigeonhole on hash blocks guarantees nothing at this bound, see `conflicted`), then the
   members of the other candidates, and of a frame's own cluster only when that can matter.

3. *Strays*: a frame still alone joins, as a leaf, the cluster that is clearly nearest
   (score pHash + 4 x dHash within `attach_max`, every other cluster at least `attach_margin`
   worse). A cluster's score is its nearest member's: the representatives pick the candidate
   clusters (nearest representative within `attach_max + attach_margin`; any other cluster
   already trails every acceptable best by the margin and is left out), then every member of
   each candidate is compared. Cost: frames alone x representatives, then the members of each
   stray's few candidates.

Clusters are the connected components of the first two stages' links (less the dropped ones),
plus the strays.

The quadratic sweeps of stage 2 and the conflict check (and the conflict check's member scores)
run as compiled kernels (`camleak._native`, numba) on big jobs: the same pairs and scores as
the numpy paths kept beside them, ~4-6x less CPU, streaming (the conflict check holds a bit per
query and candidate cluster, not the ~2 x 10^8 pairs within its bound at 10^6 thumbnails). With
the kernels, stage 2 and the conflict check are two sweeps (the check needs stage 2's clusters);
without, one shared sweep (`link_and_near_pairs`).
Truncated frames never create links: each joins, by the stage-3 rule on the largest band that
decoded, the one cluster whose members' same band is clearly nearest, or none. A short band
joins when it is near (`band_reach`, lead `band_margin`) or, farther (`band_far_reach`), only
with a much larger lead (`band_far_margin`). Uninformative frames (near-black, flat) are left
out entirely: they look alike across homes.
"""

from __future__ import annotations

import concurrent.futures
import json
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph

from . import _native
from .casefile import Case
from .fingerprint import single_threaded_blas


@dataclass(frozen=True)
class ClusterParams:
    core_phash_max: int = 15  # stage 1 radius; must stay below the number of blocks (256/16 = 16)
    core_dhash_max: int = 16
    block_bits: int = 16  # multi-index block width (8 or 16)
    exemplar_cover: int = 20  # every core member is within this of one of its core's exemplars...
    exemplar_max: int = 8  # ...unless the core already has this many
    phash_max: int = 74  # of 256 bits: neighbours
    dhash_max: int = 22  # of 64 bits
    tight_phash_max: int = 59  # a neighbour pair this close is linked without corroboration
    tight_dhash_max: int = 17
    min_common: int = 1  # otherwise it needs this many shared neighbours
    attach_max: int = 150  # a frame left alone joins the nearest cluster within this score...
    attach_margin: int = 32  # ...when every other cluster scores at least this much worse
    attach_dhash_weight: int = 4  # score = pHash distance + this x dHash distance (256 vs 64 bits)
    attach_members: bool = True  # clusters whose representatives score near enough are then scored on every member
    conflict_margin: int = 24  # >0: a lone frame joined in stage 2 leaves when another cluster scores this much better
    band_reach: int = 70  # a truncated frame's band: the stage-3 rule on band hashes, stricter...
    band_margin: int = 40
    band_whole_from: int = 65  # ...unless the band covers this percent of the height: then as stage 3
    band_far_reach: int = 130  # >0: a short band also joins, farther, within this when...
    band_far_margin: int = 60  # ...every other cluster scores at least this much worse
    chunk: int = 1024

    def signature(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


DEFAULT_CLUSTER_PARAMS = ClusterParams()


def hex_to_words(values: Iterable[str]) -> np.ndarray:
    """Hex hashes as an (n, words) array of uint64, so distances are popcounts of XORs."""
    rows = [bytes.fromhex(v) for v in values]
    if not rows:
        return np.zeros((0, 1), dtype=np.uint64)
    data = np.frombuffer(b"".join(rows), dtype=">u8").astype(np.uint64)
    return data.reshape(len(rows), -1)


def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distances between hash rows a[i] and b[i] (broadcasting), as int16.

    Words are added one at a time: numpy's reduction over a short last axis is several times
    slower than a few vector additions."""
    counts = np.bitwise_count(a ^ b)
    total = counts[..., 0].astype(np.int16)
    for word in range(1, counts.shape[-1]):
        total += counts[..., word]
    return total


def neighbour_pairs(phash: np.ndarray, dhash: np.ndarray, params: ClusterParams) -> Iterable[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """All pairs (i < j) within both thresholds with their distances (pHash, dHash), a block of
    rows at a time.

    Every pair of the upper triangle is compared, in tiles of a few rows by a few thousand
    columns whose XOR and popcount temporaries stay in cache, on two threads (see
    `_within_pairs`). Exact; the cost is half the square of the rows (here: representatives).
    """
    if native(len(phash) * (len(phash) - 1) / 2):
        yield from _native_neighbour_pairs(phash, dhash, params.phash_max, params.dhash_max)
        return
    for rows, cols, dp, dd in _within_pairs(phash, dhash, 0, 0, p_max=params.phash_max, d_max=params.dhash_max):
        yield rows, cols, dp, dd.astype(np.int64)


def native(pairs: float = float("inf")) -> bool:
    """Whether the compiled kernels (`camleak._native`, numba) score a job of `pairs` pair scores;
    the numpy paths give the same pairs and scores, several times slower on big jobs."""
    return _native.use(pairs)


def _native_neighbour_pairs(phash: np.ndarray, dhash: np.ndarray, p_max: int, d_max: int, threads: int = 2,
                            tile: int = 4096) -> list[tuple[np.ndarray, ...]]:
    """`neighbour_pairs` by the compiled kernel: (rows, cols, pHash distance, dHash distance)
    parts, the same pairs and distances as the numpy sweep (in another order)."""
    p, d = _native.words_major(phash), _native.words_major(dhash)
    n = len(phash)

    def work(a: int, b: int) -> tuple[np.ndarray, ...]:
        i, j, dp, dd = _native.kernels().link_rows(p, d, a, b, p_max, d_max, tile)
        return i, j, dp, dd.astype(np.int64)

    return _native.run_threads(work, _native.split(max(0, n - 1), threads), threads)


def link_pairs(phash: np.ndarray, dhash: np.ndarray, params: ClusterParams) -> list[tuple[np.ndarray, np.ndarray]]:
    """The linked pairs: neighbours that are tightly close or share enough neighbours."""
    return _linked(list(neighbour_pairs(phash, dhash, params)), len(phash), params)


def link_and_near_pairs(phash: np.ndarray, dhash: np.ndarray, params: ClusterParams
                        ) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """`link_pairs`, and every pair (i < j) scoring within the conflict check's bound
    (`attach_max + attach_margin`, pHash + `attach_dhash_weight` x dHash) with its score, from one
    sweep over the pairs instead of two (`conflicted` takes the second part as `rep_pairs`).
    The same links as `link_pairs` (in the same order when that is the numpy sweep too, not
    the compiled one: `native()`); the near pairs are those
    `_within_pairs(..., bound, weight)` finds, as a list of parts (int32 positions, int16 scores:
    tens of millions of them at 10^6 frames), in an order `conflicted` does not depend on."""
    weight, bound = params.attach_dhash_weight, params.attach_max + params.attach_margin
    index = np.int32 if len(phash) < 2**31 else np.int64

    def split(block: tuple[np.ndarray, ...]) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
        rows, cols, dp, dd = block
        link = (dp <= params.phash_max) & (dd <= params.dhash_max)
        score = dp + dd * np.int16(weight)
        close = score <= bound
        return ((rows[link], cols[link], dp[link], dd[link].astype(np.int64)),
                (rows[close].astype(index), cols[close].astype(index), score[close]))

    parts, near = [], []
    for link, close in _within_pairs(phash, dhash, 0, 0, p_max=params.phash_max, d_max=params.dhash_max,
                                     also_reach=bound, also_weight=weight, reduce=split):
        parts.append(link)
        near.append(close)
    return _linked(parts, len(phash), params), near


def _linked(parts: list[tuple[np.ndarray, ...]], n: int, params: ClusterParams) -> list[tuple[np.ndarray, np.ndarray]]:
    if not parts:
        return []
    rows = np.concatenate([p[0] for p in parts])
    cols = np.concatenate([p[1] for p in parts])
    dp = np.concatenate([p[2] for p in parts])
    dd = np.concatenate([p[3] for p in parts])
    adjacency = sparse.coo_matrix((np.ones(len(rows), dtype=np.int32), (rows, cols)), shape=(n, n)).tocsr()
    adjacency = adjacency + adjacency.T
    keep = (dp <= params.tight_phash_max) & (dd <= params.tight_dhash_max)
    loose = np.nonzero(~keep)[0]
    # Shared neighbours only for the pairs that need them, a slice at a time to bound memory.
    for start in range(0, len(loose), 20_000):
        part = loose[start : start + 20_000]
        common = np.asarray(adjacency[rows[part]].multiply(adjacency[cols[part]]).sum(axis=1)).ravel()
        keep[part] = common >= params.min_common
    return [(rows[keep], cols[keep])]


def components(n: int, pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Component label per item; labels are numbered in order of each component's first item."""
    parts = list(pairs)
    rows = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
    cols = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
    # int32 weights: duplicate edges are summed, and a small type could wrap round to zero
    graph = sparse.coo_matrix((np.ones(len(rows), dtype=np.int32), (rows, cols)), shape=(n, n))
    return csgraph.connected_components(graph, directed=False)[1].astype(np.int64)


def _blocks(hashes: np.ndarray, block_bits: int) -> np.ndarray:
    """The hash cut into blocks of `block_bits` bits: (n, blocks) of uint8 or uint16."""
    dtype = {8: np.uint8, 16: np.uint16}[block_bits]
    return np.ascontiguousarray(hashes).view(dtype)


def _checked(left: np.ndarray, right: np.ndarray, order: np.ndarray, phash: np.ndarray, sorted_dhash: np.ndarray,
             params: ClusterParams) -> tuple[np.ndarray, np.ndarray]:
    """Frame pairs within the core radius of both hash kinds, from candidate positions in a
    block's sorted order. The dHash screen reads the block-sorted copy, so its gathers walk
    memory almost in sequence; the pHash is read only for the few pairs that pass it."""
    if sorted_dhash.ndim == 1:
        d = np.bitwise_count(sorted_dhash[left] ^ sorted_dhash[right])
    else:
        d = distances(sorted_dhash[left], sorted_dhash[right])
    near = np.nonzero(d <= params.core_dhash_max)[0]
    left, right = order[left[near]], order[right[near]]
    near = np.nonzero(distances(phash[left], phash[right]) <= params.core_phash_max)[0]
    return left[near], right[near]


def core_pairs(phash: np.ndarray, dhash: np.ndarray, params: ClusterParams,
               budget: int = 4_000_000) -> tuple[np.ndarray, np.ndarray]:
    """Pairs within the core radius, by multi-index hashing; enough of them for exact components.

    Any pair within r bits of each other agrees exactly on at least one of r+1 blocks, so only
    frames sharing a block value are compared. A huge bucket (a camera's near-duplicates share
    blocks) would still be quadratic, so: pass 1 links each frame to the first frame of each of
    its buckets; pass 2 compares only the pairs of a bucket that pass 1 left in different
    components (a pair already connected cannot change the components). The result has every
    close pair or a path standing in for it: the components equal brute force's.
    """
    n = len(phash)
    if n < 2:  # nothing to pair (and an empty case has no hash width to check)
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    blocks = _blocks(phash, params.block_bits)
    if params.core_phash_max >= blocks.shape[1]:
        raise ValueError(f"core_phash_max {params.core_phash_max} needs more than {blocks.shape[1]} blocks "
                         f"of {params.block_bits} bits: exactness would be lost")
    index = np.int32 if n < 2**31 else np.int64  # frame indices: half the memory of int64 below 2^31
    found: list[tuple[np.ndarray, np.ndarray]] = []
    if dhash.shape[1] == 1:
        dhash = np.ascontiguousarray(dhash[:, 0])
    for j in range(blocks.shape[1]):
        order = np.argsort(blocks[:, j], kind="stable")
        key = blocks[order, j]
        new_bucket = np.r_[True, key[1:] != key[:-1]]
        leader = np.nonzero(new_bucket)[0][np.cumsum(new_bucket) - 1]
        follower = np.nonzero(leader != np.arange(n))[0]
        left, right = _checked(leader[follower], follower, order, phash, dhash[order], params)
        found.append((left.astype(index), right.astype(index)))
    labels = components(n, found)
    # Only the components matter: the pairs so far are replaced by a spanning forest (at most
    # n - 1 edges), and after every block of pass 2 the labels take in what it found, so a
    # later block neither compares nor keeps pairs an earlier one already connected. Without
    # this, a camera split over several pass-1 components kept every close pair between its
    # parts, block after block: memory grew with the square of the frames (10^7 ran out).
    found = [_forest(labels, index)]
    for j in range(blocks.shape[1]):
        new: list[tuple[np.ndarray, np.ndarray]] = []
        combined = (blocks[:, j].astype(np.int64) << 32) | labels
        order = np.argsort(combined)
        key, lab = blocks[order, j], labels[order]
        new_bucket = np.r_[True, key[1:] != key[:-1]]
        new_run = new_bucket | np.r_[True, lab[1:] != lab[:-1]]
        bucket_end = np.r_[np.nonzero(new_bucket)[0][1:], n][np.cumsum(new_bucket) - 1]
        run_end = np.r_[np.nonzero(new_run)[0][1:], n][np.cumsum(new_run) - 1]
        counts = bucket_end - run_end  # partners of each position: the later runs of its bucket
        positions = np.nonzero(counts)[0]
        if not len(positions):
            continue
        sorted_d = dhash[order]
        cumulative = np.cumsum(counts[positions])
        cuts = np.searchsorted(cumulative, np.arange(budget, int(cumulative[-1]), budget))
        for part in np.split(positions, cuts):
            if not len(part):
                continue
            c = counts[part]
            total = int(c.sum())
            offsets = np.repeat(np.cumsum(c) - c, c)
            left = np.repeat(part, c)
            right = np.repeat(run_end[part], c) + (np.arange(total) - offsets)
            left, right = _checked(left, right, order, phash, sorted_d, params)
            if len(left):
                new.append((left.astype(index), right.astype(index)))
        if new:
            labels = components(n, found + new)
            found = [_forest(labels, index)]
    rows = np.concatenate([f[0] for f in found])
    cols = np.concatenate([f[1] for f in found])
    return rows, cols


def _forest(labels: np.ndarray, index: type = np.int64) -> tuple[np.ndarray, np.ndarray]:
    """Pairs with the same components as `labels`: every frame to its component's first frame."""
    first = np.unique(labels, return_index=True)[1][labels]
    others = np.nonzero(first != np.arange(len(labels)))[0]
    return others.astype(index), first[others].astype(index)


def exemplars(labels: np.ndarray, phash: np.ndarray, params: ClusterParams) -> np.ndarray:
    """Sorted indices of each core's exemplars: its first frame, then greedily the member farthest
    from all exemplars so far, until every member is within `exemplar_cover` or the core has
    `exemplar_max` of them."""
    n = len(labels)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(labels, kind="stable")
    lab = labels[order]
    new_group = np.r_[True, lab[1:] != lab[:-1]]
    starts = np.nonzero(new_group)[0]
    group = np.cumsum(new_group) - 1
    chosen = [order[starts]]
    nearest = distances(phash[order], phash[order[starts]][group])
    for _ in range(params.exemplar_max - 1):
        widest = np.maximum.reduceat(nearest, starts)
        needs = widest > params.exemplar_cover
        if not needs.any():
            break
        candidates = np.nonzero((nearest == widest[group]) & needs[group])[0]
        firsts = candidates[np.r_[True, group[candidates][1:] != group[candidates][:-1]]]
        exemplar_of = np.full(len(starts), -1, dtype=np.int64)
        exemplar_of[group[firsts]] = order[firsts]
        chosen.append(order[firsts])
        update = np.nonzero(needs[group])[0]
        nearest[update] = np.minimum(nearest[update], distances(phash[order[update]], phash[exemplar_of[group[update]]]))
    return np.sort(np.concatenate(chosen))


@dataclass
class Clustering:
    labels: np.ndarray  # component label per frame
    cores: int  # stage-1 components
    representatives: int  # exemplars compared all-pairs in stage 2
    attached: np.ndarray  # frames that joined their cluster in stage 3 (as leaves)
    reps: np.ndarray  # indices of those exemplars
    core_labels: np.ndarray | None = None  # stage-1 component per frame: the groups surely of one camera


def cluster_labels(phash: np.ndarray, dhash: np.ndarray, params: ClusterParams = DEFAULT_CLUSTER_PARAMS) -> Clustering:
    """The three-stage rule (see the module docstring) over hash rows."""
    n = len(phash)
    core = core_pairs(phash, dhash, params)
    cores = components(n, [core])
    reps = exemplars(cores, phash, params)
    compiled = native(len(reps) * (len(reps) - 1) / 2)
    if params.conflict_margin and not compiled:  # the conflict check's candidate pairs come from stage 2's sweep
        links, near = link_and_near_pairs(phash[reps], dhash[reps], params)
    else:
        links, near = link_pairs(phash[reps], dhash[reps], params), None
    joins = [(reps[r], reps[c]) for r, c in links]
    labels = components(n, [core, *joins])
    detached = conflicted(labels, cores, reps, phash, dhash, params, rep_pairs=near)
    del near
    if len(detached):
        gone = np.zeros(n, dtype=bool)
        gone[detached] = True
        joins = [(r[~(gone[r] | gone[c])], c[~(gone[r] | gone[c])]) for r, c in joins]
        labels = components(n, [core, *joins])
    labels, attached = attach_singletons(labels, reps, phash, dhash, params)
    return Clustering(labels, int(cores.max(initial=-1) + 1), len(reps), attached, reps, cores)


def conflicted(labels: np.ndarray, cores: np.ndarray, reps: np.ndarray, phash: np.ndarray, dhash: np.ndarray,
               params: ClusterParams, chunk: int = 256, budget: int = 4_000_000,
               rep_pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None) -> np.ndarray:
    """Frames in no core that stage 2 put in a multi-frame cluster, but that another cluster
    claims more strongly by the stage-3 score: they leave their cluster (their stage-2 links are
    dropped) and stage 3 decides for them.

    A frame's own cluster is scored on its other members; the other candidate clusters are those
    of stage 3 (a representative within `attach_max + attach_margin`), scored on their members.
    The frame leaves when the best other scores at least `conflict_margin` below its own cluster.

    The candidates within the bound (182 of 512) are found by scoring every pair of the
    representatives in multi-frame clusters once (the upper triangle, in cache-sized tiles, on
    two threads), which is exact. No index is used: pigeonhole on the 16 pHash blocks of 16
    bits only guarantees, at that bound, a block within 11 bits (the multi-index of stage 1 is
    exact for `core_phash_max` < 16 bits, not for 182), and frames of one camera spread too far
    (half their pairs > 76 pHash bits) for triangle-inequality cells to rule much out.
    Cost: half the square of those representatives, then the members of their candidates.
    `rep_pairs`: parts (i, j, score) over positions in `reps`, together every pair i < j scoring
    within the bound (`link_and_near_pairs` finds them in stage 2's sweep): then the pairs are
    not scored again.
    """
    n = len(labels)
    if not params.conflict_margin or n < 2:
        return np.zeros(0, dtype=np.int64)
    sizes = np.bincount(labels)
    queries = np.nonzero((np.bincount(cores)[cores] == 1) & (sizes[labels] > 1))[0]
    targets = reps[sizes[labels[reps]] > 1]
    if not len(queries):
        return queries
    weight = params.attach_dhash_weight
    bound = params.attach_max + params.attach_margin
    # The queries are representatives (a singleton core's frame is its exemplar), so all are
    # among the targets: one pass over the pairs of targets, each pair read both ways.
    query_of = np.full(n, -1, dtype=np.int64)
    query_of[queries] = np.arange(len(queries))
    none = np.iinfo(np.int32).max
    # Taken a part at a time (the pairs of 10^6 frames' representatives run to tens of millions):
    # an upper bound of each frame's own score, its nearest representative of its own cluster,
    # and the other candidate clusters (query, label), each to be scored on every member below.
    own_bound = np.full(len(queries), none, dtype=np.int64)
    keys: list[np.ndarray] = []

    def take(pair_q: np.ndarray, pair_l: np.ndarray, pair_s: np.ndarray) -> None:
        own = pair_l == labels[queries[pair_q]]
        np.minimum.at(own_bound, pair_q[own], pair_s[own].astype(np.int64))
        keys.append(np.unique(pair_q[~own] * n + pair_l[~own]))

    inside = np.isin(queries, targets)
    members = np.nonzero(sizes[labels] > 1)[0]
    by_label = members[np.argsort(labels[members], kind="stable")]
    other = np.full(len(queries), none, dtype=np.int64)
    pairs: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]] = ()
    if rep_pairs is None and native(len(targets) * (len(targets) - 1) / 2):
        # The compiled kernel takes the pairs of targets as `take` does and scores each query's
        # candidate clusters on their members at once: no pairs or keys are held.
        at = np.nonzero(inside)[0]
        own_bound[at], other[at] = _native_conflicts(queries[at], targets, labels, by_label, phash, dhash, bound, weight,
                                                     params.conflict_margin)
    elif rep_pairs is not None:  # the same pairs of targets: those of representatives, both ends targets
        pairs = (
            (fa[both], fb[both], s[both])
            for a, b, s in rep_pairs
            for fa, fb in [(reps[a], reps[b])]
            for both in [(sizes[labels[fa]] > 1) & (sizes[labels[fb]] > 1)])
    else:
        pairs = ((targets[a], targets[b], s) for a, b, s in _within_pairs(phash[targets], dhash[targets], bound, weight))
    for fa, fb, s in pairs:
        for q, t in ((query_of[fa], fb), (query_of[fb], fa)):
            take(q[q >= 0], labels[t[q >= 0]], s[q >= 0])
    outside = queries[~inside]  # none when `reps` holds every core's first frame, as exemplars do
    if len(outside):
        for rows, score in _score_chunks(phash[outside], dhash[outside], phash[targets], dhash[targets], weight, chunk):
            r, t = np.nonzero((score <= bound) & (targets[None, :] != outside[rows, None]))
            take(query_of[outside[rows[r]]], labels[targets[t]], score[r, t])
    key = np.unique(np.concatenate(keys)) if keys else np.zeros(0, dtype=np.int64)
    scores = _member_scores(queries[key // n], key % n, by_label, labels, phash, dhash, weight, budget)
    np.minimum.at(other, key // n, scores)
    # Own clusters are scored on every member only where the bound leaves the outcome open:
    # a frame whose nearest own representative is within the margin of `other` stays anyway.
    # (The same outcome as scoring every own cluster: own score <= own_bound.)
    open_q = np.nonzero(other + params.conflict_margin <= own_bound)[0]
    own_score = own_bound.copy()
    own_score[open_q] = _member_scores(queries[open_q], labels[queries[open_q]], by_label, labels, phash, dhash,
                                       weight, budget)
    return queries[other + params.conflict_margin <= own_score]


def _native_conflicts(queries: np.ndarray, targets: np.ndarray, labels: np.ndarray, by_label: np.ndarray,
                      phash: np.ndarray, dhash: np.ndarray, bound: int, weight: int, margin: int = 0,
                      threads: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """For each query (all among the targets, sorted): the nearest score within `bound` to
    another target of its own cluster (int32 max if none), and the nearest score over the members
    (`by_label`: sorted by label) of the other clusters with a target within `bound` (int32 max
    if none): `conflicted`'s own_bound and other, by the compiled kernels.

    With `margin` > 0, `other` is exact only where it can detach the frame: where it is at most
    own_bound - margin; elsewhere it is own_bound - margin + 1, which `conflicted` treats alike
    (the frame stays: other + margin > own_bound >= its own score). That cap lets the member
    scan drop most members after their dHash word.

    The pairs of targets are scored once each (the upper triangle, targets that are queries
    first, so the rows of pairs with no query end are skipped); each thread marks its queries'
    candidate clusters in a bit matrix (queries x clusters: 200 MB at 10^6 frames), merged by or.
    """
    none = np.iinfo(np.int32).max
    uniq, dense = np.unique(labels[targets], return_inverse=True)
    is_query = np.isin(targets, queries)
    order = np.lexsort((dense, ~is_query))  # queries first, each part by cluster
    rows, cluster = targets[order], dense[order].astype(np.int64)
    nq = int(is_query.sum())
    p, d = _native.words_major(phash[rows]), _native.words_major(dhash[rows])
    words = -(-len(uniq) // 64)
    ranges = _native.split(nq, threads)

    def sweep(part: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
        own = np.full(nq, none, dtype=np.int64)
        near = np.zeros((nq, words), dtype=np.uint64)
        for a, b in part:
            _native.kernels().conflict_rows(p, d, cluster, nq, a, b, bound, weight, 4096, own, near)
        return own, near

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:  # each thread its own own/near, for its rows
        results = list(pool.map(sweep, [ranges[t::threads] for t in range(threads)]))
    own, near = results[0]
    for o, m in results[1:]:
        np.minimum(own, o, out=own)
        np.bitwise_or(near, m, out=near)
    del results
    sorted_labels = labels[by_label]
    start = np.searchsorted(sorted_labels, uniq, side="left").astype(np.int64)
    stop = np.searchsorted(sorted_labels, uniq, side="right").astype(np.int64)
    frames = rows[:nq].astype(np.int64)
    fp, fd = _native.words_major(phash[frames]), _native.words_major(dhash[frames])
    mp, md = _native.words_major(phash[by_label]), _native.words_major(dhash[by_label])
    ids = by_label.astype(np.int64)
    cap = (own - margin if margin > 0 else np.full(nq, none, dtype=np.int64)).astype(np.int64)
    np.minimum(cap, none - 1, out=cap)  # no own target within the bound: every candidate counts
    parts = _native.run_threads(
        lambda a, b: _native.kernels().candidate_scores(fp, fd, frames, near, start, stop, mp, md, ids, cap, a, b, weight),
        _native.split(nq, threads), threads)
    other = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    other[other > none] = none
    back = np.searchsorted(queries, frames)  # `queries` is sorted
    own_out = np.full(len(queries), none, dtype=np.int64)
    other_out = np.full(len(queries), none, dtype=np.int64)
    own_out[back], other_out[back] = own, other
    return own_out, other_out


def _member_scores(frames: np.ndarray, cluster: np.ndarray, by_label: np.ndarray, labels: np.ndarray,
                   phash: np.ndarray, dhash: np.ndarray, weight: int, budget: int) -> np.ndarray:
    """Each (frame, cluster) pair's score on its nearest member of the cluster (the frame itself
    excluded; int32 max when it is the only one). `by_label`: the members sorted by label.

    The pairs are taken a cluster at a time: its frames against its members as one block of
    contiguous rows (random gathers of member hashes, one per pair and member, cost ~10x more)."""
    none = np.iinfo(np.int32).max
    out = np.full(len(frames), none, dtype=np.int64)
    if not len(frames):
        return out
    sorted_labels = labels[by_label]
    member_p, member_d = phash[by_label], dhash[by_label]
    first = np.searchsorted(sorted_labels, cluster, side="left").astype(np.int64)
    stop = np.searchsorted(sorted_labels, cluster, side="right").astype(np.int64)
    if native(int((stop - first).sum())):  # the same nearest scores, by the compiled kernel, without score tiles
        fp, fd = _native.words_major(phash[frames]), _native.words_major(dhash[frames])
        mp, md = _native.words_major(member_p), _native.words_major(member_d)
        who = frames.astype(np.int64)
        ids = by_label.astype(np.int64)

        def work(a: int, b: int) -> np.ndarray:
            return _native.kernels().member_rows(fp, fd, who, first, stop, mp, md, ids, a, b, weight)

        return np.concatenate(_native.run_threads(work, _native.split(len(frames), 2), 2))
    order = np.argsort(cluster, kind="stable")
    heads = np.flatnonzero(np.r_[True, cluster[order][1:] != cluster[order][:-1]])
    chunk = max(1, min(256, budget // max(1, len(by_label))))
    for g0, g1 in zip(heads.tolist(), np.r_[heads[1:], len(order)].tolist()):
        label = cluster[order[g0]]
        first = int(np.searchsorted(sorted_labels, label, side="left"))
        stop = int(np.searchsorted(sorted_labels, label, side="right"))
        if stop == first:
            continue
        pairs = order[g0:g1]
        who = frames[pairs]
        ids = by_label[first:stop]
        for rows, score in _score_chunks(phash[who], dhash[who], member_p[first:stop], member_d[first:stop], weight,
                                         min(chunk, len(who))):
            s = score.astype(np.int64)
            s[ids[None, :] == who[rows, None]] = none
            out[pairs[rows]] = s.min(axis=1)
    return out


def attach_singletons(labels: np.ndarray, reps: np.ndarray, phash: np.ndarray, dhash: np.ndarray,
                      params: ClusterParams) -> tuple[np.ndarray, np.ndarray]:
    """Stage 3: each frame still alone joins the cluster that is clearly nearest (see
    `nearest_clusters`: representatives choose the candidates, members score them).

    It joins as a leaf: it links nothing else, so it cannot chain two clusters together.
    Cost: frames alone x representatives, then the members of their candidates; not frames squared.
    """
    labels = labels.copy()
    attached = np.zeros(len(labels), dtype=bool)
    sizes = np.bincount(labels) if len(labels) else np.zeros(0, dtype=np.int64)
    alone = np.nonzero(sizes[labels] == 1)[0]
    targets = reps[sizes[labels[reps]] > 1]
    members = np.nonzero(sizes[labels] > 1)[0]
    found = nearest_clusters(phash[alone], dhash[alone], phash[targets], dhash[targets], labels[targets],
                             [(params.attach_max, params.attach_margin)], params.attach_dhash_weight,
                             (phash[members], dhash[members], labels[members]) if params.attach_members else None)
    labels[alone[found >= 0]] = found[found >= 0]
    attached[alone[found >= 0]] = True
    return labels, attached


def _score_tile(query_p: np.ndarray, query_d: np.ndarray, tp: list[np.ndarray], td: list[np.ndarray], weight: int,
                out: np.ndarray, xor: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Scores (pHash distance + weight x dHash distance) of query rows against target word
    columns `tp`, `td` (1-D contiguous, one per word), into `out` (rows x targets, int16)."""
    if not td:
        out.fill(0)
    for w, column in enumerate(td):
        np.bitwise_count(np.bitwise_xor(query_d[:, w, None], column[None, :], out=xor), out=count)
        if w:
            np.add(out, count, out=out)
        else:
            np.copyto(out, count)
    if weight != 1:
        np.multiply(out, np.int16(weight), out=out)
    for w, column in enumerate(tp):
        np.bitwise_count(np.bitwise_xor(query_p[:, w, None], column[None, :], out=xor), out=count)
        np.add(out, count, out=out)
    return out


def _score_chunks(query_p: np.ndarray, query_d: np.ndarray, target_p: np.ndarray, target_d: np.ndarray, weight: int,
                  chunk: int = 256, tile: int = 8192) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    """(query rows, their scores against every target) a chunk of queries at a time; the score
    is pHash distance + weight x dHash distance. The score array is a reused buffer: it is only
    valid until the next chunk.

    The XOR and popcount temporaries cover `tile` targets at a time, so they stay in cache
    (chunk x all-targets temporaries of tens of megabytes ran at memory speed, ~6x slower)."""
    # word columns as contiguous 1-D arrays: 2-D popcounts over them are much faster than 3-D ones
    tp = [np.ascontiguousarray(target_p[:, w]) for w in range(target_p.shape[1])]
    td = [np.ascontiguousarray(target_d[:, w]) for w in range(target_d.shape[1])]
    width = max(1, min(tile, len(target_p)))
    rows_per = max(1, min(chunk, (1 << 18) // width))  # rows of one tile
    xor = np.empty((rows_per, width), dtype=np.uint64)
    count = np.empty((rows_per, width), dtype=np.uint8)
    tile_out = np.empty((rows_per, width), dtype=np.int16)
    total = np.empty((chunk, len(target_p)), dtype=np.int16)
    for begin in range(0, len(query_p), chunk):
        rows = np.arange(begin, min(len(query_p), begin + chunk))
        score = total[:len(rows)]
        for r0 in range(0, len(rows), rows_per):
            r1 = min(len(rows), r0 + rows_per)
            qp, qd = query_p[begin + r0:begin + r1], query_d[begin + r0:begin + r1]
            for c0 in range(0, len(target_p), width):
                c1 = min(len(target_p), c0 + width)
                k, m = r1 - r0, c1 - c0
                score[r0:r1, c0:c1] = _score_tile(qp, qd, [t[c0:c1] for t in tp], [t[c0:c1] for t in td], weight,
                                                  tile_out[:k, :m], xor[:k, :m], count[:k, :m])
        yield rows, score


def _within_pairs(phash: np.ndarray, dhash: np.ndarray, reach: int, weight: int, rows_per: int = 32,
                  width: int = 8192, threads: int = 2, p_max: int | None = None, d_max: int | None = None,
                  also_reach: int | None = None, also_weight: int = 1,
                  reduce: Callable[[tuple[np.ndarray, ...]], Any] | None = None) -> Iterable[Any]:
    """Every pair (i < j) of rows scoring within `reach` (pHash + weight x dHash), with its
    score: (i, j, score) a row block at a time. With `p_max` and `d_max` instead: the pairs within
    both, with both distances: (i, j, pHash distance, dHash distance); with `also_reach` too, the
    pairs within both bars or scoring within `also_reach` (pHash + `also_weight` x dHash).

    Every pair of the upper triangle is scored, in tiles of `rows_per` rows by `width` columns
    whose temporaries stay in cache; exact. Two threads share the row blocks (numpy releases
    the GIL inside each tile's operations). `reduce`: applied to each block's tuple in its
    thread, which keeps (and yields) what it returns instead: the blocks of every thread are
    held until both finish, so at a million frames what they keep had better be small."""
    import concurrent.futures

    n = len(phash)
    tp = [np.ascontiguousarray(phash[:, w]) for w in range(phash.shape[1])]
    td = [np.ascontiguousarray(dhash[:, w]) for w in range(dhash.shape[1])]
    starts = list(range(0, max(0, n - 1), rows_per))
    both = p_max is not None

    def block(starts_part: list[int]) -> list[tuple[np.ndarray, ...]]:
        xor = np.empty((rows_per, width), dtype=np.uint64)
        count = np.empty((rows_per, width), dtype=np.uint8)
        out = np.empty((rows_per, width), dtype=np.int16)
        out_d = np.empty((rows_per, width), dtype=np.int16)
        near = np.empty((rows_per, width), dtype=bool)
        near_d = np.empty((rows_per, width), dtype=bool)
        scored = np.empty((rows_per, width), dtype=np.int16) if also_reach is not None else None
        found = []
        for start in starts_part:
            stop = min(n, start + rows_per)
            k = stop - start
            qp, qd = phash[start:stop], dhash[start:stop]
            rows, cols, values, values_d = [], [], [], []
            for c0 in range(start, n, width):
                c1 = min(n, c0 + width)
                m = c1 - c0
                if both and also_reach is not None:  # both bars, or the score within also_reach
                    dd = _score_tile(qp[:, :0], qd, [], [t[c0:c1] for t in td], 1, out_d[:k, :m], xor[:k, :m], count[:k, :m])
                    dp = _score_tile(qp, qd[:, :0], [t[c0:c1] for t in tp], [], 0, out[:k, :m], xor[:k, :m], count[:k, :m])
                    mask = np.less_equal(dp, p_max, out=near[:k, :m])
                    mask &= np.less_equal(dd, d_max, out=near_d[:k, :m])
                    score = np.multiply(dd, np.int16(also_weight), out=scored[:k, :m])
                    score += dp
                    mask |= np.less_equal(score, also_reach, out=near_d[:k, :m])
                    flat = np.flatnonzero(mask)
                    values_d.append(dd.reshape(-1)[flat])
                    values.append(dp.reshape(-1)[flat])
                elif both:  # dHash and pHash distances apart, each within its own bar
                    # The dHash bar first, over the whole tile (one word); the pHash (four words)
                    # only for the pairs within it: two homes' frames are seldom within the dHash
                    # bar (~1 % of pairs at 22 of 64 bits), so most pHash words are never read.
                    # The same pairs, in the same order, with the same distances as both in full.
                    dd = _score_tile(qp[:, :0], qd, [], [t[c0:c1] for t in td], 1, out_d[:k, :m], xor[:k, :m], count[:k, :m])
                    flat = np.flatnonzero(np.less_equal(dd, d_max, out=near_d[:k, :m]))
                    r, c = np.divmod(flat, m)
                    dp = distances(qp[r], phash[c0 + c])
                    within = np.nonzero(dp <= p_max)[0]
                    flat = flat[within]
                    values_d.append(dd.reshape(-1)[flat])
                    values.append(dp[within])
                else:
                    score = _score_tile(qp, qd, [t[c0:c1] for t in tp], [t[c0:c1] for t in td], weight,
                                        out[:k, :m], xor[:k, :m], count[:k, :m])
                    flat = np.flatnonzero(np.less_equal(score, reach, out=near[:k, :m]))
                    values.append(score.reshape(-1)[flat])
                r, c = np.divmod(flat, m)
                rows.append(r + start)
                cols.append(c + c0)
            r, c = np.concatenate(rows), np.concatenate(cols)
            keep = c > r
            part = (r[keep], c[keep], *(np.concatenate(v)[keep] for v in ((values, values_d) if both else (values,))))
            found.append(reduce(part) if reduce is not None else part)
        return found

    if threads > 1 and len(starts) > 1:
        parts = [starts[t::threads] for t in range(threads)]
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(block, parts))
        for found in results:
            yield from found
    else:
        yield from block(starts)


def nearest_clusters(query_p: np.ndarray, query_d: np.ndarray, target_p: np.ndarray, target_d: np.ndarray,
                     target_labels: np.ndarray, tiers: Sequence[tuple[int, int]], weight: int,
                     members: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                     chunk: int = 256, budget: int = 4_000_000) -> np.ndarray:
    """For each query, the label of the cluster it clearly belongs to, or -1.

    A cluster's score is pHash distance + weight x dHash distance to its nearest target; a query
    belongs to the best cluster when, for one of the (reach, margin) `tiers`, that score is
    within reach and every other cluster's is at least margin worse.

    With `members` (hashes and labels of every frame of the clusters, the targets among them),
    the targets only choose the candidates: the clusters whose nearest target scores within the
    largest reach + margin of the tiers. A candidate is then scored on its nearest member, any
    frame of it. The other clusters are left out: their nearest target already trails any best
    within reach by the margin (their members are not searched). Cost: queries x targets, then
    the members of each query's candidate clusters.
    """
    result = np.full(len(query_p), -1, dtype=np.int64)
    if not len(query_p) or not len(target_p):
        return result
    order = np.argsort(target_labels, kind="stable")
    target_p, target_d, target_labels = target_p[order], target_d[order], target_labels[order]
    new_group = np.r_[True, target_labels[1:] != target_labels[:-1]]
    cluster_of_group = target_labels[new_group]
    group_of_target = np.cumsum(new_group) - 1
    if members is not None:
        candidates = max(reach + margin for reach, margin in tiers)
        # step 1: the (query, cluster) pairs whose nearest target scores within `candidates`
        found_q, found_g = [], []
        within = np.empty((chunk, len(target_p)), dtype=bool)
        for rows, score in _score_chunks(query_p, query_d, target_p, target_d, weight, chunk):
            r, t = np.divmod(np.flatnonzero(np.less_equal(score, candidates, out=within[:len(rows)])), len(target_p))
            key = np.unique(rows[r] * len(cluster_of_group) + group_of_target[t])
            found_q.append(key // len(cluster_of_group))
            found_g.append(key % len(cluster_of_group))
        pair_q, pair_g = np.concatenate(found_q), np.concatenate(found_g)  # sorted by query
        if not len(pair_q):
            return result
        # step 2: each pair scored on every member of its cluster
        member_p, member_d, member_labels = members
        by_label = np.argsort(member_labels, kind="stable")
        sorted_labels = member_labels[by_label]
        first = np.searchsorted(sorted_labels, cluster_of_group, side="left")
        count = np.searchsorted(sorted_labels, cluster_of_group, side="right") - first
        pair_score = np.empty(len(pair_q), dtype=np.int32)
        c_all = count[pair_g]
        cumulative = np.cumsum(c_all)
        cuts = np.searchsorted(cumulative, np.arange(budget, int(cumulative[-1]) if len(cumulative) else 0, budget))
        for part in np.split(np.arange(len(pair_q)), cuts):
            if not len(part):
                continue
            c = c_all[part]
            offsets = np.cumsum(c) - c
            step = np.arange(int(c.sum())) - np.repeat(offsets, c)
            m = by_label[np.repeat(first[pair_g[part]], c) + step]
            q = np.repeat(pair_q[part], c)
            s = distances(member_d[m], query_d[q]).astype(np.int32) * weight + distances(member_p[m], query_p[q])
            pair_score[part] = np.minimum.reduceat(s, offsets)
        # the rule on each query's candidates: its best within reach, its second at least margin worse
        ranked = np.lexsort((pair_score, pair_q))
        pair_q, pair_g, pair_score = pair_q[ranked], pair_g[ranked], pair_score[ranked]
        head = np.nonzero(np.r_[True, pair_q[1:] != pair_q[:-1]])[0]
        has_second = np.r_[head[1:], len(pair_q)] - head > 1
        second = np.full(len(head), np.iinfo(np.int32).max, dtype=np.int64)
        second[has_second] = pair_score[head[has_second] + 1]
        best = pair_score[head].astype(np.int64)
        ok = _clear(best, second, tiers)
        result[pair_q[head[ok]]] = cluster_of_group[pair_g[head[ok]]]
        return result
    biggest = np.iinfo(np.int16).max
    for rows, score in _score_chunks(query_p, query_d, target_p, target_d, weight, chunk):
        k = len(rows)
        nearest = np.argmin(score, axis=1)
        best = score[np.arange(k), nearest].astype(np.int32)
        best_group = group_of_target[nearest]
        second = np.where(group_of_target[None, :] == best_group[:, None], biggest, score).min(axis=1).astype(np.int32)
        ok = _clear(best, second, tiers)
        result[rows[ok]] = cluster_of_group[best_group[ok]]
    return result


def _clear(best: np.ndarray, second: np.ndarray, tiers: Sequence[tuple[int, int]]) -> np.ndarray:
    """Whether the best score wins clearly under one of the (reach, margin) tiers."""
    ok = np.zeros(len(best), dtype=bool)
    for reach, margin in tiers:
        ok |= (best <= reach) & (second - best >= margin)
    return ok


@dataclass
class ClusterStats:
    core_frames: int = 0
    cores: int = 0
    representatives: int = 0
    attached: int = 0
    clusters: int = 0
    multi_frame_clusters: int = 0
    band_assigned: int = 0
    band_unmatched: int = 0
    left_out: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def cluster_case(case: Case, params: ClusterParams = DEFAULT_CLUSTER_PARAMS) -> ClusterStats:
    """Replace the case's clusters with those of its current fingerprints."""
    with single_threaded_blas():  # small products: BLAS threads cost more than they save
        return _cluster_case(case, params)


def _cluster_case(case: Case, params: ClusterParams) -> ClusterStats:
    # Tuples of what every frame needs (a million frames' rows as dicts with their bands took
    # over a gigabyte); the bands are read further down, and only when a truncated frame needs them.
    rows = case.db.execute(
        "select p.frame_id, p.status, p.phash, p.dhash, coalesce(p.bands, '') != '' or coalesce(p.band_phash, '') != '', "
        "f.role from fingerprints p join frames f on f.frame_id = p.frame_id order by p.frame_id").fetchall()
    core_rows = [r for r in rows if r[1] == "ok" and r[2]]
    weak_ids = [r[0] for r in rows if r[1] == "ok" and not r[2] and r[4]]
    stats = ClusterStats(core_frames=len(core_rows), left_out=len(rows) - len(core_rows) - len(weak_ids))
    role_of = {r[0]: r[5] for r in rows}
    del rows

    phash = hex_to_words(r[2] for r in core_rows)
    dhash = hex_to_words(r[3] for r in core_rows)
    core = [r[0] for r in core_rows]  # frame ids, in the order of the hash rows
    del core_rows
    band_rows: dict[str, dict[str, Any]] = {}
    if weak_ids:
        band_rows = {r[0]: {"bands": r[1], "band_phash": r[2], "band_dhash": r[3]} for r in case.db.execute(
            "select p.frame_id, p.bands, p.band_phash, p.band_dhash from fingerprints p "
            "join frames f on f.frame_id = p.frame_id where p.status = 'ok'")}
    weak = [{"frame_id": f, **band_rows[f]} for f in weak_ids]
    clustering = cluster_labels(phash, dhash, params)
    labels = clustering.labels
    stats.cores, stats.representatives = clustering.cores, clustering.representatives
    stats.attached = int(clustering.attached.sum())

    # Stable cluster ids: components ordered by their first frame id.
    order: dict[int, int] = {}
    for label in labels.tolist():
        if label not in order:
            order[label] = len(order) + 1
    cluster_of = np.array([order[l] for l in labels.tolist()], dtype=np.int64)

    assignments: list[tuple] = []  # rows of frame_clusters, in _ASSIGNED order
    members: dict[int, list[int]] = {}
    for index, cid in enumerate(cluster_of.tolist()):
        members.setdefault(cid, []).append(index)
    medoid_of: dict[int, int] = {}
    for cid, idx in members.items():
        medoid, spread = _medoid(phash[idx], dhash[idx])
        medoid_of[cid] = idx[medoid]
        for pos, i in enumerate(idx):
            via = "nearest" if clustering.attached[i] else "hash"
            assignments.append((core[i], cid, via, int(spread[pos]), int(clustering.core_labels[i]) + 1))

    # Truncated frames: their decoded band against the bands of the representatives of every
    # multi-frame cluster, by the same clear-winner rule as stage 3 (as leaves, never links).
    sizes = np.bincount(cluster_of) if len(cluster_of) else np.zeros(0, dtype=np.int64)
    targets = clustering.reps[sizes[cluster_of[clustering.reps]] > 1] if weak else clustering.reps[:0]
    if weak and len(targets):
        target_bands = [_bands(band_rows[core[i]]) for i in targets.tolist()]
        member_rows = np.nonzero(sizes[cluster_of] > 1)[0] if params.attach_members else targets[:0]
        member_bands = [_bands(band_rows[core[i]]) for i in member_rows.tolist()]
        by_level: dict[str, list[dict[str, Any]]] = {}
        for r in weak:
            bands = _bands(r)
            if not bands:
                stats.band_unmatched += 1
                continue
            level = max(bands, key=int)  # the largest band that decoded
            by_level.setdefault(level, []).append(r | {"_band": bands[level]})
        for level, queries in sorted(by_level.items()):
            usable = [k for k, b in enumerate(target_bands) if level in b]
            have = [k for k, b in enumerate(member_bands) if level in b]
            members = (hex_to_words(member_bands[k][level][0] for k in have), hex_to_words(member_bands[k][level][1] for k in have),
                       cluster_of[member_rows[have]]) if have else None
            found = nearest_clusters(
                hex_to_words(q["_band"][0] for q in queries), hex_to_words(q["_band"][1] for q in queries),
                hex_to_words(target_bands[k][level][0] for k in usable), hex_to_words(target_bands[k][level][1] for k in usable),
                cluster_of[targets[usable]], _band_rule(int(level), params), params.attach_dhash_weight,
                members)
            for q, cid in zip(queries, found.tolist()):
                if cid < 0:
                    stats.band_unmatched += 1
                    continue
                stats.band_assigned += 1
                medoid_band = _bands(band_rows[core[medoid_of[cid]]]).get(level)
                distance = int(distances(hex_to_words([medoid_band[0]])[0], hex_to_words([q["_band"][0]])[0])) if medoid_band else None
                assignments.append((q["frame_id"], cid, "band", distance, None))
    else:
        stats.band_unmatched = len(weak)

    per_cluster: dict[int, Counter] = {}
    for frame_id, cid, *_ in assignments:
        per_cluster.setdefault(cid, Counter())[role_of[frame_id]] += 1
    cluster_rows = [
        {
            "cluster_id": cid,
            "frames": sum(count.values()),
            "snapshots": count.get("snapshot", 0),
            "references": count.get("reference", 0),
            "medoid": core[medoid_of[cid]],
        }
        for cid, count in sorted(per_cluster.items())
    ]
    stats.clusters = len(cluster_rows)
    stats.multi_frame_clusters = sum(1 for c in cluster_rows if c["frames"] > 1)
    with case.db.conn:
        case.db.execute("delete from frame_clusters")
        case.db.execute("delete from clusters")
    case.table("clusters").insert_all(cluster_rows)
    _insert_assignments(case, assignments)
    case.set_meta("cluster_params", params.signature())
    return stats


_ASSIGNED = ("frame_id", "cluster_id", "via", "distance", "core")  # the columns of an assignment tuple


def _insert_assignments(case: Case, assignments: list[tuple]) -> None:
    """The frame_clusters rows (tuples in `_ASSIGNED` order), by one executemany (sqlite-utils'
    insert_all spent ~90 us of Python per row: 9 s of a 10^5-frame case); a case file from
    before `core` gets the column, as insert_all(alter=True) gave it."""
    if not assignments:
        return
    have = {r[1] for r in case.db.execute("pragma table_info(frame_clusters)").fetchall()}
    with case.db.conn:
        for name in _ASSIGNED:
            if name not in have:
                case.db.execute(f"alter table frame_clusters add column [{name}] integer")
        case.db.conn.executemany(
            f"insert into frame_clusters ({', '.join(f'[{c}]' for c in _ASSIGNED)}) values ({', '.join('?' * len(_ASSIGNED))})",
            assignments)


def _band_rule(level: int, params: ClusterParams) -> list[tuple[int, int]]:
    """The (reach, margin) tiers for a band ending at `level` percent of the height."""
    if level >= params.band_whole_from:
        return [(params.attach_max, params.attach_margin)]
    tiers = [(params.band_reach, params.band_margin)]
    if params.band_far_reach:
        tiers.append((params.band_far_reach, params.band_far_margin))
    return tiers


def _bands(row: dict[str, Any]) -> dict[str, list[str]]:
    """A fingerprint's bands by level; rows from before the `bands` column have the one band."""
    if row.get("bands"):
        return json.loads(row["bands"])
    return {"55": [row["band_phash"], row["band_dhash"]]} if row.get("band_phash") else {}


def _medoid(phash: np.ndarray, dhash: np.ndarray, sample: int = 256) -> tuple[int, np.ndarray]:
    """Index of the member closest to all others (candidates sampled in big clusters) and each
    member's pHash distance to it."""
    n = len(phash)
    pool = np.arange(n) if n <= sample else np.linspace(0, n - 1, sample).astype(int)
    totals = np.array([distances(phash, phash[i]).sum() for i in pool])
    best = int(pool[int(np.argmin(totals))])
    spread = distances(phash, phash[best])
    return int(best), spread
