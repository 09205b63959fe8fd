"""Attribution rules on hand-built cases: who the frames are from, and who may see them."""

from __future__ import annotations

import json

import numpy as np

from camleak.attribute import AttributionParams, Registry, attribute_case
from camleak.casefile import Case

HOMES = {
    # device: (home, owner, shared)
    "cam-a1": ("h-a", "acct-a", ["acct-a2"]),
    "cam-a2": ("h-a", "acct-a", []),
    "cam-b": ("h-b", "acct-b", []),
    "cam-rare": ("h-r", "acct-r", []),
}
STRANGERS = {f"cam-s{i}": (f"h-s{i}", f"acct-s{i}", []) for i in range(6)}


def thumb(scene: int, frame: int, noise: float = 6.0) -> bytes:
    """A 32x16 grey thumbnail: one random room per `scene`, a little sensor noise per frame."""
    room = np.random.default_rng([scene]).uniform(20, 230, 512)
    grain = np.random.default_rng([scene, frame, 1]).normal(0, noise, 512)
    return np.clip(room + grain, 0, 255).astype(np.uint8).tobytes()


def build(tmp_path, clusters: dict[int, list[tuple[str, str, str | None]]], *, refs=None, uninformative=(), cores=None,
          scenes=None):
    """clusters: id -> [(snapshot, recipient, claimed device)]; refs: id -> [device]. Every frame of
    a cluster shows one room (`scenes`: cluster id -> room, default its own) and, unless `cores`
    maps a snapshot to a core number, the cluster is its one core."""
    case = Case(tmp_path / "case.db")
    devices = {**HOMES, **STRANGERS}
    case.table("devices").insert_all([
        {"device_id": d, "home_id": h, "owner_account": o, "shared_accounts": json.dumps(s), "input_id": 0, "line": 1}
        for d, (h, o, s) in devices.items()])
    frames, fc, events, fps = [], [], [], []
    t = 1763640000000
    for cid, items in clusters.items():
        case.table("clusters").insert({"cluster_id": cid, "frames": len(items)})
        for snap, account, claimed in items:
            t += 60000
            frames.append({"frame_id": f"s:{snap}", "role": "snapshot", "snapshot": snap, "input_id": 0, "member": snap})
            core = (cores or {}).get(snap, cid)
            fc.append({"frame_id": f"s:{snap}", "cluster_id": cid, "via": "hash", "distance": 3, "core": core})
            fps.append({"frame_id": f"s:{snap}", "status": "ok",
                        "thumb": thumb((scenes or {}).get(snap, (scenes or {}).get(cid, cid)), len(fps))})
            events.append({"event_key": f"{snap}|served", "ts": f"t{t}", "ts_ms": t, "account_id": account, "device_id": claimed,
                           "snapshot": snap, "event": "snapshot_served", "integration": "alexa", "request_id": snap})
        for i, dev in enumerate((refs or {}).get(cid, [])):
            frames.append({"frame_id": f"r:{dev}:{cid}{i}", "role": "reference", "ref_device": dev, "input_id": 0, "member": "x"})
            fc.append({"frame_id": f"r:{dev}:{cid}{i}", "cluster_id": cid, "via": "hash", "distance": 2,
                       "core": (cores or {}).get(f"ref:{dev}", cid)})
            fps.append({"frame_id": f"r:{dev}:{cid}{i}", "status": "ok",
                        "thumb": thumb((scenes or {}).get(f"ref:{dev}", (scenes or {}).get(cid, cid)), len(fps))})
    for snap, account, claimed in uninformative:
        t += 60000
        frames.append({"frame_id": f"s:{snap}", "role": "snapshot", "snapshot": snap, "input_id": 0, "member": snap})
        fps.append({"frame_id": f"s:{snap}", "status": "uninformative", "reason": "dark"})
        events.append({"event_key": f"{snap}|served", "ts": f"t{t}", "ts_ms": t, "account_id": account, "device_id": claimed,
                       "snapshot": snap, "event": "snapshot_served", "integration": "web", "request_id": snap})
    case.table("frames").insert_all(frames)
    case.table("frame_clusters").insert_all(fc)
    case.table("events").insert_all(events)
    case.table("fingerprints").insert_all(fps)
    return case


def exposures(case):
    return {(e["recipient_account"], e["source_device"]): e for e in case.db.query("select * from exposures")}


