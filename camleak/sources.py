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
    """A binary stream of the file's content, decompressing gzip or zstd transparently.

    Both decompressors raise EOFError when the compressed stream stops before its end, so a
    truncated export is noticed (and what decoded before the cut can be kept).
    """
    kind = compression_of(path)
    raw = open(path, "rb")
    if kind == "gzip":
        return gzip.GzipFile(fileobj=raw)  # type: ignore[return-value]
    if kind == "zstd":
        return io.BufferedReader(ZstdReader(raw))
    return raw


class ZstdReader(io.RawIOBase):
    """Zstandard frames, one after another, that raises EOFError on a frame cut short.

    zstandard's own stream_reader returns a short read without complaint when the source ends
    mid-frame, which would silently turn a truncated export into a shorter one.
    """

    def __init__(self, raw: IO[bytes], chunk: int = 1 << 16):
        self._raw = raw
        self._chunk = chunk
        self._decompressor = zstandard.ZstdDecompressor()
        self._frame = self._decompressor.decompressobj()
        self._started = False  # bytes of the current frame have been fed
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        while not self._pending:
            block = self._raw.read(self._chunk)
            if not block:
                if self._started and not self._frame.eof:
                    raise EOFError("zstd stream ended before the end of its frame")
                return 0
            self._feed(block)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    def _feed(self, block: bytes) -> None:
        while block:
            self._started = True
            try:
                self._pending += self._frame.decompress(block)
            except zstandard.ZstdError as exc:
                raise OSError(f"damaged zstd stream ({exc})") from exc
            if not self._frame.eof:
                return
            block = self._frame.unused_data
            self._frame = self._decompressor.decompressobj()
            self._started = False

    def close(self) -> None:
        self._raw.close()
        super().close()


def logical_name(path: Path) -> str:
    """The file name without compression suffixes: `x.jsonl.gz` -> `x.jsonl`."""
    name = path.name
    for suffix in (".gz", ".zst", ".zstd"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name
