"""Clustering: the linking rule, exactness of the components, truncated-frame assignment."""

from __future__ import annotations

import io

import numpy as np
import pytest

from camleak.casefile import Case

from camleak.cluster import (ClusterParams, cluster_case, cluster_labels, components, core_pairs, distances,
                            hex_to_words, link_pairs)


def brute_force_labels(ph, dh, params):
    """The joining rule written the slow, obvious way (any number of words per hash)."""
    return _flood(brute_force_links(ph, dh, params))


def brute_force_links(ph, dh, params):
    """Each item's linked items under the joining rule."""
    n = len(ph)
    dp = lambda i, j: sum(bin(int(a) ^ int(b)).count("1") for a, b in zip(ph[i], ph[j]))  # noqa: E731
    dd = lambda i, j: sum(bin(int(a) ^ int(b)).count("1") for a, b in zip(dh[i], dh[j]))  # noqa: E731
    near = [{j for j in range(n) if j != i and dp(i, j) <= params.phash_max and dd(i, j) <= params.dhash_max} for i in range(n)]
    return [[j for j in near[i] if (dp(i, j) <= params.tight_phash_max and dd(i, j) <= params.tight_dhash_max)
             or len(near[i] & near[j]) >= params.min_common] for i in range(n)]


def _flood(adjacency):
    labels = [-1] * len(adjacency)
    for start in range(len(adjacency)):
        if labels[start] >= 0:
            continue
        stack, labels[start] = [start], start
        while stack:
            node = stack.pop()
            for other in adjacency[node]:
                if labels[other] < 0:
                    labels[other] = start
                    stack.append(other)
    return np.array(labels)


def brute_force_two_stage(ph, dh, params):
    """Both stages of the clustering rule by comparing every pair, no index."""
    n = len(ph)
    dp = distances(ph[:, None, :], ph[None, :, :])
    dd = distances(dh[:, None, :], dh[None, :, :])
    close = (dp <= params.core_phash_max) & (dd <= params.core_dhash_max)
    cores = _flood([[j for j in np.nonzero(close[i])[0] if j != i] for i in range(n)])
    reps = []
    for core in sorted(set(cores.tolist())):
        members = [i for i in range(n) if cores[i] == core]
        chosen = [members[0]]
        while len(chosen) < params.exemplar_max:
            gap = [min(int(dp[m, e]) for e in chosen) for m in members]
            if max(gap) <= params.exemplar_cover:
                break
            chosen.append(members[gap.index(max(gap))])
        reps += chosen
    reps = sorted(reps)
    links = brute_force_links(ph[reps], dh[reps], params)
    score = lambda i, j: int(dp[i, j]) + params.attach_dhash_weight * int(dd[i, j])  # noqa: E731

    def stage_two(dropped):
        joined = _flood([[b for b in links[a] if reps[a] not in dropped and reps[b] not in dropped]
                         for a in range(len(reps))])
        adjacency = [[j for j in np.nonzero(close[i])[0] if j != i] for i in range(n)]
        for a, ra in enumerate(reps):
            for b, rb in enumerate(reps):
                if a != b and joined[a] == joined[b]:
                    adjacency[ra].append(rb)
        return _flood(adjacency)

    labels = stage_two(set())
    # conflicts: a frame in no core that stage 2 put in a multi-frame cluster leaves it (its
    # stage-2 links dropped) when another candidate cluster (a representative within reach +
    # margin) scores, on its members, at least conflict_margin below its own cluster's other members.
    size = {label: int((labels == label).sum()) for label in set(labels.tolist())}
    core_size = {c: int((cores == c).sum()) for c in set(cores.tolist())}
    dropped = set()
    for i in range(n):
        if not params.conflict_margin or core_size[cores[i]] != 1 or size[labels[i]] == 1:
            continue
        candidates = {labels[r] for r in reps if r != i and size[labels[r]] > 1
                      and score(i, r) <= params.attach_max + params.attach_margin} | {labels[i]}
        scores = {label: min(score(i, m) for m in range(n) if labels[m] == label and m != i) for label in candidates}
        own = scores.pop(labels[i])
        if scores and min(scores.values()) + params.conflict_margin <= own:
            dropped.add(i)
    if dropped:
        labels = stage_two(dropped)
    # stage 3: a frame alone joins the clearly nearest cluster. The representatives choose the
    # candidate clusters (nearest representative within reach + margin); with attach_members a
    # candidate is then scored on its nearest member, any frame of it.
    size = {label: int((labels == label).sum()) for label in set(labels.tolist())}
    final = labels.copy()
    for i in range(n):
        if size[labels[i]] != 1:
            continue
        scores = {}
        for r in reps:
            if size[labels[r]] > 1:
                scores[labels[r]] = min(scores.get(labels[r], 10**9), score(i, r))
        if params.attach_members:
            scores = {label: min(score(i, m) for m in range(n) if labels[m] == label)
                      for label, s in scores.items() if s <= params.attach_max + params.attach_margin}
        ranked = sorted(scores.items(), key=lambda t: t[1])
        if ranked and ranked[0][1] <= params.attach_max and (len(ranked) == 1 or ranked[1][1] - ranked[0][1] >= params.attach_margin):
            final[i] = ranked[0][0]
    return final


