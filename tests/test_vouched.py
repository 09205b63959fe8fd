"""Rule 10: the lead over the camera a log names counts only on the source's frames that its
other frames vouch for. At 3,000 homes two own views with a person filling the view were
accused as another camera's, whose one frame of a person at the same spot they matched at
0.83-0.84 (their own cameras' frames at 0.28-0.31). Features are built by hand so the rule is
seen alone."""

from __future__ import annotations

import numpy as np

from camleak.attribute import _Feats
from handmade import EDGES, GREY, unit
from handmade import named_own_view as outcome


def incident(probe_room: str, seed: int = 1) -> _Feats:
    """cam-src: 20 frames of room A and one of a person standing in front of it; cam-named (the
    recipient's own camera, which the log names): 20 frames of room B. The probe is a person at
    the same spot in front of `probe_room`."""
    rng = np.random.default_rng(seed)
    look = {name: (unit(rng.normal(size=GREY)), unit(rng.normal(size=EDGES))) for name in ("A", "B", "person")}
    jitter = lambda v: unit(v + rng.normal(0, 0.1 / np.sqrt(len(v)), len(v)))  # noqa: E731

    def frame(person: float, room: str) -> tuple[np.ndarray, np.ndarray]:
        return tuple(jitter(person * look["person"][i] + look[room][i]) for i in (0, 1))

    ids: dict[str, list[str]] = {"cam-src": [], "cam-named": []}
    feats = {}
    for device, room in (("cam-src", "A"), ("cam-named", "B")):
        for n in range(20):
            ids[device].append(f"{device}:{n}")
            feats[f"{device}:{n}"] = frame(0.0, room)
    ids["cam-src"].append("cam-src:person")
    feats["cam-src:person"] = frame(3.0, "A")
    feats["x"] = frame(3.0, probe_room)
    return _Feats(ids, feats)


def test_the_person_frame_is_not_vouched_for_by_its_camera():
    feats = incident("B")
    assert feats.best("cam-src:person", "cam-src") < 0.5  # it matches its room's frames poorly...
    assert feats.best("x", "cam-src") > 0.85  # ...but another room's person frame well
    assert feats.vouched("x", "cam-src", 0.5) < feats.best("x", "cam-named")


def test_a_person_matching_a_person_does_not_accuse_against_the_camera_the_log_names():
    feats = incident("B")
    problem = outcome(feats)
    assert problem is not None and problem[1] == ["cam-named"]
    assert "match none of its others" in problem[0]
    assert outcome(feats, vouched_min=0.0) is None  # (without the rule: accused on the person alone)


def test_a_person_in_front_of_the_source_room_still_accuses():
    # Its room is the source's: the vouched room frames still put it ahead of the named camera.
    feats = incident("A", seed=2)
    assert feats.vouched("x", "cam-src", 0.5) > feats.best("x", "cam-named")
    assert outcome(feats) is None
