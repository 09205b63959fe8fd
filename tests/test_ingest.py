"""Ingest from local paths: formats, provenance, idempotence, and bad input."""

from __future__ import annotations

import gzip
import json
import os
import stat

import pytest
import zstandard

from camleak.casefile import Case
from camleak.errors import InputError
from camleak.ingest import ingest_devices, ingest_logs, ingest_references, ingest_snapshots

from conftest import jpeg, scene, write_jsonl, write_registry, write_tar, write_zip

EVENTS = [
    {"ts": "2025-11-20T12:00:00Z", "account_id": "acct-a", "device_id": "cam-1", "snapshot": "s1",
     "event": "snapshot_served", "integration": "alexa", "request_id": "r1"},
    {"ts": "2025-11-20T12:00:05Z", "account_id": "acct-a", "device_id": "cam-1", "snapshot": "s1",
     "event": "snapshot_viewed", "integration": "alexa", "request_id": "r1"},
    {"ts": "2025-11-20T12:01:00Z", "account_id": "acct-b", "device_id": "cam-2", "snapshot": "s2",
     "event": "snapshot_served", "integration": "web", "request_id": "r2"},
]


@pytest.fixture
def case(tmp_path):
    with Case(tmp_path / "case.db") as c:
        yield c


def test_case_file_is_owner_only(tmp_path):
    old = os.umask(0o022)
    try:
        Case(tmp_path / "c.db").close()
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "c.db").stat().st_mode) == 0o600


def test_registry_csv_and_jsonl(case, tmp_path):
    write_registry(tmp_path / "d.csv", [
        {"device_id": "cam-1", "home_id": "h1", "owner_account": "acct-a", "shared_accounts": "acct-m;acct-n"},
        {"device_id": "cam-2", "home_id": "h2", "owner_account": "acct-b", "shared_accounts": ""},
    ])
    (tmp_path / "d.jsonl").write_text(json.dumps({"device_id": "cam-3", "home_id": "h3", "owner_account": "acct-c",
                                                  "shared_accounts": ["acct-x"]}) + "\n")
    stats = ingest_devices(case, [tmp_path / "d.csv", tmp_path / "d.jsonl"])
    assert stats.items == 3
    shared = {r["device_id"]: json.loads(r["shared_accounts"]) for r in case.db.query("select * from devices")}
    assert shared == {"cam-1": ["acct-m", "acct-n"], "cam-2": [], "cam-3": ["acct-x"]}
    # provenance of every input: path, size, sha256, time
    rows = list(case.db.query("select * from inputs order by id"))
    assert [r["kind"] for r in rows] == ["devices", "devices"]
    assert all(len(r["sha256"]) == 64 and r["size"] > 0 and r["ingested_at"] and r["status"] == "complete" for r in rows)


def test_registry_conflict_is_reported_not_silently_resolved(case, tmp_path):
    write_registry(tmp_path / "d.csv", [
        {"device_id": "cam-1", "home_id": "h1", "owner_account": "acct-a", "shared_accounts": ""},
        {"device_id": "cam-1", "home_id": "h9", "owner_account": "acct-z", "shared_accounts": ""},
    ])
    ingest_devices(case, [tmp_path / "d.csv"])
    problems = list(case.db.query("select * from problems where kind = 'registry_conflict'"))
    assert len(problems) == 1 and "d.csv:3" in problems[0]["message"]


