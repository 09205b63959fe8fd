"""Read images straight out of snapshot archives and folders, without unpacking to disk.

Tar archives are read as streams (`r|*`), so a .tar.gz or .tar.zst of any size is read
once, front to back; zip archives are read member by member from their central directory.
"""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator

import zstandard

from .errors import InputError
from .sources import compression_of

MANIFEST_NAME = "manifest.jsonl"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


@dataclass
class Member:
    """One file inside an archive (or folder): its name relative to the root and its bytes."""

    name: str
    data: bytes


def archive_kind(path: Path) -> str:
    """'dir', 'zip' or 'tar'; anything else is an input error naming the file."""
    if path.is_dir():
        return "dir"
    if zipfile.is_zipfile(path):
        return "zip"
    compression = compression_of(path)
    if compression in ("gzip", "zstd"):
        return "tar"
    try:
        if tarfile.is_tarfile(path):
            return "tar"
    except OSError:
        pass
    raise InputError(
        f"{path}: not a snapshot archive (expected .tar, .tar.gz, .tgz, .tar.zst, .zip or a folder)"
    )


def iter_members(path: Path) -> Iterator[Member]:
    """Every regular file in the archive, in archive order (folders: sorted)."""
    kind = archive_kind(path)
    if kind == "dir":
        yield from _iter_dir(path)
    elif kind == "zip":
        yield from _iter_zip(path)
    else:
        yield from _iter_tar(path)


def _iter_dir(root: Path) -> Iterator[Member]:
    for file in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        yield Member(file.relative_to(root).as_posix(), file.read_bytes())


def _iter_zip(path: Path) -> Iterator[Member]:
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.is_dir():
                    continue
                with archive.open(info) as fh:
                    yield Member(info.filename, fh.read())
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise InputError(f"{path}: unreadable zip archive ({exc})") from exc


def _iter_tar(path: Path) -> Iterator[Member]:
    raw = open(path, "rb")
    try:
        if compression_of(path) == "zstd":
            stream = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
            archive = tarfile.open(fileobj=stream, mode="r|")
        else:
            archive = tarfile.open(fileobj=raw, mode="r|*")
        with archive:
            for info in archive:
                if not info.isfile():
                    continue
                fh = archive.extractfile(info)
                if fh is None:
                    continue
                yield Member(info.name, fh.read())
    except (tarfile.TarError, OSError, EOFError, zstandard.ZstdError) as exc:
        raise InputError(f"{path}: unreadable tar archive ({exc})") from exc
    finally:
        raw.close()


def image_kind(data: bytes) -> str | None:
    """The image format by magic bytes, or None for anything that is not an image."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:2] == b"BM":
        return "bmp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    return None


def is_manifest(name: str) -> bool:
    return PurePosixPath(name).name == MANIFEST_NAME


def parse_manifest(data: bytes, source: str) -> tuple[dict[str, dict], list[tuple[int, str]]]:
    """Map member path -> manifest row; malformed rows come back as (line, reason)."""
    rows: dict[str, dict] = {}
    bad: list[tuple[int, str]] = []
    for number, line in enumerate(io.BytesIO(data), start=1):
        text = line.strip()
        if not text:
            continue
        try:
            row = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            bad.append((number, f"{source}: manifest line {number} is not JSON ({exc})"))
            continue
        if not isinstance(row, dict) or not isinstance(row.get("path"), str):
            bad.append((number, f"{source}: manifest line {number} has no 'path'"))
            continue
        rows[_normalise(row["path"])] = row
    return rows, bad


def _normalise(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return PurePosixPath(name).as_posix()


def member_key(name: str) -> str:
    """A member's snapshot key when no manifest names it: the file name without extension."""
    return PurePosixPath(name).stem


def manifest_lookup(manifest: dict[str, dict], name: str) -> dict | None:
    """The manifest row for a member, matching paths with or without the archive's top folder."""
    norm = _normalise(name)
    if norm in manifest:
        return manifest[norm]
    parts = PurePosixPath(norm).parts
    for start in range(1, len(parts)):
        candidate = PurePosixPath(*parts[start:]).as_posix()
        if candidate in manifest:
            return manifest[candidate]
    return None
