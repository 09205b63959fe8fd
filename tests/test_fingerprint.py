"""Fingerprints: robust where frames vary, honest where they carry no information."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from camleak.cluster import distances, hex_to_words
from camleak.fingerprint import DEFAULT_PARAMS, fingerprint_batch, fingerprint_one

from conftest import jpeg, scene


def dist(a: str, b: str) -> int:
    return int(distances(hex_to_words([a])[0], hex_to_words([b])[0]))


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def test_thumbnail_full_size_and_formats_of_one_frame_hash_alike():
    base = scene(1, (1280, 720))
    full = fingerprint_one("a", jpeg(base, 90))
    for variant in (jpeg(base.resize((320, 180)), 40), encode(base.resize((640, 360)), "PNG"), encode(base, "WEBP")):
        other = fingerprint_one("b", variant)
        assert other["status"] == "ok"
        assert dist(full["phash"], other["phash"]) <= 20 and dist(full["dhash"], other["dhash"]) <= 8


def test_different_scenes_are_far_apart():
    a, b = fingerprint_one("a", jpeg(scene(1))), fingerprint_one("b", jpeg(scene(2)))
    assert dist(a["phash"], b["phash"]) > 90


def test_timestamp_band_is_kept_out():
    base = scene(3)
    marked = base.copy()
    marked.paste((255, 255, 255), (0, 0, 300, 30))  # a burnt-in overlay in the top band
    a, b = fingerprint_one("a", jpeg(base)), fingerprint_one("b", jpeg(marked))
    assert a["phash"] == b["phash"] and a["dhash"] == b["dhash"]


def test_truncated_jpeg_is_flagged_and_hashed_on_what_decoded():
    data = jpeg(scene(4))
    whole = fingerprint_one("w", data)
    cut = fingerprint_one("t", data[: int(len(data) * 0.8)])
    assert cut["truncated"] == 1 and 0.55 <= cut["decoded_fraction"] < 1.0
    assert cut["phash"] is None and cut["status"] == "ok"
    assert dist(cut["band_phash"], whole["band_phash"]) <= 10
    tiny = fingerprint_one("x", data[: int(len(data) * 0.2)])
    assert tiny["status"] == "truncated" and "decoded" in tiny["reason"]


def test_near_black_and_flat_frames_are_uninformative():
    rng = np.random.default_rng(0)
    dark = Image.fromarray(rng.integers(0, 12, (360, 640, 3)).astype(np.uint8))
    flat = Image.new("RGB", (640, 360), (90, 90, 90))
    for image in (dark, flat):
        row = fingerprint_one("d", jpeg(image))
        assert row["status"] == "uninformative" and row["quality"] < DEFAULT_PARAMS.min_quality
    assert fingerprint_one("s", jpeg(scene(5)))["quality"] >= DEFAULT_PARAMS.min_quality


def test_bad_bytes_never_raise():
    rows = fingerprint_batch([("a", b""), ("b", b"hello world"), ("c", b"\xff\xd8\xff" + b"\x00" * 50)])
    assert [r["status"] for r in rows] == ["undecodable"] * 3
    assert rows[1]["reason"] == "not a recognisable image"


def test_colour_and_greyscale_of_one_room_meet():
    colour = fingerprint_one("c", jpeg(scene(6)))
    grey = fingerprint_one("g", jpeg(scene(6, night=True)))
    assert colour["phash"] == grey["phash"]


def test_truncation_is_seen_even_when_the_caller_allows_truncated_images(monkeypatch):
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    data = jpeg(scene(7))
    row = fingerprint_one("t", data[: int(len(data) * 0.8)])
    assert row["truncated"] == 1 and row["phash"] is None
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True


def test_the_fine_thumbnail_shows_the_same_pixels_as_the_coarse_one_at_twice_the_detail():
    row = fingerprint_one("a", jpeg(scene(6)))
    fw, fh = DEFAULT_PARAMS.fine_size
    tw, th = DEFAULT_PARAMS.thumb_size
    fine = np.frombuffer(row["fine"], np.uint8).reshape(fh, fw).astype(float)
    thumb = np.frombuffer(row["thumb"], np.uint8).reshape(th, tw).astype(float)
    halved = fine.reshape(th, fh // th, tw, fw // tw).mean(axis=(1, 3))
    assert np.abs(halved - thumb).max() <= 1.0  # rounding only
    assert np.abs(np.diff(fine, axis=1)).mean() > np.abs(np.diff(thumb, axis=1)).mean() / 2  # detail kept
    cut = fingerprint_one("t", jpeg(scene(6))[:6000])
    assert cut["truncated"] == 1 and cut["fine"] is None  # only frames that decoded whole


def test_a_tiny_image_is_uninformative_and_does_not_stop_its_batch():
    tiny = [encode(Image.new("RGB", size, (100, 120, 130)), "JPEG") for size in ((1, 1), (64, 1), (1, 40))]
    rows = fingerprint_batch([(f"t{i}", data) for i, data in enumerate(tiny)] + [("ok", jpeg(scene(7)))])
    by_id = {r["frame_id"]: r for r in rows}
    assert [by_id[f"t{i}"]["status"] for i in range(3)] == ["uninformative"] * 3
    assert "too small" in by_id["t1"]["reason"]
    assert by_id["ok"]["status"] == "ok" and by_id["ok"]["phash"]
