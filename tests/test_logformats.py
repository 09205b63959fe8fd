"""Each known export format, written in the shape its store documents, is read with no --field
into the same canonical events; unrelated JSON is refused with a suggestion; --field wins."""

from __future__ import annotations

import dataclasses
import gzip
import json
from datetime import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from camleak.casefile import Case
from camleak.cli import app

runner = CliRunner()

# The three deliveries every sample carries, in canonical form.
EVENTS = [
    {"ts": "2026-11-20T10:00:00Z", "account_id": "acct-1", "device_id": "cam-1", "snapshot": "snap-1",
     "event": "snapshot_served", "integration": "google-home", "request_id": "req-1"},
    {"ts": "2026-11-20T10:00:05Z", "account_id": "acct-1", "device_id": "cam-1", "snapshot": "snap-1",
     "event": "snapshot_viewed", "integration": "google-home", "request_id": "req-1"},
    {"ts": "2026-11-20T10:01:00Z", "account_id": "acct-2", "device_id": "cam-7", "snapshot": "snap-2",
     "event": "snapshot_served", "integration": "alexa", "request_id": "req-2"},
]
EPOCH_MS = {e["ts"]: int(datetime.fromisoformat(e["ts"]).timestamp() * 1000) for e in EVENTS}


def app_payload(e: dict) -> dict:
    """How an application typically names the fields in its own JSON."""
    return {"agentUserId": e["account_id"], "deviceId": e["device_id"], "snapshotKey": e["snapshot"],
            "eventType": e["event"], "integration": e["integration"], "requestId": e["request_id"]}


def lines(rows) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


# --- one writer per documented shape ---------------------------------------------------
def gcl_ndjson(d: Path) -> Path:
    """Cloud Logging sink export: one LogEntry per line, payload in jsonPayload."""
    rows = [{"insertId": f"id{i}", "logName": "projects/p/logs/assistant-bridge", "severity": "INFO",
             "resource": {"type": "cloud_run_revision", "labels": {"service_name": "bridge"}},
             "timestamp": e["ts"].replace("Z", ".000000Z"), "receiveTimestamp": "2026-11-20T11:00:00.1Z",
             "jsonPayload": app_payload(e)} for i, e in enumerate(EVENTS)]
    (d / "gcl.jsonl").write_text(lines(rows))
    return d / "gcl.jsonl"


def gcl_gcloud_array(d: Path) -> Path:
    """`gcloud logging read --format=json`: a pretty-printed array of LogEntry; ids in labels."""
    rows = [{"insertId": f"id{i}", "logName": "projects/p/logs/x", "timestamp": e["ts"],
             "labels": {"requestId": e["request_id"]},
             "protoPayload": {k: v for k, v in app_payload(e).items() if k != "requestId"}} for i, e in enumerate(EVENTS)]
    (d / "gcloud.json").write_text(json.dumps(rows, indent=2))
    return d / "gcloud.json"


def gcl_entries_list(d: Path) -> Path:
    """entries:list response saved to a file."""
    rows = [{"insertId": f"id{i}", "logName": "projects/p/logs/x", "timestamp": e["ts"],
             "jsonPayload": app_payload(e)} for i, e in enumerate(EVENTS)]
    (d / "entries.json").write_text(json.dumps({"entries": rows, "nextPageToken": "abc"}))
    return d / "entries.json"


def es_search_response(d: Path) -> Path:
    """`_search` response (pretty): hits.hits[]._source, ECS-style documents."""
    hits = [{"_index": "camcloud-logs-2026.11.20", "_id": f"d{i}", "_score": None, "sort": [i],
             "_source": {"@timestamp": e["ts"], "user": {"id": e["account_id"]}, "device": {"id": e["device_id"]},
                         "snapshot_key": e["snapshot"], "event": {"action": e["event"]},
                         "integration": e["integration"], "request_id": e["request_id"]}}
            for i, e in enumerate(EVENTS)]
    body = {"took": 3, "timed_out": False, "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
            "hits": {"total": {"value": 3, "relation": "eq"}, "max_score": None, "hits": hits}}
    (d / "search.json").write_text(json.dumps(body, indent=2))
    return d / "search.json"


def es_source_ndjson(d: Path) -> Path:
    """One `_source` document per line (an export of the documents themselves)."""
    rows = [{"@timestamp": e["ts"], "accountId": e["account_id"], "deviceId": e["device_id"],
             "snapshotId": e["snapshot"], "eventType": e["event"], "integration": e["integration"],
             "requestId": e["request_id"], "tags": ["bridge"]} for e in EVENTS]
    (d / "source.ndjson").write_text(lines(rows))
    return d / "source.ndjson"


