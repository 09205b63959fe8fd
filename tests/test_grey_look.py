"""The grey look of the one-to-one check (`attribute._grey_apart`): a person in the way brings
edges that match any camera where somebody once stood in that place, while the rest of the room,
in grey, still says whose it is. Features are built by hand so the rule is seen alone."""

from __future__ import annotations

import numpy as np

from camleak.attribute import AttributionParams, _check, _Feats, _grey_source, _impostors, _pixels_accuse
from handmade import EDGES, GREY, unit


def person(rng: np.random.Generator, room: np.ndarray, share: float = 0.12) -> np.ndarray:
    """The room with one patch replaced by something else entirely."""
    v = room.copy()
    patch = rng.choice(len(v), int(share * len(v)), replace=False)
    v[patch] = rng.normal(0, 3 * float(np.abs(room).mean()), len(patch))
    return unit(v)


def incident(rng: np.random.Generator, rival_grey, rival_edges=None, probe_grey=None, mine_grey=None):
    """cam-src's room and a rival's; the probe is a frame of cam-src with a person in it, whose
    edges are as near the rival's frames where somebody stood in the same place as its own
    camera's frames (in which nobody ever did)."""
    room_grey = unit(rng.normal(size=GREY))
    room_edges = unit(rng.normal(size=EDGES))
    walker = unit(rng.normal(size=EDGES))  # the edges a person brings
    rival_edges = unit(rng.normal(size=EDGES)) if rival_edges is None else rival_edges(room_edges)
    jitter = lambda v, s: unit(v + rng.normal(0, s / np.sqrt(len(v)), len(v)))  # noqa: E731
    ids, feats = {}, {}
    cameras = [("cam-src", room_grey, room_edges), ("cam-rival", rival_grey(room_grey), rival_edges)]
    if mine_grey is not None:  # the recipient's own camera, unlike in edges
        cameras.append(("cam-mine", mine_grey(room_grey), unit(rng.normal(size=EDGES))))
    for device, grey, edges in cameras:
        ids[device] = [f"{device}:{i}" for i in range(24)]
        for i, f in enumerate(ids[device]):
            with_walker = device == "cam-rival" and i % 3 == 0  # somebody stood there in the rival's room
            feats[f] = (jitter(grey, 0.1), jitter(edges + (1.2 * walker if with_walker else 0), 0.1))
    grey = person(rng, room_grey) if probe_grey is None else probe_grey(room_grey)
    feats["x"] = (grey, unit(room_edges + 1.5 * walker + rng.normal(0, 0.3 / np.sqrt(EDGES), EDGES)))
    return _Feats(ids, feats)


def outcome(feats: _Feats, **params):
    return _check("x", "cam-src", {"cam-rival"}, None, set(), feats, AttributionParams(**params))[0]


def test_a_person_whose_edges_match_another_camera_does_not_hide_whose_room_it_is():
    rng = np.random.default_rng(3)
    feats = incident(rng, rival_grey=lambda room: unit(rng.normal(size=GREY)))
    assert feats.best("x", "cam-rival") >= feats.best("x", "cam-src") - 0.1  # the edges alone cannot tell
    assert outcome(feats, grey_look=False) is not None  # review without the grey look
    assert outcome(feats) is None


def test_the_grey_look_never_decides_between_look_alikes():
    # A copied flat: the rival's edges are the source room's, slightly changed (alike both ways),
    # so grey is not asked, even where the rival's grey is unlike (another tint, other light).
    rng = np.random.default_rng(4)
    feats = incident(rng, rival_grey=lambda room: unit(rng.normal(size=GREY)),
                     rival_edges=lambda edges: unit(edges + rng.normal(0, 0.5 / np.sqrt(EDGES), EDGES)))
    assert min(feats.pair("cam-src", "cam-rival")) >= AttributionParams().grey_unlike
    assert outcome(feats) is not None


def test_a_frame_whose_room_matches_its_camera_only_loosely_in_grey_stays_in_review():
    # Half the room covered: on the 85 % of pixels that agree best it is still not clearly its room.
    rng = np.random.default_rng(6)
    feats = incident(rng, rival_grey=lambda room: unit(rng.normal(size=GREY)),
                     probe_grey=lambda room: person(rng, room, share=0.5))
    assert float(feats.trimmed("x", "cam-src", 0.85, "grey")[0]) < AttributionParams().grey_min
    assert outcome(feats) is not None
    assert outcome(feats, grey_min=0.5, verify_min=0.5) is None  # (it is that bar that holds it)


def test_where_grey_decides_the_own_camera_the_log_names_must_be_ruled_out_in_grey_too():
    # The log says the recipient saw its own camera. Its frames are unlike the frame in edges (all
    # day views, say, of a room whose night views went elsewhere) but near it in grey: the grey
    # look that rules out the unrelated rival cannot then accuse.
    rng = np.random.default_rng(8)
    feats = incident(rng, rival_grey=lambda room: unit(rng.normal(size=GREY)),
                     mine_grey=lambda room: unit(room + rng.normal(0, 0.35 / np.sqrt(GREY), GREY)))
    rivals = {"cam-rival", "cam-mine"}
    assert _check("x", "cam-src", rivals, "cam-mine", {"cam-mine"}, feats, AttributionParams())[0] is None
    problem = _check("x", "cam-src", rivals, "cam-mine", {"cam-mine"}, feats, AttributionParams(), own_view="cam-mine")[0]
    assert problem is not None and problem[1] == ["cam-mine"]
    # ...while an own camera unlike the frame in grey as well does not stand in the way
    feats = incident(np.random.default_rng(8), rival_grey=lambda room: unit(rng.normal(size=GREY)),
                     mine_grey=lambda room: unit(rng.normal(size=GREY)))
    assert _check("x", "cam-src", rivals, "cam-mine", {"cam-mine"}, feats, AttributionParams(), own_view="cam-mine")[0] is None