def same_partition(a, b):
    return len(set(zip(a.tolist(), b.tolist()))) == len(set(a.tolist())) == len(set(b.tolist()))


def camera_like(rng, cameras, frames, noise, flips=12, dflips=5):
    """256-bit pHash / 64-bit dHash rows: noisy near-duplicates around each camera's one or two
    modes (day, night), plus random frames."""
    ph, dh = [], []
    for _ in range(cameras):
        modes = [(rng.integers(0, 2, 256, dtype=np.uint8), rng.integers(0, 2, 64, dtype=np.uint8))]
        if rng.random() < 0.5:
            p, d = modes[0][0].copy(), modes[0][1].copy()
            p[rng.choice(256, 60, replace=False)] ^= 1
            d[rng.choice(64, 14, replace=False)] ^= 1
            modes.append((p, d))
        for _ in range(int(rng.integers(1, frames + 1))):
            p, d = (m.copy() for m in modes[int(rng.integers(len(modes)))])
            stray = rng.random() < 0.15  # far from every other frame of its camera: left alone until stage 3
            p[rng.choice(256, 64 if stray else int(rng.integers(0, flips + 1)), replace=False)] ^= 1
            d[rng.choice(64, 14 if stray else int(rng.integers(0, dflips + 1)), replace=False)] ^= 1
            ph.append(p), dh.append(d)
    for _ in range(noise):
        ph.append(rng.integers(0, 2, 256, dtype=np.uint8)), dh.append(rng.integers(0, 2, 64, dtype=np.uint8))
    pack = lambda rows: np.packbits(np.array(rows), axis=1).view(">u8").astype(np.uint64)  # noqa: E731
    order = rng.permutation(len(ph))
    return pack(ph)[order], pack(dh)[order]


@pytest.mark.parametrize("members", [True, False])
@pytest.mark.parametrize("seed,cameras,frames,noise", [(1, 20, 15, 30), (2, 40, 8, 60), (3, 5, 60, 10), (4, 60, 4, 100)])
def test_clustering_equals_brute_force_on_random_data(seed, cameras, frames, noise, members):
    rng = np.random.default_rng(seed)
    ph, dh = camera_like(rng, cameras, frames, noise)
    params = ClusterParams(attach_members=members)
    fast = cluster_labels(ph, dh, params)
    assert same_partition(fast.labels, brute_force_two_stage(ph, dh, params))
    assert fast.attached.any()  # the data exercise every stage
    # the index finds the same cores as comparing every pair
    close = (distances(ph[:, None, :], ph[None, :, :]) <= params.core_phash_max) & (
        distances(dh[:, None, :], dh[None, :, :]) <= params.core_dhash_max)
    assert same_partition(components(len(ph), [core_pairs(ph, dh, params)]), components(len(ph), [np.nonzero(close)]))