def es_hits_ndjson(d: Path) -> Path:
    """One hit per line ({_index, _id, _source}), as dump tools write them."""
    rows = [{"_index": "logs", "_id": f"d{i}", "_source": {"timestamp": e["ts"], **app_payload(e)}}
            for i, e in enumerate(EVENTS)]
    (d / "hits.jsonl").write_text(lines(rows))
    return d / "hits.jsonl"


def loki_query_range(d: Path) -> Path:
    """query_range response: streams of [unix ns, line]; the line has no time of its own."""
    values = [[str(EPOCH_MS[e["ts"]] * 1_000_000), json.dumps(app_payload(e))] for e in EVENTS]
    body = {"status": "success", "data": {"resultType": "streams",
            "result": [{"stream": {"app": "camcloud", "export": "app-events"}, "values": values}],
            "stats": {"summary": {"totalEntriesReturned": 3}}}}
    (d / "loki.json").write_text(json.dumps(body))
    return d / "loki.json"


def logcli_jsonl(d: Path) -> Path:
    """`logcli query --output=jsonl`: {timestamp, line, labels} per line; integration as a label."""
    rows = []
    for e in EVENTS:
        payload = {k: v for k, v in app_payload(e).items() if k != "integration"}
        rows.append({"labels": {"app": "camcloud", "integration": e["integration"]}, "line": json.dumps(payload),
                     "timestamp": e["ts"].replace("Z", ".000000000Z")})
    (d / "logcli.jsonl").write_text(lines(rows))
    return d / "logcli.jsonl"


def cloudwatch_filter_log_events(d: Path) -> Path:
    """`aws logs filter-log-events` output: events[] of {timestamp ms, message JSON}."""
    events = [{"logStreamName": "bridge/1", "timestamp": EPOCH_MS[e["ts"]], "message": json.dumps(app_payload(e)),
               "ingestionTime": EPOCH_MS[e["ts"]] + 50, "eventId": f"3795{i}"} for i, e in enumerate(EVENTS)]
    (d / "cw.json").write_text(json.dumps({"events": events, "searchedLogStreams": [], "nextToken": None}, indent=2))
    return d / "cw.json"


def cloudwatch_subscription(d: Path) -> Path:
    """A subscription's decoded DATA_MESSAGE records, one per line (as Firehose lands them)."""
    msg = {"messageType": "DATA_MESSAGE", "owner": "123456789012", "logGroup": "/camcloud/bridge",
           "logStream": "bridge/1", "subscriptionFilters": ["all"],
           "logEvents": [{"id": f"3195{i}", "timestamp": EPOCH_MS[e["ts"]], "message": json.dumps(app_payload(e))}
                         for i, e in enumerate(EVENTS)]}
    (d / "firehose.jsonl").write_text(lines([msg]))
    return d / "firehose.jsonl"


def cloudwatch_s3_export(d: Path) -> Path:
    """An export task's object in S3: gzip, `<time> <message>` per line."""
    text = "".join(f"{e['ts'].replace('Z', '.000Z')} {json.dumps(app_payload(e))}\n" for e in EVENTS)
    (d / "000000.gz").write_bytes(gzip.compress(text.encode()))
    return d / "000000.gz"


def clickhouse_jsoneachrow(d: Path) -> Path:
    """FORMAT JSONEachRow: flat rows; DateTime as 'YYYY-MM-DD hh:mm:ss'."""
    rows = [{"event_time": e["ts"].replace("T", " ").rstrip("Z"), "user_id": e["account_id"],
             "camera_id": e["device_id"], "snapshot_key": e["snapshot"], "event_type": e["event"],
             "integration": e["integration"], "request_id": e["request_id"], "bytes": "18446744073709551615"}
            for e in EVENTS]
    (d / "ch.jsonl").write_text(lines(rows))
    return d / "ch.jsonl"


def clickhouse_json(d: Path) -> Path:
    """FORMAT JSON: meta, data[], rows, statistics."""
    rows = [{"ts": EPOCH_MS[e["ts"]], "account_id": e["account_id"], "device_id": e["device_id"],
             "snapshot": e["snapshot"], "event": e["event"], "integration": e["integration"],
             "request_id": e["request_id"]} for e in EVENTS]
    body = {"meta": [{"name": k, "type": "String"} for k in rows[0]], "data": rows, "rows": 3,
            "statistics": {"elapsed": 0.001, "rows_read": 3, "bytes_read": 300}}
    (d / "ch.json").write_text(json.dumps(body))
    return d / "ch.json"


def canonical_jsonl(d: Path) -> Path:
    (d / "canon.jsonl").write_text(lines(EVENTS))
    return d / "canon.jsonl"


def canonical_csv(d: Path) -> Path:
    header = list(EVENTS[0])
    text = ",".join(header) + "\n" + "".join(",".join(str(e[k]) for k in header) + "\n" for e in EVENTS)
    (d / "canon.csv").write_text(text)
    return d / "canon.csv"


