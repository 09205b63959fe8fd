"""Ingest stage: bring the device registry, delivery logs, snapshots and reference frames
into the case file, with provenance, exactly once per input.

Each input file is written inside its own bookkeeping: its `inputs` row stays 'partial' until
every row is in, and a failure removes what it wrote, so a bad input never costs what was
ingested before it and a killed run is redone cleanly on the next try.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import stat
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable

from . import archives, logformats, logparse
from .casefile import SCHEMA, Case, sha256_file
from .errors import InputError
from .fingerprint import HashPool
from .sources import expand, logical_name, open_decompressed

BATCH = 2000
Progress = Callable[[int], None]


@dataclass
class IngestStats:
    files: int = 0
    new_files: int = 0
    items: int = 0
    duplicates: int = 0
    skipped: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "files": self.files,
            "new_files": self.new_files,
            "items": self.items,
            "duplicates": self.duplicates,
            "skipped": self.skipped,
        }

    def add(self, other: "IngestStats") -> None:
        self.files += other.files
        self.new_files += other.new_files
        self.items += other.items
        self.duplicates += other.duplicates
        self.skipped += other.skipped


def _guarded(case: Case, kind: str, path: Path, body: Callable[[int], tuple[int, int, int]]) -> IngestStats:
    """Run `body(input_id)` for a new input; undo its rows if it fails."""
    stats = IngestStats(files=1)
    digest = sha256_file(path) if path.is_file() else _dir_digest(path, case.path)
    record = case.record_input(kind, path, digest, _size(path, case.path))
    if not record.is_new:
        return stats
    stats.new_files = 1
    try:
        items, duplicates, skipped = body(record.id)
    except BaseException:
        case.forget_input(record.id)
        raise
    case.finish_input(record.id, items, skipped)
    stats.items, stats.duplicates, stats.skipped = items, duplicates, skipped
    return stats


def _size(path: Path, case_path: Path | None = None) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in _dir_files(path, case_path))


def _dir_files(root: Path, case_path: Path | None) -> list[Path]:
    """Regular files under a folder, links not followed, the case file (and its WAL) left out."""
    return [path for _, path, info in archives.walk_dir(root, case_path) if info is not None and stat.S_ISREG(info.st_mode)]


def _dir_digest(root: Path, case_path: Path | None = None) -> str:
    """A folder's identity: names and contents of every file in it (not the case file's own)."""
    digest = hashlib.sha256()
    for file in _dir_files(root, case_path):
        digest.update(os.fsencode(file.relative_to(root).as_posix()) + b"\0")
        digest.update(sha256_file(file).encode())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------
# Device registry
# ---------------------------------------------------------------------------------------
REGISTRY_FIELDS = ("device_id", "home_id", "owner_account", "shared_accounts")


def ingest_devices(case: Case, sources: Iterable[str | Path]) -> IngestStats:
    """Load the device registry (CSV or JSON lines, plain or compressed)."""
    total = IngestStats()
    for path in expand(sources, what="device registry", exclude=case.path):
        total.add(_guarded(case, "devices", path, lambda input_id, p=path: _load_registry(case, p, input_id)))
    return total


def _registry_rows(path: Path) -> Iterable[tuple[int, dict[str, Any] | None, str | None]]:
    """(line, row, error) for each registry row. A registry cut short is refused whole: a device
    missing from it would turn its owner's own views into apparent exposures."""
    try:
        yield from _registry_rows_of(path)
    except (OSError, EOFError, zlib.error, csv.Error) as exc:
        raise InputError(f"{path}: device registry unreadable or cut short ({exc}); refusing a partial registry") from exc