def own(device, n, prefix):
    home, owner, _ = ({**HOMES, **STRANGERS})[device]
    return [(f"{prefix}{i}", owner, device) for i in range(n)]


def test_rarely_used_camera_is_not_outvoted_by_the_accounts_it_leaked_to(tmp_path):
    # cam-rare: 2 own requests; its frames leaked to 6 strangers, each claiming their own device.
    leaked = [(f"leak{i}", f"acct-s{i}", f"cam-s{i}") for i in range(6)]
    clusters = {1: own("cam-rare", 2, "r") + leaked}
    for i in range(6):
        clusters[10 + i] = own(f"cam-s{i}", 8, f"s{i}-")
    case = build(tmp_path, clusters)
    attribute_case(case)
    row = next(case.db.query("select * from clusters where cluster_id = 1"))
    assert row["source_device"] == "cam-rare" and row["attribution"] == "logs"
    assert set(exposures(case)) == {(f"acct-s{i}", "cam-rare") for i in range(6)}


def test_plain_majority_would_have_accused_the_wrong_camera(tmp_path):
    # A stranger asked 3 times in the window and got cam-rare each time: a plurality of votes.
    leaked = [(f"leak{i}", "acct-s0", "cam-s0") for i in range(3)]
    clusters = {1: own("cam-rare", 2, "r") + leaked, 2: own("cam-s0", 20, "s0-")}
    case = build(tmp_path, clusters)
    attribute_case(case)
    assert next(case.db.query("select source_device from clusters where cluster_id = 1"))["source_device"] == "cam-rare"
    assert set(exposures(case)) == {("acct-s0", "cam-rare")}


def test_close_call_is_left_unattributed(tmp_path):
    # cam-s1's only requests all landed in this cluster, as did cam-rare's: no way to tell.
    clusters = {1: own("cam-rare", 2, "r") + [("x1", "acct-s1", "cam-s1"), ("x2", "acct-s1", "cam-s1")]}
    case = build(tmp_path, clusters)
    attribute_case(case)
    row = next(case.db.query("select * from clusters where cluster_id = 1"))
    assert row["source_device"] is None and row["reason"].startswith("ambiguous")
    assert exposures(case) == {}


def test_a_device_named_once_does_not_tie_a_camera_with_many_requests(tmp_path):
    # One log line names an unregistered camera for a frame of cam-b's cluster; cam-b's owner asked
    # for 5 frames, all here. One stray line is weak evidence and must not make the call "ambiguous".
    clusters = {1: own("cam-b", 5, "b") + [("stray", "acct-s0", "cam-unknown")], 2: own("cam-s0", 8, "s0-")}
    case = build(tmp_path, clusters)
    attribute_case(case)
    row = next(case.db.query("select * from clusters where cluster_id = 1"))
    assert (row["source_device"], row["attribution"]) == ("cam-b", "logs"), row["reason"]
    assert set(exposures(case)) == {("acct-s0", "cam-b")}


def test_reference_frames_outrank_log_votes(tmp_path):
    # Logs claim cam-s0 for every frame, but reference frames say these are cam-b's pixels.
    clusters = {1: [(f"x{i}", "acct-s0", "cam-s0") for i in range(5)], 2: own("cam-s0", 5, "s0-")}
    case = build(tmp_path, clusters, refs={1: ["cam-b", "cam-b"]})
    attribute_case(case)
    row = next(case.db.query("select * from clusters where cluster_id = 1"))
    assert (row["source_device"], row["attribution"]) == ("cam-b", "reference")
    assert set(exposures(case)) == {("acct-s0", "cam-b")}
    assert exposures(case)[("acct-s0", "cam-b")]["evidence"] == "content"


def test_conflicting_references_leave_the_cluster_unattributed(tmp_path):
    case = build(tmp_path, {1: own("cam-b", 3, "b")}, refs={1: ["cam-b", "cam-s0"]})
    attribute_case(case)
    assert next(case.db.query("select source_device from clusters"))["source_device"] is None