def test_logs_gzip_zstd_csv_dedupe_and_reingest(case, tmp_path):
    write_jsonl(tmp_path / "a.jsonl.gz", EVENTS[:2], compress=True)
    text = "".join(json.dumps(e) + "\n" for e in EVENTS[1:]).encode()
    (tmp_path / "b.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(text))
    (tmp_path / "c.csv").write_text(
        "ts,account_id,device_id,snapshot,event,integration,request_id\n"
        "1763640120000,acct-c,cam-3,s3,snapshot_served,web,r3\n"
        "1763640180,acct-c,cam-3,s4,snapshot_served,web,r4\n"
    )
    stats = ingest_logs(case, [tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl.zst", tmp_path / "c.csv"])
    assert stats.items == 5 and stats.duplicates == 1 and stats.skipped == 0
    times = {r["request_id"]: r["ts"] for r in case.db.query("select * from events where event='snapshot_served'")}
    assert times["r3"] == "2025-11-20T12:02:00Z" and times["r4"] == "2025-11-20T12:03:00Z"
    again = ingest_logs(case, [tmp_path])  # the folder of the same parts
    assert again.new_files == 0 and case.count("events") == 5


def test_malformed_lines_are_counted_and_kept_aside(case, tmp_path):
    lines = [json.dumps(EVENTS[0]), '{"ts": "2025-11-20T12:00:00Z", "account', "garbage", json.dumps(EVENTS[2])]
    (tmp_path / "l.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "l.csv").write_text(
        "ts,account_id,device_id,snapshot,event,integration,request_id\n"
        "1763640120000,acct-c,cam-3,s3,snapshot_served,web,r3\n"
        "1763640120000,acct-c,cam-3\n"
        "\"1763640180\",acct-d,cam-4,s9,snapshot_served,\"web\nproxy\",r9\n"
    )
    stats = ingest_logs(case, [tmp_path / "l.jsonl", tmp_path / "l.csv"])
    assert stats.items == 4 and stats.skipped == 3
    problems = sorted((p["path"].rsplit("/", 1)[1], p["line"]) for p in case.db.query("select * from problems"))
    assert problems == [("l.csv", 3), ("l.jsonl", 2), ("l.jsonl", 3)]
    assert [r["integration"] for r in case.db.query("select integration from events where request_id='r9'")] == ["web\nproxy"]


def test_unknown_field_path_is_a_clear_error_and_loses_nothing(case, tmp_path):
    write_jsonl(tmp_path / "good.jsonl", EVENTS)
    ingest_logs(case, [tmp_path / "good.jsonl"])
    nested = [{"timestamp": e["ts"], "jsonPayload": {"user": e["account_id"]}, "event": e["event"]} for e in EVENTS]
    write_jsonl(tmp_path / "nested.jsonl", nested)
    with pytest.raises(InputError, match=r"nested.jsonl: --field account_id=jsonPayload.agentUserId matched no line"):
        ingest_logs(case, [tmp_path / "nested.jsonl"], {"ts": "timestamp", "account_id": "jsonPayload.agentUserId"})
    assert case.count("events") == 3
    assert case.count("inputs", "kind='logs'") == 1
    # the corrected map then ingests the file
    ingest_logs(case, [tmp_path / "nested.jsonl"], {"ts": "timestamp", "account_id": "jsonPayload.user"})
    assert case.count("inputs", "kind='logs'") == 2


def test_truncated_gzip_keeps_what_decoded(case, tmp_path):
    blob = gzip.compress("".join(json.dumps({**EVENTS[0], "request_id": f"r{i}"}) + "\n" for i in range(2000)).encode())
    (tmp_path / "cut.jsonl.gz").write_bytes(blob[: len(blob) // 2])
    stats = ingest_logs(case, [tmp_path / "cut.jsonl.gz"])
    assert 0 < stats.items < 2000
    assert case.count("problems", "kind = 'truncated_log'") == 1


@pytest.mark.parametrize("name, content", [("x.xlsx", b"PK\x03\x04binary"), ("x.bin", b"\x00\x01\x02")])
def test_unknown_log_format(case, tmp_path, name, content):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(InputError, match=name):
        ingest_logs(case, [tmp_path / name])


def test_missing_input_names_the_path(case, tmp_path):
    with pytest.raises(InputError, match="nope.jsonl: delivery log not found"):
        ingest_logs(case, [tmp_path / "nope.jsonl"])
    with pytest.raises(InputError, match="none.tar.gz: snapshot archive not found"):
        ingest_snapshots(case, [tmp_path / "none.tar.gz"])


def _images():
    return {f"s{i}": jpeg(scene(i, (320, 180))) for i in range(1, 5)}


@pytest.mark.parametrize("kind", ["tar", "tar.gz", "tgz", "tar.zst", "zip", "dir"])
def test_snapshot_archive_formats(case, tmp_path, kind):
    members = {f"snaps/{k}.jpg": v for k, v in _images().items()}
    target = tmp_path / f"a.{kind}"
    if kind in ("tar", "tar.gz", "tgz"):
        write_tar(target, members, {"tar": "w", "tar.gz": "w:gz", "tgz": "w:gz"}[kind])
    elif kind == "tar.zst":
        write_tar(tmp_path / "plain.tar", members, "w")
        target.write_bytes(zstandard.ZstdCompressor().compress((tmp_path / "plain.tar").read_bytes()))
    elif kind == "zip":
        write_zip(target, members)
    else:
        for name, data in members.items():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).write_bytes(data)
    stats = ingest_snapshots(case, [target])
    assert stats.items == 4
    assert sorted(r["snapshot"] for r in case.db.query("select snapshot from frames")) == ["s1", "s2", "s3", "s4"]


def test_manifest_maps_opaque_names_even_after_members(case, tmp_path):
    images = _images()
    members = {f"obj/{i:04d}.bin": data for i, data in enumerate(images.values())}
    manifest = "".join(json.dumps({"path": f"obj/{i:04d}.bin", "snapshot": key}) + "\n" for i, key in enumerate(images))
    members["manifest.jsonl"] = manifest.encode()  # last in the stream: keys resolved at the end
    write_tar(tmp_path / "m.tar.gz", members)
    ingest_snapshots(case, [tmp_path / "m.tar.gz"])
    assert sorted(r["snapshot"] for r in case.db.query("select snapshot from frames")) == sorted(images)


def test_non_images_and_empty_files_are_counted_skips(case, tmp_path):
    members = {"a.jpg": jpeg(scene(1, (320, 180))), "README.txt": b"hello", "empty.jpg": b""}
    write_tar(tmp_path / "x.tar.gz", members)
    stats = ingest_snapshots(case, [tmp_path / "x.tar.gz"])
    # a file named like an image stays a frame (fingerprinted as undecodable, reported as
    # unattributed with its reason); anything else is skipped; both are counted as problems
    assert stats.items == 2 and stats.skipped == 1
    assert case.count("problems", "kind = 'not_an_image'") == 2


def test_empty_archive_is_an_input_error(case, tmp_path):
    write_tar(tmp_path / "empty.tar.gz", {})
    with pytest.raises(InputError, match="empty.tar.gz: archive holds no files"):
        ingest_snapshots(case, [tmp_path / "empty.tar.gz"])
    assert case.count("inputs") == 0


def test_not_an_archive(case, tmp_path):
    (tmp_path / "notes.txt").write_text("not an archive")
    with pytest.raises(InputError, match="notes.txt: not a snapshot archive"):
        ingest_snapshots(case, [tmp_path / "notes.txt"])


def test_reingesting_the_same_archive_adds_nothing(case, tmp_path):
    write_tar(tmp_path / "x.tar.gz", {f"{k}.jpg": v for k, v in _images().items()})
    ingest_snapshots(case, [tmp_path / "x.tar.gz"])
    write_zip(tmp_path / "overlap.zip", {f"{k}.jpg": v for k, v in _images().items()})
    stats = ingest_snapshots(case, [tmp_path / "x.tar.gz", tmp_path / "overlap.zip"])
    assert stats.items == 0 and stats.duplicates == 4 and case.count("frames") == 4


def test_references_by_folder_and_by_manifest(case, tmp_path):
    members = {"refs/cam-1/0001.jpg": jpeg(scene(1)), "refs/cam-2/0001.jpg": jpeg(scene(2)),
               "loose/x.jpg": jpeg(scene(3)), "manifest.jsonl": json.dumps({"path": "loose/x.jpg", "device_id": "cam-3"}).encode()}
    write_tar(tmp_path / "refs.tar", members, "w")
    ingest_references(case, [tmp_path / "refs.tar"])
    assert sorted(r["ref_device"] for r in case.db.query("select ref_device from frames")) == ["cam-1", "cam-2", "cam-3"]


def test_a_partial_input_from_a_killed_run_is_redone(case, tmp_path):
    write_jsonl(tmp_path / "l.jsonl", EVENTS)
    ingest_logs(case, [tmp_path / "l.jsonl"])
    case.db.execute("update inputs set status = 'partial'")
    case.db.execute("delete from events where request_id = 'r2'")
    case.db.conn.commit()
    stats = ingest_logs(case, [tmp_path / "l.jsonl"])
    assert stats.new_files == 1 and case.count("events") == 3 and case.count("inputs") == 1


def test_an_optional_field_map_that_matches_nothing_is_a_warning(case, tmp_path):
    nested = [{"ts": e["ts"], "account_id": e["account_id"], "event": e["event"], "p": {"snap": e["snapshot"]}} for e in EVENTS]
    write_jsonl(tmp_path / "n.jsonl", nested)
    stats = ingest_logs(case, [tmp_path / "n.jsonl"], {"snapshot": "p.snapshot_key"})
    assert stats.items == 3
    problems = [p["message"] for p in case.db.query("select message from problems where kind = 'field_map_unmatched'")]
    assert len(problems) == 1 and "--field snapshot=p.snapshot_key matched no line" in problems[0]


def test_one_key_with_two_different_images_keeps_the_first_and_says_so(case, tmp_path):
    write_tar(tmp_path / "a.tar.gz", {"x/s1.jpg": jpeg(scene(1, (320, 180))), "y/s1.jpg": jpeg(scene(2, (320, 180)))})
    stats = ingest_snapshots(case, [tmp_path / "a.tar.gz"])
    assert (stats.items, stats.skipped) == (1, 1)
    write_zip(tmp_path / "b.zip", {"s1.jpg": jpeg(scene(3, (320, 180)))})
    stats = ingest_snapshots(case, [tmp_path / "b.zip"])
    assert (stats.items, stats.skipped) == (0, 1)
    messages = [p["message"] for p in case.db.query("select message from problems where kind = 'duplicate_snapshot_key' order by id")]
    assert "already came from this archive" in messages[0] and "already came from input 1" in messages[1]
    assert case.count("frames") == 1