def _registry_rows_of(path: Path) -> Iterable[tuple[int, dict[str, Any] | None, str | None]]:
    with open_decompressed(path) as stream:
        head = stream.peek(64)[:64] if hasattr(stream, "peek") else b""
        fmt = logparse.detect_format(logical_name(path), head)
        if fmt is None:
            raise InputError(f"{path}: unknown registry format (expected CSV or JSON lines)")
        if fmt == "jsonl":
            for number, raw in logparse.read_lines(stream):
                if raw is None:
                    yield number, None, "line too long"
                    continue
                if not raw.strip():
                    continue
                try:
                    row = json.loads(raw.decode("utf-8-sig"))
                except (ValueError, UnicodeDecodeError, RecursionError) as exc:
                    yield number, None, f"not JSON ({type(exc).__name__})"
                    continue
                yield number, row if isinstance(row, dict) else None, None if isinstance(row, dict) else "not a JSON object"
        else:
            text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
            reader = csv.DictReader(text)
            missing = [name for name in ("device_id", "owner_account") if name not in (reader.fieldnames or [])]
            if missing:
                raise InputError(f"{path}: line 1: registry header lacks {', '.join(missing)}")
            for row in reader:
                if None in row or any(v is None for v in row.values()):
                    yield reader.line_num, None, "wrong number of columns"
                    continue
                if not logparse.is_utf8([str(v) for v in row.values()]):
                    yield reader.line_num, None, "not UTF-8"
                    continue
                yield reader.line_num, row, None


def _registry_value(value: Any) -> str:
    """A registry id as text; a nested or boolean value is an error, not an id."""
    if value is None:
        return ""
    if isinstance(value, (dict, list, bool)):
        raise ValueError(f"{type(value).__name__} where an id belongs")
    return str(value).strip()