def member_strays(rng, cameras, frames, strays):
    """Tight cameras plus strays that are each a distant copy of one frame: nearer that frame than
    the camera's exemplars, so scoring candidates on their members changes what attaches."""
    ph, dh = [], []
    for _ in range(cameras):
        mode_p, mode_d = rng.integers(0, 2, 256, dtype=np.uint8), rng.integers(0, 2, 64, dtype=np.uint8)
        for _ in range(frames):
            p, d = mode_p.copy(), mode_d.copy()
            p[rng.choice(256, int(rng.integers(0, 15)), replace=False)] ^= 1
            d[rng.choice(64, int(rng.integers(0, 5)), replace=False)] ^= 1
            ph.append(p), dh.append(d)
    for _ in range(strays):
        k = int(rng.integers(len(ph)))
        p, d = ph[k].copy(), dh[k].copy()
        p[rng.choice(256, 60, replace=False)] ^= 1
        d[rng.choice(64, 12, replace=False)] ^= 1
        ph.append(p), dh.append(d)
    pack = lambda rows: np.packbits(np.array(rows), axis=1).view(">u8").astype(np.uint64)  # noqa: E731
    order = rng.permutation(len(ph))
    return pack(ph)[order], pack(dh)[order]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_strays_scored_on_members_equal_brute_force(seed):
    ph, dh = member_strays(np.random.default_rng(seed), 15, 12, 40)
    on_members = ClusterParams(exemplar_max=1, attach_max=115)
    on_reps = ClusterParams(exemplar_max=1, attach_max=115, attach_members=False)
    fast, fast_reps = cluster_labels(ph, dh, on_members), cluster_labels(ph, dh, on_reps)
    assert same_partition(fast.labels, brute_force_two_stage(ph, dh, on_members))
    assert same_partition(fast_reps.labels, brute_force_two_stage(ph, dh, on_reps))
    assert fast.attached.sum() > fast_reps.attached.sum()  # the members rule is exercised


def test_a_huge_bucket_is_still_exact():
    """Thousands of near-duplicates share every block value; pass 2 must still find the pairs
    the bucket leader missed."""
    rng = np.random.default_rng(9)
    base = rng.integers(0, 2, 256, dtype=np.uint8)
    rows = []
    for _ in range(1500):
        p = base.copy()
        p[rng.choice(40, int(rng.integers(0, 12)), replace=False)] ^= 1  # differences in the first blocks only
        rows.append(p)
    ph = np.packbits(np.array(rows), axis=1).view(">u8").astype(np.uint64)
    dh = np.zeros((len(ph), 1), dtype=np.uint64)
    params = ClusterParams()
    close = distances(ph[:, None, :], ph[None, :, :]) <= params.core_phash_max
    assert same_partition(components(len(ph), [core_pairs(ph, dh, params)]), components(len(ph), [np.nonzero(close)]))


def test_a_case_with_no_usable_frame_clusters_to_nothing(tmp_path):
    stats, got = _cluster(tmp_path, [_fp("s:dark", "0" * 64, "0" * 16, status="uninformative"),
                                     _fp("s:cut", band=("0" * 64, "0" * 16))], ClusterParams())
    assert got == {} and stats.clusters == 0 and stats.band_unmatched == 1
    stats, got = _cluster(tmp_path / "empty", [], ClusterParams())
    assert got == {} and stats.clusters == 0


def test_the_core_radius_must_stay_below_the_block_count():
    ph = np.zeros((3, 4), dtype=np.uint64)
    with pytest.raises(ValueError, match="exactness"):
        core_pairs(ph, np.zeros((3, 1), dtype=np.uint64), ClusterParams(core_phash_max=16))


def noisy_copies(rng, base, count, flips):
    out = []
    for _ in range(count):
        value = int(base)
        for bit in rng.choice(64, size=flips, replace=False):
            value ^= 1 << int(bit)
        out.append(value)
    return out


def test_joining_rule_equals_brute_force():
    rng = np.random.default_rng(3)
    params = ClusterParams(phash_max=10, dhash_max=12, tight_phash_max=6, tight_dhash_max=8, chunk=37)
    ph, dh = [], []
    for _ in range(25):
        bp, bd = rng.integers(0, 2**63, dtype=np.uint64), rng.integers(0, 2**63, dtype=np.uint64)
        k = int(rng.integers(1, 12))
        ph += noisy_copies(rng, bp, k, int(rng.integers(0, 7)))
        dh += noisy_copies(rng, bd, k, int(rng.integers(0, 9)))
    ph, dh = np.array(ph, dtype=np.uint64)[:, None], np.array(dh, dtype=np.uint64)[:, None]
    assert same_partition(components(len(ph), link_pairs(ph, dh, params)), brute_force_labels(ph, dh, params))


