"""Exceptions that the CLI maps onto documented exit codes."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path


class CamleakError(Exception):
    """Base class for errors camleak reports without a traceback."""

    exit_code = 70


class InputError(CamleakError):
    """An input could not be used; the message names it (exit 1)."""

    exit_code = 1


class CaseError(CamleakError):
    """The case file is missing, from another version, or busy (exit 1)."""

    exit_code = 1


# ---------------------------------------------------------------------------------------
# Environment failures: the machine, not the input and not a bug
# ---------------------------------------------------------------------------------------
_ERRNO_KINDS = {
    errno.ENOSPC: "full", errno.EDQUOT: "full", errno.EFBIG: "full",
    errno.EACCES: "permission", errno.EPERM: "permission",
    errno.EROFS: "readonly",
    errno.EMFILE: "files", errno.ENFILE: "files",
}
_SQLITE_KINDS = {
    "database or disk is full": "full",
    "disk i/o error": "io",
    "attempt to write a readonly database": "readonly",
    "unable to open database file": "cantopen",
}
_WHAT = {
    "full": "no space left (the disk, a quota or a file-size limit is full)",
    "io": "the disk failed a write (full, removed, or a file-size limit)",
    "permission": "permission denied",
    "readonly": "read-only file system",
    "cantopen": "cannot open or create the database file there",
    "files": "too many open files",
}
_HOW = {
    "full": "free space there (or move the case and its -wal file to a larger disk), then rerun the same command",
    "io": "check the disk and free space, then rerun the same command",
    "permission": "give this user access there or choose another path, then rerun the same command",
    "readonly": "put the case (or -o) on a writable file system, then rerun the same command",
    "cantopen": "check that the folder exists and is writable, then rerun the same command",
    "files": "raise the open-file limit (ulimit -n) or give fewer inputs at once, then rerun the same command",
}


def environment_failure(exc: BaseException, case_path: Path | None = None) -> str | None:
    """A one-line explanation when `exc` (or what caused it) is the machine failing camleak:
    disk full, permission denied, read-only file system, too many open files. None otherwise.
    The message names the path, what the case keeps, and how to go on."""
    seen: set[int] = set()
    node: BaseException | None = exc
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        kind, path = _classify(node, case_path)
        if kind:
            return _message(kind, path, case_path)
        node = node.__cause__ or node.__context__
    return None


def _classify(exc: BaseException, case_path: Path | None) -> tuple[str | None, str | None]:
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        for needle, kind in _SQLITE_KINDS.items():
            if needle in text:
                return kind, str(case_path) if case_path else None
        return None, None
    if isinstance(exc, OSError) and exc.errno in _ERRNO_KINDS:
        return _ERRNO_KINDS[exc.errno], exc.filename if isinstance(exc.filename, str) else (
            str(exc.filename) if exc.filename else None)
    return None, None


def _message(kind: str, path: str | None, case_path: Path | None) -> str:
    where = path or (str(case_path) if case_path else "the working folder")
    in_case = case_path is not None and path is not None and Path(path).name.startswith(case_path.name)
    if case_path is None:
        kept = "nothing was changed"
    elif in_case or path is None:
        kept = (f"the case {case_path} keeps every input and stage completed before this (the interrupted one "
                "is redone, nothing half-written is kept)")
    else:
        kept = f"the case {case_path} is intact"
    return f"{where}: {_WHAT[kind]}; {kept}; {_HOW[kind]}"
