"""Object-storage inputs (`s3://bucket/prefix/`, `gs://…`, `az://…`, any fsspec URL).

A bucket of served snapshots holds millions of loose objects under a date prefix. They are
listed a page at a time and each page is committed to the case (table `objects`: bucket, key,
ETag, version, size, later sha256) with the listing's cursor, so memory is bounded by a page,
and an interrupted listing resumes after its last committed page. Each object is then read
once, decided by its content (an image is a frame, an archive or log is downloaded to the
evidence folder and ingested as a file), and marked done in the transaction that writes its
frame and fingerprint: a rerun reads only what was not done, and a finished prefix is not
contacted again.

Credentials come only from each cloud's own chain (environment, profile, instance role); an
S3-compatible endpoint from `AWS_ENDPOINT_URL`. Nothing here records or prints a credential:
the case keeps the URL with any user part or token stripped. The cloud drivers are extras
(`camleak[s3]`, `[gcs]`, `[azure]`); using one that is missing is an input error naming it.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Callable, Iterator

from .errors import InputError
from .redact import redact

# fsspec protocol -> the camleak extra that installs its driver
EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure", "abfss": "azure",
          "adl": "azure"}
_URL = re.compile(r"^(?P<scheme>[a-z][a-z0-9.-]*)://", re.IGNORECASE)
PAGE = 1000  # keys per listing page (S3's own maximum)
READ_BATCH = 32  # objects read concurrently and handed on as one batch


class MissingExtra(InputError):
    """An object URL whose driver is not installed: names the extra that brings it."""


def is_object_url(source: object) -> bool:
    """An fsspec URL other than http(s) and the log-store specs (`es+http://`…)."""
    match = _URL.match(str(source))
    return bool(match) and match["scheme"].lower() not in ("http", "https")


@dataclass(frozen=True)
class Location:
    """Where objects live: `protocol`, `bucket` and the key `prefix` within it."""

    url: str  # as given: may carry credentials, never recorded
    protocol: str
    bucket: str
    prefix: str

    @property
    def label(self) -> str:
        """The form recorded in the case and printed: no user part, no query."""
        return safe_label(self.url)

    @property
    def is_prefix(self) -> bool:
        return self.prefix == "" or self.prefix.endswith("/") or any(c in self.prefix for c in "*?[")

    def path(self, key: str) -> str:
        return f"{self.bucket}/{key}" if self.bucket else key


def safe_label(url: str) -> str:
    match = _URL.match(url)
    if not match:
        return redact(url)
    rest = url[match.end():]
    rest = rest.split("?", 1)[0].split("#", 1)[0]
    host, slash, path = rest.partition("/")
    host = host.rpartition("@")[2]  # az://account:key@container… keeps no secret
    return f"{match['scheme'].lower()}://{host}{slash}{path}"


def parse(url: str) -> Location:
    match = _URL.match(url)
    if not match:
        raise InputError(f"{url}: not an object-storage URL")
    protocol = match["scheme"].lower()
    rest = safe_label(url)[len(protocol) + 3:]
    bucket, _, prefix = rest.partition("/")
    if protocol in ("file", "local", "memory"):
        bucket, prefix = "", "/" + rest.lstrip("/") if protocol != "memory" else rest
    elif not bucket:
        raise InputError(f"{safe_label(url)}: object URL names no bucket")
    return Location(url, protocol, bucket, prefix)


def _missing(protocol: str, label: str, exc: BaseException) -> MissingExtra:
    extra = EXTRAS.get(protocol)
    if extra:
        return MissingExtra(f"{label}: reading {protocol}:// needs camleak's '{extra}' extra "
                            f"(pip install 'camleak[{extra}]'): {exc}")
    return MissingExtra(f"{label}: no fsspec driver for {protocol}:// is installed ({exc}); install fsspec and "
                        f"the driver for {protocol}")


def filesystem(protocol: str, label: str = "") -> Any:
    """One fsspec filesystem per protocol, endpoint and credential environment in a process
    (workers build their own), from the cloud's standard credential chain. S3 without
    credentials anywhere in the chain is read anonymously (public buckets, or a server that
    allows anonymous reads)."""
    environment = tuple(os.environ.get(name) for name in _CHAIN_ENV)
    return _filesystem(protocol, hashlib.sha256(repr(environment).encode()).hexdigest(), label)


# The variables the credential chains read first; a change of any gives a new filesystem.
_CHAIN_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
              "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE",
              "GOOGLE_APPLICATION_CREDENTIALS", "AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_CONNECTION_STRING")


@functools.lru_cache(maxsize=16)
def _filesystem(protocol: str, environment: str, label: str) -> Any:
    try:
        import fsspec
    except ImportError as exc:
        raise _missing(protocol, label or f"{protocol}://", exc) from exc
    if protocol in ("s3", "s3a"):
        try:
            import botocore.session
            import s3fs
        except ImportError as exc:
            raise _missing(protocol, label or f"{protocol}://", exc) from exc
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
        anon = botocore.session.Session().get_credentials() is None
        return s3fs.S3FileSystem(
            anon=anon, endpoint_url=endpoint, skip_instance_cache=True,
            config_kwargs={"retries": {"max_attempts": 3, "mode": "standard"}, "connect_timeout": 5,
                           "read_timeout": 30})
    try:
        return fsspec.filesystem(protocol)
    except (ImportError, ValueError) as exc:
        raise _missing(protocol, label or f"{protocol}://", exc) from exc


def check_available(url: str) -> None:
    """Fail early (exit 1) on a URL whose extra is missing, before anything is read."""
    location = parse(url)
    filesystem(location.protocol, location.label)


# ---------------------------------------------------------------------------------------
# Retries: a server restarting, a 503 burst, a connection reset
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Patience:
    attempts: int = 10
    backoff: float = 0.25
    max_wait: float = 8.0


PATIENCE = Patience()


def _permanent(exc: BaseException) -> bool:
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)):
        return True
    text = str(exc)
    return any(word in text for word in ("AccessDenied", "NoSuchBucket", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                                         "Forbidden", "403"))


def retrying(call: Callable[[], Any], what: str, patience: Patience | None = None) -> Any:
    """`call()` with exponential backoff on transient trouble; the last error names `what`."""
    patience = patience or PATIENCE
    for attempt in range(patience.attempts):
        try:
            return call()
        except InputError:
            raise
        except Exception as exc:  # driver errors are many and undocumented: judged by kind
            if _permanent(exc):
                raise InputError(f"{what}: {_clean(exc)}") from exc
            if attempt == patience.attempts - 1:
                raise InputError(f"{what}: failed after {patience.attempts} attempts ({_clean(exc)})") from exc
            time.sleep(min(patience.max_wait, patience.backoff * 2 ** attempt))
    raise AssertionError("unreachable")


def _clean(exc: BaseException) -> str:
    return redact(f"{type(exc).__name__}: {exc}")[:300]


# ---------------------------------------------------------------------------------------
# Listing, a page at a time
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ObjectInfo:
    key: str  # within the bucket
    size: int
    etag: str | None
    version: str | None


def pages(location: Location, after: str | None, page_size: int | None = None) -> Iterator[list[ObjectInfo]]:
    """Pages of objects below the prefix in key order, starting after key `after`.

    S3 (and S3-compatible servers) page with ListObjectsV2's StartAfter, which needs no
    server-side state, so a listing resumes from its last committed key even across a server
    restart. Other drivers are walked folder by folder (one folder's listing held at a time).
    """
    fs = filesystem(location.protocol, location.label)
    page_size = page_size or PAGE
    if any(c in location.prefix for c in "*?["):
        found = retrying(lambda: fs.glob(location.path(location.prefix), detail=True), f"{location.label}: listing")
        infos = sorted((_info(location, name, info) for name, info in found.items() if info.get("type") != "directory"),
                       key=lambda o: o.key)
        infos = [o for o in infos if after is None or o.key > after]
        for start in range(0, len(infos), page_size):
            yield infos[start:start + page_size]
        return
    if location.protocol in ("s3", "s3a"):
        yield from _s3_pages(fs, location, after, page_size)
        return
    # Folder by folder: walk order is not key order, so a resumed walk lists from the start
    # and the case drops the objects it already has (listing costs no reads).
    root = location.path(location.prefix)
    for folder, _dirs, files in fs.walk(root, detail=True):
        infos = sorted((_info(location, info.get("name", f"{folder}/{name}"), info) for name, info in files.items()),
                       key=lambda o: o.key)
        for start in range(0, len(infos), page_size):
            yield infos[start:start + page_size]


def _info(location: Location, name: str, info: dict) -> ObjectInfo:
    name = name.lstrip("/") if location.bucket else name
    key = name[len(location.bucket) + 1:] if location.bucket and name.startswith(location.bucket + "/") else name
    etag = info.get("ETag") or info.get("etag") or info.get("md5Hash")
    version = info.get("VersionId") or info.get("generation") or info.get("version_id")
    return ObjectInfo(key, int(info.get("size") or 0), str(etag).strip('"') if etag else None,
                      str(version) if version else None)


def _s3_pages(fs: Any, location: Location, after: str | None, page_size: int) -> Iterator[list[ObjectInfo]]:
    prefix = location.prefix
    while True:
        params = {"Bucket": location.bucket, "Prefix": prefix, "MaxKeys": page_size}
        if after:
            params["StartAfter"] = after
        answer = retrying(lambda: fs.call_s3("list_objects_v2", **params), f"{location.label}: listing")
        infos = [ObjectInfo(item["Key"], int(item.get("Size", 0)), str(item.get("ETag", "")).strip('"') or None, None)
                 for item in answer.get("Contents", []) if not item["Key"].endswith("/")]
        keys = [item["Key"] for item in answer.get("Contents", [])]
        if infos:
            yield infos
        if not answer.get("IsTruncated") or not keys:
            return
        after = keys[-1]


# ---------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------
def read_many(protocol: str, paths: list[str], label: str = "") -> dict[str, bytes | BaseException]:
    """The bytes of each path (read concurrently where the driver can); a path that cannot be
    read after retries maps to its error, so one lost object does not stop a batch."""
    fs = filesystem(protocol, label)
    result: dict[str, bytes | BaseException] = {}
    todo = list(paths)
    for attempt in range(PATIENCE.attempts):
        try:
            got = _cat_each(fs, protocol, todo)
        except Exception as exc:
            got = {path: exc for path in todo}
        retry = []
        for path in todo:
            value = got.get(path, got.get(path.lstrip("/")))
            if isinstance(value, BaseException) and not _permanent(value) and attempt < PATIENCE.attempts - 1:
                retry.append(path)
            else:
                result[path] = value if value is not None else FileNotFoundError(path)
        if not retry:
            break
        todo = retry
        time.sleep(min(PATIENCE.max_wait, PATIENCE.backoff * 2 ** attempt))
    return result


def _cat_each(fs: Any, protocol: str, paths: list[str]) -> dict[str, Any]:
    """Each path's bytes or its error, read concurrently on an async driver. Every path is an
    object's own key (never expanded as a glob: a key may hold `[` or `*`), and on S3 it is
    one GET: s3fs would first send a HEAD for the size, to split large objects into ranges,
    which costs a second request per snapshot (the listing gave the size already)."""
    kwargs = {"max_concurrency": 1} if protocol in ("s3", "s3a") else {}
    if getattr(fs, "async_impl", False) and len(paths) > 1:
        import asyncio

        from fsspec.asyn import sync

        async def one(path: str) -> Any:
            try:
                return await fs._cat_file(path, **kwargs)
            except Exception as exc:  # kept per object, so one lost object does not stop a batch
                return exc

        async def every() -> list[Any]:
            limit = asyncio.Semaphore(READ_CONCURRENCY)

            async def bounded(path: str) -> Any:
                async with limit:
                    return await one(path)
            return await asyncio.gather(*(bounded(p) for p in paths))

        return dict(zip(paths, sync(fs.loop, every)))
    got: dict[str, Any] = {}
    for path in paths:
        try:
            got[path] = fs.cat_file(path, **kwargs)
        except Exception as exc:
            got[path] = exc
    return got


READ_CONCURRENCY = 32  # GETs in flight per batch


def download(protocol: str, path: str, target: str, label: str) -> None:
    """One object to a local file (archives and logs: their readers want a file)."""
    fs = filesystem(protocol, label)
    partial = target + ".part"
    retrying(lambda: fs.get_file(path, partial), f"{label}: reading {path}")
    os.chmod(partial, 0o600)
    os.replace(partial, target)


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def snapshot_key(key: str) -> str:
    """An object's snapshot key: its name without extension, as for archive members."""
    return PurePosixPath(key).stem


def read_identified(protocol: str, items: list[tuple[str, str]]) -> tuple[list[dict[str, Any]], list[tuple[str, bytes]]]:
    """Read and identify objects: for each (tag, path) a result row (sha256, size, kind, reason,
    or the error), and the (tag, bytes) of those worth fingerprinting. One reading for the local
    ingest and the Dask worker alike."""
    got = read_many(protocol, [path for _, path in items])
    results: list[dict[str, Any]] = []
    images: list[tuple[str, bytes]] = []
    for tag, path in items:
        value = got.get(path)
        if isinstance(value, BaseException) or value is None:
            results.append({"tag": tag, "error": _clean(value) if value else "not read",
                            "gone": isinstance(value, FileNotFoundError)})
            continue
        kind, reason = classify(value, path)
        results.append({"tag": tag, "sha256": sha256_of(value), "size": len(value), "kind": kind,
                        "reason": reason, "fingerprint": None})
        if kind in ("image", "undecodable"):
            images.append((tag, value))
    return results, images


def classify(data: bytes, key: str) -> tuple[str, str | None]:
    """What an object is, by its content: ('image', None), ('archive', format),
    ('undecodable', why) for a non-image named like one (kept, reported as unattributed) or
    ('other', why)."""
    from . import archives
    if data and archives.image_kind(data) is not None:
        return "image", None
    nested = archives.archive_magic(data) if data else None
    if nested:
        return "archive", nested
    reason = "empty file" if not data else "not an image"
    if PurePosixPath(key).suffix.lower() in archives.IMAGE_SUFFIXES:
        return "undecodable", reason
    return "other", reason