def test_both_hash_kinds_must_agree():
    params = ClusterParams(phash_max=4, dhash_max=4, tight_phash_max=4, tight_dhash_max=4)
    ph = np.array([[0], [0], [0b1111]], dtype=np.uint64)
    dh = np.array([[0], [0b11111111], [0]], dtype=np.uint64)
    # 0-1: phash equal but dhash 8 apart; 0-2: dhash equal, phash 4 apart -> only 0-2 linked
    labels = components(3, link_pairs(ph, dh, params))
    assert labels[0] == labels[2] != labels[1]


def test_a_borderline_pair_needs_a_shared_neighbour():
    # Two tight groups {0,1} and {2,3}; 1-2 are neighbours but not tight and share no neighbour.
    params = ClusterParams(phash_max=6, dhash_max=64, tight_phash_max=3, tight_dhash_max=64)
    ph = np.array([[0b0], [0b11], [0b11111111], [0b111111111]], dtype=np.uint64)
    dh = np.zeros((4, 1), dtype=np.uint64)
    labels = components(4, link_pairs(ph, dh, params))
    assert labels[0] == labels[1] and labels[2] == labels[3] and labels[1] != labels[2]
    # a frame between them that neighbours both corroborates the link
    ph = np.vstack([ph, np.array([[0b11111]], dtype=np.uint64)])
    labels = components(5, link_pairs(ph, np.zeros((5, 1), dtype=np.uint64), params))
    assert len(set(labels.tolist())) == 1


def _bits(size, *spans):
    row = np.zeros(size, dtype=np.uint8)
    for start, stop in spans:
        row[start:stop] ^= 1
    return row


def loosely_claimed_frame():
    """Camera A: a core (frames 0-3) and a lone frame 4 tight to it. Camera B: a core (frames
    6-9). Frame 5 is within the loose rule of A's core, (pHash, dHash) = (67, 20), and of frame 4,
    (70, 14), and those two corroborate each other; B is beyond the loose rule (pHash 81) but far
    nearer by the combined score: 81 + 4 x 3 = 93 against A's 70 + 4 x 14 = 126 (the pattern of a
    night thumbnail pulled into another home's day cluster)."""
    ph, dh = [], []
    for k in range(4):  # A's core
        ph.append(_bits(256, (240 + k, 241 + k))), dh.append(_bits(64))
    ph.append(_bits(256, (0, 40))), dh.append(_bits(64, (0, 6)))  # 4: A, alone, tight to the core
    ph.append(_bits(256, (22, 88))), dh.append(_bits(64, (0, 20)))  # 5: the frame in question
    for k in range(4):  # B's core, around frame 5 moved by 80 pHash bits and 3 dHash bits
        ph.append(_bits(256, (22, 88), (100, 180), (244 + k, 245 + k))), dh.append(_bits(64, (0, 20), (30, 33)))
    pack = lambda rows: np.packbits(np.array(rows), axis=1).view(">u8").astype(np.uint64)  # noqa: E731
    return pack(ph), pack(dh)


def test_a_frame_claimed_loosely_by_one_cluster_but_nearer_another_leaves_it():
    ph, dh = loosely_claimed_frame()
    assert distances(ph[5], ph[0]) == 67 and distances(dh[5], dh[0]) == 20
    assert distances(ph[5], ph[4]) == 70 and distances(dh[5], dh[4]) == 14
    assert distances(ph[5], ph[6]) == 81 and distances(dh[5], dh[6]) == 3
    without = cluster_labels(ph, dh, ClusterParams(conflict_margin=0)).labels
    assert len(set(without[:6].tolist())) == 1  # stage 2 alone puts frame 5 in A
    fast = cluster_labels(ph, dh, ClusterParams())
    labels = fast.labels
    assert len(set(labels[:5].tolist())) == 1 and len(set(labels[6:].tolist())) == 1
    assert labels[5] != labels[0]  # not in A: it leaves, and stage 3 attaches it to B, the clear winner
    assert labels[5] == labels[6] and fast.attached[5]
    assert same_partition(labels, brute_force_two_stage(ph, dh, ClusterParams()))
    assert same_partition(without, brute_force_two_stage(ph, dh, ClusterParams(conflict_margin=0)))


def test_distances_over_multiword_hashes():
    a = hex_to_words(["0" * 64, "f" * 64, "0" * 63 + "1"])
    assert a.shape == (3, 4)
    assert distances(a[:, None, :], a[None, :, :]).tolist() == [[0, 256, 1], [256, 0, 255], [1, 255, 0]]