def test_pixels_alone_accuse_only_a_room_plainly_the_cameras_and_plainly_not_the_logged_ones():
    # A frame no anchor or vote placed, logged as the recipient's own camera (cam-mine).
    params = AttributionParams()
    unlike = incident(np.random.default_rng(9), rival_grey=lambda room: unit(np.random.default_rng(1).normal(size=GREY)),
                      mine_grey=lambda room: unit(np.random.default_rng(2).normal(size=GREY)))
    assert _pixels_accuse("x", "cam-src", "cam-mine", unlike, params)
    assert not _pixels_accuse("x", "cam-src", "cam-mine", unlike, AttributionParams(accuse_by_pixels=False))
    assert not _pixels_accuse("x", "cam-src", None, unlike, params)  # no logged camera to rule out
    assert not _pixels_accuse("x", "cam-src", "cam-unseen", unlike, params)  # one with no frames of its own
    # The logged camera's room near the frame in grey (an own view whose camera's other views all
    # went elsewhere looks like this): no accusation
    rng = np.random.default_rng(9)
    near = incident(rng, rival_grey=lambda room: unit(rng.normal(size=GREY)),
                    mine_grey=lambda room: unit(room + rng.normal(0, 0.5 / np.sqrt(GREY), GREY)))
    assert not _pixels_accuse("x", "cam-src", "cam-mine", near, params)
    # A room that matches its camera only loosely in grey (half of it covered): no accusation
    rng = np.random.default_rng(9)
    loose = incident(rng, rival_grey=lambda room: unit(rng.normal(size=GREY)),
                     probe_grey=lambda room: person(rng, room, share=0.4),
                     mine_grey=lambda room: unit(rng.normal(size=GREY)))
    assert float(loose.trimmed("x", "cam-src", 0.85, "grey")[0]) < params.pixel_accuse_min
    assert not _pixels_accuse("x", "cam-src", "cam-mine", loose, params)


def test_pixels_accuse_only_where_no_other_room_matches_nearly_as_well():
    # An own view whose camera was never seen like this still matches some room best; it must
    # lead every other camera's room (the incident's own impostors), not only the logged one's.
    params = AttributionParams()
    rng = np.random.default_rng(9)
    generic = incident(rng, rival_grey=lambda room: unit(room + rng.normal(0, 0.3 / np.sqrt(GREY), GREY)),
                       mine_grey=lambda room: unit(rng.normal(size=GREY)))
    src = float(generic.trimmed("x", "cam-src", 0.85, "grey")[0])
    other = float(generic.trimmed("x", "cam-rival", 0.85, "grey")[0])
    assert src >= params.pixel_accuse_min and src - other < params.pixel_accuse_apart
    assert _impostors("x", generic, params, None, skip={"cam-src", "cam-mine"}) == ["cam-rival"]
    assert not _pixels_accuse("x", "cam-src", "cam-mine", generic, params)
    # The same incident passes with the specificity bar off: it is that bar that holds the frame
    assert _pixels_accuse("x", "cam-src", "cam-mine", generic, AttributionParams(pixel_accuse_apart=-1.0))


def test_a_frame_ranked_under_a_look_alike_layout_is_tried_as_the_camera_whose_room_it_plainly_is():
    # The gradients put the frame nearest cam-rival (a person stood where somebody once stood in
    # the rival's room); in grey, with the worst-agreeing pixels left out, the room is plainly
    # cam-src's, and the logged camera (cam-mine) is nothing like it.
    params = AttributionParams()
    rng = np.random.default_rng(9)
    feats = incident(rng, rival_grey=lambda room: unit(rng.normal(size=GREY)),
                     mine_grey=lambda room: unit(rng.normal(size=GREY)))
    assert not _pixels_accuse("x", "cam-rival", "cam-mine", feats, params)
    assert _grey_source("x", "cam-rival", "cam-mine", feats, set(), params) == "cam-src"
    assert _grey_source("x", "cam-rival", "cam-mine", feats, set(), AttributionParams(pixel_grey_source=False)) is None
    assert _grey_source("x", "cam-rival", "cam-mine", feats, {"cam-src"}, params) is None  # a stand-in is never the answer
    # A room the ranked camera's frames match nearly as well proves nothing between the two
    rng = np.random.default_rng(9)
    generic = incident(rng, rival_grey=lambda room: unit(room + rng.normal(0, 0.3 / np.sqrt(GREY), GREY)),
                       mine_grey=lambda room: unit(rng.normal(size=GREY)))
    assert _pixels_accuse("x", "cam-src", "cam-mine", generic, AttributionParams(pixel_accuse_apart=-1.0))
    assert _grey_source("x", "cam-rival", "cam-mine", generic, set(), params) is None
