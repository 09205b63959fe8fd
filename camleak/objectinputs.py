"""Ingest object-storage prefixes into the case: listed page by page, read once, resumable.

One `inputs` row stands for a prefix (its path is the URL without credentials, its identity a
digest of that). Table `objects` holds every listed object with its provenance (bucket, key,
ETag, version, size, and the sha256 of what was read) and its state: `listed` when its
listing page was committed, `done` when its frame (and, in triage, its fingerprint) was
written in the same transaction. A rerun lists on after the cursor and reads only what is
still `listed`; a prefix whose input is complete is not contacted again.

Images are frames keyed as archive members are (the object's name without extension; a
reference's device is its parent folder). Archives found in a snapshot prefix, and every
object of a log prefix, are downloaded to the case's evidence folder and ingested as files.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path, PurePosixPath
from typing import Any, Callable

from . import objectstore
from .casefile import Case, utcnow
from .errors import InputError

Progress = Callable[[int], None]

OBJECTS_SCHEMA = {
    "id": int, "input_id": int, "bucket": str, "key": str, "etag": str, "version": str, "size": int,
    "sha256": str, "frame_id": str, "kind": str, "status": str, "detail": str, "file_input_id": int,
}
LISTINGS_SCHEMA = {"input_id": int, "source": str, "cursor": str, "pages": int, "objects": int, "status": str}


def ensure_tables(case: Case) -> None:
    db = case.db
    if "objects" not in db.table_names():
        db["objects"].create(OBJECTS_SCHEMA, pk="id")
        db["objects"].create_index(["input_id", "key"], unique=True)
        db["objects"].create_index(["input_id", "status"])
        db["objects"].create_index(["input_id", "frame_id"])
    if "listings" not in db.table_names():
        db["listings"].create(LISTINGS_SCHEMA, pk="input_id")


def ingest_prefix(case: Case, url: str, kind: str, role: str, progress: Progress | None = None,
                  one_pass: Any = None, field_map: dict | None = None, log_format: str = "auto", *,
                  stats: Any, read_files: Callable[..., Any]):
    """Ingest one object URL (a prefix, a glob or one object) as snapshots, references or logs.

    `stats` (an `ingest.IngestStats`) and `read_files` (how `ingest` reads a downloaded log or
    archive file) come from the ingest stage that calls this: this module sits below it."""
    location = objectstore.parse(url)
    objectstore.filesystem(location.protocol, location.label)  # a missing extra fails here, exit 1
    ensure_tables(case)
    digest = hashlib.sha256(f"object-source\0{location.label}".encode()).hexdigest()
    row = case.db.execute("select id, status from inputs where kind = ? and sha256 = ?", [kind, digest]).fetchone()
    if row and row[1] == "complete":
        return stats  # read nothing again
    if row:
        input_id = row[0]
    else:
        table = case.db["inputs"]
        table.insert({"kind": kind, "path": location.label, "size": 0, "sha256": digest,
                      "ingested_at": utcnow(), "status": "partial", "items": 0, "skipped": 0})
        input_id = table.last_pk
        case.db["listings"].insert({"input_id": input_id, "source": location.label, "cursor": None, "pages": 0,
                                    "objects": 0, "status": "listing"})
        case.db.conn.commit()
    stats.new_files = 1
    worker = _Ingest(case, location, input_id, kind, role, progress, one_pass, field_map or {}, log_format)
    worker.read_files = read_files
    worker.run()
    if not case.db.execute("select count(*) from objects where input_id = ?", [input_id]).fetchone()[0]:
        with case.db.conn:
            case.db.execute("delete from listings where input_id = ?", [input_id])
            case.db.execute("delete from inputs where id = ?", [input_id])
        raise InputError(f"{location.label}: no objects there (an empty prefix, a wrong bucket path or a glob "
                         "that matched nothing)")
    items, skipped = case.db.execute(
        "select count(*) filter (where status = 'done' and (kind = 'log' or frame_id is not null "
        "and kind in ('image', 'undecodable') and detail is null)), "
        "count(*) filter (where status = 'skipped') from objects where input_id = ?", [input_id]).fetchone()
    size = case.db.execute("select coalesce(sum(size), 0) from objects where input_id = ?", [input_id]).fetchone()[0]
    with case.db.conn:
        case.db.execute("update inputs set items = ?, skipped = ?, size = ?, status = 'complete' where id = ?",
                        [items, skipped, size, input_id])
    stats.items, stats.duplicates, stats.skipped = items, worker.duplicates, skipped
    return stats


class _Ingest:
    def __init__(self, case: Case, location: objectstore.Location, input_id: int, kind: str, role: str,
                 progress: Progress | None, one_pass: Any, field_map: dict, log_format: str = "auto"):
        self.case, self.location, self.input_id, self.kind, self.role = case, location, input_id, kind, role
        self.progress, self.one_pass, self.field_map = progress, one_pass, field_map
        self.log_format = log_format
        self.duplicates = 0
        self.submitted_upto = 0  # object ids up to this one were handed to the reader
        self.reader = _reader(location, one_pass)

    # -- listing ------------------------------------------------------------------------
    def run(self) -> None:
        listing = self.case.db.execute("select cursor, status from listings where input_id = ?",
                                       [self.input_id]).fetchone()
        cursor, status = listing if listing else (None, "listing")
        if self.role != "log":
            self._process_listed()  # a killed run's listed objects first
        if status != "listed":
            for page in objectstore.pages(self.location, cursor):
                self._commit_page(page)
                if self.role != "log":
                    self._process_listed()
            with self.case.db.conn:
                self.case.db.execute("update listings set status = 'listed' where input_id = ?", [self.input_id])
        if self.role != "log":
            self._process_listed()
            self._finish_reader()
        self._files()

    def _commit_page(self, page: list[objectstore.ObjectInfo]) -> None:
        rows = []
        claimed: dict[str, str] = {}
        keys = [info.key for info in page]
        have = set()
        for start in range(0, len(keys), 500):
            part = keys[start:start + 500]
            have.update(r[0] for r in self.case.db.execute(
                f"select key from objects where input_id = ? and key in ({', '.join('?' * len(part))})",
                [self.input_id, *part]))
        page = [info for info in page if info.key not in have]  # a resumed listing's overlap
        if not page:
            return
        planned = [(info, self._planned_frame(info.key)) for info in page]
        ids = sorted({f for _, f in planned if f})
        taken = set()
        for start in range(0, len(ids), 500):
            part = ids[start:start + 500]
            taken.update(r[0] for r in self.case.db.execute(
                f"select frame_id from objects where input_id = ? and frame_id in ({', '.join('?' * len(part))})",
                [self.input_id, *part]))
        for info, frame_id in planned:
            status, detail = "listed", None
            if frame_id and (frame_id in taken or frame_id in claimed):
                first = claimed.get(frame_id) or "an object listed before it"
                status, detail = "skipped", f"duplicate snapshot key {frame_id[2:]} (first: {first})"
                frame_id = None
            elif frame_id:
                claimed[frame_id] = info.key
            rows.append({"input_id": self.input_id, "bucket": self.location.bucket, "key": info.key, "etag": info.etag,
                         "version": info.version, "size": info.size, "sha256": None, "frame_id": frame_id,
                         "kind": None, "status": status, "detail": detail, "file_input_id": None})
        with self.case.db.conn:
            self.case.db["objects"].insert_all(rows, ignore=True)
            for row in rows:
                if row["status"] == "skipped":
                    self.case.add_problem("ingest", "duplicate_snapshot_key",
                                          f"{self._where(row['key'])}: {row['detail']}; keeping the first",
                                          input_id=self.input_id, path=self.location.label, member=row["key"])
            self.case.db.execute("update listings set cursor = ?, pages = pages + 1, objects = objects + ? "
                                 "where input_id = ?", [page[-1].key, len(page), self.input_id])

    def _planned_frame(self, key: str) -> str | None:
        """Snapshot frames are claimed at listing (the first listed key wins, deterministically);
        reference frame ids need the content, so they are decided when read."""
        if self.role != "snapshot":
            return None
        stem = objectstore.snapshot_key(key)
        return f"s:{stem}" if stem.strip() else None

    def _where(self, key: str) -> str:
        return f"{self.location.protocol}://{self.location.path(key)}"

    # -- reading ------------------------------------------------------------------------
    def _process_listed(self) -> None:
        """Submit every listed object not yet submitted in this run (results may still be in
        flight: they are applied when they come back)."""
        last = self.submitted_upto
        most, most_bytes = self.reader.task_objects, self.reader.task_bytes
        while True:
            rows = self.case.db.execute(
                "select id, key, size from objects where input_id = ? and status = 'listed' and id > ? order by id "
                "limit ?", [self.input_id, last, most * 4]).fetchall()
            if not rows:
                return
            last = self.submitted_upto = rows[-1][0]
            batch: list[tuple[str, str, str]] = []
            size = 0
            for oid, key, listed_size in rows:  # a task: up to `most` objects or `most_bytes` as listed
                batch.append((str(oid), self.location.protocol, self.location.path(key)))
                size += listed_size or 0
                if len(batch) >= most or (most_bytes and size >= most_bytes):
                    self._apply(self.reader.submit(batch))
                    batch, size = [], 0
            if batch:
                self._apply(self.reader.submit(batch))

    def _finish_reader(self) -> None:
        self._apply(self.reader.drain())

    def _apply(self, results: list[dict[str, Any]]) -> None:
        if not results:
            return
        from .casefile import SCHEMA
        fp_columns = tuple(c for c in SCHEMA["fingerprints"][0] if c not in ("frame_id", "params"))
        ids = [int(r["tag"]) for r in results]
        objects = {row[0]: row for row in self.case.db.execute(
            f"select id, key, frame_id, size from objects where id in ({', '.join('?' * len(ids))})", ids)}
        frames, fingerprints, updates = [], [], []
        batch_ids: set[str] = set()  # frame ids of `frames`
        signature = self.one_pass.signature if self.one_pass is not None else None
        for result in results:
            oid = int(result["tag"])
            _, key, frame_id, listed_size = objects[oid]
            where = self._where(key)
            if "error" in result:
                if result.get("gone"):
                    updates.append(("skipped", None, None, "gone before it was read", None, oid))
                    self.case.add_problem("ingest", "object_gone", f"{where}: listed but gone when read, skipped",
                                          input_id=self.input_id, path=self.location.label, member=key)
                    continue
                self.case.db.conn.commit()
                raise InputError(f"{where}: could not be read ({result['error']}); run the same command again to "
                                 "resume")
            kind, sha = result["kind"], result["sha256"]
            if kind == "archive" and self.role in ("snapshot", "reference"):
                updates.append(("archive", sha, None, result["reason"], "archive", oid))
                continue
            if kind == "other" or (kind == "archive"):
                updates.append(("skipped", sha, None, result["reason"], kind, oid))
                self.case.add_problem("ingest", "not_an_image", f"{where}: {result['reason']}, skipped",
                                      input_id=self.input_id, path=self.location.label, member=key)
                continue
            if kind == "undecodable":
                self.case.add_problem("ingest", "not_an_image", f"{where}: {result['reason']}; kept as an undecodable "
                                      "frame", input_id=self.input_id, path=self.location.label, member=key)
            if self.role == "reference":
                device = _parent_folder(_relative(key, self.location.prefix))
                if not device:
                    updates.append(("skipped", sha, None, "no device folder", kind, oid))
                    self.case.add_problem("ingest", "reference_without_device",
                                          f"{where}: reference frame with no device folder below the prefix",
                                          input_id=self.input_id, path=self.location.label, member=key)
                    continue
                frame_id, snapshot, ref_device = f"r:{device}:{sha[:16]}", None, device
            else:
                snapshot, ref_device = frame_id[2:], None
            earlier = self.case.db.execute("select sha256, input_id from frames where frame_id = ?", [frame_id]).fetchone()
            if earlier is not None or frame_id in batch_ids:
                same = earlier is None or earlier[0] == sha
                if same:
                    self.duplicates += 1
                    updates.append(("done", sha, None, "duplicate of a frame already in the case", kind, oid))
                else:
                    updates.append(("skipped", sha, None, f"key already came from input {earlier[1]}", kind, oid))
                    self.case.add_problem("ingest", "duplicate_snapshot_key",
                                          f"{where}: {frame_id[2:]} already came from input {earlier[1]} with a "
                                          "different image; keeping the first", input_id=self.input_id,
                                          path=self.location.label, member=key)
                continue
            frames.append((frame_id, self.role, snapshot, ref_device, self.input_id, key, result["size"], sha))
            batch_ids.add(frame_id)
            if result.get("fingerprint") is not None and signature is not None:
                row = dict(result["fingerprint"], frame_id=frame_id, params=signature)
                fingerprints.append(row)
            updates.append(("done", sha, frame_id, None, kind, oid))
        with self.case.db.conn:
            self.case.db.conn.executemany(
                "insert into frames (frame_id, role, snapshot, ref_device, input_id, member, size, sha256) "
                "values (?, ?, ?, ?, ?, ?, ?, ?)", frames)
            if fingerprints:
                columns = ["frame_id", *fp_columns, "params"]
                self.case.db.conn.executemany(
                    f"insert or replace into fingerprints ({', '.join(columns)}) values ({', '.join('?' * len(columns))})",
                    [tuple(row.get(c) for c in columns) for row in fingerprints])
            self.case.db.conn.executemany(
                "update objects set status = ?, sha256 = ?, frame_id = coalesce(?, frame_id), detail = ?, kind = ? "
                "where id = ?", updates)
        if self.one_pass is not None:
            self.one_pass.hashed += len(fingerprints)
        if self.progress:
            self.progress(len(results))

    # -- archives and logs: downloaded and ingested as files -----------------------------
    def _files(self) -> None:
        from .remote.download import evidence_dir
        if self.role == "log":
            rows = self.case.db.execute("select id, key, etag from objects where input_id = ? and status = 'listed' "
                                        "order by id", [self.input_id]).fetchall()
        else:
            rows = self.case.db.execute("select id, key, etag from objects where input_id = ? and status = 'archive' "
                                        "and file_input_id is null order by id", [self.input_id]).fetchall()
        if not rows:
            return
        folder = evidence_dir(self.case.path) / "objects"
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        for oid, key, etag in rows:
            name = PurePosixPath(key).name or "object"
            target = folder / f"{hashlib.sha256(self._where(key).encode()).hexdigest()[:16]}-{name}"
            if not target.exists():
                objectstore.download(self.location.protocol, self.location.path(key), str(target), self.location.label)
            from .casefile import sha256_file
            sha = sha256_file(target)
            if self.role == "log":
                self.read_files("logs", [target])
                file_kind = "logs"
            else:
                self.read_files(self.kind, [target])
                file_kind = self.kind
            file_input = self.case.db.execute("select id from inputs where kind = ? and sha256 = ?",
                                              [file_kind, sha]).fetchone()
            with self.case.db.conn:
                self.case.db.execute("update objects set status = 'done', sha256 = ?, kind = coalesce(kind, ?), "
                                     "file_input_id = ?, size = ? where id = ?",
                                     [sha, "log" if self.role == "log" else "archive",
                                      file_input[0] if file_input else None, os.path.getsize(target), oid])


def _relative(key: str, prefix: str) -> str:
    """The key below the prefix's folder (`refs/` + `cam-1/0001.jpg`)."""
    folder = prefix.rsplit("/", 1)[0] + "/" if "/" in prefix else ""
    return key[len(folder):] if key.startswith(folder) else key


