"""Environment failures (disk full, permission denied, read-only, too many open files) are
exit 1 with one line saying the path, what the case keeps, and how to go on; never exit 70.

The disk-full test gives camleak a small disk: a tmpfs when running as root (as in CI), else a
file-size limit set in the child process. The interrupted case then finishes on a rerun."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from camleak.cli import app
from camleak.errors import environment_failure
from typer.testing import CliRunner

runner = CliRunner()


def _triage_argv(incident, case: Path) -> list[str]:
    argv = [sys.executable, "-m", "camleak", "triage", "--quiet", "--workers", "2", "--case", str(case),
            "--devices", str(incident.devices)]
    for kind, paths in (("--logs", incident.logs), ("--snapshots", incident.snapshots), ("--references", incident.references)):
        for p in paths:
            argv += [kind, str(p)]
    return argv


def _report(case: Path) -> dict:
    out = subprocess.run([sys.executable, "-m", "camleak", "report", "--case", str(case), "--format", "json"],
                         capture_output=True, text=True, check=True).stdout
    data = json.loads(out)
    data.pop("generated_at", None)
    return data


@contextmanager
def small_disk(tmp_path: Path, size: int):
    """(folder, limit for the child, grow()): a tmpfs of `size` bytes when we may mount one,
    else a plain folder and a file-size limit applied to the child process."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = False
    if os.geteuid() == 0:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)],
                                 capture_output=True).returncode == 0
    state = {"limit": None if mounted else size}

    def grow() -> None:
        if mounted:
            subprocess.run(["mount", "-o", "remount,size=256m", str(disk)], check=True)
        state["limit"] = None

    try:
        yield disk, state, grow
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(disk)], check=False)


def _limited(limit: int | None):
    if limit is None:
        return None

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_disk_full_is_exit_1_with_the_way_on_and_the_rerun_finishes(tiny_incident, tmp_path):
    reference = tmp_path / "reference.db"
    subprocess.run(_triage_argv(tiny_incident, reference), check=True, capture_output=True)
    with small_disk(tmp_path, 400 * 1024) as (disk, state, grow):
        case = disk / "case.db"
        full = subprocess.run(_triage_argv(tiny_incident, case), capture_output=True, text=True,
                              preexec_fn=_limited(state["limit"]))
        assert full.returncode == 1, full.stderr
        lines = [line for line in full.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, full.stderr
        message = lines[0]
        assert "unexpected" not in message and "Traceback" not in full.stderr
        assert str(case) in message
        assert "no space left" in message or "disk failed a write" in message
        assert "keeps every input" in message and "rerun the same command" in message
        grow()
        again = subprocess.run(_triage_argv(tiny_incident, case), capture_output=True, text=True,
                               preexec_fn=_limited(state["limit"]))
        assert again.returncode == 0, again.stderr
        assert _report(case) == _report(reference)


def test_unwritable_case_folder_is_exit_1_naming_it(tiny_incident, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root may write anywhere: the read-only file system test below covers root")
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        result = runner.invoke(app, ["ingest", "devices", "--case", str(folder / "case.db"), str(tiny_incident.devices)])
    finally:
        folder.chmod(0o700)
    assert result.exit_code == 1, result.output
    assert str(folder) in result.output and "unexpected" not in result.output


@pytest.mark.parametrize(
    "exc, expected",
    [
        (OSError(28, "No space left on device", "/cases/c.db-wal"), "no space left"),
        (PermissionError(13, "Permission denied", "/reports/r.html"), "permission denied"),
        (OSError(30, "Read-only file system", "/mnt/ro/c.db"), "read-only file system"),
        (OSError(24, "Too many open files"), "too many open files"),
    ],
)
def test_each_environment_failure_is_named(exc, expected, tmp_path):
    message = environment_failure(exc, tmp_path / "c.db")
    assert message is not None and expected in message and "rerun the same command" in message


def test_sqlite_full_and_a_wrapped_cause_are_recognised(tmp_path):
    import sqlite3
    case = tmp_path / "c.db"
    message = environment_failure(sqlite3.OperationalError("database or disk is full"), case)
    assert message is not None and message.startswith(str(case)) and "keeps every input" in message
    try:
        try:
            raise OSError(28, "No space left on device", str(case) + "-wal")
        except OSError as inner:
            raise RuntimeError("while writing") from inner
    except RuntimeError as outer:
        assert "no space left" in (environment_failure(outer, case) or "")
    assert environment_failure(ValueError("a bug"), case) is None
    assert environment_failure(FileNotFoundError(2, "No such file", "x"), case) is None


def test_read_only_file_system_is_exit_1_naming_it(tiny_incident, tmp_path):
    disk = tmp_path / "ro"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(disk)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs root to mount a read-only file system")
    try:
        result = subprocess.run([sys.executable, "-m", "camleak", "ingest", "devices", "--case", str(disk / "case.db"),
                                 str(tiny_incident.devices)], capture_output=True, text=True)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "read-only file system" in lines[0] and str(disk) in lines[0], result.stderr
