"""Cluster stage: group frames by the camera they came from, from their hashes alone.

The rule: two complete, informative frames are *neighbours* when both hash kinds agree (a
256-bit pHash and a 64-bit dHash, each within its own threshold). A neighbour pair is *linked*
when it is close (both within a tighter bar) or when a third frame is a neighbour of both;
clusters are the connected components of the links. Single-link clustering over one threshold
chains two homes together through one borderline pair; requiring two hash kinds, and
corroboration by a shared neighbour for anything not clearly close, is what stops that.

Truncated frames never create links: each joins the one cluster whose frames match its decoded
band (at least two of them, and no other cluster's), or none. Uninformative frames (near-black,
flat) are left out entirely: they look alike across homes.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Iterable

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph

from .casefile import Case


@dataclass(frozen=True)
class ClusterParams:
    phash_max: int = 74  # of 256 bits: neighbours
    dhash_max: int = 22  # of 64 bits
    tight_phash_max: int = 59  # a neighbour pair this close is linked without corroboration
    tight_dhash_max: int = 17
    min_common: int = 1  # otherwise it needs this many shared neighbours
    band_phash_max: int = 56  # a truncated frame's band must match this closely...
    band_dhash_max: int = 18
    band_min_support: int = 2  # ...with this many frames, all of one cluster
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
    """Hamming distances between hash rows a[i] and b[i] (broadcasting)."""
    return np.bitwise_count(a ^ b).sum(axis=-1, dtype=np.int64)


def neighbour_pairs(phash: np.ndarray, dhash: np.ndarray, params: ClusterParams) -> Iterable[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """All pairs (i < j) within both thresholds with their distances, in chunks of rows.

    The short dHash screens every pair; the long pHash is compared only where dHash agreed.
    """
    phash_max, dhash_max = params.phash_max, params.dhash_max
    n = len(phash)
    for start in range(0, n, params.chunk):
        stop = min(n, start + params.chunk)
        dd = distances(dhash[start:stop, None, :], dhash[None, :, :])
        rows, cols = np.nonzero(dd <= dhash_max)
        d_near = dd[rows, cols]
        rows = rows + start
        keep = cols > rows
        rows, cols, d_near = rows[keep], cols[keep], d_near[keep]
        dp = distances(phash[rows], phash[cols])
        close = dp <= phash_max
        yield rows[close], cols[close], dp[close], d_near[close]


def link_pairs(phash: np.ndarray, dhash: np.ndarray, params: ClusterParams) -> list[tuple[np.ndarray, np.ndarray]]:
    """The linked pairs: neighbours that are tightly close or share enough neighbours."""
    parts = list(neighbour_pairs(phash, dhash, params))
    if not parts:
        return []
    rows = np.concatenate([p[0] for p in parts])
    cols = np.concatenate([p[1] for p in parts])
    dp = np.concatenate([p[2] for p in parts])
    dd = np.concatenate([p[3] for p in parts])
    n = len(phash)
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
    graph = sparse.coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n, n))
    return csgraph.connected_components(graph, directed=False)[1].astype(np.int64)


@dataclass
class ClusterStats:
    core_frames: int = 0
    clusters: int = 0
    multi_frame_clusters: int = 0
    band_assigned: int = 0
    band_ambiguous: int = 0
    band_unmatched: int = 0
    left_out: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def cluster_case(case: Case, params: ClusterParams = DEFAULT_CLUSTER_PARAMS) -> ClusterStats:
    """Replace the case's clusters with those of its current fingerprints."""
    rows = list(
        case.db.query(
            "select p.frame_id, p.status, p.phash, p.dhash, p.band_phash, p.band_dhash, f.role "
            "from fingerprints p join frames f on f.frame_id = p.frame_id order by p.frame_id"
        )
    )
    core = [r for r in rows if r["status"] == "ok" and r["phash"]]
    weak = [r for r in rows if r["status"] == "ok" and not r["phash"] and r["band_phash"]]
    stats = ClusterStats(core_frames=len(core), left_out=len(rows) - len(core) - len(weak))

    phash = hex_to_words(r["phash"] for r in core)
    dhash = hex_to_words(r["dhash"] for r in core)
    labels = components(len(core), link_pairs(phash, dhash, params))

    # Stable cluster ids: components ordered by their first frame id.
    order: dict[int, int] = {}
    for label in labels.tolist():
        if label not in order:
            order[label] = len(order) + 1
    cluster_of = np.array([order[l] for l in labels.tolist()], dtype=np.int64)

    assignments: list[dict[str, Any]] = []
    members: dict[int, list[int]] = {}
    for index, cid in enumerate(cluster_of.tolist()):
        members.setdefault(cid, []).append(index)
    medoid_of: dict[int, int] = {}
    for cid, idx in members.items():
        medoid, spread = _medoid(phash[idx], dhash[idx])
        medoid_of[cid] = idx[medoid]
        for pos, i in enumerate(idx):
            assignments.append({"frame_id": core[i]["frame_id"], "cluster_id": cid, "via": "hash", "distance": int(spread[pos])})

    if weak and core:
        band_p = hex_to_words(r["band_phash"] for r in core)
        band_d = hex_to_words(r["band_dhash"] for r in core)
        for r in weak:
            wp, wd = hex_to_words([r["band_phash"]])[0], hex_to_words([r["band_dhash"]])[0]
            dp = distances(band_p, wp)
            dd = distances(band_d, wd)
            close = np.nonzero((dp <= params.band_phash_max) & (dd <= params.band_dhash_max))[0]
            found = sorted(set(cluster_of[close].tolist()))
            if len(found) == 1 and len(close) >= params.band_min_support:
                stats.band_assigned += 1
                assignments.append({"frame_id": r["frame_id"], "cluster_id": found[0], "via": "band", "distance": int(dp[close].min())})
            elif len(found) > 1:
                stats.band_ambiguous += 1
            else:
                stats.band_unmatched += 1
    else:
        stats.band_unmatched = len(weak)

    role_of = {r["frame_id"]: r["role"] for r in rows}
    per_cluster: dict[int, Counter] = {}
    for a in assignments:
        per_cluster.setdefault(a["cluster_id"], Counter())[role_of[a["frame_id"]]] += 1
    cluster_rows = [
        {
            "cluster_id": cid,
            "frames": sum(count.values()),
            "snapshots": count.get("snapshot", 0),
            "references": count.get("reference", 0),
            "medoid": core[medoid_of[cid]]["frame_id"],
        }
        for cid, count in sorted(per_cluster.items())
    ]
    stats.clusters = len(cluster_rows)
    stats.multi_frame_clusters = sum(1 for c in cluster_rows if c["frames"] > 1)
    with case.db.conn:
        case.db.execute("delete from frame_clusters")
        case.db.execute("delete from clusters")
    case.table("clusters").insert_all(cluster_rows)
    case.table("frame_clusters").insert_all(assignments)
    case.set_meta("cluster_params", params.signature())
    return stats


def _medoid(phash: np.ndarray, dhash: np.ndarray, sample: int = 256) -> tuple[int, np.ndarray]:
    """Index of the member closest to all others (candidates sampled in big clusters) and each
    member's pHash distance to it."""
    n = len(phash)
    pool = np.arange(n) if n <= sample else np.linspace(0, n - 1, sample).astype(int)
    totals = np.array([distances(phash, phash[i]).sum() for i in pool])
    best = int(pool[int(np.argmin(totals))])
    spread = distances(phash, phash[best])
    return int(best), spread
