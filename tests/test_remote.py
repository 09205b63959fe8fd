"""Remote sources against loopback servers: resumable downloads, retries, log-store paging,
resumable and idempotent pulls, credentials kept out of the case."""

from __future__ import annotations

import base64
import json
import os
import random
import sqlite3
import threading
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from typer.testing import CliRunner

from camleak.casefile import Case, sha256_file
from camleak.cli import app
from camleak.errors import InputError
from camleak.remote import net
from camleak.remote.download import download, evidence_dir
from camleak.remote.es import Elasticsearch
from camleak.remote.loki import Loki
from camleak.remote.pull import PullOptions, pull
from camleak.remote.spec import is_remote, parse_spec, redact_url
from camleak.timeutil import parse_ts
from fakestores import FROM, TO, FakeServer, load_es, load_gcl, load_loki

runner = CliRunner()
T0_MS = parse_ts("2026-11-20T00:00:00Z")
FAST = net.RetryPolicy(attempts=5, backoff=0.01, max_wait=0.05, timeout=10)


@pytest.fixture
def server():
    with FakeServer() as s:
        yield s


def blob(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


# ---------------------------------------------------------------------------------------
# Specs and redaction
# ---------------------------------------------------------------------------------------
def test_specs_parse_and_never_show_secrets():
    spec = parse_spec("https://ops:pw-1@store.example/b/served.tar.gz?X-Amz-Signature=abc&X-Amz-Credential=AK&v=2")
    assert spec.kind == "http" and spec.label == "https://store.example/b/served.tar.gz?v=2"
    assert "pw-1" in spec.url  # still usable for the request itself
    spec = parse_spec('loki+http://127.0.0.1:3100?query={app="bridge"}&from=2026-11-20T00:00:00Z&token=t0k')
    assert spec.kind == "loki" and spec.params["query"] == '{app="bridge"}'
    assert "t0k" not in spec.label and '{app="bridge"}' in spec.label
    assert parse_spec("opensearch+https://h:9200/logs-*").kind == "opensearch"
    assert parse_spec("clickhouse+http://h:8123?query=SELECT 1").params["query"] == "SELECT 1"
    assert parse_spec("https://h/x.zip#sha256=" + "a" * 64).sha256 == "a" * 64
    assert redact_url("https://u:p@h:8443/x?sig=1&Signature=2&keep=3") == "https://h:8443/x?keep=3"
    assert is_remote("gcl+https://logging.googleapis.com") and not is_remote("logs/app.jsonl")
    with pytest.raises(InputError, match="unknown log store"):
        parse_spec("splunk+https://u:secret@h/")
    with pytest.raises(InputError) as info:
        parse_spec("splunk+https://u:secret@h/")
    assert "secret" not in str(info.value)


# ---------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------
def test_a_download_cut_half_way_resumes_to_identical_bytes(server, tmp_path):
    data = blob(700_000)
    server.files["served.tar.gz"] = data
    server.faults["files:served.tar.gz"] = ["drop", "drop"]
    with httpx.Client() as http:
        got = download(http, parse_spec(f"{server.base}/files/served.tar.gz"), tmp_path, policy=FAST, use_sidecar=False)
    assert got.path.read_bytes() == data
    assert got.sha256 == sha256_file(got.path) and got.retries == 2
    ranges = [h.get("range") for h in server.headers_seen]
    assert ranges[0] is None and ranges[1].startswith("bytes=") and int(ranges[1][6:-1]) > 0
    assert all(h.get("if-range") for h in server.headers_seen[1:])  # a changed file restarts
    assert not list(tmp_path.glob("*.part*"))


def test_a_file_changed_between_attempts_is_fetched_afresh(server, tmp_path):
    server.files["refs.tar"] = blob(300_000, seed=2)
    server.faults["files:refs.tar"] = ["drop"]
    spec = parse_spec(f"{server.base}/files/refs.tar")
    with httpx.Client() as http:
        with pytest.raises(InputError, match="gave up"):
            download(http, spec, tmp_path, policy=net.RetryPolicy(attempts=1), use_sidecar=False)
        assert list(tmp_path.glob("*.part"))  # a partial transfer is kept for the resume
        server.files["refs.tar"] = changed = blob(310_000, seed=3)
        got = download(http, spec, tmp_path, policy=FAST, use_sidecar=False)
    assert got.path.read_bytes() == changed


def test_checksums_sidecars_and_the_size_cap(server, tmp_path):
    data = blob(50_000)
    server.files["a.zip"] = data
    server.sidecars["a.zip"] = "0" * 64
    with httpx.Client() as http:
        with pytest.raises(InputError, match="does not match"):
            download(http, parse_spec(f"{server.base}/files/a.zip"), tmp_path, policy=FAST)
        assert list(tmp_path.iterdir()) == []  # nothing half-trusted left behind
        server.sidecars["a.zip"] = sha256_file_bytes(data)
        assert download(http, parse_spec(f"{server.base}/files/a.zip"), tmp_path, policy=FAST).path.read_bytes() == data
        other = tmp_path / "other"
        other.mkdir()
        with pytest.raises(InputError, match="does not match"):
            download(http, parse_spec(f"{server.base}/files/a.zip#sha256={'1' * 64}"), other, policy=FAST,
                     use_sidecar=False)
        with pytest.raises(InputError, match="size cap"):
            download(http, parse_spec(f"{server.base}/files/a.zip"), other, policy=FAST, max_bytes=10_000,
                     use_sidecar=False)
        assert list(other.iterdir()) == []


def sha256_file_bytes(data: bytes) -> str:
    import hashlib
    return hashlib.sha256(data).hexdigest()


def test_retry_after_is_honoured_and_5xx_bursts_retried(server, tmp_path):
    server.files["d.csv"] = b"device_id,home_id,owner_account,shared_accounts\ncam-1,h1,acc-1,\n"
    server.faults["files:d.csv"] = ["429", "503", "503"]
    counter = net.Counter()
    with httpx.Client() as http:
        got = download(http, parse_spec(f"{server.base}/files/d.csv"), tmp_path, policy=FAST, use_sidecar=False,
                       counter=counter)
    assert got.path.read_bytes() == server.files["d.csv"]
    assert counter.retries == 3
    assert counter.waits[0] >= 1.0  # the server asked for Retry-After: 1
    assert all(w <= FAST.max_wait for w in counter.waits[1:])


def test_no_signature_reaches_the_logs(server, tmp_path, caplog):
    import logging
    server.files["s.tar"] = b"x" * 10
    with caplog.at_level(logging.DEBUG), httpx.Client() as http:
        download(http, parse_spec(f"{server.base}/files/s.tar?X-Amz-Signature=l0gsecret"), tmp_path, policy=FAST)
    assert "l0gsecret" not in caplog.text


def test_retries_give_up_with_a_clear_error(server, tmp_path):
    server.files["x.tar"] = b"x" * 100
    server.faults["files:x.tar"] = ["503"] * 10
    with httpx.Client() as http, pytest.raises(InputError) as info:
        download(http, parse_spec(f"{server.base}/files/x.tar?sig=s3cret"), tmp_path,
                 policy=net.RetryPolicy(attempts=3, backoff=0.01), use_sidecar=False)
    assert "gave up after 3 attempts (HTTP 503)" in str(info.value) and "s3cret" not in str(info.value)
    with httpx.Client() as http, pytest.raises(InputError, match="HTTP 404"):
        download(http, parse_spec(f"{server.base}/files/missing.tar"), tmp_path, policy=FAST, use_sidecar=False)


def test_a_slow_answer_times_out_and_is_retried(server, tmp_path):
    server.files["slow.csv"] = b"a,b\n1,2\n"
    server.faults["files:slow.csv"] = ["slow:3"]
    counter = net.Counter()
    with httpx.Client(timeout=1.0) as http:
        got = download(http, parse_spec(f"{server.base}/files/slow.csv"), tmp_path, policy=FAST,
                       use_sidecar=False, counter=counter)
    assert got.path.read_bytes() == b"a,b\n1,2\n"
    assert counter.retries >= 1 and server.requests["files:slow.csv"] == counter.retries + 1


# ---------------------------------------------------------------------------------------
# Log stores
# ---------------------------------------------------------------------------------------
def _es_docs(server: FakeServer, n: int) -> None:
    for i in range(n):
        # several documents per millisecond: the tie-breaker must page through them all
        server.es_docs.append(("camcloud-2026.11.20", {"ts": T0_MS + i // 3, "request_id": f"r{i}"}))
    server.es_docs.append(("other-index", {"ts": T0_MS, "request_id": "not-this-one"}))


@pytest.mark.parametrize("has_pit", [True, False], ids=["pit+search_after", "scroll"])
def test_elasticsearch_pages_through_every_document_once(server, has_pit):
    _es_docs(server, 250)
    server.es_has_pit = has_pit
    # PIT open, then: a dropped answer, a cut gzip body, 429, 503 on the search/scroll requests
    server.faults["es"] = [None, None, "drop", "gzip-trunc", "429", "503"]
    counter = net.Counter()
    spec = parse_spec(f"es+{server.base}/camcloud-*?from={FROM}&to={TO}&time_field=ts&size=60")
    with httpx.Client() as http:
        store = Elasticsearch(spec, http, FAST, counter)
        pages = list(store.pages(None))
        store.close()
    ids = [r["request_id"] for p in pages for r in p.records]
    # a lost scroll answer restarts the scroll at the last page's edge: no gap, no repeat
    assert ids == [f"r{i}" for i in range(250)]
    assert len(pages) >= 5 and pages[-1].cursor is None and counter.retries >= 3


def test_opensearch_pages_by_time_on_its_own_point_in_time(server):
    _es_docs(server, 100)  # three documents per millisecond
    server.faults["es"] = [None, "drop", "gzip-trunc"]
    spec = parse_spec(f"opensearch+{server.base}/camcloud-*?time_field=ts&size=7")
    with httpx.Client() as http:
        pages = list(Elasticsearch(spec, http, FAST, net.Counter()).pages(None))
    ids = [r["request_id"] for p in pages for r in p.records]
    assert ids == [f"r{i}" for i in range(100)]  # every document once, none skipped at a page edge
    assert any(p.startswith("/camcloud-*/_search/point_in_time") for p in server.paths_seen)
    spec = parse_spec(f"opensearch+{server.base}/camcloud-*?time_field=ts&size=2")
    with httpx.Client() as http, pytest.raises(InputError, match="share one timestamp"):
        list(Elasticsearch(spec, http, FAST, net.Counter()).pages(None))


def test_loki_pages_forward_across_lines_sharing_a_timestamp(server):
    base_ns = T0_MS * 10**6
    for i in range(100):
        ns = base_ns + (0 if 30 <= i < 45 else i) * 1000  # 15 lines at one nanosecond
        server.loki_entries.append((ns, json.dumps({"ts": "2026-11-20T00:00:00Z", "n": i}), {"app": "x"}))
    server.loki_entries.append((base_ns, "not json at all", {"app": "x"}))
    server.loki_entries.append((base_ns, json.dumps({"n": -1}), {"app": "other"}))
    server.faults["loki"] = ["drop", "gzip-trunc"]
    spec = parse_spec(f'loki+{server.base}?query={{app="x"}}&from=2026-11-19T00:00:00Z&to={TO}&limit=20')
    with httpx.Client() as http:
        pages = list(Loki(spec, http, FAST, net.Counter()).pages(None))
    records = [r for p in pages for r in p.records]
    assert sorted(r["n"] for r in records if isinstance(r, dict)) == list(range(100))
    assert records.count("not json at all") == 1
    assert all(r["labels"] == {"app": "x"} for r in records if isinstance(r, dict))
    # a limit smaller than one timestamp's lines cannot page: say so rather than loop
    spec = parse_spec(f'loki+{server.base}?query={{app="x"}}&from=2026-11-19T00:00:00Z&to={TO}&limit=5')
    with httpx.Client() as http, pytest.raises(InputError, match="share one timestamp"):
        list(Loki(spec, http, FAST, net.Counter()).pages(None))


# ---------------------------------------------------------------------------------------
# Pulls: resumable, idempotent, consistent
# ---------------------------------------------------------------------------------------
def _loki_server_with_incident(server, inc):
    by_name = {p.name: p for p in inc.logs}
    return load_loki(server, by_name["app-events.jsonl.gz"], {"app": "camcloud"})


def _events(case_path):
    with sqlite3.connect(case_path) as conn:
        return sorted(r[0] for r in conn.execute("select event_key from events"))


def test_a_pull_that_fails_mid_way_resumes_and_a_repeat_adds_nothing(server, tiny_incident, tmp_path):
    total = _loki_server_with_incident(server, tiny_incident)
    spec = f'loki+{server.base}?query={{app="camcloud"}}&from={FROM}&to={TO}&limit=10'
    options = PullOptions(policy=FAST, field_map=tiny_incident.field_map)

    # A reference: the whole source pulled in one go.
    clean = tmp_path / "clean.db"
    with Case(clean) as case:
        pull(case, {"logs": [spec]}, options)
    expected = _events(clean)
    assert len(expected) > 50

    # The store fails hard after four requests: the pull stops with a clear error...
    server.fail_after["loki"] = 4 + server.requests["loki"]
    case_path = tmp_path / "case.db"
    with Case(case_path) as case, pytest.raises(InputError, match="HTTP 400"):
        pull(case, {"logs": [spec]}, options)
    with sqlite3.connect(case_path) as conn:
        status, pages, events, records, cursor = conn.execute(
            "select status, pages, events, records, cursor from pulls").fetchone()
        stored = conn.execute("select count(*) from events").fetchone()[0]
        lines = conn.execute("select max(line) from events").fetchone()[0]
        problems = conn.execute("select count(*) from problems").fetchone()[0]
    # ...and the case holds exactly the whole pages before it, with the cursor after them.
    assert status == "failed" and pages == 4 and events == stored and 0 < stored < len(expected)
    assert lines <= records and stored + problems <= records and json.loads(cursor)["start_ns"] > 0

    # Rerun: it continues from the cursor (no page is asked for twice from the start).
    del server.fail_after["loki"]
    asked = len(server.paths_seen)
    with Case(case_path) as case:
        _, summaries = pull(case, {"logs": [spec]}, options)
    first_start = int(parse_qs(urlsplit(server.paths_seen[asked]).query)["start"][0])
    assert first_start == json.loads(cursor)["start_ns"]
    assert summaries[0].status == "complete" and summaries[0].events == len(expected) - stored
    assert _events(case_path) == expected

    # A repeated pull adds nothing and does not contact the store.
    asked = len(server.paths_seen)
    with Case(case_path) as case:
        _, summaries = pull(case, {"logs": [spec]}, options)
    assert summaries[0].status == "up to date" and summaries[0].events == 0
    assert len(server.paths_seen) == asked and _events(case_path) == expected
    with sqlite3.connect(case_path) as conn:
        assert conn.execute("select count(*) from inputs where status = 'complete'").fetchone()[0] == 1
    assert total > len(expected)  # malformed lines were kept aside, not ingested


def test_credentials_from_netrc_reach_only_the_request(server, tmp_path, monkeypatch):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login responder password nEtRc-pw\n")
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.delenv("CAMLEAK_BEARER_TOKEN", raising=False)
    server.files["devices.csv"] = b"device_id,home_id,owner_account,shared_accounts\ncam-1,h1,acc-1,\n"
    case_path = tmp_path / "c.db"
    result = runner.invoke(app, ["pull", "--case", str(case_path), "--devices", f"{server.base}/files/devices.csv"])
    assert result.exit_code == 0, result.output
    expected = "Basic " + base64.b64encode(b"responder:nEtRc-pw").decode()
    assert any(h.get("authorization") == expected for h in server.headers_seen)
    assert b"nEtRc-pw" not in case_path.read_bytes() and "nEtRc-pw" not in result.output
    out = json.loads(result.stdout)
    assert out["ingest"]["devices"]["items"] == 1 and out["sources"][0]["status"] == "complete"
    # a signed URL carries its own authorisation: no netrc header is added to it
    seen = len(server.headers_seen)
    result = runner.invoke(app, ["pull", "--case", str(case_path), "--snapshots",
                                 f"{server.base}/files/devices.csv?X-Amz-Signature=abc"])
    assert all("authorization" not in h for h in server.headers_seen[seen:])


def test_pull_command_then_triage_adds_nothing(server, tiny_incident, tmp_path):
    inc = tiny_incident
    for path in [inc.devices, *inc.snapshots, *inc.references]:
        server.files[path.name] = path.read_bytes()
    _loki_server_with_incident(server, inc)
    args = ["--case", str(tmp_path / "c.db"), "--devices", f"{server.base}/files/{inc.devices.name}",
            "--logs", f'loki+{server.base}?query={{app="camcloud"}}&from={FROM}&to={TO}&limit=50',
            "--backoff", "0.01"]
    args += ["--logs", str(inc.logs[1])]  # local and remote inputs mix
    server.files[inc.logs[2].name] = inc.logs[2].read_bytes()
    args += ["--logs", f"{server.base}/files/{inc.logs[2].name}"]  # a log export over HTTP
    for p in inc.snapshots:
        args += ["--snapshots", f"{server.base}/files/{p.name}"]
    for p in inc.references:
        args += ["--references", f"{server.base}/files/{p.name}"]
    for k, v in inc.field_map.items():
        args += ["--field", f"{k}={v}"]
    result = runner.invoke(app, ["pull", *args])
    assert result.exit_code == 0, result.output
    pulled = json.loads(result.stdout)
    assert {s["status"] for s in pulled["sources"]} == {"complete"}
    assert pulled["ingest"]["snapshots"]["new_files"] == len(inc.snapshots)
    assert pulled["ingest"]["logs"]["new_files"] == 2 and pulled["ingest"]["logs"]["items"] > 0
    with Case(tmp_path / "c.db") as case:
        run = next(case.db.query("select args, status from runs where command = 'pull'"))
        assert run["status"] == "ok" and "loki+" in run["args"] and "files/served" in run["args"]
    with sqlite3.connect(tmp_path / "c.db") as conn:
        counts = [conn.execute(f"select count(*) from {t}").fetchone()[0] for t in ("events", "frames", "devices", "inputs")]
    requests = dict(server.requests)
    result = runner.invoke(app, ["triage", *args, "--workers", "2", "--quiet"])
    assert result.exit_code == 0, result.output
    with sqlite3.connect(tmp_path / "c.db") as conn:
        assert [conn.execute(f"select count(*) from {t}").fetchone()[0] for t in ("events", "frames", "devices", "inputs")] == counts
        assert conn.execute("select count(*) from exposures").fetchone()[0] > 0
    assert dict(server.requests) == requests
    assert oct(os.stat(evidence_dir(tmp_path / "c.db")).st_mode & 0o777) == "0o700"


def test_a_remote_source_that_cannot_be_used_exits_1_naming_it(server, tmp_path):
    result = runner.invoke(app, ["pull", "--case", str(tmp_path / "c.db"), "--snapshots",
                                 f"{server.base}/files/nope.tar.gz?X-Goog-Signature=zzsecret", "--backoff", "0.01"])
    assert result.exit_code == 1
    assert "files/nope.tar.gz" in result.stderr and "HTTP 404" in result.stderr and "zzsecret" not in result.stderr
    result = runner.invoke(app, ["pull", "--case", str(tmp_path / "c.db"), "--devices", f"loki+{server.base}?query={{a=\"b\"}}"])
    assert result.exit_code == 1 and "only feed --logs" in result.stderr
    result = runner.invoke(app, ["pull", "--case", str(tmp_path / "c.db"), "--logs", f"es+{server.base}/"])
    assert result.exit_code == 1 and "index pattern" in result.stderr


def test_sha256_option_checks_a_named_file(server, tmp_path):
    data = b"device_id,home_id,owner_account,shared_accounts\ncam-1,h1,acc-1,\n"
    server.files["devices.csv"] = data
    url = f"{server.base}/files/devices.csv"
    wrong = runner.invoke(app, ["pull", "--case", str(tmp_path / "a.db"), "--devices", url,
                                "--sha256", f"devices.csv={'0' * 64}"])
    assert wrong.exit_code == 1 and "does not match" in wrong.stderr
    right = runner.invoke(app, ["pull", "--case", str(tmp_path / "a.db"), "--devices", url,
                                "--sha256", f"{url}={sha256_file_bytes(data)}"])
    assert right.exit_code == 0, right.output
    assert json.loads(right.stdout)["sources"][0]["sha256"] == sha256_file_bytes(data)
    bad = runner.invoke(app, ["pull", "--case", str(tmp_path / "a.db"), "--devices", url, "--sha256", "nonsense"])
    assert bad.exit_code == 2


def test_downloads_run_concurrently_within_the_bound(server, tmp_path):
    urls = []
    for i in range(5):
        server.files[f"part-{i}.tar"] = blob(20_000, seed=i)
        server.faults[f"files:part-{i}.tar"] = ["slow:0.5"]
        urls += ["--snapshots", f"{server.base}/files/part-{i}.tar"]
    # The first two requests wait for each other (so two run at once however loaded the machine),
    # and every request is slow (so a third would overlap them if the bound leaked).
    server.meet = threading.Barrier(2, action=lambda: setattr(server, "meet", None))  # once
    case_path = tmp_path / "c.db"
    with Case(case_path) as case:
        local, summaries = pull(case, {"snapshots": urls[1::2]}, PullOptions(policy=FAST, concurrency=2,
                                                                            use_sidecar=False))
    assert server.max_inflight == 2
    assert [Path(p).read_bytes() for p in local["snapshots"]] == [server.files[f"part-{i}.tar"] for i in range(5)]
    assert all(s.status == "complete" and s.sha256 for s in summaries)


def test_a_killed_pull_resumes_to_the_same_events(server, tiny_incident, tmp_path):
    """SIGKILL mid-pull (no cleanup at all), then the same command again."""
    import signal
    import subprocess
    import sys
    import time

    _loki_server_with_incident(server, tiny_incident)
    spec = f'loki+{server.base}?query={{app="camcloud"}}&from={FROM}&to={TO}&limit=8'
    fields = [a for k, v in tiny_incident.field_map.items() for a in ("--field", f"{k}={v}")]
    clean = tmp_path / "clean.db"
    assert runner.invoke(app, ["pull", "--case", str(clean), "--logs", spec, *fields]).exit_code == 0

    server.faults["loki"] = ["slow:0.4"] * 100
    case_path = tmp_path / "case.db"
    command = [sys.executable, "-m", "camleak.cli", "pull", "--case", str(case_path), "--logs", spec, *fields]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        pages = 0
        while pages < 3 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
            if case_path.exists():
                try:
                    with sqlite3.connect(case_path, timeout=5) as conn:
                        pages = (conn.execute("select max(pages) from pulls").fetchone() or [0])[0] or 0
                except sqlite3.OperationalError:
                    pass
        assert proc.poll() is None, "the pull ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    with sqlite3.connect(case_path) as conn:
        status, committed = conn.execute("select status, events from pulls").fetchone()
        assert status == "running" and committed == conn.execute("select count(*) from events").fetchone()[0]
    server.faults["loki"] = []
    result = runner.invoke(app, ["pull", "--case", str(case_path), "--logs", spec, *fields])
    assert result.exit_code == 0, result.output
    assert _events(case_path) == _events(clean)
    with sqlite3.connect(case_path) as conn:
        assert conn.execute("select status from pulls").fetchone()[0] == "complete"


def _load_store(server, inc, kind):
    by_name = {p.name: p for p in inc.logs}
    if kind == "loki":
        load_loki(server, by_name["app-events.jsonl.gz"], {"app": "camcloud"})
        return f'loki+{server.base}?query={{app="camcloud"}}&from={FROM}&to={TO}&limit=15'
    if kind == "gcl":
        load_gcl(server, by_name["assistant-events.jsonl.zst"])
        return f"gcl+{server.base}?resource=projects/camcloud-prod&from={FROM}&to={TO}&page_size=15"
    load_es(server, by_name["web-events.csv"], "web-events-1")
    return f"{kind}+{server.base}/web-*?from={FROM}&to={TO}&time_field=ts&size=15"


@pytest.mark.parametrize("kind", ["loki", "gcl", "es", "opensearch"])
def test_every_store_resumes_after_a_failure_to_the_same_events(server, tiny_incident, tmp_path, kind):
    spec = _load_store(server, tiny_incident, kind)
    options = PullOptions(policy=FAST, field_map=tiny_incident.field_map)
    route = "es" if kind == "opensearch" else kind
    with Case(tmp_path / "clean.db") as case:
        pull(case, {"logs": [spec]}, options)
    expected = _events(tmp_path / "clean.db")
    server.fail_after[route] = server.requests[route] + 4
    with Case(tmp_path / "case.db") as case, pytest.raises(InputError, match="HTTP 400"):
        pull(case, {"logs": [spec]}, options)
    partial = _events(tmp_path / "case.db")
    assert 0 < len(partial) < len(expected) and set(partial) <= set(expected)
    del server.fail_after[route]
    with Case(tmp_path / "case.db") as case:
        _, summaries = pull(case, {"logs": [spec]}, options)
    assert summaries[0].status == "complete"
    assert _events(tmp_path / "case.db") == expected
    with sqlite3.connect(tmp_path / "case.db") as conn:
        # malformed records are kept aside once each, as in the clean pull: nothing is read twice
        count = "select count(*) from problems where kind = 'malformed_log_line'"
        with sqlite3.connect(tmp_path / "clean.db") as clean:
            assert conn.execute(count).fetchone()[0] == clean.execute(count).fetchone()[0] > 0


def test_a_field_map_matching_nothing_drops_the_whole_source(server, tiny_incident, tmp_path):
    spec = _load_store(server, tiny_incident, "gcl")
    case_path = tmp_path / "c.db"
    result = runner.invoke(app, ["pull", "--case", str(case_path), "--logs", spec,
                                 "--field", "account_id=jsonPayload.agentUserID"])  # a typo
    assert result.exit_code == 1 and "account_id=jsonPayload.agentUserID matched no line" in result.stderr
    with sqlite3.connect(case_path) as conn:
        assert [conn.execute(f"select count(*) from {t}").fetchone()[0] for t in ("events", "pulls", "inputs")] == [0, 0, 0]


def test_an_expired_page_token_restarts_at_the_edge(server, tiny_incident, tmp_path):
    spec = _load_store(server, tiny_incident, "gcl")
    options = PullOptions(policy=FAST, field_map=tiny_incident.field_map)
    with Case(tmp_path / "clean.db") as case:
        pull(case, {"logs": [spec]}, options)
    server.fail_after["gcl"] = server.requests["gcl"] + 5
    with Case(tmp_path / "case.db") as case, pytest.raises(InputError):
        pull(case, {"logs": [spec]}, options)
    del server.fail_after["gcl"]
    with sqlite3.connect(tmp_path / "case.db") as conn:
        cursor = json.loads(conn.execute("select cursor from pulls").fetchone()[0])
    server.gcl_expired_tokens.add(cursor["pageToken"])  # the token died while the pull was down
    with Case(tmp_path / "case.db") as case:
        pull(case, {"logs": [spec]}, options)
    assert _events(tmp_path / "case.db") == _events(tmp_path / "clean.db")
    count = "select count(*) from problems"
    with sqlite3.connect(tmp_path / "case.db") as conn, sqlite3.connect(tmp_path / "clean.db") as clean:
        assert conn.execute(count).fetchone()[0] == clean.execute(count).fetchone()[0]


def test_an_expired_point_in_time_is_reopened_at_the_edge(server):
    _es_docs(server, 100)
    server.faults["es"] = [None, None, None, "expire-pit"]  # open, two pages, then the PIT is gone
    spec = parse_spec(f"es+{server.base}/camcloud-*?time_field=ts&size=10")
    with httpx.Client() as http:
        pages = list(Elasticsearch(spec, http, FAST, net.Counter()).pages(None))
    assert [r["request_id"] for p in pages for r in p.records] == [f"r{i}" for i in range(100)]
    assert sum(1 for p in server.paths_seen if p.endswith("/_pit?keep_alive=5m")) == 2