def _parent_folder(name: str) -> str | None:
    parts = PurePosixPath(name).parts
    return parts[-2] if len(parts) >= 2 else None


# ---------------------------------------------------------------------------------------
# Readers: where an object's bytes are read and hashed
# ---------------------------------------------------------------------------------------
def _reader(location: objectstore.Location, one_pass: Any):
    pool = getattr(one_pass, "pool", None)
    if pool is not None and hasattr(pool, "submit_objects"):
        return _RemoteReader(pool)
    return LocalReader(pool)


class _RemoteReader:
    """Workers read and fingerprint the objects themselves (Dask): only keys go out."""

    def __init__(self, pool: Any):
        self.pool = pool
        self.task_objects = getattr(pool, "task_objects", objectstore.READ_BATCH)
        self.task_bytes = getattr(pool, "task_bytes", None)

    def submit(self, tasks: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
        return self.pool.submit_objects(tasks)

    def drain(self) -> list[dict[str, Any]]:
        return self.pool.drain_objects()


class LocalReader:
    """This process reads a batch of objects concurrently; the local HashPool (if any)
    fingerprints the images while the next batch is read."""

    task_objects = objectstore.READ_BATCH
    task_bytes = None

    def __init__(self, pool: Any = None):
        self.pool = pool

    def submit(self, tasks: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
        if not tasks:
            return []
        protocol = tasks[0][1]
        results, to_hash = objectstore.read_identified(protocol, [(tag, path) for tag, _, path in tasks])
        if self.pool is None or not to_hash:
            return results
        return self._collect(self.pool.submit(to_hash, results))

    def _collect(self, finished: list[tuple[Any, list[dict]]]) -> list[dict[str, Any]]:
        out = []
        for results, rows in finished:
            by_tag = {row["frame_id"]: row for row in rows}
            for result in results:
                if result["tag"] in by_tag:
                    result["fingerprint"] = by_tag[result["tag"]]
            out.extend(results)
        return out

    def drain(self) -> list[dict[str, Any]]:
        if self.pool is None:
            return []
        return self._collect(self.pool.drain())
