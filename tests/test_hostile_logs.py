"""Hostile and broken delivery logs and registries: every line is used or counted with its
file, line and reason; nothing already ingested is lost; conflicts are reported."""

from __future__ import annotations

import codecs
import gzip
import json
import os

import pytest
import zstandard

from camleak.casefile import Case
from camleak.errors import InputError
from camleak.ingest import ingest_devices, ingest_logs
from camleak.timeutil import parse_ts

from conftest import write_jsonl, write_registry

GOOD = {"ts": "2025-11-20T12:00:00Z", "account_id": "acct-a", "device_id": "cam-1", "snapshot": "s1",
        "event": "snapshot_served", "integration": "alexa"}


def event(i: int, **extra) -> dict:
    return {**GOOD, "request_id": f"r{i}", **extra}


@pytest.fixture
def case(tmp_path):
    with Case(tmp_path / "case.db") as c:
        yield c


def problems(case, kind=None):
    sql = "select kind, line, message from problems" + (" where kind = ?" if kind else "") + " order by id"
    return list(case.db.query(sql, [kind] if kind else []))


def lines(*rows) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in rows)


def test_invalid_utf8_lines_are_counted_with_file_and_line(case, tmp_path):
    (tmp_path / "l.jsonl").write_bytes(lines(event(1), b'{"ts": "2025-11-20T12:00:00Z", "account_id": "\xff\xfe"}', event(2)))
    (tmp_path / "l.csv").write_bytes(b"ts,account_id,event,request_id\n"
                                     b"1763640000,acct-a,snapshot_served,c1\n"
                                     b"1763640000,acct-\xe9,snapshot_served,c2\n")
    stats = ingest_logs(case, [tmp_path / "l.jsonl", tmp_path / "l.csv"])
    assert (stats.items, stats.skipped) == (3, 2)
    found = sorted((p["message"].split(":")[0].rsplit("/", 1)[1], p["line"], "UTF-8" in p["message"])
                   for p in problems(case, "malformed_log_line"))
    assert found == [("l.csv", 3, True), ("l.jsonl", 2, True)]