SHAPES = [
    (gcl_ndjson, "gcl"), (gcl_gcloud_array, "gcl"), (gcl_entries_list, "gcl"),
    (es_search_response, "elasticsearch"), (es_source_ndjson, "elasticsearch"), (es_hits_ndjson, "elasticsearch"),
    (loki_query_range, "loki"), (logcli_jsonl, "logcli"),
    (cloudwatch_filter_log_events, "cloudwatch"), (cloudwatch_subscription, "cloudwatch"),
    (cloudwatch_s3_export, "cloudwatch"),
    (clickhouse_jsoneachrow, "clickhouse"), (clickhouse_json, "clickhouse"),
    (canonical_jsonl, "canonical"), (canonical_csv, "canonical"),
]


def _events(case: Path) -> list[dict]:
    with Case(case) as c:
        rows = c.db.query("select ts, account_id, device_id, snapshot, event, integration, request_id "
                          "from events order by ts, event")
        return [dict(r) for r in rows]


def _formats(case: Path) -> list[str]:
    with Case(case) as c:
        return [r["format"] for r in c.db.query("select format from log_formats order by input_id")]


@pytest.mark.parametrize("write, expected", SHAPES, ids=[w.__name__ for w, _ in SHAPES])
def test_each_export_shape_is_read_with_no_field_map(write, expected, tmp_path):
    src = write(tmp_path)
    case = tmp_path / "case.db"
    result = runner.invoke(app, ["ingest", "logs", "--case", str(case), str(src)])
    assert result.exit_code == 0, result.output
    assert _events(case) == EVENTS
    assert _formats(case) == [expected]
    shown = runner.invoke(app, ["inspect", "logs", str(src), "--json"])
    assert shown.exit_code == 0, shown.output
    report = json.loads(shown.output)
    assert report["format"] == expected and report["usable"] == 3 and report["unusable"] == 0
    assert len(report["samples"]) == 3 and report["samples"][0]["account_id"] == "acct-1"


def test_unrelated_json_is_refused_with_a_ready_suggestion(tmp_path):
    rows = [{"when": e["ts"], "who": {"agentUserId": e["account_id"]}, "what": {"kind": e["event"]},
             "cam": e["device_id"]} for e in EVENTS * 5]
    src = tmp_path / "other.jsonl"
    src.write_text(lines(rows))
    case = tmp_path / "case.db"
    result = runner.invoke(app, ["ingest", "logs", "--case", str(case), str(src)])
    assert result.exit_code == 1
    out = " ".join(result.output.split())
    assert "other.jsonl" in out and "missing ts, account_id, event" in out
    assert "who.agentUserId" in out and "when" in out  # the keys the lines do have
    assert "--field account_id=who.agentUserId" in out
    assert "unexpected" not in out
    with Case(case) as c:
        assert c.count("events") == 0
    # the suggestion, taken as given, makes the file usable
    fixed = runner.invoke(app, ["ingest", "logs", "--case", str(case), str(src), "--field", "account_id=who.agentUserId",
                                "--field", "ts=when", "--field", "event=what.kind", "--field", "device_id=cam"])
    assert fixed.exit_code == 0, fixed.output
    assert len(_events(case)) == 3
    shown = runner.invoke(app, ["inspect", "logs", str(src)])
    assert shown.exit_code == 1 and "--field account_id=who.agentUserId" in " ".join(shown.output.split())


