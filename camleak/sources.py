"""Turn the SRC arguments users give into concrete files and readable streams.

A SRC is a file or a directory of files; compression is recognised by the file's magic
bytes, not only its extension, so a renamed export still opens.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path
from typing import IO, Iterable

import zstandard

from .errors import InputError

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def expand(sources: Iterable[str | Path], *, what: str, exclude: Path | None = None) -> list[Path]:
    """Files named by `sources`, directories walked in sorted order, hidden files skipped.

    `exclude` is the case file: a folder holding both inputs and the case must not ingest it.
    """
    files: list[Path] = []
    for src in sources:
        path = Path(src)
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
                and not is_case_file(p, exclude)
            )
            if not found:
                raise InputError(f"{path}: {what} directory is empty")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        elif path.exists():
            raise InputError(f"{path}: {what} is neither a file nor a directory")
        else:
            raise InputError(f"{path}: {what} not found")
    return files


def is_case_file(path: Path, case_path: Path | None) -> bool:
    if case_path is None:
        return False
    base = case_path.resolve()
    target = path.resolve()
    return target == base or target.name.startswith(base.name + "-") and target.parent == base.parent


def compression_of(path: Path) -> str | None:
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return None


def open_decompressed(path: Path) -> IO[bytes]:
    """A binary stream of the file's content, decompressing gzip or zstd transparently."""
    kind = compression_of(path)
    raw = open(path, "rb")
    if kind == "gzip":
        return gzip.GzipFile(fileobj=raw)  # type: ignore[return-value]
    if kind == "zstd":
        reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        return io.BufferedReader(reader)  # type: ignore[arg-type]
    return raw


def logical_name(path: Path) -> str:
    """The file name without compression suffixes: `x.jsonl.gz` -> `x.jsonl`."""
    name = path.name
    for suffix in (".gz", ".zst", ".zstd"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name
