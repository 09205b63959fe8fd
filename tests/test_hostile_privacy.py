"""Privacy under hostile conditions: owner-only files whatever the umask, no account ids or
URL tokens in what camleak prints, and no images leaving the case through an export."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from camleak.casefile import Case
from camleak.redact import redact

CAMLEAK = [sys.executable, "-m", "camleak.cli"]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def run(args: list[str], umask: int = 0o000, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(CAMLEAK + args, capture_output=True, text=True, timeout=600,
                          preexec_fn=lambda: os.umask(umask), **kwargs)


def triage_args(inc, case: Path) -> list[str]:
    return inc.triage_args(case, references=False) + ["--workers", "2"]


@pytest.fixture(scope="module")
def triaged_open_umask(tiny_incident, tmp_path_factory):
    """A triage run with umask 000, as a careless shell or container might have it."""
    root = tmp_path_factory.mktemp("private")
    case = root / "newdir" / "case.db"
    result = run(triage_args(tiny_incident, case))
    assert result.returncode == 0, result.stderr
    return case, result


def test_case_files_and_folder_are_owner_only_whatever_the_umask(triaged_open_umask):
    case, _ = triaged_open_umask
    assert mode(case.parent) == 0o700
    for name in ("case.db", "case.db-wal", "case.db-shm", "case.db-lock"):
        path = case.parent / name
        if path.exists():  # WAL and SHM exist while or after a connection used them
            assert mode(path) == 0o600, name


def test_reports_and_exports_are_owner_only_even_over_an_existing_file(triaged_open_umask):
    case, _ = triaged_open_umask
    report, export = case.parent / "report.json", case.parent / "snapshots.jsonl"
    export.write_text("old")
    os.chmod(export, 0o666)  # a world-readable file in the way is tightened, not reused as is
    assert run(["report", "--case", str(case), "-o", str(report)]).returncode == 0
    assert run(["export", "snapshots", "--case", str(case), "-o", str(export)]).returncode == 0
    assert mode(report) == 0o600 and mode(export) == 0o600
    assert json.loads(report.read_text())["schema"] == "camleak.report/1"


def test_library_api_is_owner_only_too(tmp_path):
    old = os.umask(0o000)
    try:
        with Case(tmp_path / "made" / "c.db") as c:
            c.add_problem("ingest", "x", "y")
    finally:
        os.umask(old)
    assert mode(tmp_path / "made") == 0o700
    for name in ("c.db", "c.db-lock"):
        assert mode(tmp_path / "made" / name) == 0o600


def _accounts(inc) -> set[str]:
    import csv

    with open(inc.devices) as fh:
        rows = list(csv.DictReader(fh))
    accounts = {r["owner_account"] for r in rows}
    accounts |= {a for r in rows for a in (r.get("shared_accounts") or "").split(";") if a}
    return accounts


def test_no_account_ids_in_diagnostics_at_default_verbosity(tiny_incident, triaged_open_umask):
    """stderr carries no account id, nor do the problem messages the summary quotes as examples."""
    case, result = triaged_open_umask
    accounts = _accounts(tiny_incident)
    assert accounts and not any(a in result.stderr for a in accounts)
    with Case(case) as c:
        messages = [r["message"] for r in c.db.query("select message from problems")]
    assert messages  # the simulated exports carry malformed lines: there is something to check
    assert not any(a in m for m in messages for a in accounts)
    notes = [line for line in result.stdout.splitlines() if " x " in line or "not attributed" in line]
    assert not any(a in line for line in notes for a in accounts)


def test_no_url_tokens_in_errors_or_records(tmp_path):
    secret = "SeCrEt-T0ken-42"
    url = f"https://svc:{secret}@127.0.0.1:9/export.jsonl?page=1&X-Amz-Signature={secret}&token={secret}"
    result = run(["ingest", "logs", "--case", str(tmp_path / "c.db"), url])
    assert result.returncode == 1
    assert secret not in result.stderr and "***" in result.stderr
    with Case(tmp_path / "c.db") as c:
        recorded = json.dumps(list(c.db.query("select args, error from runs")))
    assert secret not in recorded
    assert redact(f"see {url} now") == "see https://***@127.0.0.1:9/export.jsonl?page=1&X-Amz-Signature=***&token=*** now"


def test_export_snapshots_carries_no_pixels(triaged_open_umask):
    """`export snapshots` is metadata and fingerprints only, so it needs no --reveal-evidence:
    no image bytes, no thumbnail, no path an image could be fetched from outside the case."""
    case, _ = triaged_open_umask
    result = run(["export", "snapshots", "--case", str(case)])
    assert result.returncode == 0
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows
    allowed = {"snapshot", "cluster", "source_device", "attribution", "confidence", "reason", "quality", "status",
               "truncated", "decoded_fraction", "width", "height", "format", "hashes", "review_candidates", "p_wrong"}
    for row in rows:
        assert set(row) <= allowed, set(row) - allowed
        assert all(len(h or "") <= 64 for h in row["hashes"].values())  # 256-bit hashes at most
    text = result.stdout
    for magic in ("/9j/", "iVBORw0KGgo", "UklGR", "R0lGOD", "data:image"):  # base64 JPEG, PNG, WebP, GIF
        assert magic not in text
    assert len(text) / len(rows) < 1000  # a line per snapshot, never a picture's worth of bytes


def test_a_lock_file_camleak_cannot_open_is_a_clear_error(tmp_path):
    """A read-only folder, or something else in the lock file's place: exit 1 naming the case,
    not an unexpected error. (A folder in its place fails for root too, unlike permissions.)"""
    with Case(tmp_path / "c.db"):
        pass
    (tmp_path / "c.db-lock").unlink()
    (tmp_path / "c.db-lock").mkdir()
    result = run(["summary", "--case", str(tmp_path / "c.db")])
    assert result.returncode == 1 and "cannot create its lock file c.db-lock" in result.stderr