def test_a_few_bad_lines_among_good_ones_stay_counted_skips(tmp_path):
    rows = [json.loads(line) for line in lines([{"timestamp": e["ts"], **app_payload(e)} for e in EVENTS * 4]).splitlines()]
    rows[3] = {"unrelated": True}
    src = tmp_path / "mostly.jsonl"
    src.write_text(lines(rows) + "not json\n")
    case = tmp_path / "case.db"
    result = runner.invoke(app, ["ingest", "logs", "--case", str(case), str(src)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["skipped"] == 2


def test_explicit_field_wins_over_the_detected_path(tmp_path):
    rows = [{"insertId": f"i{i}", "logName": "l", "timestamp": e["ts"],
             "jsonPayload": {**app_payload(e), "recipient": "acct-override"}} for i, e in enumerate(EVENTS)]
    src = tmp_path / "gcl.jsonl"
    src.write_text(lines(rows))
    case = tmp_path / "case.db"
    result = runner.invoke(app, ["ingest", "logs", "--case", str(case), str(src), "--field", "account_id=jsonPayload.recipient"])
    assert result.exit_code == 0, result.output
    assert {e["account_id"] for e in _events(case)} == {"acct-override"}
    with Case(case) as c:
        row = next(c.db.query("select format, field_map, given from log_formats"))
    assert row["format"] == "gcl"
    assert json.loads(row["field_map"])["account_id"] == "jsonPayload.recipient"
    assert json.loads(row["given"]) == {"account_id": "jsonPayload.recipient"}


def test_forced_log_format_is_used_and_recorded(tmp_path):
    src = clickhouse_jsoneachrow(tmp_path)
    case = tmp_path / "case.db"
    result = runner.invoke(app, ["ingest", "logs", "--case", str(case), str(src), "--log-format", "canonical"])
    assert result.exit_code == 1  # canonical names only: the ClickHouse columns are not read
    assert "--field ts=event_time" in " ".join(result.output.split())
    bad = runner.invoke(app, ["ingest", "logs", "--case", str(case), str(src), "--log-format", "syslog"])
    assert bad.exit_code == 2


@pytest.mark.parametrize("name", ["cross-account-snapshot-leak", "thumbnail-mapping-mixup", "template"])
def test_shipped_playbooks_pass_log_format_through(name):
    result = runner.invoke(app, ["playbook", "show", name, "--set", "log_format=cloudwatch", "--markdown"])
    assert result.exit_code == 0, result.output
    assert "--log-format cloudwatch" in result.output
    default = runner.invoke(app, ["playbook", "show", name, "--markdown"])
    assert "--log-format auto" in default.output


@pytest.mark.parametrize("kind", ["loki", "gcl", "es"])
def test_log_stores_pull_with_no_field_map_to_the_same_events(tiny_incident, tmp_path, kind):
    from fakestores import FakeServer
    from test_remote import FAST, _events as store_events, _load_store

    from camleak.remote.pull import PullOptions, pull
    with FakeServer() as server:
        spec = _load_store(server, tiny_incident, kind)
        with Case(tmp_path / "mapped.db") as c:
            pull(c, {"logs": [spec]}, PullOptions(policy=FAST, field_map=tiny_incident.field_map))
        with Case(tmp_path / "auto.db") as c:
            pull(c, {"logs": [spec]}, PullOptions(policy=FAST))
    mapped = store_events(tmp_path / "mapped.db")
    assert mapped and store_events(tmp_path / "auto.db") == mapped


def test_a_file_mostly_lacking_fields_past_the_first_records_is_refused_whole(tmp_path):
    good = [{"timestamp": f"2026-11-20T10:{i // 60:02d}:{i % 60:02d}Z", **app_payload(EVENTS[0]), "requestId": f"r{i}"}
            for i in range(250)]
    bad = [{"timestamp": "2026-11-20T11:00:00Z", "payload": {"agentUserId": "a"}} for _ in range(600)]
    src = tmp_path / "drift.jsonl"
    src.write_text(lines(good + bad))
    case = tmp_path / "case.db"
    result = runner.invoke(app, ["ingest", "logs", "--case", str(case), str(src)])
    assert result.exit_code == 1
    assert "drift.jsonl" in result.output
    with Case(case) as c:
        assert c.count("events") == 0 and c.count("inputs", "status = 'complete'") == 0


def test_triage_without_field_maps_gives_the_report_with_them(tiny_incident, tmp_path):
    """The simulator's Cloud-Logging-shaped export needed --field maps; now it is recognised."""
    mapped, auto = tmp_path / "mapped.db", tmp_path / "auto.db"
    with_maps = tiny_incident.triage_args(mapped) + ["--workers", "2", "--quiet"]
    assert "--field" in with_maps
    assert runner.invoke(app, with_maps).exit_code == 0
    without = dataclasses.replace(tiny_incident, field_map={}).triage_args(auto) + ["--workers", "2"]
    assert "--field" not in without
    result = runner.invoke(app, without)
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "Log format: assistant-events.jsonl.zst: Google Cloud Logging LogEntry (detected)" in out
    assert "Log format: app-events.jsonl.gz: camleak canonical lines (detected)" in out

    def report(case):
        data = json.loads(runner.invoke(app, ["report", "--case", str(case), "--format", "json"]).stdout)
        data.pop("generated_at")
        return data
    assert report(auto) == report(mapped)
    assert report(auto)["summary"]["exposure_pairs"] > 0


def test_a_json_document_of_no_known_store_is_refused_naming_its_records_keys(tmp_path):
    body = {"export": {"version": 2}, "items": [{"at": e["ts"], "userId": e["account_id"], "kind": e["event"]}
                                               for e in EVENTS]}
    src = tmp_path / "dump.json"
    src.write_text(json.dumps(body, indent=2))
    result = runner.invoke(app, ["ingest", "logs", "--case", str(tmp_path / "case.db"), str(src)])
    assert result.exit_code == 1
    out = " ".join(result.output.split())
    assert "dump.json" in out and "missing ts, event" in out and "userId" in out and "kind" in out
