"""Attribution rules on hand-built cases: who the frames are from, and who may see them."""

from __future__ import annotations

import json


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


def build(tmp_path, clusters: dict[int, list[tuple[str, str, str | None]]], *, refs=None, uninformative=()):
    """clusters: id -> [(snapshot, recipient, claimed device)]; refs: id -> [device]."""
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
            fc.append({"frame_id": f"s:{snap}", "cluster_id": cid, "via": "hash", "distance": 3})
            fps.append({"frame_id": f"s:{snap}", "status": "ok"})
            events.append({"event_key": f"{snap}|served", "ts": f"t{t}", "ts_ms": t, "account_id": account, "device_id": claimed,
                           "snapshot": snap, "event": "snapshot_served", "integration": "alexa", "request_id": snap})
        for i, dev in enumerate((refs or {}).get(cid, [])):
            frames.append({"frame_id": f"r:{dev}:{cid}{i}", "role": "reference", "ref_device": dev, "input_id": 0, "member": "x"})
            fc.append({"frame_id": f"r:{dev}:{cid}{i}", "cluster_id": cid, "via": "hash", "distance": 2})
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
    clusters = {1: [(f"x{i}", "acct-s0", "cam-s0") for i in range(5)]}
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
