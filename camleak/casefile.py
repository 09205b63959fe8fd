"""The case file: one SQLite database per incident, the only place where state lives.

Every stage reads its inputs from here and replaces its own output tables, so any stage can be
rerun and a whole triage can be repeated to the same result.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import resource
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import sqlite_utils

from . import __version__
from .errors import CaseError
from .redact import redact

CASE_FORMAT = 1

# Tables and their primary keys; created up front so a fresh case opens in Datasette
# or the sqlite3 shell with its whole shape visible.
SCHEMA: dict[str, tuple[dict[str, type], str | tuple[str, ...]]] = {
    "meta": ({"key": str, "value": str}, "key"),
    "runs": (
        {
            "id": int,
            "command": str,
            "args": str,
            "camleak_version": str,
            "started": str,
            "ended": str,
            "status": str,
            "counts": str,
            "error": str,
            "wall_s": float,  # the run's own wall-clock seconds
            "cpu_s": float,  # CPU seconds of this process and of its finished workers during the run
        },
        "id",
    ),
    "inputs": (
        {
            "id": int,
            "kind": str,
            "path": str,
            "size": int,
            "sha256": str,
            "ingested_at": str,
            "status": str,
            "items": int,
            "skipped": int,
        },
        "id",
    ),
    "problems": (
        {
            "id": int,
            "input_id": int,
            "stage": str,
            "path": str,
            "line": int,
            "member": str,
            "kind": str,
            "message": str,
            "raw": str,
        },
        "id",
    ),
    "devices": (
        {
            "device_id": str,
            "home_id": str,
            "owner_account": str,
            "shared_accounts": str,
            "input_id": int,
            "line": int,
        },
        "device_id",
    ),
    "events": (
        {
            "event_key": str,
            "ts": str,
            "ts_ms": int,
            "account_id": str,
            "device_id": str,
            "snapshot": str,
            "event": str,
            "integration": str,
            "request_id": str,
            "input_id": int,
            "line": int,
        },
        "event_key",
    ),
    "frames": (
        {
            "frame_id": str,
            "role": str,
            "snapshot": str,
            "ref_device": str,
            "input_id": int,
            "member": str,
            "size": int,
            "sha256": str,
        },
        "frame_id",
    ),
    "fingerprints": (
        {
            "frame_id": str,
            "status": str,
            "reason": str,
            "format": str,
            "width": int,
            "height": int,
            "truncated": int,
            "decoded_fraction": float,
            "quality": float,
            "phash": str,
            "dhash": str,
            "band_phash": str,
            "band_dhash": str,
            "bands": str,  # JSON {percent: [pHash, dHash]} of bands of several heights (issue 3)
            "contrast": float,  # coarse grey-level contrast: what noise cannot fake (issue 12)
            "thumb": bytes,  # 32x16 grey thumbnail for one-to-one verification of evidence (issue 12)
            "fine": bytes,  # 64x32 grey thumbnail for telling look-alike rooms apart (complete frames only)
            # mean |Cb-128|+|Cr-128|: day colour against night infrared, which is grey (issue 12)
            "chroma": float,
            "params": str,
        },
        "frame_id",
    ),
    # Fingerprints of an archive still being read (one pass: ingest hashes members as it reads
    # them), keyed by member, since a manifest late in a tar decides frame ids only at its end.
    # Moved into `fingerprints` when the archive is complete; kept across a killed run so the
    # rerun hashes only the members that are missing. `source` is the input's kind and sha256.
    # staged_fingerprints: every fingerprint column (see below), keyed by archive content and member
    "clusters": (
        {
            "cluster_id": int,
            "frames": int,
            "snapshots": int,
            "references": int,
            "medoid": str,
            "source_device": str,
            "attribution": str,
            "confidence": float,
            "votes": str,
            "reason": str,
        },
        "cluster_id",
    ),
    "frame_clusters": (
        # core: the stage-1 group (near-duplicates, surely one camera) the frame belongs to
        {"frame_id": str, "cluster_id": int, "via": str, "distance": int, "core": int},
        "frame_id",
    ),
    "attributions": (
        {
            "snapshot": str,
            "frame_id": str,
            "cluster_id": int,
            "source_device": str,
            "source_home": str,
            "attribution": str,
            "confidence": float,
            "reason": str,
            "candidates": str,  # JSON list of devices the pixels could not tell apart (review), issue 12
            "p_wrong": float,  # estimated chance the verified evidence matches the wrong camera
        },
        "snapshot",
    ),
    "exposures": (
        {
            "recipient_account": str,
            "source_device": str,
            "source_home": str,
            "source_owner": str,
            "events": int,
            "viewed_events": int,
            "snapshots": int,
            "first_seen": str,
            "last_seen": str,
            "integrations": str,
            "evidence": str,
            "attribution": str,
            "confidence": float,
            "evidence_snapshots": str,
            "max_distance": int,
            "p_wrong": float,  # estimated chance this pair's evidence matches the wrong camera (issue 12)
        },
        ("recipient_account", "source_device"),
    ),
    # Remote sources (camleak.remote.pull): one row per (role, source), the source recorded with
    # credentials and signatures stripped; `cursor` is where a log-store pull resumes.
    "pulls": (
        {
            "id": int,
            "role": str,
            "source": str,
            "kind": str,
            "input_id": int,
            "path": str,
            "sha256": str,
            "cursor": str,
            "records": int,
            "status": str,
            "pages": int,
            "events": int,
            "bytes": int,
            "retries": int,
            "started": str,
            "finished": str,
            "error": str,
        },
        "id",
    ),
    # Playbook runs (camleak.playbook): one row per run of a playbook against this case, and one
    # row per attempt at each of its steps, so `camleak report` can show the response timeline.
    "playbook_runs": (
        {
            "id": int,
            "playbook": str,
            "title": str,
            "source": str,
            "sha256": str,
            "variables": str,
            "operator": str,
            "started": str,
            "ended": str,
            "status": str,  # running | complete | paused | failed | interrupted
            "stopped_at": str,
            "message": str,
            "steps": int,  # how many steps the playbook has
        },
        "id",
    ),
    "playbook_steps": (
        {
            "id": int,
            "run_id": int,
            "position": int,
            "step": str,
            "title": str,
            "phase": str,  # detection | containment | evidence | analysis | notification | recovery | verification
            "kind": str,  # camleak | manual
            "owner": str,
            "command": str,
            "instruction": str,
            "attempt": int,
            "status": str,  # running | ok | failed | interrupted | pending | confirmed | skipped
            "started": str,
            "ended": str,
            "exit_code": int,
            "summary": str,
            "output": str,
            "outputs": str,
            "confirmed_by": str,
            "note": str,
            "case_runs": str,
        },
        "id",
    ),
}

# One archive's fingerprints staged by member while the one-pass ingest reads it (issue 13):
# the fingerprint columns, so nothing can be staged that the fingerprints table cannot take.
SCHEMA["staged_fingerprints"] = (
    {"source": str, "member": str, "sha256": str, "params": str,
     **{k: v for k, v in SCHEMA["fingerprints"][0].items() if k not in ("frame_id", "params")}},
    ("source", "member"),
)

INDEXES = [
    ("events", ["snapshot"]),
    ("events", ["account_id"]),
    ("frames", ["snapshot"]),
    ("problems", ["stage"]),
    ("playbook_steps", ["run_id"]),
]


_BOUND_AS_IS = frozenset({str, int, float, bytes, type(None)})


def utcnow() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def utcnow_ms() -> str:
    """UTC now to the millisecond: run times, so a slow stage can be told from a fast one."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def cpu_seconds() -> float:
    """CPU time of this process plus its reaped children (fingerprint workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def create_private_file(path: Path) -> None:
    """Create `path` owner-only (0600) whatever the umask, because it will hold private data."""
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


def write_private_text(path: Path, text: str) -> None:
    """Write a report-like file owner-only, creating its folder (0700) if needed."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    create_private_file(path)
    path.write_text(text, encoding="utf-8")


