"""`camleak inspect logs|snapshots`: what triage would read, from every input form, writing nothing."""

from __future__ import annotations

import http.server
import json
import os
import threading
from functools import partial
from pathlib import Path

import pytest
from typer.testing import CliRunner

from camleak.cli import app

runner = CliRunner()


def _tree(root: Path) -> dict[str, tuple[int, float]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime) for p in root.rglob("*")}


def test_inspect_logs_of_a_simulated_incident_writes_nothing(tiny_incident, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = _tree(tiny_incident.root)
    result = runner.invoke(app, ["inspect", "logs", str(tiny_incident.root / "logs"), "--json"])
    assert result.exit_code == 0, result.output
    reports = {Path(r["source"]).name: r for r in map(json.loads, result.output.splitlines())}
    assert {n: r["format"] for n, r in reports.items()} == {
        "app-events.jsonl.gz": "canonical", "assistant-events.jsonl.zst": "gcl", "web-events.csv": "canonical"}
    assert reports["assistant-events.jsonl.zst"]["field_map"]["account_id"] == "jsonPayload.agentUserId"
    assert all(r["usable"] > 0 and len(r["samples"]) == 3 for r in reports.values())
    assert sum(r["unusable"] for r in reports.values()) == json.loads(tiny_incident.truth.read_text())["counts"]["malformed_lines"]
    assert _tree(tiny_incident.root) == before and list(tmp_path.iterdir()) == []


def test_inspect_snapshots_counts_formats_sizes_and_truncated_frames(tiny_incident, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["inspect", "snapshots", *map(str, tiny_incident.snapshots), "--json"])
    assert result.exit_code == 0, result.output
    reports = [json.loads(line) for line in result.output.splitlines()]
    counts = json.loads(tiny_incident.truth.read_text())["counts"]
    assert sum(r["images"] for r in reports) == counts["snapshots"]
    assert sum(r["truncated"] for r in reports) == counts["truncated"]
    assert sum(r["formats"].get("png", 0) for r in reports) == counts["png"]
    assert all(r["sample_keys"] and r["sizes"] for r in reports)
    keys = {k for r in reports for k in r["sample_keys"]}
    assert keys <= set(json.loads(tiny_incident.truth.read_text())["snapshots"])  # manifest keys, not member names
    text = runner.invoke(app, ["inspect", "snapshots", str(tiny_incident.snapshots[0])])
    assert "truncated:" in text.output and "sample keys:" in text.output
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def http_root(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args, **kwargs) -> None:
            pass

    handler = partial(Quiet, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_inspect_reads_a_remote_file_like_triage_does(http_root, tmp_path, monkeypatch):
    served, base = http_root
    rows = [{"insertId": str(i), "logName": "l", "timestamp": f"2026-11-20T10:00:0{i}Z",
             "jsonPayload": {"agentUserId": "a", "eventType": "snapshot_served"}} for i in range(5)]
    (served / "gcl.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.chdir(tmp_path)
    before = set(os.listdir(tmp_path))
    result = runner.invoke(app, ["inspect", "logs", f"{base}/gcl.jsonl", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["format"] == "gcl" and report["usable"] == 5
    assert set(os.listdir(tmp_path)) == before


@pytest.mark.parametrize("kind, expected", [("gcl", "gcl"), ("loki", "logcli"), ("es", "elasticsearch")])
def test_inspect_reads_the_first_pages_of_a_log_store(tiny_incident, tmp_path, monkeypatch, kind, expected):
    from fakestores import FakeServer
    from test_remote import _load_store
    monkeypatch.chdir(tmp_path)
    with FakeServer() as server:
        spec = _load_store(server, tiny_incident, kind)
        result = runner.invoke(app, ["inspect", "logs", spec, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["format"] == expected and report["usable"] > 0 and len(report["samples"]) == 3
    if kind == "gcl":
        assert report["field_map"]["account_id"] == "jsonPayload.agentUserId"
    assert list(tmp_path.iterdir()) == []
