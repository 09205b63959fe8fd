"""Splitting a cluster of several cameras (`attribute._resolve_cluster`), with many devices or few.

A cluster holding more than `split_candidates` devices scores each part only against its
candidates (issue 13: ~1,900 devices in one cluster at 10^6); one holding at most that many must
decide exactly as the split always did, so the old loop is kept here, verbatim, as the oracle."""

from __future__ import annotations

import copy
from collections import Counter

import numpy as np

from camleak.attribute import (REVIEW_PREFIX, SPLIT_REVIEW, AttributionParams, _fine_nearest, _resolve_cluster,
                               _Thumbs, _Unit)
from camleak.casefile import Case


def room(scene: int) -> np.ndarray:
    return np.random.default_rng([scene, 7]).uniform(20, 230, (16, 32))


def detail(scene: int) -> np.ndarray:
    """What only the fine thumbnail sees of a room: a pattern summing to nothing in each 2x2
    block, so the 32x16 thumbnail does not show it."""
    checker = np.kron(np.ones((16, 32)), np.array([[1.0, -1.0], [-1.0, 1.0]]))
    return np.kron(np.random.default_rng([scene, 8]).uniform(0, 40, (16, 32)), np.ones((2, 2))) * checker


def view(scene: int, twin: int | None = None, mix: float = 0.0, seen: int | None = None
         ) -> tuple[np.ndarray, np.ndarray]:
    """A room with `mix` of another one blended in, (32x16 grey, 64x32 fine); the fine one with
    the detail of room `seen` (default the first)."""
    coarse = (1 - mix) * room(scene) + mix * room(scene if twin is None else twin)
    return coarse, np.kron(coarse, np.ones((2, 2))) + detail(scene if seen is None else seen)


def make_case(tmp_path, views: dict[str, tuple[np.ndarray, np.ndarray]], noise: float = 6.0) -> Case:
    """Fingerprint rows (both thumbnails, with a little sensor noise) of each frame's view."""
    case = Case(tmp_path / "case.db")
    rows = []
    for k, (frame, (coarse, fine)) in enumerate(views.items()):
        rng = np.random.default_rng([k, 3])
        rows.append({"frame_id": frame, "status": "ok",
                     "thumb": np.clip(coarse + rng.normal(0, noise, coarse.shape), 0, 255).astype(np.uint8).tobytes(),
                     "fine": np.clip(fine + rng.normal(0, noise, fine.shape), 0, 255).astype(np.uint8).tobytes()})
    case.table("fingerprints").insert_all(rows)
    return case


def anchored(device: str, frames: list[str]) -> _Unit:
    return _Unit(f"core:{device}", 1, frames=frames, device=device, kind="reference", confidence=0.99)


def outcome(units: list[_Unit]) -> dict[str, tuple]:
    return {u.key: (u.device, u.kind, u.confidence, u.review, u.reason) for u in units}


def test_a_cluster_of_more_cameras_than_candidates_still_gives_each_part_its_own(tmp_path):
    # 12 cameras, each anchored by its own core, and two unanchored parts of each camera's room:
    # every part must go to its camera though only 4 candidates are scored for each.
    n = 12
    views, units = {}, []
    for k in range(n):
        own = [f"a{k}-{i}" for i in range(8)]
        views.update({f: view(k) for f in own})
        units.append(anchored(f"cam-{k:02d}", own))
        for p in range(2):
            part = [f"p{k}-{p}-{i}" for i in range(3)]
            views.update({f: view(k) for f in part})
            units.append(_Unit(f"core:p{k}-{p}", 1, frames=part))
    case = make_case(tmp_path, views)
    params = AttributionParams(split_candidates=4)
    decision = _resolve_cluster(1, units, Counter(), ({}, {}), _Thumbs(case), params)
    assert decision["split"] == 1
    parts = [u for u in units if u.key.startswith("core:p")]
    assert {u.key: u.device for u in parts} == {u.key: f"cam-{int(u.key[6:].split('-')[0]):02d}" for u in parts}
    assert all(u.review is None for u in parts)