def test_a_mixup_inside_one_home_is_not_a_leak(tmp_path):
    # acct-a2 is shared on cam-a1 only, and was served cam-a2 of the same home.
    clusters = {1: own("cam-a2", 5, "a2-") + [("mix", "acct-a2", "cam-a1")], 2: own("cam-a1", 5, "a1-")}
    case = build(tmp_path, clusters)
    attribute_case(case)
    assert exposures(case) == {}
    attribute_case(case, AttributionParams(access_scope="device"))
    assert set(exposures(case)) == {("acct-a2", "cam-a2")}


def test_uninformative_frames_are_never_evidence_but_a_foreign_log_is(tmp_path):
    clusters = {1: own("cam-b", 5, "b")}
    dark = [("dark1", "acct-s0", "cam-s0"), ("dark2", "acct-s1", "cam-b")]
    case = build(tmp_path, clusters, uninformative=dark)
    attribute_case(case)
    found = exposures(case)
    # dark1: the pixels say nothing and the log names the account's own camera -> nothing.
    # dark2: the log itself names a camera the account may not see -> a log-evidenced exposure.
    assert set(found) == {("acct-s1", "cam-b")}
    assert found[("acct-s1", "cam-b")]["evidence"] == "log"
    reasons = {r["snapshot"]: r["reason"] for r in case.db.query("select * from attributions where source_device is null")}
    assert reasons["dark1"].startswith("uninformative")


def test_registry_scopes():
    devices = [{"device_id": d, "home_id": h, "owner_account": o, "shared_accounts": json.dumps(s)} for d, (h, o, s) in HOMES.items()]
    home = Registry(devices, "home")
    device = Registry(devices, "device")
    assert home.may_see("acct-a2", "cam-a2") and not device.may_see("acct-a2", "cam-a2")
    assert home.may_see("acct-a", "cam-a2") and device.may_see("acct-a", "cam-a2")
    assert not home.may_see("acct-b", "cam-a1") and not home.may_see("nobody", "cam-b")


# --- issue 12: no cluster trusted to be one camera, every accusation verified one to one ---------

def test_a_cluster_of_two_cameras_with_references_of_one_is_not_given_whole_to_it(tmp_path):
    # Loose joins merged cam-b's core (with its references) and cam-s1's core: cam-s1's own frames,
    # requested 20 times by its owner and nowhere else. They must stay cam-s1's, never cam-b's.
    b_frames = own("cam-b", 4, "b")
    s1_frames = own("cam-s1", 20, "s1-")
    cores = {snap: 11 for snap, _, _ in b_frames} | {snap: 12 for snap, _, _ in s1_frames} | {"ref:cam-b": 11}
    scenes = {snap: 7 for snap, _, _ in s1_frames}
    case = build(tmp_path, {1: b_frames + s1_frames}, refs={1: ["cam-b", "cam-b"]}, cores=cores, scenes=scenes)
    stats = attribute_case(case)
    by_snap = {r["snapshot"]: r["source_device"] for r in case.db.query("select * from attributions")}
    assert stats.split_clusters == 1
    assert {by_snap[s] for s, _, _ in s1_frames} == {"cam-s1"}
    assert {by_snap[s] for s, _, _ in b_frames} == {"cam-b"}
    assert exposures(case) == {}


def test_a_frame_as_near_two_cameras_accuses_nobody_and_lands_in_review(tmp_path):
    # cam-b and cam-s1 show the same room (identical flats), each anchored by its references in
    # its own core of one cluster. A frame of that room reached acct-s0: either could be its source.
    from camleak.report import build_report
    b_frames, s1_frames = own("cam-b", 4, "b"), own("cam-s1", 4, "s1-")
    leaked = [("x", "acct-s0", "cam-s0")]
    cores = {s: 11 for s, _, _ in b_frames} | {s: 12 for s, _, _ in s1_frames} | {"x": 13, "ref:cam-b": 11, "ref:cam-s1": 12}
    clusters = {1: b_frames + s1_frames + leaked, 2: own("cam-s0", 5, "s0-")}
    case = build(tmp_path, clusters, refs={1: ["cam-b", "cam-s1"]}, cores=cores)
    attribute_case(case)
    row = next(case.db.query("select * from attributions where snapshot = 'x'"))
    assert row["source_device"] is None and row["reason"].startswith("review: ")
    assert json.loads(row["candidates"]) == ["cam-b", "cam-s1"]
    assert exposures(case) == {}
    review = build_report(case, generated_at="-")["review"]
    assert [(r["candidates"], r["snapshots"], r["accounts"]) for r in review] == [(["cam-b", "cam-s1"], 1, 1)]


