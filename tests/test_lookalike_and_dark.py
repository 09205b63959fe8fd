"""Issue 12's hard parts in the simulator and the fingerprint stage: look-alike rooms, and
near-black frames whose sensor noise and JPEG grain must not pass for information."""

from __future__ import annotations

import io
import json

import imagehash
import numpy as np
import pytest
from PIL import Image

from camleak.fingerprint import fingerprint_one
from camleak.simulate import SimParams, generate_incident, lookalike_source, render_frame

NIGHT = "2026-11-20T23:30:00Z"
DAY = "2026-11-20T12:00:00Z"


def _jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _phash(img: Image.Image) -> imagehash.ImageHash:
    g = img.convert("L")
    return imagehash.phash(g.crop((0, g.height // 8, g.width, g.height)))


def test_lookalike_cameras_copy_an_earlier_camera_of_another_home():
    pairs = [(cam, lookalike_source(7, cam, 0.3)) for cam in range(1, 60)]
    pairs = [(cam, src) for cam, src in pairs if src is not None]
    assert 8 <= len(pairs) <= 30
    assert all(src <= cam - 3 for cam, src in pairs)  # a home has at most three consecutive cameras
    assert lookalike_source(7, 40, 0.0) is None
    # a look-alike is near its source's room, but not the same frame, and farther from others
    cam, src = pairs[0]
    copy = _phash(render_frame(f"cam-{cam:04d}", DAY, lookalike=0.3, index=1))
    source = _phash(render_frame(f"cam-{src:04d}", DAY, lookalike=0.3, index=1))
    others = [_phash(render_frame(f"cam-{c:04d}", DAY, lookalike=0.3, index=1)) for c in range(1, 12) if c not in (cam, src)]
    assert 0 < copy - source < min(copy - o for o in others)


def test_noisy_near_black_frames_are_uninformative_whatever_the_jpeg_quality():
    """The room at 3-12 % brightness under sensor noise: real structure, too faint to accuse."""
    statuses, stds = [], []
    for index in range(24):
        img = render_frame("cam-0003", NIGHT, index=index, near_black=True, difficulty="hard")
        stds.append(float(np.asarray(img).std()))
        row = fingerprint_one(f"f{index}", _jpeg(img, 35 + 2 * index))
        statuses.append((row["status"], row["contrast"], row["quality"]))
    assert max(stds) > 3  # not only flat black: noise and a faint room
    assert all(status == "uninformative" for status, _, _ in statuses), statuses
    assert all(contrast < 32 for _, contrast, _ in statuses)
    day = fingerprint_one("day", _jpeg(render_frame("cam-0003", DAY, index=1, difficulty="hard"), 40))
    night = fingerprint_one("night", _jpeg(render_frame("cam-0003", NIGHT, index=2, difficulty="hard"), 40))
    assert day["status"] == "ok" and night["status"] == "ok"
    assert day["thumb"] is not None and len(day["thumb"]) == 32 * 16


@pytest.fixture(scope="module")
def lookalike_incident(tmp_path_factory):
    params = SimParams(seed=4, homes=12, hours=6, bug_rate=0.5, lookalike=0.4, start="2026-11-20T16:00:00Z")
    return generate_incident(tmp_path_factory.mktemp("look") / "inc", params, workers=1)


def test_incident_records_lookalikes_and_dark_references(lookalike_incident):
    truth = json.loads(lookalike_incident.truth.read_text())
    copies = {d: v["lookalike_of"] for d, v in truth["devices"].items() if v["lookalike_of"]}
    assert copies and truth["counts"]["lookalike_devices"] == len(copies)
    homes = {d: v["home_id"] for d, v in truth["devices"].items()}
    assert all(homes[d] != homes[src] for d, src in copies.items())
    assert truth["params"]["lookalike"] == 0.4
    assert "dark_references" in truth["counts"]
