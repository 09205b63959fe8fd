"""Interruption: a triage killed at any stage leaves a case file that opens, and a rerun gives
the same report as a run that was never interrupted; two processes on one case never corrupt it."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from camleak.casefile import Case
from camleak.errors import CaseError

CAMLEAK = [sys.executable, "-m", "camleak.cli"]


def triage_cmd(inc, case: Path) -> list[str]:
    return CAMLEAK + inc.triage_args(case) + ["--quiet", "--workers", "2"]


def report_of(case: Path) -> dict:
    result = subprocess.run(CAMLEAK + ["report", "--case", str(case)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    report.pop("generated_at")  # run metadata; everything else must match
    return report


def peek(case: Path, sql: str) -> int:
    """A read-only look at the case while the run writes it (WAL readers never block it)."""
    try:
        conn = sqlite3.connect(f"file:{case}?mode=ro", uri=True, timeout=0.2)
        try:
            return int(conn.execute(sql).fetchone()[0] or 0)
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def state(case: Path) -> str:
    counts = {name: peek(case, f"select count(*) from {name}") for name in ("inputs", "events", "frames", "fingerprints", "clusters", "exposures")}
    runs = [r for r in _rows(case, "select command || ':' || status from runs order by id")]
    return f"{counts} runs={runs}"


def _rows(case: Path, sql: str) -> list:
    try:
        conn = sqlite3.connect(f"file:{case}?mode=ro", uri=True, timeout=0.2)
        try:
            return [r[0] for r in conn.execute(sql)]
        finally:
            conn.close()
    except sqlite3.Error:
        return []


# (name, signal, condition on the case that marks the kill point)
KILL_POINTS = [
    ("ingest, logs being read", signal.SIGKILL, "select count(*) from inputs where kind = 'logs'"),
    ("ingest, snapshot archives", signal.SIGINT, "select count(*) from inputs where kind = 'snapshots'"),
    # one pass: ingest fingerprints members as it reads them, committing a batch at a time
    ("one pass, batches staged mid-archive", signal.SIGKILL, "select count(*) from staged_fingerprints"),
    ("one pass, Ctrl-C mid-archive", signal.SIGINT, "select count(*) from staged_fingerprints"),
    ("one pass, first archive fingerprinted", signal.SIGKILL, "select count(*) from fingerprints"),
    ("fingerprint stage", signal.SIGKILL, "select count(*) from runs where command = 'fingerprint'"),
    ("after fingerprinting, clustering", signal.SIGKILL, "select count(*) from runs where command = 'cluster'"),
    ("attribution", signal.SIGINT, "select count(*) from runs where command = 'attribute'"),
]


@pytest.fixture(scope="module")
def baseline(tiny_incident, tmp_path_factory):
    case = tmp_path_factory.mktemp("baseline") / "case.db"
    result = subprocess.run(triage_cmd(tiny_incident, case), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return report_of(case)


@pytest.mark.parametrize("name, sig, condition", KILL_POINTS, ids=[k[0] for k in KILL_POINTS])
def test_killed_triage_reruns_to_the_same_report(tiny_incident, baseline, tmp_path, name, sig, condition):
    case = tmp_path / "case.db"
    # Its own process group, as a terminal's Ctrl-C or an OOM kill would hit the run and its workers.
    proc = subprocess.Popen(triage_cmd(tiny_incident, case), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline and not peek(case, condition):
        time.sleep(0.002)
    killed_at = state(case)
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
    out, err = proc.communicate(timeout=120)
    print(f"\n{name}: {sig.name} -> exit {proc.returncode}; state at the kill: {killed_at}")
    if sig == signal.SIGINT and proc.returncode == 130:  # (0 or -2 when it landed as the run was exiting)
        assert b"interrupted; rerun the same command to continue" in err

    # The case opens and is intact.
    conn = sqlite3.connect(case)
    assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"
    conn.close()
    with Case(case, create=False) as c:
        statuses = [r["status"] for r in c.db.query("select status from runs")]
        assert "running" not in statuses  # a killed run is marked as such on the next open
    # The same command again completes to the uninterrupted run's report.
    again = subprocess.run(triage_cmd(tiny_incident, case), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert report_of(case) == baseline


def test_two_processes_on_one_case_refuse_or_queue(tiny_incident, baseline, tmp_path):
    case = tmp_path / "case.db"
    # A holder that keeps the case open until told to let go: the refusal is then deterministic.
    holder = subprocess.Popen([sys.executable, "-c", "import sys; from camleak.casefile import Case; "
                               "c = Case(sys.argv[1], create=True); print('held', flush=True); sys.stdin.readline(); c.close()",
                               str(case)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        refused = subprocess.run(triage_cmd(tiny_incident, case), capture_output=True, text=True, timeout=120)
        assert refused.returncode == 1
        assert "in use by another camleak process (pid" in refused.stderr and "--wait" in refused.stderr
        queued = subprocess.Popen(CAMLEAK[:3] + ["--wait", "300"] + triage_cmd(tiny_incident, case)[3:],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)
        assert queued.poll() is None, "a --wait run must queue behind the holder, not fail"
    finally:
        holder.communicate("release\n", timeout=60)
    assert queued.wait(timeout=600) == 0, queued.stderr.read()
    # Two real triages at once, both told to wait: whichever starts second queues; both succeed,
    # nothing corrupts.
    other = tmp_path / "other.db"
    waiting = CAMLEAK[:3] + ["--wait", "300"] + triage_cmd(tiny_incident, other)[3:]
    first = subprocess.Popen(waiting, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = subprocess.run(waiting, capture_output=True, text=True, timeout=600)
    assert first.wait(timeout=600) == 0, first.stderr.read()
    assert second.returncode == 0, second.stderr
    for path in (case, other):
        conn = sqlite3.connect(path)
        assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"
        conn.close()
        assert report_of(path) == baseline


def test_lock_file_is_private_and_dies_with_its_holder(tmp_path):
    old = os.umask(0o000)
    try:
        holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from camleak.casefile import Case; "
                                   "c = Case(sys.argv[1]); print('held', flush=True); time.sleep(600)", str(tmp_path / "c.db")],
                                  stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().strip() == "held"
    finally:
        os.umask(old)
    assert oct((tmp_path / "c.db-lock").stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "c.db").stat().st_mode & 0o777) == "0o600"
    with pytest.raises(CaseError, match=r"in use by another camleak process \(pid \d+"):
        Case(tmp_path / "c.db")
    holder.kill()  # SIGKILL: no chance to clean up
    holder.wait()
    with Case(tmp_path / "c.db", wait=5) as c:  # the lock went with the process
        assert c.count("runs") == 0