def test_verification_rejects_a_frame_that_matches_the_recipients_own_camera(tmp_path):
    # The hashes put a frame into cam-b's cluster, but its pixels are the room of the recipient's
    # own camera: it is acct-s0's own view, not a leak.
    leaked = [("x", "acct-s0", "cam-s0")]
    clusters = {1: own("cam-b", 5, "b") + leaked, 2: own("cam-s0", 5, "s0-")}
    case = build(tmp_path, clusters, refs={1: ["cam-b"]}, scenes={"x": 2}, cores={"x": 9})
    stats = attribute_case(case)
    row = next(case.db.query("select * from attributions where snapshot = 'x'"))
    assert row["source_device"] is None and row["reason"].startswith("review: ")
    assert stats.rejected_frames == 1 and exposures(case) == {}


def test_verification_rejects_a_frame_when_the_logged_camera_has_no_frames_of_its_own(tmp_path):
    # cam-s0 was requested but none of its frames is anywhere: what acct-s0 saw could be it.
    case = build(tmp_path, {1: own("cam-b", 5, "b") + [("x", "acct-s0", "cam-s0")]}, refs={1: ["cam-b"]})
    attribute_case(case)
    row = next(case.db.query("select * from attributions where snapshot = 'x'"))
    assert row["source_device"] is None and "cam-s0" in row["reason"]
    assert exposures(case) == {}


def test_a_verified_exposure_carries_its_chance_of_being_wrong(tmp_path):
    leaked = [(f"leak{i}", f"acct-s{i}", f"cam-s{i}") for i in range(3)]
    clusters = {1: own("cam-b", 5, "b") + leaked} | {10 + i: own(f"cam-s{i}", 5, f"s{i}-") for i in range(3)}
    case = build(tmp_path, clusters, refs={1: ["cam-b"]})
    stats = attribute_case(case)
    found = exposures(case)
    assert set(found) == {(f"acct-s{i}", "cam-b") for i in range(3)}
    assert all(0 < e["p_wrong"] <= 0.5 for e in found.values())
    assert stats.expected_false_pairs == round(sum(e["p_wrong"] for e in found.values()), 4)


def test_a_frame_no_vote_places_goes_to_the_camera_its_pixels_name(tmp_path):
    # Two lone frames of cam-b's room, each in a cluster of its own whose log names cam-s3 (whose
    # own frames are elsewhere): no anchor, no usable vote. One reached cam-b's owner: an own
    # view, placed by its pixels. The other reached a stranger: its room is plainly cam-b's and
    # plainly not the logged camera's, so its pixels accuse, after the full check.
    clusters = {1: own("cam-b", 6, "b"), 2: [("mine", "acct-b", "cam-s3")], 3: [("theirs", "acct-s4", "cam-s3")],
                4: own("cam-s3", 6, "s3-"), 5: own("cam-s4", 6, "s4-")}
    case = build(tmp_path, clusters, refs={1: ["cam-b"]}, scenes={"mine": 1, "theirs": 1})
    attribute_case(case)
    rows = {r["snapshot"]: r for r in case.db.query("select * from attributions where snapshot in ('mine', 'theirs')")}
    assert rows["mine"]["source_device"] == "cam-b" and rows["mine"]["attribution"] == "pixels"
    assert rows["theirs"]["source_device"] == "cam-b" and rows["theirs"]["attribution"] == "pixels"
    accused = exposures(case)[("acct-s4", "cam-b")]
    assert accused["evidence"] == "content" and accused["p_wrong"] is not None
    # Without the pixel accusation, pixels place only what accuses nobody
    attribute_case(case, AttributionParams(accuse_by_pixels=False))
    rows = {r["snapshot"]: r for r in case.db.query("select * from attributions where snapshot in ('mine', 'theirs')")}
    assert rows["mine"]["source_device"] == "cam-b"
    assert rows["theirs"]["source_device"] is None and rows["theirs"]["reason"].startswith("the devices the logs name")
    assert [k for k, e in exposures(case).items() if e["evidence"] == "content"] == []  # (its log alone is an exposure)
    attribute_case(case, AttributionParams(identify_by_pixels=False))
    assert next(case.db.query("select source_device from attributions where snapshot = 'mine'"))["source_device"] is None