def _fp(frame_id, phash=None, dhash=None, band=None, status="ok"):
    return {"frame_id": frame_id, "status": status, "phash": phash, "dhash": dhash,
            "band_phash": band[0] if band else phash, "band_dhash": band[1] if band else dhash}


SMALL = dict(phash_max=4, dhash_max=4, tight_phash_max=4, tight_dhash_max=4, core_phash_max=2, block_bits=8,
             attach_max=0, band_reach=12, band_margin=8, band_far_reach=0)


def _cluster(tmp_path, frames, params):
    case = Case(tmp_path / "case.db")
    for row in frames:
        if row["phash"] is None:
            row.pop("phash"), row.pop("dhash")
    case.table("frames").insert_all([{"frame_id": f["frame_id"], "role": "snapshot", "snapshot": f["frame_id"][2:]} for f in frames])
    case.table("fingerprints").insert_all(frames, alter=True)
    stats = cluster_case(case, params)
    return stats, {r["frame_id"]: (r["cluster_id"], r["via"]) for r in case.db.query("select * from frame_clusters")}


def test_truncated_frames_join_one_cluster_by_their_band_or_none(tmp_path):
    frames = [
        _fp("s:a1", "0" * 16, "0" * 16, ("00000000000000ff", "0" * 16)),
        _fp("s:a2", "0000000000000003", "0" * 16, ("00000000000000ff", "0" * 16)),
        _fp("s:b1", "ffffffffffffffff", "f" * 16, ("ffffffffffffff00", "f" * 16)),
        _fp("s:b2", "fffffffffffffff7", "f" * 16, ("ffffffffffffff00", "f" * 16)),
        _fp("s:t-a", band=("00000000000000fe", "0" * 16)),  # matches a's band
        _fp("s:t-x", band=("0f0f0f0f0f0f0f0f", "0f0f0f0f0f0f0f0f")),  # matches nothing
        _fp("s:dark", "0" * 16, "0" * 16, status="uninformative"),
    ]
    stats, got = _cluster(tmp_path, frames, ClusterParams(**SMALL))
    assert got["s:a1"][0] == got["s:a2"][0] != got["s:b1"][0] == got["s:b2"][0]
    assert got["s:t-a"] == (got["s:a1"][0], "band")
    assert "s:t-x" not in got and "s:dark" not in got
    assert (stats.band_assigned, stats.band_unmatched, stats.clusters) == (1, 1, 2)


def test_a_truncated_frame_between_two_clusters_joins_neither(tmp_path):
    frames = [
        _fp("s:a1", "0" * 16, "0" * 16, ("0" * 16, "0" * 16)),
        _fp("s:a2", "0000000000000003", "0" * 16, ("0" * 16, "0" * 16)),
        _fp("s:b1", "ffffffffffffffff", "f" * 16, ("000000000000000f", "0" * 16)),
        _fp("s:b2", "fffffffffffffff7", "f" * 16, ("000000000000000f", "0" * 16)),
        _fp("s:t-ab", band=("0000000000000003", "0" * 16)),  # 2 bits from a, 2 from b: no clear winner
    ]
    stats, got = _cluster(tmp_path, frames, ClusterParams(**SMALL))
    assert "s:t-ab" not in got and stats.band_unmatched == 1


def test_a_short_band_far_from_every_cluster_but_clearly_nearest_one_joins_it(tmp_path):
    frames = lambda: [  # noqa: E731 (fresh rows per case: _cluster edits them)
        _fp("s:a1", "0" * 16, "0" * 16, ("00000000000000ff", "0" * 16)),
        _fp("s:a2", "0000000000000003", "0" * 16, ("00000000000000ff", "0" * 16)),
        _fp("s:b1", "ffffffffffffffff", "f" * 16, ("ffffffffffffff00", "f" * 16)),
        _fp("s:b2", "fffffffffffffff7", "f" * 16, ("ffffffffffffff00", "f" * 16)),
        _fp("s:t-a", band=("00000000ffff00ff", "0" * 16)),  # 16 bits from a's band: beyond band_reach
    ]
    stats, got = _cluster(tmp_path / "near", frames(), ClusterParams(**SMALL))
    assert "s:t-a" not in got and stats.band_unmatched == 1
    stats, got = _cluster(tmp_path / "far", frames(), ClusterParams(**(SMALL | dict(band_far_reach=20, band_far_margin=16))))
    assert got["s:t-a"] == (got["s:a1"][0], "band")
    stats, got = _cluster(tmp_path / "strict", frames(), ClusterParams(**(SMALL | dict(band_far_reach=20, band_far_margin=400))))
    assert "s:t-a" not in got


