"""Files over HTTP(S): streamed to the evidence folder, resumed with Range, checksummed.

A transfer writes `<name>.part` plus `<name>.part.json` (the validator that lets a resume
check the file did not change: ETag or Last-Modified, sent back as If-Range). When the
server ignores the Range, the download starts over; when it is complete the file is
verified (sha256 from `#sha256=` / --sha256, or a `.sha256` sidecar) and renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit, urlunsplit

import httpx

from ..casefile import sha256_file
from ..errors import InputError
from . import DEFAULT_MAX_BYTES, net
from .spec import SourceSpec, file_name

CHUNK = 1 << 16


@dataclass
class Downloaded:
    path: Path
    sha256: str
    size: int
    retries: int
    seconds: float
    fetched: int  # bytes transferred in this run (0 when the file was already complete)


def evidence_dir(case_path: Path) -> Path:
    """The case's evidence folder, next to the case file, owner-only whatever the umask."""
    folder = case_path.with_name(case_path.name + "-evidence")
    folder.mkdir(mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)
    return folder


def local_name(spec: SourceSpec) -> str:
    """Stable per source (the redacted URL), keeping the file's own name and extension."""
    digest = hashlib.sha256(spec.label.encode()).hexdigest()[:12]
    return f"{digest}-{file_name(spec)}"


def fetch_sidecar(http: httpx.Client, spec: SourceSpec, policy: net.RetryPolicy, counter: net.Counter) -> str | None:
    """The checksum in `<url>.sha256`, or None when there is no sidecar (404/403)."""
    parts = urlsplit(spec.url)
    url = urlunsplit((parts.scheme, parts.netloc, parts.path + ".sha256", parts.query, ""))
    label = spec.label + ".sha256"

    def attempt() -> str | None:
        response = http.get(url)
        if response.status_code in (403, 404, 410):
            return None
        net.check_status(response, label)
        match = re.match(r"\s*([0-9a-fA-F]{64})\b", response.text)
        if not match:
            raise InputError(f"{label}: sidecar does not start with a sha256 hex digest")
        return match.group(1).lower()

    return net.call(policy, counter, label, attempt)


def download(
    http: httpx.Client,
    spec: SourceSpec,
    folder: Path,
    *,
    policy: net.RetryPolicy = net.RetryPolicy(),
    expected_sha256: str | None = None,
    use_sidecar: bool = True,
    max_bytes: int = DEFAULT_MAX_BYTES,
    progress: Callable[[int, int | None], None] | None = None,
    counter: net.Counter | None = None,
) -> Downloaded:
    """Fetch `spec` into `folder`; resumes a `.part` left by an earlier broken transfer."""
    counter = counter or net.Counter()
    started = time.monotonic()
    target = folder / local_name(spec)
    part = target.with_name(target.name + ".part")
    meta_path = target.with_name(target.name + ".part.json")
    label = spec.label
    expected = expected_sha256 or spec.sha256
    if expected is None and use_sidecar:
        expected = fetch_sidecar(http, spec, policy, counter)
    if target.exists():
        digest = sha256_file(target)
        if expected is None or digest == expected:
            return Downloaded(target, digest, target.stat().st_size, counter.retries, time.monotonic() - started, 0)
        target.unlink()  # a stale copy of a file that has changed upstream
    fetched = 0
    total: list[int | None] = [None]

    def attempt() -> None:
        nonlocal fetched
        have = part.stat().st_size if part.exists() else 0
        meta = _read_meta(meta_path) if have else {}
        headers = {"Accept-Encoding": "identity"}
        if have:
            headers["Range"] = f"bytes={have}-"
            if meta.get("validator"):
                headers["If-Range"] = meta["validator"]
        with http.stream("GET", spec.url, headers=headers) as response:
            if response.status_code == 416 and have:
                # Nothing left to send: the part is complete (or bigger than the file now).
                size = _range_total(response.headers.get("content-range"))
                if size == have:
                    return
                part.unlink()
                raise net.Retryable("range not satisfiable; starting over")
            net.check_status(response, label)
            if have and response.status_code != 206:
                have = 0  # the server ignored the Range (or the file changed): start over
            length = response.headers.get("content-length")
            size = _range_total(response.headers.get("content-range")) if response.status_code == 206 else (
                int(length) if length and length.isdigit() else None)
            total[0] = size
            if size is not None and size > max_bytes:
                raise InputError(f"{label}: {size} bytes is over the size cap of {max_bytes} bytes (--max-bytes)")
            validator = response.headers.get("etag") or response.headers.get("last-modified")
            _write_meta(meta_path, {"validator": validator, "size": size})
            mode = "ab" if have else "wb"
            fd = os.open(part, os.O_CREAT | os.O_WRONLY | (os.O_APPEND if have else os.O_TRUNC), 0o600)
            with os.fdopen(fd, mode) as out:
                written = have
                for chunk in response.iter_raw(CHUNK):
                    written += len(chunk)
                    if written > max_bytes:
                        out.close()
                        part.unlink()
                        raise InputError(f"{label}: more than {max_bytes} bytes, over the size cap (--max-bytes)")
                    out.write(chunk)
                    fetched += len(chunk)
                    if progress:
                        progress(len(chunk), size)
            if size is not None and written < size:
                raise net.Retryable("connection closed early")

    net.call(policy, counter, label, attempt)
    digest = sha256_file(part)
    if expected is not None and digest != expected:
        part.unlink()
        meta_path.unlink(missing_ok=True)
        raise InputError(f"{label}: sha256 {digest} does not match the expected {expected}; download discarded")
    os.replace(part, target)
    meta_path.unlink(missing_ok=True)
    return Downloaded(target, digest, target.stat().st_size, counter.retries, time.monotonic() - started, fetched)


def _range_total(content_range: str | None) -> int | None:
    match = re.match(r"bytes\s+(?:\d+-\d+|\*)/(\d+)", content_range or "")
    return int(match.group(1)) if match else None


def _read_meta(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_meta(path: Path, data: dict) -> None:
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(data, out)
