"""`camleak triage` with every input remote gives the report the local files give.

Devices, snapshot and reference archives are served over HTTP (one cut half-way, one behind a
signed URL with a .sha256 sidecar); the three log exports live in log stores: the app export's
lines in Loki, the assistant export in Cloud Logging, the web CSV as Elasticsearch documents.
Faults are injected on every store along the way.
"""

from __future__ import annotations

import json
import os
import sqlite3

import pytest
from typer.testing import CliRunner

from camleak.casefile import sha256_file
from camleak.cli import app
from fakestores import FROM, TO, FakeServer, load_es, load_gcl, load_loki

runner = CliRunner()
SECRET_SIG = "c2VjcmV0LXNpZ25hdHVyZQ"
SECRET_PASSWORD = "hunter2-pw"
SECRET_TOKEN = "tok-0123456789abcdef"


def local_args(inc, case):
    return inc.triage_args(case) + ["--workers", "2"]


def comparable(case) -> dict:
    """The JSON report minus run and case metadata (time, version, case counts, file names)."""
    result = runner.invoke(app, ["report", "--case", str(case), "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for key in ("generated_at", "camleak_version", "case"):
        data.pop(key, None)
    for warning in data["warnings"]:
        warning.pop("examples", None)  # they name the file or source and line
    return data


@pytest.fixture(scope="module")
def served(tiny_incident):
    inc = tiny_incident
    with FakeServer() as server:
        for path in [inc.devices, *inc.snapshots, *inc.references]:
            server.files[path.name] = path.read_bytes()
        signed = inc.snapshots[0].name
        server.sidecars[signed] = sha256_file(inc.snapshots[0])
        by_name = {p.name: p for p in inc.logs}
        load_loki(server, by_name["app-events.jsonl.gz"], {"app": "camcloud", "export": "app-events"})
        load_gcl(server, by_name["assistant-events.jsonl.zst"])
        load_es(server, by_name["web-events.csv"], "web-events-2026.11.20")
        base = server.base
        cred_base = base.replace("http://", f"http://responder:{SECRET_PASSWORD}@")
        specs = {
            "devices": [f"{cred_base}/files/{inc.devices.name}"],
            "snapshots": [f"{base}/files/{signed}?X-Amz-Credential=AKIA&X-Amz-Signature={SECRET_SIG}&X-Amz-Expires=900"]
                         + [f"{base}/files/{p.name}" for p in inc.snapshots[1:]],
            "references": [f"{base}/files/{p.name}" for p in inc.references],
            "logs": [
                f'loki+{base}?query={{app="camcloud",export="app-events"}}&from={FROM}&to={TO}&limit=40',
                f"gcl+{base}?resource=projects/camcloud-prod&filter=logName=\"projects/camcloud-prod/logs/assistant-bridge\""
                f"&from={FROM}&to={TO}&page_size=120",
                f"es+{base}/web-events-*?from={FROM}&to={TO}&time_field=ts&size=100",
            ],
        }
        yield server, specs


def remote_args(specs, inc, case):
    args = ["triage", "--case", str(case), "--workers", "2", "--backoff", "0.01", "--concurrency", "3"]
    for role in ("devices", "logs", "snapshots", "references"):
        for spec in specs[role]:
            args += [f"--{role}", spec]
    for k, v in inc.field_map.items():
        args += ["--field", f"{k}={v}"]
    return args


def test_remote_triage_equals_local_triage(tiny_incident, served, tmp_path, monkeypatch):
    server, specs = served
    inc = tiny_incident
    local_case = tmp_path / "local.db"
    result = runner.invoke(app, local_args(inc, local_case))
    assert result.exit_code == 0, result.output

    # Faults on every source: a cut transfer, a 429 with Retry-After, 503 bursts, a slow
    # answer, a dropped connection mid-body and a truncated gzip body.
    server.faults[f"files:{inc.snapshots[0].name}"] = ["drop", "drop"]
    server.faults[f"files:{inc.devices.name}"] = ["503"]
    server.faults["loki"] = ["drop", "429", "gzip-trunc"]
    server.faults["gcl"] = ["503", "503", "slow:0.2", "gzip-trunc"]
    server.faults["es"] = ["drop", "503", "gzip-trunc"]
    monkeypatch.setenv("CAMLEAK_GCL_TOKEN", SECRET_TOKEN)
    remote_case = tmp_path / "remote.db"
    result = runner.invoke(app, remote_args(specs, inc, remote_case))
    assert result.exit_code == 0, result.output

    assert comparable(remote_case) == comparable(local_case)
    assert comparable(local_case)["summary"]["exposure_pairs"] > 0

    with sqlite3.connect(remote_case) as conn:
        pulls = {r[0]: r[1:] for r in conn.execute("select source, kind, status, pages, retries from pulls")}
        # every fault was met and survived
        assert all(status == "complete" for _, status, _, _ in pulls.values()), pulls
        by_kind = {}
        for kind, status, pages, retries in pulls.values():
            by_kind.setdefault(kind, []).append((pages, retries))
        assert sum(r for _, r in by_kind["loki"]) >= 3
        assert sum(r for _, r in by_kind["gcl"]) >= 3
        assert sum(r for _, r in by_kind["es"]) >= 3
        assert all(p > 1 for p, _ in by_kind["loki"] + by_kind["gcl"] + by_kind["es"])
    # the bearer token reached Cloud Logging only as a header
    assert any(h.get("authorization") == f"Bearer {SECRET_TOKEN}" for h in server.headers_seen)

    # No credential or signature in the case file, its evidence folder names or the output.
    blob = remote_case.read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("remote.db*") if p.is_file())
    for secret in (SECRET_SIG, SECRET_PASSWORD, SECRET_TOKEN):
        assert secret.encode() not in blob
        assert secret not in result.output
    evidence = tmp_path / "remote.db-evidence"
    assert oct(os.stat(evidence).st_mode & 0o777) == "0o700"
    assert all(SECRET_SIG not in p.name for p in evidence.iterdir())
    # the archives in the evidence folder are byte-identical to the originals
    for path in [*inc.snapshots, *inc.references, inc.devices]:
        copies = [p for p in evidence.iterdir() if p.name.endswith("-" + path.name)]
        assert len(copies) == 1 and copies[0].read_bytes() == path.read_bytes()

    # A repeated triage pulls nothing again and gives the same report.
    before = dict(server.requests)
    result = runner.invoke(app, remote_args(specs, inc, remote_case))
    assert result.exit_code == 0, result.output
    assert dict(server.requests) == before
    assert comparable(remote_case) == comparable(local_case)