def _printable(text: str) -> str:
    """Text SQLite can store: bytes that were not UTF-8 (surrogate escapes) become U+FFFD."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


@dataclass
class InputRecord:
    id: int
    is_new: bool


class CaseLock:
    """One camleak process at a time per case file: a POSIX lock on `<case>-lock` beside it.

    POSIX record locks (fcntl) vanish with the process that holds them, however it dies (a
    SIGKILL leaves no stale lock), and are not inherited by forked fingerprint workers, so a
    worker outliving a killed run cannot keep the case locked. The file records who holds it,
    for the message a second process prints. Opens within one process share one lock.
    """

    _held: dict[str, tuple[int, int]] = {}  # resolved lock path -> (fd, users)

    def __init__(self, case_path: Path, *, wait: float = 0.0, command: str | None = None, suffix: str = "-lock",
                 holder: str = "another camleak process"):
        self.path = case_path.with_name(case_path.name + suffix)
        self.holder_words = holder
        self.key = str(self.path.resolve())
        held = self._held.get(self.key)
        if held:
            self._held[self.key] = (held[0], held[1] + 1)
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise CaseError(f"{case_path}: cannot create its lock file {self.path.name} beside it ({exc.strerror}); "
                            "camleak needs a writable folder for the case") from None
        try:
            os.fchmod(fd, 0o600)
            self._acquire(fd, wait, case_path)
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"pid": os.getpid(), "command": command or _command_line(),
                                     "since": utcnow()}).encode())
        except BaseException:
            os.close(fd)
            raise
        self._held[self.key] = (fd, 1)

    def _acquire(self, fd: int, wait: float, case_path: Path) -> None:
        deadline = time.monotonic() + max(0.0, wait)
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except OSError:
                if time.monotonic() >= deadline:
                    raise CaseError(f"{case_path}: in use by {self.holder_words} ({self._holder(fd)}); "
                                    "rerun when it has finished, or pass --wait SECONDS to queue behind it") from None
                time.sleep(0.1)

    @staticmethod
    def _holder(fd: int) -> str:
        try:
            info = json.loads(os.pread(fd, 4096, 0) or b"{}")
            return f"pid {info['pid']}, `{info['command']}` since {info['since']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "holder unknown"

    def release(self) -> None:
        held = self._held.get(self.key)
        if not held:
            return
        fd, users = held
        if users > 1:
            self._held[self.key] = (fd, users - 1)
            return
        del self._held[self.key]
        os.close(fd)  # closing the descriptor releases the lock


def _command_line() -> str:
    import sys

    args = [os.path.basename(sys.argv[0])] + sys.argv[1:3] if sys.argv else ["python"]
    return " ".join(args)


class Case:
    """An open case file, held by this process alone until closed (see CaseLock)."""

    def __init__(self, path: Path | str, *, create: bool = True, wait: float = 0.0):
        self.path = Path(path)
        self._lock: CaseLock | None = None
        if not self.path.exists():
            if not create:
                raise CaseError(f"{self.path}: no such case file")
            if self.path.parent and not self.path.parent.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = CaseLock(self.path, wait=wait)
        try:
            if not self.path.exists():
                create_private_file(self.path)
            conn = sqlite3.connect(self.path, timeout=30)
            self.db = sqlite_utils.Database(conn)
            self._ensure_schema()
            self._close_stale_runs()
        except sqlite3.DatabaseError as exc:
            self._lock.release()
            raise CaseError(f"{self.path}: not a camleak case file ({exc})") from exc
        except BaseException:
            self._lock.release()
            raise

    def _close_stale_runs(self) -> None:
        """Runs still 'running' belong to a process that died without a word (SIGKILL, power):
        this process holds the lock, so none of them is alive."""
        if CaseLock._held.get(self._lock.key, (0, 0))[1] == 1:
            with self.db.conn:
                self.db.execute("update runs set status = 'killed', ended = coalesce(ended, ?), "
                                "error = 'the process ended without finishing (killed?)' where status = 'running'",
                                [utcnow_ms()])

    # -- schema ---------------------------------------------------------------------------
    def _ensure_schema(self) -> None:
        existing = set(self.db.table_names())
        if existing and "meta" not in existing:
            raise CaseError(f"{self.path}: an SQLite database that is not a camleak case file; refusing to change it")
        # WAL: readers never block the writer, and a killed run leaves a consistent file.
        self.db.execute("pragma journal_mode=wal")
        self.db.execute("pragma synchronous=normal")
        for name, (columns, pk) in SCHEMA.items():
            if not self.db[name].exists():
                self.db[name].create(columns, pk=pk)
                continue
            present = self.db[name].columns_dict  # a case file from before a column was added
            for column, kind in columns.items():
                if column not in present:
                    self.db[name].add_column(column, kind)
        self.db["inputs"].create_index(["kind", "sha256"], unique=True, if_not_exists=True)
        for table, cols in INDEXES:
            self.db[table].create_index(cols, if_not_exists=True)
        stored = self.meta("case_format")
        if stored is None:
            self.set_meta("case_format", str(CASE_FORMAT))
            self.set_meta("created_with", __version__)
        elif stored != str(CASE_FORMAT):
            raise CaseError(
                f"{self.path}: case format {stored}, this camleak reads format {CASE_FORMAT}"
            )

    def table(self, name: str) -> sqlite_utils.db.Table:
        return self.db[name]  # type: ignore[return-value]

    def meta(self, key: str) -> str | None:
        rows = list(self.db.query("select value from meta where key = ?", [key]))
        return rows[0]["value"] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        self.db["meta"].upsert({"key": key, "value": value}, pk="key")

    def insert_rows(self, table: str, rows: list[dict[str, Any]], *, ignore: bool = False, alter: bool = True) -> None:
        """`table(...).insert_all(rows, ignore=..., alter=...)` by one executemany, for rows of one
        shape (the same keys, values that sqlite3 binds as they are): sqlite-utils spends ~30 us of
        Python per row building its statements (3 s on the attributions of 10^5 snapshots). The
        same rows in the same order; any other rows go through sqlite-utils as before."""
        if not rows:
            return
        columns = list(rows[0])
        keys = rows[0].keys()
        have = {r[1] for r in self.db.execute(f"pragma table_info([{table}])").fetchall()}
        values = [] if all(c in have for c in columns) else None
        if values is not None:
            for r in rows:
                if r.keys() != keys:
                    values = None
                    break
                row = tuple(r[c] for c in columns)
                if not all(type(v) in _BOUND_AS_IS for v in row):  # e.g. a dict sqlite-utils would JSON-encode
                    values = None
                    break
                values.append(row)
        if values is None:
            self.db[table].insert_all(rows, batch_size=2000, ignore=ignore, alter=alter)
            return
        with self.db.conn:
            self.db.conn.executemany(
                f"insert {'or ignore ' if ignore else ''}into [{table}] ({', '.join(f'[{c}]' for c in columns)}) "
                f"values ({', '.join('?' * len(columns))})", values)

    def count(self, table: str, where: str | None = None, params: list | None = None) -> int:
        sql = f"select count(*) from [{table}]" + (f" where {where}" if where else "")
        return self.db.execute(sql, params or []).fetchone()[0]

    # -- provenance -----------------------------------------------------------------------
    def record_input(self, kind: str, path: Path | str, sha256: str, size: int) -> InputRecord:
        """Return the input's id and whether it is new; the same bytes are ingested only once.

        An input left 'partial' by a killed run is dropped and ingested afresh.
        """
        existing = list(
            self.db.query(
                "select id, status from inputs where kind = ? and sha256 = ?", [kind, sha256]
            )
        )
        if existing and existing[0]["status"] == "complete":
            return InputRecord(existing[0]["id"], False)
        if existing:
            self.forget_input(existing[0]["id"])
        table = self.db["inputs"]
        table.insert(
            {
                "kind": kind,
                "path": str(path),
                "size": size,
                "sha256": sha256,
                "ingested_at": utcnow(),
                "status": "partial",
                "items": 0,
                "skipped": 0,
            }
        )
        return InputRecord(table.last_pk, True)  # type: ignore[arg-type]

    def finish_input(self, input_id: int, items: int, skipped: int) -> None:
        self.db["inputs"].update(
            input_id, {"items": items, "skipped": skipped, "status": "complete"}
        )

    def forget_input(self, input_id: int) -> None:
        """Drop an input whose ingest failed half-way, so a retry starts clean."""
        self.db.execute(
            "delete from fingerprints where frame_id in "
            "(select frame_id from frames where input_id = ?)",
            [input_id],
        )
        # staged_fingerprints are kept: keyed by the input's content, they let the retry skip
        # the members already hashed
        for table in ("devices", "events", "frames", "problems"):
            self.db.execute(f"delete from [{table}] where input_id = ?", [input_id])
        self.db.execute("delete from inputs where id = ?", [input_id])

    def add_problem(
        self,
        stage: str,
        kind: str,
        message: str,
        *,
        input_id: int | None = None,
        path: str | None = None,
        line: int | None = None,
        member: str | None = None,
        raw: str | None = None,
    ) -> None:
        self.db["problems"].insert(
            {
                "input_id": input_id,
                "stage": stage,
                "path": path,
                "line": line,
                "member": member,
                "kind": kind,
                "message": redact(_printable(message)),
                "raw": _printable(raw[:500]) if raw else raw,
            }
        )

    # -- runs -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def run(self, command: str, args: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Record a command run; the body fills the yielded dict with counts."""
        runs = self.db["runs"]
        runs.insert(
            {
                "command": command,
                "args": redact(json.dumps(args, sort_keys=True, default=str)),
                "camleak_version": __version__,
                "started": utcnow_ms(),
                "status": "running",
            }
        )
        run_id = runs.last_pk
        counts: dict[str, Any] = {}
        started, cpu = time.monotonic(), cpu_seconds()

        def timings() -> dict[str, Any]:
            return {"ended": utcnow_ms(), "wall_s": round(time.monotonic() - started, 3),
                    "cpu_s": round(cpu_seconds() - cpu, 3)}

        try:
            yield counts
        except BaseException as exc:
            runs.update(
                run_id,
                {
                    **timings(),
                    "status": "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed",
                    "counts": json.dumps(counts, sort_keys=True),
                    "error": redact(str(exc))[:500],
                },
            )
            raise
        counts.setdefault("seconds", round(time.monotonic() - started, 3))
        runs.update(run_id, {**timings(), "status": "ok", "counts": json.dumps(counts, sort_keys=True)})

    def close(self) -> None:
        try:
            self.db.conn.close()
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def __enter__(self) -> "Case":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