def _split_accounts(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return sorted({str(v).strip() for v in value if str(v).strip()})
    return sorted({part.strip() for part in str(value).replace(",", ";").split(";") if part.strip()})


def _load_registry(case: Case, path: Path, input_id: int) -> tuple[int, int, int]:
    items = skipped = duplicates = 0
    table = case.table("devices")
    for number, row, error in _registry_rows(path):
        if row is not None:
            try:
                device_id = _registry_value(row.get("device_id"))
                owner = _registry_value(row.get("owner_account"))
                home = _registry_value(row.get("home_id"))
                if not device_id or not owner:
                    error = "missing device_id or owner_account"
            except ValueError as exc:
                error = f"wrong-typed field ({exc})"
        if error is not None or row is None:
            skipped += 1
            case.add_problem("ingest", "malformed_registry_row", f"{path}:{number}: {error}",
                             input_id=input_id, path=str(path), line=number)
            continue
        record = {
            "device_id": device_id,
            "home_id": home or None,
            "owner_account": owner,
            "shared_accounts": json.dumps(_split_accounts(row.get("shared_accounts"))),
            "input_id": input_id,
            "line": number,
        }
        existing = list(case.db.query("select * from devices where device_id = ?", [device_id]))
        if existing:
            old = existing[0]
            same = all(old[k] == record[k] for k in ("home_id", "owner_account", "shared_accounts"))
            if same:
                duplicates += 1
                continue
            case.add_problem(
                "ingest",
                "registry_conflict",
                f"{path}:{number}: device {device_id} listed again with a different home, owner or shared accounts "
                f"than in input {old['input_id']} line {old['line']}; the first entry is used until the registry is fixed",
                input_id=input_id, path=str(path), line=number,
                # the account ids stay in `raw`: messages are printed in summaries, ids must not be
                raw=json.dumps({"here": {k: record[k] for k in ("home_id", "owner_account", "shared_accounts")},
                                "first": {k: old[k] for k in ("home_id", "owner_account", "shared_accounts")}}),
            )
            skipped += 1
            continue
        table.insert(record)
        items += 1
    if items == 0 and skipped == 0 and duplicates == 0:
        raise InputError(f"{path}: device registry has no rows")
    return items, duplicates, skipped


# ---------------------------------------------------------------------------------------
# Delivery logs
# ---------------------------------------------------------------------------------------
def ingest_logs(
    case: Case,
    sources: Iterable[str | Path],
    field_map: dict[str, str] | None = None,
    progress: Progress | None = None,
    log_format: str = "auto",
) -> IngestStats:
    """Load delivery-log exports; the same (request_id, event) counts once across exports.

    Each file is read through the export profile that fits it (`log_format`, by default
    detected per file); `field_map` replaces the profile's path for the fields it names."""
    field_map = field_map or {}
    total = IngestStats()
    sources, remote = _split_object_urls(sources)
    for url in remote:  # object storage (issue 14): listed and downloaded object by object
        from .objectinputs import ingest_prefix
        total.add(ingest_prefix(case, url, "logs", "log", progress, None, field_map, log_format, stats=IngestStats(files=1),
                                read_files=lambda _kind, files: ingest_logs(case, files, field_map, progress, log_format)))
    for path in expand(sources, what="delivery log", exclude=case.path):
        total.add(
            _guarded(case, "logs", path,
                     lambda input_id, p=path: _load_log(case, p, input_id, field_map, progress, log_format))
        )
    return total


def open_log_file(path: Path, field_map: dict[str, str], log_format: str = "auto", strict: bool = True) -> logformats.Reading:
    """A log file opened through its export profile (shared by ingest and `inspect logs`)."""
    with open_decompressed(path) as stream:
        try:
            head = stream.peek(64)[:64] if hasattr(stream, "peek") else b""
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(f"{path}: unreadable ({exc})") from exc
    fmt = logparse.detect_format(logical_name(path), head)
    if fmt is None:
        raise InputError(f"{path}: unknown log format (expected JSON lines, a JSON export or CSV, optionally .gz/.zst)")
    return logformats.open_log(lambda: open_decompressed(path), str(path), fmt, log_format, field_map, strict=strict)


def _load_log(
    case: Case, path: Path, input_id: int, field_map: dict[str, str], progress: Progress | None,
    log_format: str = "auto",
) -> tuple[int, int, int]:
    parsed = skipped = inserted = missing = 0
    failed: list[dict[str, Any]] = []  # the first records lacking a required field
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        nonlocal inserted
        if not batch:
            return
        before = case.db.conn.total_changes
        case.insert_rows("events", batch, ignore=True, alter=False)
        inserted += case.db.conn.total_changes - before
        if progress:
            progress(len(batch))
        batch.clear()

    reading = open_log_file(path, field_map, log_format)
    usage = reading.usage
    try:
        for item in reading.lines:
            if item.event is None:
                skipped += 1
                if item.error and item.error.startswith("missing field"):
                    missing += 1
                    if item.record is not None and len(failed) < logformats.SAMPLE:
                        failed.append(item.record)
                case.add_problem(
                    "ingest", "malformed_log_line", f"{path}:{item.line}: {item.error}",
                    input_id=input_id, path=str(path), line=item.line, raw=item.raw,
                )
                continue
            parsed += 1
            item.event.update(input_id=input_id, line=item.line)
            batch.append(item.event)
            if len(batch) >= BATCH:
                flush()
    except (OSError, EOFError, zlib.error) as exc:
        # A truncated compressed stream: keep what decoded, and say where it stopped.
        case.add_problem("ingest", "truncated_log", f"{path}: stream ended early ({exc}); kept the lines before it",
                         input_id=input_id, path=str(path))
    if missing * 2 > parsed + skipped:
        # Most of the file lacks a required field: a wrong or missing field map, not a few bad lines.
        raise InputError(reading.refusal(str(path), failed, parsed + skipped, missing))
    if parsed == 0 and skipped == 0:
        case.add_problem("ingest", "empty_log", f"{path}: no events in it (an empty file, or a header only)",
                         input_id=input_id, path=str(path))
    for message in _check_field_map(path, field_map, usage, parsed, skipped):
        case.add_problem("ingest", "field_map_unmatched", message, input_id=input_id, path=str(path))
    flush()
    case.db["log_formats"].insert({"input_id": input_id, "path": str(path), **_format_row(reading.detection)},
                                  pk="input_id", replace=True)
    return inserted, parsed - inserted, skipped


def _format_row(detection: logformats.Detection) -> dict[str, Any]:
    row = detection.as_dict()
    return {"format": row["format"], "title": row["title"], "decided": row["decided"],
            "field_map": json.dumps(row["field_map"], sort_keys=True), "given": json.dumps(row["given"], sort_keys=True)}


def _check_field_map(path: Path, field_map: dict[str, str], usage: logparse.MapUsage, parsed: int, skipped: int) -> list[str]:
    """A mapped path that matched nothing, where the canonical name did not fill in, is a typo:
    fatal for a required field, a warning for an optional one (its events lack that field)."""
    warnings: list[str] = []
    if parsed == 0 and skipped == 0:
        return warnings  # an empty file says nothing about the map; it is reported as empty
    for name, dotted in field_map.items():
        if usage.hits.get(name) or usage.canonical_hits.get(name):
            continue
        if name in logparse.REQUIRED_FIELDS or (parsed == 0 and skipped > 0):
            raise InputError(
                f"{path}: --field {name}={dotted} matched no line, and no line has {name!r} itself"
            )
        warnings.append(f"{path}: --field {name}={dotted} matched no line, and no line has {name!r} itself; "
                        f"its events carry no {name}")
    return warnings


# ---------------------------------------------------------------------------------------
# Snapshots and reference frames
# ---------------------------------------------------------------------------------------
def ingest_snapshots(case: Case, sources: Iterable[str | Path], progress: Progress | None = None,
                     one_pass: OnePass | None = None) -> IngestStats:
    """Record every served image in the snapshot archives under its snapshot key."""
    return _ingest_archives(case, sources, "snapshots", "snapshot", progress, one_pass)


def ingest_references(case: Case, sources: Iterable[str | Path], progress: Progress | None = None,
                      one_pass: OnePass | None = None) -> IngestStats:
    """Record reference frames: images known to come from a device (`<device_id>/x.jpg`)."""
    return _ingest_archives(case, sources, "references", "reference", progress, one_pass)


def _ingest_archives(case: Case, sources: Iterable[str | Path], kind: str, role: str, progress: Progress | None,
                     one_pass: OnePass | None = None) -> IngestStats:
    total = IngestStats()
    sources, remote = _split_object_urls(sources)
    for url in remote:  # object storage (issue 14): a prefix of loose images and/or archives
        from .objectinputs import ingest_prefix
        total.add(ingest_prefix(case, url, kind, role, progress, one_pass, stats=IngestStats(files=1),
                                read_files=lambda _kind, files: _ingest_archives(case, files, kind, role, progress, one_pass)))
    paths, unread = _archive_sources(sources, f"{role} archive", case.path)
    for folder, names in unread:
        _note_once(case, "file_not_read", str(folder),
                   f"{folder}: holds archives, so only they were read; {len(names)} other file(s) beside them were "
                   f"not (e.g. {', '.join(names[:3])}); give them as an input of their own")
    for path in paths:
        total.add(_guarded(case, kind, path,
                           lambda input_id, p=path: _load_frames(case, p, input_id, role, progress, one_pass)))
    return total


def _split_object_urls(sources: Iterable[str | Path]) -> tuple[list[str | Path], list[str]]:
    """Local paths, and object-storage URLs (s3://, gs://, az://, any fsspec URL)."""
    from .objectstore import is_object_url
    local, remote = [], []
    for src in sources:
        (remote if isinstance(src, str) and is_object_url(src) else local).append(src)
    return local, remote


def _note_once(case: Case, kind: str, path: str, message: str) -> None:
    """A problem that belongs to no input: recorded once, so reruns give the same report."""
    if not case.count("problems", "kind = ? and message = ?", [kind, message]):
        case.add_problem("ingest", kind, message, path=path)


def _archive_sources(sources: Iterable[str | Path], what: str,
                     case_path: Path | None = None) -> tuple[list[Path], list[tuple[Path, list[str]]]]:
    """Archives are files; a folder is an archive itself unless it holds archives. Also returns,
    per folder of archives, the other files in it, which are not read and must be said so."""
    paths: list[Path] = []
    unread: list[tuple[Path, list[str]]] = []
    for src in sources:
        path = Path(src)
        if not path.exists():
            raise InputError(f"{path}: {what} not found")
        if path.is_dir():
            inner = sorted(p for p in path.iterdir() if p.is_file() and _looks_like_archive(p))
            if inner:
                paths.extend(inner)
                others = [name for name, file, _ in archives.walk_dir(path, case_path)
                          if file not in inner and not any(part.startswith(".") for part in PurePosixPath(name).parts)]
                if others:
                    unread.append((path, others))
                continue
            if not archives.walk_dir(path, case_path):
                raise InputError(f"{path}: {what} folder is empty")
        paths.append(path)
    return paths, unread


def _looks_like_archive(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith((".tar", ".tar.gz", ".tgz", ".tar.zst", ".tar.zstd", ".zip"))


class OnePass:
    """Fingerprint snapshot and reference members in the pass that ingests them (triage).

    The main process decompresses, hashes members for provenance and writes rows while the
    pool's workers fingerprint the batches already read, so each archive is read once and
    every core is busy. Without one, ingest records frames only (`camleak ingest snapshots`).
    """

    def __init__(self, pool: HashPool):
        self.pool = pool
        self.signature = pool.params.signature()
        self.hashed = 0  # members fingerprinted in this pass
        self.resumed = 0  # members whose fingerprint a killed run had already staged

    def as_dict(self) -> dict[str, int]:
        return {"fingerprinted": self.hashed, "resumed": self.resumed}


# Every fingerprint column but the key and the parameters: read from the schema, so a column
# added to fingerprints is staged and moved too.
_FP_COLUMNS = tuple(c for c in SCHEMA["fingerprints"][0] if c not in ("frame_id", "params"))


class _Stager:
    """One archive's fingerprints, staged by member as the pool returns them, committed a
    batch at a time: a killed run leaves them for the rerun, which hashes only the rest."""

    def __init__(self, case: Case, input_id: int, one_pass: OnePass):
        self.case, self.one_pass = case, one_pass
        kind, digest = case.db.execute("select kind, sha256 from inputs where id = ?", [input_id]).fetchone()
        self.source = f"{kind}:{digest}"
        with case.db.conn:
            case.db.execute("delete from staged_fingerprints where source = ? and params != ?",
                            [self.source, one_pass.signature])
        self.done = dict(case.db.execute("select member, sha256 from staged_fingerprints where source = ?",
                                         [self.source]).fetchall())
        self.batch: list[tuple[str, bytes]] = []
        self.shas: list[str] = []
        self.batch_bytes = 0
        self.max_bytes = getattr(one_pass.pool, "batch_bytes", None)  # a Dask task is sized by bytes too
        for table in ("fingerprints", "staged_fingerprints"):  # case files from before a column was added
            columns = case.table(table).columns_dict
            for name in _FP_COLUMNS:
                if name not in columns:
                    case.table(table).add_column(name, SCHEMA_FP[name])

    def add(self, name: str, sha256: str, data: bytes) -> None:
        if self.done.get(name) == sha256:
            self.one_pass.resumed += 1
            return
        self.batch.append((name, data))
        self.shas.append(sha256)
        self.batch_bytes += len(data)
        if len(self.batch) >= self.one_pass.pool.batch_size or (self.max_bytes and self.batch_bytes >= self.max_bytes):
            self._submit()

    def _submit(self) -> None:
        batch, shas = self.batch, self.shas
        self.batch, self.shas, self.batch_bytes = [], [], 0
        self._write(self.one_pass.pool.submit(batch, shas))

    def _write(self, finished: list[tuple[list[str], list[dict[str, Any]]]]) -> None:
        values = []  # every batch finished meanwhile, in one transaction
        for shas, rows in finished:
            values += [(self.source, row["frame_id"], sha, self.one_pass.signature, *(row[c] for c in _FP_COLUMNS))
                       for sha, row in zip(shas, rows)]
        if values:
            with self.case.db.conn:
                self.case.db.conn.executemany(
                    f"insert or replace into staged_fingerprints (source, member, sha256, params, {', '.join(_FP_COLUMNS)}) "
                    f"values ({', '.join('?' * (4 + len(_FP_COLUMNS)))})", values)
            self.one_pass.hashed += len(values)

    def finish(self) -> None:
        """Wait for every batch of this archive (it is complete only with all of them)."""
        self._submit()
        self._write(self.one_pass.pool.drain())

    def move(self, input_id: int, after_rowid: int) -> None:
        """Inside the caller's transaction: the staged fingerprints of the frames that were kept
        become theirs (in frame order), and the staging goes. The archive's frames are the rows
        past `after_rowid` (a range, so the cost is the archive's, not the case's)."""
        self.case.db.execute(
            f"insert or replace into fingerprints (frame_id, {', '.join(_FP_COLUMNS)}, params) "
            f"select f.frame_id, {', '.join('s.' + c for c in _FP_COLUMNS)}, s.params from frames f "
            "join staged_fingerprints s on s.source = ? and s.member = f.member and s.sha256 = f.sha256 "
            "where f.rowid > ? and f.input_id = ? and s.params = ? order by f.rowid",
            [self.source, after_rowid, input_id, self.one_pass.signature])
        self.case.db.execute("delete from staged_fingerprints where source = ?", [self.source])

    def discard(self) -> None:
        """An archive refused as a whole: its staging would never be used."""
        with self.case.db.conn:
            self.case.db.execute("delete from staged_fingerprints where source = ?", [self.source])


SCHEMA_FP = SCHEMA["fingerprints"][0]
_FRAME_COLUMNS = ("frame_id", "role", "snapshot", "ref_device", "input_id", "member", "size", "sha256")
_LOOKUP = 500  # frame ids per query for keys seen in earlier inputs


def _load_frames(case: Case, path: Path, input_id: int, role: str, progress: Progress | None,
                 one_pass: OnePass | None = None) -> tuple[int, int, int]:
    """Read the archive once: record every member (and, in one pass, fingerprint it); frame
    ids are decided at the end, where a manifest anywhere in the archive is known."""
    manifest: dict[str, dict] = {}
    pending: list[tuple[str, int, str]] = []  # (member, size, sha256): per-frame rows, no bytes
    skipped = 0
    stager = _Stager(case, input_id, one_pass) if one_pass is not None else None

    def problem(kind: str, message: str, member: str | None) -> None:
        case.add_problem("ingest", kind, message, input_id=input_id, path=str(path), member=member or None)

    try:
        for member in archives.iter_members(path, exclude=case.path):
            if member.skipped:
                skipped += 1
                where = f"{path}!{member.name}" if member.name else str(path)
                problem(member.problem, f"{where}: {member.reason}, skipped", member.name)
                continue
            unsafe = archives.unsafe_path(member.name)
            if unsafe:
                problem("unsafe_member_path", f"{path}!{member.name}: {unsafe}; read in memory only, never extracted", member.name)
            if archives.is_manifest(member.name):
                rows, bad = archives.parse_manifest(member.data, f"{path}!{member.name}")
                manifest.update(rows)
                for line, message in bad:
                    skipped += 1
                    case.add_problem("ingest", "malformed_manifest_line", message, input_id=input_id,
                                     path=str(path), member=member.name, line=line)
                continue
            try:
                data = member.data
            except OSError as exc:
                skipped += 1
                problem("unreadable_member", f"{path}!{member.name}: unreadable ({exc}), skipped", member.name)
                continue
            reason = _not_an_image(data)
            if reason:
                if PurePosixPath(member.name).suffix.lower() in archives.IMAGE_SUFFIXES:
                    # Named like an image: keep it as a frame, so the fingerprint stage records it as
                    # undecodable and the deliveries of its key are reported as unattributed, with why.
                    problem("not_an_image", f"{path}!{member.name}: {reason}; kept as an undecodable frame", member.name)
                else:
                    skipped += 1
                    problem("not_an_image", f"{path}!{member.name}: {reason}, skipped", member.name)
                    continue
            digest = hashlib.sha256(data).hexdigest()
            pending.append((member.name, len(data), digest))
            if stager is not None:
                stager.add(member.name, digest, data)
            del data, member
            if progress:
                progress(1)
        if stager is not None:
            stager.finish()
        if not pending and skipped == 0:
            raise InputError(f"{path}: archive holds no files")
    except InputError:
        if stager is not None:
            stager.discard()
        raise
    items = duplicates = 0
    rows: list[tuple] = []
    seen: dict[str, str] = {}  # frame id -> sha256, within this archive
    for start in range(0, len(pending), _LOOKUP):
        chunk = []
        for name, size, digest in pending[start:start + _LOOKUP]:
            row = archives.manifest_lookup(manifest, name) if manifest else None
            if role == "snapshot":
                key = str(row["snapshot"]) if row and row.get("snapshot") else archives.member_key(name)
                if not key.strip():
                    skipped += 1
                    case.add_problem("ingest", "member_without_key", f"{path}!{name}: no file name to use as a "
                                     "snapshot key, skipped", input_id=input_id, path=str(path), member=name)
                    continue
                frame_id, ref_device, snapshot = f"s:{key}", None, key
            else:
                device = (row or {}).get("device_id") or _parent_folder(name)
                if not device:
                    skipped += 1
                    case.add_problem("ingest", "reference_without_device",
                                     f"{path}!{name}: reference frame with no device folder or manifest entry",
                                     input_id=input_id, path=str(path), member=name)
                    continue
                frame_id, ref_device, snapshot = f"r:{device}:{digest[:16]}", str(device), None
            chunk.append((frame_id, role, snapshot, ref_device, input_id, name, size, digest))
        earlier = _earlier_frames(case, {r[0] for r in chunk if r[0] not in seen})
        for record in chunk:
            frame_id, name, digest = record[0], record[5], record[7]
            # The same key seen earlier in this archive, or in an input ingested before it.
            first = (seen[frame_id], "this archive") if frame_id in seen else earlier.get(frame_id)
            if first is not None:
                if first[0] == digest:
                    duplicates += 1
                else:
                    skipped += 1
                    case.add_problem("ingest", "duplicate_snapshot_key",
                                     f"{path}!{name}: {frame_id[2:]} already came from {first[1]} with a "
                                     "different image; keeping the first", input_id=input_id, path=str(path), member=name)
                continue
            seen[frame_id] = digest
            rows.append(record)
            items += 1
    del pending, seen
    # One transaction: the frames, their fingerprints and the input's completion land together.
    with case.db.conn:
        last_rowid = case.db.execute("select coalesce(max(rowid), 0) from frames").fetchone()[0]
        for start in range(0, len(rows), BATCH):
            case.db.conn.executemany(
                f"insert into frames ({', '.join(_FRAME_COLUMNS)}) values ({', '.join('?' * len(_FRAME_COLUMNS))})",
                rows[start:start + BATCH])
        if stager is not None:
            stager.move(input_id, last_rowid)
        case.db.execute("update inputs set items = ?, skipped = ?, status = 'complete' where id = ?",
                        [items, skipped, input_id])
    return items, duplicates, skipped


def _earlier_frames(case: Case, frame_ids: set[str]) -> dict[str, tuple[str, str]]:
    """frame id -> (sha256, 'input N') for the ids already in the case from earlier inputs."""
    found: dict[str, tuple[str, str]] = {}
    ids = sorted(frame_ids)
    for start in range(0, len(ids), _LOOKUP):
        part = ids[start:start + _LOOKUP]
        for frame_id, digest, earlier_input in case.db.execute(
                f"select frame_id, sha256, input_id from frames where frame_id in ({', '.join('?' * len(part))})", part):
            found[frame_id] = (digest, f"input {earlier_input}")
    return found


def _not_an_image(data: bytes) -> str | None:
    """Why a member's bytes are not an image, or None when its magic bytes say it is one."""
    if not data:
        return "empty file"
    if archives.image_kind(data) is not None:
        return None
    nested = archives.archive_magic(data)
    if nested:
        return (f"an archive ({nested}) inside the archive; nested archives are not opened: unpack it and give "
                "it as an input of its own")
    return "not an image"


def _parent_folder(name: str) -> str | None:
    parts = PurePosixPath(name).parts
    return parts[-2] if len(parts) >= 2 else None