def old_split(units: list[_Unit], thumbs: _Thumbs, params: AttributionParams) -> None:
    """The split as it was before issue 13 (1fcc0a3), for a cluster of anchored and free parts
    without votes: every part against every device, the anchors stacked again for each part."""
    from camleak.attribute import _Fine  # noqa: F401  (used through _fine_nearest)

    anchored_units = [u for u in units if u.device]
    devices = sorted({u.device for u in anchored_units})
    free = [u for u in units if not u.device and not u.review]
    kind_of = {d: ("reference" if any(u.kind == "reference" for u in anchored_units if u.device == d) else "logs")
               for d in devices}
    conf_of = {d: max(((u.confidence or 0.0) for u in anchored_units if u.device == d),
                      default=params.log_evidence_confidence) for d in devices}
    pool = {d: sorted(f for u in units if u.device == d for f in u.frames) for d in devices}
    pending = [u for u in free if not u.device]
    for _ in range(3):
        placed = []
        sampled = {d: pool[d][:: max(1, len(pool[d]) // params.split_sample)] for d in devices}
        feats = thumbs.features([f for d in devices for f in sampled[d]] + [f for u in pending for f in u.frames])
        for u in pending:
            own = [feats[f] for f in u.frames if f in feats]
            if not own:
                continue
            mine_i, mine_g = np.stack([i for i, _ in own]), np.stack([g for _, g in own])
            scores = []
            for d in devices:
                anchor = [feats[f] for f in sampled[d] if f in feats]
                if not anchor:
                    scores.append((-1.0, -1.0, d))
                    continue
                grey = float((mine_i @ np.stack([i for i, _ in anchor]).T).max())
                edges = float((mine_g @ np.stack([g for _, g in anchor]).T).max())
                scores.append((edges, grey, d))
            scores.sort(reverse=True)
            (best, grey, device), (second, _, runner) = scores[0], scores[1]
            if grey >= params.split_min and best - second >= params.split_margin:
                placed.append((u, device))
            elif grey >= params.split_min and (fine_device := _fine_nearest(u.frames, sampled, thumbs, params)):
                placed.append((u, fine_device))
            else:
                u.review = [device, runner]
                u.reason = SPLIT_REVIEW + f"{device} as {runner} in a cluster of several cameras"
        for u, device in placed:
            u.device, u.kind, u.confidence, u.review, u.reason = device, kind_of[device], conf_of[device], None, None
            pool[device].extend(u.frames)
        pending = [u for u in pending if not u.device]
        if not placed or not pending:
            break
    for u in pending:
        if not u.review:
            u.review = devices
            u.reason = REVIEW_PREFIX + "part of a cluster of several cameras that no thumbnail places"


def test_a_cluster_of_few_cameras_is_split_exactly_as_before(tmp_path):
    # 6 cameras in three look-alike pairs (one room, half of the other's blended into the twin's,
    # each camera's own fine detail), parts drawn between the two rooms of a pair at several
    # mixes with either camera's detail: some clear, some coarse ties the fine look decides, one
    # left for review.
    rng = np.random.default_rng(5)
    views, units = {}, []
    for k in range(6):
        pair = k // 2 * 2
        own = [f"a{k}-{i}" for i in range(70 + 10 * k)]
        views.update({f: view(pair, pair + 1, 0.0 if k % 2 == 0 else 0.55, seen=k) for f in own})
        units.append(anchored(f"cam-{k}", own))
    for p in range(60):
        pair = int(rng.integers(3)) * 2
        mix = float(rng.uniform(0, 0.6))
        part = [f"p{p}-{i}" for i in range(int(rng.integers(1, 4)))]
        seen = pair + int(rng.integers(2))
        views.update({f: view(pair, pair + 1, mix, seen) for f in part})
        units.append(_Unit(f"core:p{p}", 1, frames=part))
    case = make_case(tmp_path, views)
    want = copy.deepcopy(units)
    old_split(want, _Thumbs(case), AttributionParams())
    expected = outcome(want)
    placed = sum(1 for u in want if u.key.startswith("core:p") and u.device)
    assert 0 < placed < 60  # (the scenario has both: parts placed and parts left for review)
    for k in (6, 32, 10**6):  # as many candidates as devices, the default, any number
        got = copy.deepcopy(units)
        _resolve_cluster(1, got, Counter(), ({}, {}), _Thumbs(case), AttributionParams(split_candidates=k))
        assert outcome(got) == expected


def test_a_frame_of_a_crowded_cluster_is_checked_against_the_cameras_it_looks_like(tmp_path):
    # A cluster of 12 cameras (more than the 4 candidates): the rivals it gives an evidence frame
    # of camera 3's room, in a look-alike flat with camera 7's, are the cameras its thumbnail
    # matches best, so camera 7 among them, and the camera with no frames of its own to compare.
    from camleak.attribute import _crowded_rivals, _Feats, _features

    frames, ids = {}, {}
    for k in range(12):
        ids[f"cam-{k:02d}"] = [f"e{k}-{i}" for i in range(6)]
        frames.update({f: view(k) if k != 7 else view(3, 7, 0.15) for f in ids[f"cam-{k:02d}"]})
    frames["leak"] = view(3)
    coarse = {f: np.clip(c + np.random.default_rng([i, 4]).normal(0, 6, c.shape), 0, 255).astype(np.uint8).tobytes()
              for i, (f, (c, _)) in enumerate(frames.items())}
    grey, edges = _features(list(coarse.values()))
    feats = _Feats(ids, dict(zip(coarse, zip(grey, edges))))
    units = {"core:leak": _Unit("core:leak", 1, frames=["leak"], device="cam-03")}
    devices = {1: set(ids) | {"cam-bare"}}
    params = AttributionParams(split_candidates=4)
    rivals = _crowded_rivals([{"frame_id": "leak"}], units, {"leak": "core:leak"}, devices, feats, params)
    assert {"cam-03", "cam-07", "cam-bare"} <= rivals["leak"]
    assert len(rivals["leak"]) == 4 + 1 + 1  # the candidates and the source, and the bare one
    assert _crowded_rivals([{"frame_id": "leak"}], units, {"leak": "core:leak"}, devices, feats,
                           AttributionParams()) == {}  # 13 devices, not crowded by default
