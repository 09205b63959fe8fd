"""The second look on the 64x32 thumbnail (`attribute._Fine`, `_fine_apart`, `_fine_nearest`).

Two look-alike flats: one room seen by two cameras, the copy slightly zoomed and shifted, one
object moved. At 32x16 (the first look) their frames are as alike as two frames of one camera
under shake; at 64x32, each pair at its best alignment, they are not. The thumbnails here are
drawn from one synthetic room, so both looks see the same pixels."""

from __future__ import annotations

import numpy as np
import pytest

from camleak.attribute import (AttributionParams, _check, _features, _Feats, _Fine, _fine_apart,
                               _fine_nearest)

W, H, PAD = 64, 32, 8


def room(seed: int) -> np.ndarray:
    """A grey room (boxes of furniture on a two-tone wall and floor), padded for shake and zoom."""
    rng = np.random.default_rng(seed)
    img = np.full((H + 2 * PAD, W + 2 * PAD), 120.0)
    img[(H + 2 * PAD) // 2:, :] = 80.0
    for _ in range(14):
        x0, y0 = rng.integers(0, W + PAD, 2)
        w, h = rng.integers(6, 22, 2)
        img[y0:y0 + h, x0:x0 + w] = rng.uniform(20, 235)
    return img


def copy_of(img: np.ndarray, seed: int, zoom: float = 1.03) -> np.ndarray:
    """The look-alike flat: the same layout zoomed about the centre, shifted, one object moved."""
    rng = np.random.default_rng(seed)
    rows, cols = img.shape
    yy, xx = np.mgrid[0:rows, 0:cols].astype(float)
    cy, cx = rows / 2, cols / 2
    sy, sx = 1.0, -1.5
    src_y = np.clip(np.rint((yy - cy - sy) / zoom + cy), 0, rows - 1).astype(int)
    src_x = np.clip(np.rint((xx - cx - sx) / zoom + cx), 0, cols - 1).astype(int)
    out = img[src_y, src_x].copy()
    x0, y0 = rng.integers(PAD, W - 10, 2) // 2 + PAD
    out[y0:y0 + 10, x0:x0 + 14] = rng.uniform(20, 235)
    return out


def shot(base: np.ndarray, rng: np.random.Generator, shake: int = 1, noise: float = 3.0) -> bytes:
    """One frame of a camera: a shaken crop, a little gain drift, sensor noise (64x32 bytes)."""
    dy, dx = rng.integers(-shake, shake + 1, 2)
    crop = base[PAD + dy:PAD + dy + H, PAD + dx:PAD + dx + W] * rng.uniform(0.95, 1.05)
    return np.clip(np.rint(crop + rng.normal(0, noise, crop.shape)), 0, 255).astype(np.uint8).tobytes()


def coarse(fine: bytes) -> bytes:
    """The 32x16 thumbnail of the same pixels (2x2 area average), as the fingerprint stage makes it."""
    x = np.frombuffer(fine, np.uint8).reshape(H, W).astype(np.float32)
    return np.clip(np.rint(x.reshape(H // 2, 2, W // 2, 2).mean(axis=(1, 3))), 0, 255).astype(np.uint8).tobytes()


def looks(frames: dict[str, list[bytes]], probes: dict[str, bytes]) -> _Feats:
    """Coarse features of every frame, and the fine look reading the same frames' 64x32 bytes."""
    raw = dict(probes)
    ids = {}
    for device, shots in frames.items():
        ids[device] = [f"{device}:{i}" for i in range(len(shots))]
        raw.update(zip(ids[device], shots))
    names = sorted(raw)
    grey, edges = _features([coarse(raw[f]) for f in names])
    feats = _Feats(ids, dict(zip(names, zip(grey, edges))))
    feats.fine = _Fine(lambda wanted: {f: raw[f] for f in wanted if f in raw}, feats.ids)
    return feats


@pytest.fixture(scope="module")
def flats():
    rng = np.random.default_rng(7)
    original = room(3)
    twin = copy_of(original, 4)
    # shake of 3 pixels at 64x32: one and a half at 32x16, as on the hard simulations
    frames = {"cam-orig": [shot(original, rng, 3) for _ in range(24)], "cam-copy": [shot(twin, rng, 3) for _ in range(24)]}
    probes = {"from-orig": shot(original, rng, 3), "from-copy": shot(twin, rng, 3)}
    return looks(frames, probes)


COARSE_ONLY = AttributionParams(fine_look=False)


def test_alignment_absorbs_camera_shake():
    rng = np.random.default_rng(1)
    base = room(5)
    a = shot(base, rng, shake=0, noise=0.0)
    b = np.clip(base[PAD + 2:PAD + 2 + H, PAD - 2:PAD - 2 + W], 0, 255).astype(np.uint8).tobytes()
    fine = _Fine(lambda wanted: {k: v for k, v in {"a": a, "b": b}.items() if k in wanted}, {"cam": ["b"]})
    assert fine.scores("a", "cam")[0] > 0.99  # two pixels of shake, aligned away
    unaligned = _Fine(lambda wanted: {k: v for k, v in {"a": a, "b": b}.items() if k in wanted}, {"cam": ["b"]}, shift=0)
    assert unaligned.scores("a", "cam")[0] < 0.8


def test_the_two_flats_look_alike_on_the_coarse_thumbnail(flats):
    typical, likeness = flats.pair("cam-orig", "cam-copy")
    assert min(typical, likeness) >= AttributionParams().lookalike_pair
    # ...so the first look cannot tell a frame of the original from the copy
    problem, _ = _check("from-orig", "cam-orig", {"cam-copy"}, None, set(), flats, COARSE_ONLY)
    assert problem is not None and problem[1] == ["cam-copy"]


def test_the_fine_look_tells_the_look_alike_flats_apart(flats):
    assert _fine_apart("from-orig", "cam-orig", "cam-copy", True, flats, AttributionParams())
    problem, _ = _check("from-orig", "cam-orig", {"cam-copy"}, None, set(), flats, AttributionParams())
    assert problem is None
    # and the other way round: a frame of the copy accuses through the copy
    assert _check("from-copy", "cam-copy", {"cam-orig"}, None, set(), flats, AttributionParams())[0] is None


def test_a_frame_put_on_the_wrong_flat_still_lands_in_review(flats):
    # the copy's frame attributed to the original: the fine look finds the copy nearer, so the
    # rival stays "could be"
    assert not _fine_apart("from-copy", "cam-orig", "cam-copy", True, flats, AttributionParams())
    problem, _ = _check("from-copy", "cam-orig", {"cam-copy"}, None, set(), flats, AttributionParams())
    assert problem is not None and problem[1] == ["cam-copy"]


def test_a_case_without_fine_thumbnails_keeps_the_first_look(flats):
    blind = _Feats(flats.ids, flats.feats)
    blind.fine = _Fine(lambda wanted: {}, blind.ids)  # an algorithm-6 case: no `fine` column values
    problem, _ = _check("from-orig", "cam-orig", {"cam-copy"}, None, set(), blind, AttributionParams())
    assert problem is not None


def test_a_split_cluster_part_goes_to_the_flat_its_fine_thumbnail_matches(flats, monkeypatch):
    import camleak.attribute as attribute

    # (it reads through the cluster's thumbnails' case; here the frames come from memory)
    monkeypatch.setattr(attribute, "_fine_reader", lambda case: flats.fine.read)
    thumbs = type("T", (), {"case": None})()
    anchors = {d: flats.ids[d] for d in ("cam-orig", "cam-copy")}
    assert _fine_nearest(["from-orig"], anchors, thumbs, AttributionParams()) == "cam-orig"
    assert _fine_nearest(["from-copy"], anchors, thumbs, AttributionParams()) == "cam-copy"
    assert _fine_nearest(["from-copy"], anchors, thumbs, COARSE_ONLY) is None


def test_a_frame_a_split_cluster_held_between_two_flats_goes_to_the_one_the_full_check_lets_through(flats):
    from camleak.attribute import Registry, _resolve_split

    registry = Registry([
        {"device_id": "cam-orig", "owner_account": "acct-orig", "shared_accounts": None, "home_id": "home-orig"},
        {"device_id": "cam-copy", "owner_account": "acct-copy", "shared_accounts": None, "home_id": "home-copy"},
        {"device_id": "cam-mine", "owner_account": "acct-x", "shared_accounts": None, "home_id": "home-x"},
    ])

    def held(frame):
        return {"snapshot": f"snap-{frame}", "frame_id": frame, "source_device": None, "candidates": '["cam-copy", "cam-orig"]',
                "reason": "review: as near cam-orig as cam-copy in a cluster of several cameras"}

    frames = [held("from-orig"), held("from-copy")]
    recipients = {a["snapshot"]: {"acct-x"} for a in frames}  # a stranger to both flats
    placed = _resolve_split(frames, flats, {}, recipients, registry, {}, set(), set(), AttributionParams())
    assert {a["frame_id"]: a["source_device"] for a in placed} == {"from-orig": "cam-orig", "from-copy": "cam-copy"}
    assert all(a["attribution"] == "pixels" and a["candidates"] is None for a in placed)
    # On the coarse thumbnail alone no candidate's check lets the original's frame through: it stays held
    frames = [held("from-orig")]
    assert _resolve_split(frames, flats, {}, recipients, registry, {}, set(), set(), COARSE_ONLY) == []
    assert frames[0]["source_device"] is None and frames[0]["candidates"]