def test_a_frame_left_alone_joins_the_clearly_nearest_cluster_as_a_leaf(tmp_path):
    frames = [
        _fp("s:a1", "0" * 16, "0" * 16),
        _fp("s:a2", "0000000000000003", "0" * 16),
        _fp("s:b1", "ffffffffffffffff", "f" * 16),
        _fp("s:b2", "fffffffffffffff7", "f" * 16),
        _fp("s:near-a", "00000000000003ff", "0" * 16),  # 10 bits from a: no link, but clearly a's
        _fp("s:far", "00000000ffffffff", "00000000ffffffff"),  # halfway: stays alone
    ]
    stats, got = _cluster(tmp_path, frames, ClusterParams(**(SMALL | dict(attach_max=12, attach_margin=8))))
    assert got["s:near-a"] == (got["s:a1"][0], "nearest")
    assert got["s:far"][0] not in {got["s:a1"][0], got["s:b1"][0]}
    assert stats.attached == 1


# ---------------------------------------------------------------------------------------
# Behaviour on rendered camera frames: fingerprint, then cluster, as the pipeline does
# ---------------------------------------------------------------------------------------
def _rendered(device, hour, index, near_black=False, quality=75, size=(640, 360)):
    from datetime import datetime, timezone

    from camleak.simulate import render_frame

    image = render_frame(device, datetime(2026, 11, 20, hour, 7 * index % 60, tzinfo=timezone.utc), seed=21,
                         size=size, index=index, near_black=near_black)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _cluster_images(tmp_path, images):
    from camleak.fingerprint import fingerprint_batch

    case = Case(tmp_path / "case.db")
    rows = fingerprint_batch(list(images.items()))
    case.table("frames").insert_all([{"frame_id": k, "role": "snapshot", "snapshot": k} for k in images])
    case.table("fingerprints").insert_all(rows, alter=True)
    cluster_case(case)
    got = {r["frame_id"]: (r["cluster_id"], r["via"]) for r in case.db.query("select * from frame_clusters")}
    return {r["frame_id"]: r for r in rows}, got


DAY, NIGHT = 13, 2  # UTC hours the simulator renders as colour day and infrared night


@pytest.fixture(scope="module")
def two_cameras():
    images = {}
    for cam in ("cam-0001", "cam-0002"):
        for i in range(8):
            images[f"{cam}-day-{i}"] = _rendered(cam, DAY, i)
            images[f"{cam}-night-{i}"] = _rendered(cam, NIGHT, 100 + i)
    return images


def test_colour_and_infrared_frames_of_one_camera_join(tmp_path, two_cameras):
    rows, got = _cluster_images(tmp_path, two_cameras)
    for cam in ("cam-0001", "cam-0002"):
        clusters = {got[k][0] for k in two_cameras if k.startswith(cam)}
        assert len(clusters) == 1, f"{cam}: day and night frames split over {clusters}"
    assert got["cam-0001-day-0"][0] != got["cam-0002-day-0"][0]


def test_near_black_frames_of_two_homes_never_join(tmp_path, two_cameras):
    images = dict(two_cameras)
    for cam in ("cam-0001", "cam-0002"):
        for i in range(4):
            images[f"{cam}-black-{i}"] = _rendered(cam, NIGHT, 200 + i, near_black=True)
    rows, got = _cluster_images(tmp_path, images)
    dark = [k for k in images if "-black-" in k]
    assert all(rows[k]["status"] == "uninformative" for k in dark)
    assert not any(k in got for k in dark)  # left out: never evidence, never a link between homes
    assert got["cam-0001-day-0"][0] != got["cam-0002-day-0"][0]


def test_a_truncated_frame_joins_its_camera(tmp_path, two_cameras):
    images = dict(two_cameras)
    whole = _rendered("cam-0001", DAY, 50)
    images["cam-0001-cut"] = whole[: int(len(whole) * 0.75)]
    rows, got = _cluster_images(tmp_path, images)
    assert rows["cam-0001-cut"]["truncated"] == 1 and rows["cam-0001-cut"]["phash"] is None
    assert got["cam-0001-cut"] == (got["cam-0001-day-0"][0], "band")
