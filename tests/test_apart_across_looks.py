"""A rival too near in edges is ruled out by the fine or grey look only on frames of the evidence
frame's own look (`AttributionParams.same_look_apart`): a camera seen only by night infrared is
no room to compare a day colour frame with, so "apart" there proves nothing."""

from __future__ import annotations

import numpy as np

from handmade import GREY, unit
from test_grey_look import incident, outcome


def grey_ruled_out_rival():
    """test_grey_look's first incident: edges cannot tell cam-src from cam-rival, the grey room can."""
    rng = np.random.default_rng(3)
    return incident(rng, rival_grey=lambda room: unit(rng.normal(size=GREY)))


def test_a_rival_seen_only_in_the_other_look_is_not_ruled_out_by_the_grey_room():
    feats = grey_ruled_out_rival()
    feats.colour = {f: not f.startswith("cam-rival") for f in feats.feats}  # the rival: night frames only
    problem = outcome(feats)
    assert problem is not None and problem[1] == ["cam-rival"]
    assert outcome(feats, same_look_apart=False) is None  # (it is this rule that holds it)


def test_a_rival_with_frames_of_the_same_look_is_still_ruled_out_by_the_grey_room():
    feats = grey_ruled_out_rival()
    feats.colour = {f: True for f in feats.feats}
    assert outcome(feats) is None


def test_where_looks_are_unknown_the_grey_room_still_decides():
    feats = grey_ruled_out_rival()  # (a case fingerprinted before chroma: no colour at all)
    assert outcome(feats) is None
