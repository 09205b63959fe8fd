"""The camera a log names is ruled out only on its frames of the evidence frame's own look (day
colour or night infrared): the 3,000-home hard look-alike cell accused seven own views of
look-alike cameras as their twins', because each twin's frames had clustered by look and the
camera the log named had frames of the other look only. Features are built by hand so the rule
is seen alone; the chroma that gives the look is pinned on real JPEGs."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from camleak import fingerprint, imageguard
from camleak.attribute import AttributionParams, _Feats
from camleak.fingerprint import fingerprint_one
from handmade import EDGES, GREY, unit
from handmade import named_own_view as outcome


def twins(rng: np.random.Generator, *, named_day: int = 0, source_night: int = 0, named_room_by_night=None):
    """cam-src's exemplars are the room's day frames; cam-named (the recipient's own camera, which
    the log names) has its night frames only, unless told otherwise. The probe is a day frame."""
    day_grey, day_edges = unit(rng.normal(size=GREY)), unit(rng.normal(size=EDGES))
    night_grey, night_edges = unit(rng.normal(size=GREY)), unit(rng.normal(size=EDGES))
    jitter = lambda v, s=0.1: unit(v + rng.normal(0, s / np.sqrt(len(v)), len(v)))  # noqa: E731
    ids, feats, colour = {"cam-src": [], "cam-named": []}, {}, {}

    def add(device: str, grey, edges, day: bool, n: int) -> None:
        for _ in range(n):
            f = f"{device}:{len(ids[device])}"
            ids[device].append(f)
            feats[f], colour[f] = (jitter(grey), jitter(edges)), day

    add("cam-src", day_grey, day_edges, True, 24)
    add("cam-src", night_grey, night_edges, False, source_night)
    named_night = (night_grey, night_edges) if named_room_by_night is None else named_room_by_night
    add("cam-named", *named_night, False, 24)
    add("cam-named", unit(rng.normal(size=GREY)), unit(rng.normal(size=EDGES)), True, named_day)
    feats["x"], colour["x"] = (jitter(day_grey), jitter(day_edges)), True
    whole = _Feats(ids, feats)
    whole.colour = colour
    return whole


def test_a_day_frame_does_not_rule_out_the_named_camera_on_its_night_frames_alone():
    feats = twins(np.random.default_rng(1))
    problem = outcome(feats)
    assert problem is not None and problem[1] == ["cam-named"]
    assert "day colour" in problem[0]
    assert outcome(feats, same_look=False) is None  # (the night frames alone would have ruled it out)


def test_a_day_frame_of_the_named_camera_rules_it_out():
    # One day frame of the named camera, of another room: it is compared like with like, and differs.
    assert outcome(twins(np.random.default_rng(2), named_day=2)) is None


def test_two_rooms_plainly_apart_by_night_rule_the_named_camera_out_by_day_too():
    rng = np.random.default_rng(3)
    other = (unit(rng.normal(size=GREY)), unit(rng.normal(size=EDGES)))  # the named camera's own room by night
    assert outcome(twins(rng, source_night=12, named_room_by_night=other)) is None


def test_one_night_frame_of_the_source_does_not_prove_the_rooms_apart():
    # (3,000 homes: a look-alike's one frame of a look matched its twin's three as badly as a stranger's)
    rng = np.random.default_rng(3)
    other = (unit(rng.normal(size=GREY)), unit(rng.normal(size=EDGES)))
    assert outcome(twins(rng, source_night=1, named_room_by_night=other)) is not None


def test_look_alike_rooms_by_night_keep_the_named_camera_in_the_running():
    # The source's night frames look like the named camera's: the twins cannot be told apart by night,
    # and the named camera has no day frame, so the day frame proves nothing between them.
    assert outcome(twins(np.random.default_rng(4), source_night=12)) is not None


def test_a_case_file_without_looks_checks_as_before():
    feats = twins(np.random.default_rng(5))
    feats.colour, feats._looks = {}, {}
    assert outcome(feats) is None


def _jpeg(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def test_chroma_tells_a_colour_frame_from_an_infrared_one_and_leaves_the_hashes_alone(monkeypatch):
    rng = np.random.default_rng(6)
    grey = (rng.random((360, 640)) * 60 + np.linspace(40, 200, 640)[None, :]).astype(np.uint8)
    tint = np.stack([grey * 1.0, grey * 0.85, grey * 0.7], axis=2).clip(0, 255).astype(np.uint8)
    colour_frame = fingerprint_one("day", _jpeg(Image.fromarray(tint, "RGB")))
    infrared_as_rgb = fingerprint_one("ir", _jpeg(Image.fromarray(grey, "L").convert("RGB")))
    infrared_grey = fingerprint_one("ir-grey", _jpeg(Image.fromarray(grey, "L")))
    png = fingerprint_one("png", _png(Image.fromarray(tint, "RGB")))
    bar = AttributionParams().colour_min
    assert colour_frame["chroma"] >= 4 * bar and png["chroma"] >= 4 * bar
    assert infrared_as_rgb["chroma"] < bar / 2 and infrared_grey["chroma"] == 0.0
    # the luma the hashes are made of is exactly what a grey draft decodes: every hash, the same
    data = _jpeg(Image.fromarray(tint, "RGB"))
    drafted = fingerprint_one("day", data)

    def grey_draft(data: bytes, params):
        image = imageguard.open_image(data)
        image.draft("L", params.draft_size)
        return image

    monkeypatch.setattr(fingerprint, "_open_draft", grey_draft)
    by_grey = fingerprint_one("day", data)
    assert by_grey["chroma"] == 0.0  # (the grey draft has no colour to measure)
    assert {k: v for k, v in drafted.items() if k != "chroma"} == {k: v for k, v in by_grey.items() if k != "chroma"}


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()
