"""Pull a simulated incident's events back out of a real ClickHouse server.

The server (Debian's clickhouse-server, installed by .ci/run) is started here on free
loopback ports with a throwaway config and data directory; the test is skipped only when
the binary is absent.
"""

from __future__ import annotations

import json
import shutil
import socket
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from camleak import logparse
from camleak.cli import app
from camleak.sources import logical_name, open_decompressed

runner = CliRunner()
BINARY = shutil.which("clickhouse-server") or (Path("/usr/sbin/clickhouse-server") if Path("/usr/sbin/clickhouse-server").exists() else None)
PASSWORD = "ch-S3cret-pw"
COLUMNS = ("ts", "account_id", "device_id", "snapshot", "event", "integration", "request_id")

pytestmark = pytest.mark.skipif(BINARY is None, reason="clickhouse-server is not installed (.ci/run installs it)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def clickhouse(tmp_path_factory):
    root = tmp_path_factory.mktemp("clickhouse")
    http_port, tcp_port = free_port(), free_port()
    (root / "config.xml").write_text(f"""<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><console>1</console></logger>
  <http_port>{http_port}</http_port>
  <tcp_port>{tcp_port}</tcp_port>
  <listen_host>127.0.0.1</listen_host>
  <path>{root}/data/</path>
  <tmp_path>{root}/data/tmp/</tmp_path>
  <user_files_path>{root}/data/user_files/</user_files_path>
  <format_schema_path>{root}/data/format_schemas/</format_schema_path>
  <mark_cache_size>67108864</mark_cache_size>
  <users_config>users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
</yandex>
""")
    (root / "users.xml").write_text(f"""<?xml version="1.0"?>
<yandex>
  <profiles><default/></profiles>
  <users>
    <default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default>
    <responder><password>{PASSWORD}</password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></responder>
  </users>
  <quotas><default/></quotas>
</yandex>
""")
    log = open(root / "server.log", "wb")
    proc = subprocess.Popen([str(BINARY), f"--config-file={root / 'config.xml'}"], cwd=root, stdout=log,
                            stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/ping", timeout=2).text.strip() == "Ok.":
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"clickhouse-server did not start: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def canonical_events(inc) -> list[dict]:
    """Every readable event of the incident's three exports, duplicates across exports included,
    as a pipeline would have loaded them into ClickHouse."""
    events = []
    usage = logparse.MapUsage()
    for path in inc.logs:
        with open_decompressed(path) as stream:
            reader = logparse.iter_csv if logical_name(path).endswith(".csv") else logparse.iter_jsonl
            for item in reader(stream, inc.field_map, usage):
                if item.event is not None:
                    events.append({c: item.event[c] for c in COLUMNS})
    return events


def ch(base: str, sql: str, body: bytes | None = None) -> str:
    response = httpx.post(f"{base}/", params={"query": sql} if body is not None else None,
                          content=body if body is not None else sql.encode(), timeout=60)
    assert response.status_code == 200, response.text
    return response.text


def report(case: Path) -> dict:
    result = runner.invoke(app, ["report", "--case", str(case), "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for key in ("generated_at", "camleak_version", "case"):
        data.pop(key)
    # ClickHouse holds the readable events only: the local exports' malformed lines have no row.
    data["warnings"] = [w["kind"] for w in data["warnings"] if w["kind"] != "malformed_log_line"]
    return data


def test_triage_from_clickhouse_equals_local_triage(clickhouse, tiny_incident, tmp_path, monkeypatch):
    inc = tiny_incident
    ch(clickhouse, "CREATE DATABASE IF NOT EXISTS camcloud")
    ch(clickhouse, "CREATE TABLE camcloud.delivery_events (ts String, account_id String, device_id Nullable(String), "
                   "snapshot Nullable(String), event String, integration Nullable(String), request_id Nullable(String)) "
                   "ENGINE = MergeTree() ORDER BY (ts, account_id)")
    rows = canonical_events(inc)
    ch(clickhouse, "INSERT INTO camcloud.delivery_events FORMAT JSONEachRow",
       "".join(json.dumps(r) + "\n" for r in rows).encode())
    assert ch(clickhouse, "SELECT count() FROM camcloud.delivery_events").strip() == str(len(rows))

    common = ["--devices", str(inc.devices), "--workers", "2", "--quiet"]
    for p in inc.snapshots:
        common += ["--snapshots", str(p)]
    for p in inc.references:
        common += ["--references", str(p)]
    for k, v in inc.field_map.items():
        common += ["--field", f"{k}={v}"]
    local = tmp_path / "local.db"
    logs = [a for p in inc.logs for a in ("--logs", str(p))]
    assert runner.invoke(app, ["triage", "--case", str(local), *logs, *common]).exit_code == 0

    monkeypatch.setenv("CLICKHOUSE_USER", "responder")
    monkeypatch.setenv("CLICKHOUSE_PASSWORD", PASSWORD)
    spec = (f"clickhouse+{clickhouse}?database=camcloud&page_rows=100"
            "&query=SELECT ts, account_id, device_id, snapshot, event, integration, request_id "
            "FROM delivery_events ORDER BY ts, request_id, event")
    remote = tmp_path / "remote.db"
    result = runner.invoke(app, ["triage", "--case", str(remote), "--logs", spec, *common])
    assert result.exit_code == 0, result.output
    assert report(remote) == report(local)
    assert report(local)["summary"]["exposure_pairs"] > 0
    with sqlite3.connect(remote) as conn:
        status, pages, records = conn.execute("select status, pages, records from pulls").fetchone()
        assert status == "complete" and records == len(rows) and pages >= len(rows) // 100
    assert PASSWORD.encode() not in remote.read_bytes() and PASSWORD not in result.output

    # Again: nothing new, the server is not asked.
    result = runner.invoke(app, ["pull", "--case", str(remote), "--logs", spec])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["sources"][0]["status"] == "up to date"

    # A query ClickHouse refuses is a clear input error, not a retry loop.
    monkeypatch.setenv("CLICKHOUSE_PASSWORD", "wrong")
    result = runner.invoke(app, ["pull", "--case", str(tmp_path / "x.db"), "--retries", "2", "--logs",
                                 f"clickhouse+{clickhouse}?query=SELECT 1"])
    assert result.exit_code == 1 and "Wrong password for user responder" in result.stderr
    monkeypatch.setenv("CLICKHOUSE_PASSWORD", PASSWORD)
    result = runner.invoke(app, ["pull", "--case", str(tmp_path / "y.db"), "--logs",
                                 f"clickhouse+{clickhouse}?query=SELECT nosuchcolumn FROM camcloud.delivery_events"])
    assert result.exit_code == 1 and "ClickHouse refused the query" in result.stderr


class CuttingProxy:
    """A loopback TCP proxy in front of ClickHouse that cuts its first `cuts` responses after
    `after` bytes: a connection dropped mid-stream, with the real server behind it."""

    def __init__(self, upstream_port: int, cuts: int, after: int):
        self.upstream_port, self.cuts, self.after = upstream_port, cuts, after
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            cut = self.connections <= self.cuts
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            threading.Thread(target=self._pump, args=(client, upstream, None), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, self.after if cut else None), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, limit: int | None) -> None:
        sent = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if limit is not None and sent + len(data) >= limit:
                    dst.sendall(data[: limit - sent])
                    break
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def close(self) -> None:
        self.sock.close()


def test_a_stream_cut_mid_way_resumes_without_gaps(clickhouse, tmp_path):
    ch(clickhouse, "CREATE DATABASE IF NOT EXISTS cut")
    ch(clickhouse, "CREATE TABLE IF NOT EXISTS cut.events (ts String, account_id String, event String, request_id String) "
                   "ENGINE = MergeTree() ORDER BY ts")
    rows = [{"ts": f"2026-11-20T00:{i // 60 % 60:02d}:{i % 60:02d}Z", "account_id": f"acc-{i % 97}",
             "event": "snapshot_served", "request_id": f"req-{i:05d}"} for i in range(3000)]
    ch(clickhouse, "INSERT INTO cut.events FORMAT JSONEachRow", "".join(json.dumps(r) + "\n" for r in rows).encode())
    proxy = CuttingProxy(int(clickhouse.rsplit(":", 1)[1]), cuts=2, after=60_000)
    try:
        spec = (f"clickhouse+http://127.0.0.1:{proxy.port}?database=cut&page_rows=250"
                "&query=SELECT * FROM events ORDER BY request_id")
        case = tmp_path / "c.db"
        result = runner.invoke(app, ["pull", "--case", str(case), "--logs", spec, "--backoff", "0.01"])
        assert result.exit_code == 0, result.output
    finally:
        proxy.close()
    with sqlite3.connect(case) as conn:
        keys = sorted(r[0] for r in conn.execute("select request_id from events"))
        retries, records = conn.execute("select retries, records from pulls").fetchone()
    assert keys == [r["request_id"] for r in rows]  # every row once, none lost at a cut
    assert retries == 2 and records == len(rows)  # the rows already committed were skipped, not re-read