def test_a_line_of_several_megabytes(case, tmp_path):
    big = event(1, payload="x" * (3 << 20))  # a valid event with a 3 MB field is used
    huge = b'{"garbage": "' + b"y" * (17 << 20)  # 17 MB without a line break is counted, not held
    (tmp_path / "big.jsonl").write_bytes(lines(big, huge, event(2)))
    stats = ingest_logs(case, [tmp_path / "big.jsonl"])
    assert (stats.items, stats.skipped) == (2, 1)
    (long_line,) = problems(case, "malformed_log_line")
    assert long_line["line"] == 2 and "longer than 16 MiB" in long_line["message"]
    (tmp_path / "big.csv").write_bytes(b"ts,account_id,event,request_id\n1763640000,a," + b"z" * (1 << 20) + b",c1\n"
                                       b"1763640000,a,snapshot_served,c2\n")
    stats = ingest_logs(case, [tmp_path / "big.csv"])
    assert (stats.items, stats.skipped) == (1, 1)


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_truncated_compressed_log_keeps_what_decoded(case, tmp_path, compression):
    text = lines(*(event(i) for i in range(3000)))
    if compression == "gzip":
        blob = gzip.compress(text)
    else:
        blob = zstandard.ZstdCompressor().compress(text)
        stream = zstandard.ZstdCompressor().compressobj()  # written in blocks, as an exporter streams
        blob = b"".join(stream.compress(text[i : i + 8192]) + stream.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
                        for i in range(0, len(text), 8192)) + stream.flush()
    name = "cut.jsonl.gz" if compression == "gzip" else "cut.jsonl.zst"
    (tmp_path / name).write_bytes(blob[: len(blob) // 2])
    stats = ingest_logs(case, [tmp_path / name])
    assert 500 < stats.items < 3000
    (cut,) = problems(case, "truncated_log")
    assert name in cut["message"] and "kept the lines before it" in cut["message"]


def test_damaged_compressed_log_keeps_what_decoded(case, tmp_path):
    blob = bytearray(gzip.compress(lines(*(event(i) for i in range(3000)))))
    blob[len(blob) // 2 : len(blob) // 2 + 64] = b"\x00" * 64
    (tmp_path / "bad.jsonl.gz").write_bytes(bytes(blob))
    stats = ingest_logs(case, [tmp_path / "bad.jsonl.gz"])
    assert 0 < stats.items < 3000 and len(problems(case, "truncated_log")) == 1


def test_mixed_timestamp_formats_and_zones(case, tmp_path):
    noon = 1763640000000  # 2025-11-20T12:00:00Z
    shapes = ["2025-11-20T12:00:00Z", "2025-11-20T13:00:00+01:00", "2025-11-20T07:00:00-05:00", "2025-11-20 12:00:00",
              "2025-11-20T12:00:00.000000000Z", "2025-11-20T12:00:00,000Z", 1763640000, 1763640000000, "1763640000",
              1763640000.0, 1763640000000000, 1763640000000000000, "Thu, 20 Nov 2025 12:00:00 GMT",
              "20/Nov/2025:13:00:00 +0100", "20251120T120000Z"]
    for shape in shapes:
        assert parse_ts(shape) == noon, shape
    write_jsonl(tmp_path / "mixed.jsonl", [event(i, ts=shape) for i, shape in enumerate(shapes)])
    ingest_logs(case, [tmp_path / "mixed.jsonl"])
    assert {r["ts"] for r in case.db.query("select ts from events")} == {"2025-11-20T12:00:00Z"}


def test_epoch_seconds_versus_milliseconds_and_absurd_values(case, tmp_path):
    assert parse_ts(1763640000) == parse_ts(1763640000000) == parse_ts("1763640000000")
    assert parse_ts(1763640000.25) == 1763640000250
    bad = [-1, float("inf"), float("nan"), 1e30, "1e400", "0001-01-01T00:00:00+01:00", "yesterday", "", True, None, [1]]
    write_jsonl(tmp_path / "bad.jsonl", [event(i, ts=value) for i, value in enumerate(bad) if value == value and value != float("inf")])
    (tmp_path / "bad.jsonl").write_bytes((tmp_path / "bad.jsonl").read_bytes()
                                         + b'{"ts": Infinity, "account_id": "a", "event": "e"}\n'
                                         + b'{"ts": NaN, "account_id": "a", "event": "e"}\n')
    stats = ingest_logs(case, [tmp_path / "bad.jsonl"])
    assert stats.items == 0 and stats.skipped == len(bad)
    messages = [p["message"] for p in problems(case, "malformed_log_line")]
    assert any("out of range" in m for m in messages) and any("not a timestamp" in m for m in messages)


def test_missing_and_wrong_typed_fields(case, tmp_path):
    rows = [event(1), {"ts": GOOD["ts"], "event": "snapshot_served"}, event(3, account_id={"id": "a"}),
            event(4, device_id=["cam-1"]), event(5, account_id=True), event(6, ts={"seconds": 1}),
            event(7, account_id=12345), b"[1, 2, 3]", b'"just a string"', b"[" * 50000 + b"]" * 50000,
            b'{"ts": ' + b"1" * 5000 + b"}"]
    (tmp_path / "types.jsonl").write_bytes(lines(*rows))
    stats = ingest_logs(case, [tmp_path / "types.jsonl"])
    assert stats.items == 2  # event 1, and event 7 whose numeric account id is read as text
    assert [r["account_id"] for r in case.db.query("select account_id from events order by line")] == ["acct-a", "12345"]
    reasons = {p["line"]: p["message"].split(": ", 1)[1] for p in problems(case, "malformed_log_line")}
    assert "missing field(s): account_id" in reasons[2]
    assert "holds a dict" in reasons[3] and "holds a list" in reasons[4] and "holds a boolean" in reasons[5]
    assert "not a JSON object" in reasons[8] and "not a JSON object" in reasons[9]
    assert "nested too deeply" in reasons[10] and "not JSON" in reasons[11]


def test_csv_with_quoted_newlines_bom_and_short_rows(case, tmp_path):
    (tmp_path / "q.csv").write_bytes(codecs.BOM_UTF8 + b'ts,account_id,device_id,event,integration,request_id\r\n'
                                     b'1763640000,acct-a,cam-1,snapshot_served,"line one\r\nline two, with comma",q1\r\n'
                                     b'1763640000,acct-b,cam-2,snapshot_served,"say ""hi""",q2\r\n'
                                     b'1763640000,acct-c\r\n'
                                     b'1763640000,acct-d,cam-4,snapshot_served,"never closed,q4\r\n')
    stats = ingest_logs(case, [tmp_path / "q.csv"])
    integrations = {r["request_id"]: r["integration"] for r in case.db.query("select * from events")}
    assert integrations["q1"] == "line one\r\nline two, with comma" and integrations["q2"] == 'say "hi"'
    assert stats.skipped == 2  # the short row, and the row whose quote never closes
    assert [p["line"] for p in problems(case, "malformed_log_line")][0] == 5  # line numbers count the quoted newline


def test_bom_and_utf16_jsonl(case, tmp_path):
    (tmp_path / "bom.jsonl").write_bytes(codecs.BOM_UTF8 + lines(event(1), event(2)))
    text = lines(event(3), event(4)).decode()
    (tmp_path / "wide.jsonl").write_bytes(text.encode("utf-16"))
    stats = ingest_logs(case, [tmp_path / "bom.jsonl", tmp_path / "wide.jsonl"])
    assert (stats.items, stats.skipped) == (4, 0)


def test_empty_files_are_reported_not_silent(case, tmp_path):
    (tmp_path / "empty.jsonl").write_bytes(b"")
    (tmp_path / "header.csv").write_text("ts,account_id,event\n")
    (tmp_path / "blank.jsonl").write_text("\n\n   \n")
    stats = ingest_logs(case, [tmp_path / "empty.jsonl", tmp_path / "header.csv", tmp_path / "blank.jsonl"],
                        {"account_id": "jsonPayload.user"})
    assert stats.files == 3 and stats.items == 0
    assert len(problems(case, "empty_log")) == 3


def test_a_bad_file_loses_nothing_already_ingested(case, tmp_path):
    write_jsonl(tmp_path / "good.jsonl", [event(i) for i in range(5)])
    ingest_logs(case, [tmp_path / "good.jsonl"])
    (tmp_path / "mystery.bin").write_bytes(b"\x00\x01\x02 binary")
    with pytest.raises(InputError, match="mystery.bin: unknown log format"):
        ingest_logs(case, [tmp_path / "mystery.bin"])
    assert case.count("events") == 5 and case.count("inputs") == 1


# -- registry --------------------------------------------------------------------------------
def test_device_listed_twice_with_different_owners_is_reported(case, tmp_path):
    write_registry(tmp_path / "a.csv", [{"device_id": "cam-1", "home_id": "h1", "owner_account": "acct-a", "shared_accounts": ""}])
    write_registry(tmp_path / "b.csv", [{"device_id": "cam-1", "home_id": "h7", "owner_account": "acct-z", "shared_accounts": ""},
                                        {"device_id": "cam-1", "home_id": "h1", "owner_account": "acct-a", "shared_accounts": ""}])
    stats = ingest_devices(case, [tmp_path / "a.csv", tmp_path / "b.csv"])
    (conflict,) = problems(case, "registry_conflict")
    assert "b.csv:2" in conflict["message"] and "input 1 line 2" in conflict["message"]
    raw = json.loads(case.db.execute("select raw from problems where kind = 'registry_conflict'").fetchone()[0])
    assert raw["here"]["owner_account"] == "acct-z" and raw["first"]["owner_account"] == "acct-a"
    assert "acct-" not in conflict["message"]  # messages get printed; account ids stay in the case
    assert stats.duplicates == 1 and stats.skipped == 1


def test_hostile_registry_rows(case, tmp_path):
    rows = [{"device_id": "cam-1", "owner_account": "acct-a"}, {"device_id": {"x": 1}, "owner_account": "acct-b"},
            {"device_id": "cam-3", "owner_account": True}, {"device_id": "cam-4"}, [1, 2]]
    (tmp_path / "r.jsonl").write_bytes(lines(*rows) + b"[" * 50000 + b"\n" + b"\xff\xfe\n")
    stats = ingest_devices(case, [tmp_path / "r.jsonl"])
    assert (stats.items, stats.skipped) == (1, 6)
    blob = gzip.compress(lines(*({"device_id": f"cam-{i}", "owner_account": "a"} for i in range(3000))))
    (tmp_path / "cut.jsonl.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(InputError, match="cut.jsonl.gz: device registry unreadable or cut short"):
        ingest_devices(case, [tmp_path / "cut.jsonl.gz"])
    assert case.count("devices") == 1  # the partial registry was not kept, the earlier one was


def test_unknown_device_and_account_without_devices_in_a_triage(tmp_path):
    """An account that owns nothing and a device the registry never heard of: the delivery is
    still judged by its pixels, and the unknown device and the conflict are in the report."""
    from typer.testing import CliRunner

    from camleak.cli import app
    from conftest import jpeg, scene, write_tar

    write_registry(tmp_path / "devices.csv", [
        {"device_id": "cam-1", "home_id": "h1", "owner_account": "acct-a", "shared_accounts": ""},
        {"device_id": "cam-2", "home_id": "h2", "owner_account": "acct-b", "shared_accounts": ""},
        {"device_id": "cam-1", "home_id": "h9", "owner_account": "acct-z", "shared_accounts": ""},
    ])
    members, events = {}, []
    for home, (device, account) in enumerate((("cam-1", "acct-a"), ("cam-2", "acct-b")), start=1):
        for i in range(6):
            key = f"{device}-{i}"
            members[f"{key}.jpg"] = jpeg(scene(home, (320, 180)), 55 + 5 * i)
            events.append({"ts": 1763640000 + i, "account_id": account, "device_id": device, "snapshot": key,
                           "event": "snapshot_served", "request_id": f"{key}"})
    members["leak.jpg"] = jpeg(scene(1, (320, 180)), 90)
    events.append({"ts": 1763640100, "account_id": "acct-nobody", "device_id": "cam-2", "snapshot": "leak",
                   "event": "snapshot_served", "request_id": "leak"})
    events.append({"ts": 1763640200, "account_id": "acct-nobody", "device_id": "cam-9", "snapshot": "gone",
                   "event": "snapshot_served", "request_id": "gone"})
    write_tar(tmp_path / "snaps.tar.gz", members)
    write_jsonl(tmp_path / "logs.jsonl", events)
    runner = CliRunner()
    result = runner.invoke(app, ["triage", "--case", str(tmp_path / "c.db"), "--devices", str(tmp_path / "devices.csv"),
                                 "--logs", str(tmp_path / "logs.jsonl"), "--snapshots", str(tmp_path / "snaps.tar.gz"),
                                 "--workers", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads(runner.invoke(app, ["report", "--case", str(tmp_path / "c.db")]).stdout)
    pairs = {(e["recipient_account"], e["source_device"], e["evidence"]) for e in report["exposures"]}
    assert pairs == {("acct-nobody", "cam-1", "content")}
    warnings = {w["kind"]: w for w in report["warnings"]}
    assert warnings["unknown_device_in_logs"]["examples"] == ["cam-9"]
    assert warnings["registry_conflict"]["count"] == 1
    assert {g["reason"]: g["examples"] for g in report["unattributed"]} == {"snapshot not in any archive": ["gone"]}


def test_log_folder_of_any_depth_and_hidden_files(case, tmp_path):
    root = tmp_path / "logs"
    root.mkdir()
    fd = os.open(root, os.O_RDONLY)
    for _ in range(1100):  # deeper than Python's recursion limit
        os.mkdir("d", dir_fd=fd)
        inner = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = inner
    out = os.open("deep.jsonl", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd)
    os.write(out, lines(event(1)))
    os.close(out)
    os.close(fd)
    write_jsonl(root / "top.jsonl", [event(2)])
    (root / ".hidden.jsonl").write_text("garbage\n")
    try:
        stats = ingest_logs(case, [root])
        assert (stats.files, stats.items, stats.skipped) == (2, 2, 0)
    finally:
        from test_hostile_archives import _remove_deep
        _remove_deep(root)
