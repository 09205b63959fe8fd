"""Turn the SRC arguments users give into concrete files and readable streams.

A SRC is a file or a directory of files; compression is recognised by the file's magic
bytes, not only its extension, so a renamed export still opens.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import zlib
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
                file
                for name, file, info in walk_dir(path, exclude)  # any depth, no recursion
                if info is not None
                and not any(part.startswith(".") for part in name.split("/"))
                and (stat.S_ISREG(info.st_mode) or (stat.S_ISLNK(info.st_mode) and file.is_file()))
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


def walk_dir(root: Path, exclude: Path | None = None) -> list[tuple[str, Path, os.stat_result | None]]:
    """(relative name, path, lstat) of every non-folder entry, sorted by name; no recursion (any
    depth), no links followed, the case file left out; a folder that cannot be listed has no stat."""
    found: list[tuple[str, Path, os.stat_result | None]] = []
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            found.append((folder.relative_to(root).as_posix(), folder, None))
            continue
        for entry in entries:
            path = Path(entry.path)
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(info.st_mode):
                stack.append(path)
            elif not is_case_file(path, exclude):
                found.append((path.relative_to(root).as_posix(), path, info))
    return sorted(found, key=lambda item: item[0])


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
        return io.BufferedReader(DecompressReader(raw, "zstd"))
    return raw


class DecompressReader(io.RawIOBase):
    """gzip or zstd members one after another, that notices a stream cut short or damaged.

    zstandard's stream_reader returns a short read without complaint when its source ends
    mid-frame, and a buffered reader loses the bytes it had gathered when the decompressor raises
    part-way through a read. This reader hands out everything that decoded first; then, with
    `strict`, raises EOFError/OSError, otherwise reports end of data and keeps the cause in
    `error`, so a tar reader sees a short member and the caller can say where the stream ended.
    Output per step is bounded, so a bomb cannot balloon memory before a size check runs.
    """

    def __init__(self, raw: IO[bytes], kind: str, *, strict: bool = True):
        self._raw = raw
        self.kind = kind
        self._strict = strict
        self._chunk = 1 << 16 if kind == "gzip" else 1 << 11
        self._zstd = zstandard.ZstdDecompressor() if kind == "zstd" else None
        self._frame = self._new_frame()
        self._started = False  # bytes of the current member or frame have been fed
        self._tail = b""  # compressed bytes not yet fed
        self._out = b""
        self._pos = 0
        self.error: BaseException | None = None

    def _new_frame(self):
        if self._zstd is not None:
            return self._zstd.decompressobj()
        return zlib.decompressobj(16 + zlib.MAX_WBITS)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        while self._pos >= len(self._out):
            if self.error is not None:
                return 0
            block = self._tail or self._raw.read(self._chunk)
            self._tail = b""
            if not block:
                if self._started and not self._frame.eof:
                    return self._fail(EOFError(f"{self.kind} stream ended before its end (truncated?)"))
                return 0
            try:
                self._feed(block)
            except (zlib.error, zstandard.ZstdError) as exc:
                return self._fail(OSError(f"damaged {self.kind} stream ({exc})"))
        size = min(len(buffer), len(self._out) - self._pos)
        buffer[:size] = self._out[self._pos : self._pos + size]
        self._pos += size
        return size

    def _feed(self, block: bytes) -> None:
        if not self._started and not block.strip(b"\0"):
            return  # zero padding after the last member, as gzip itself allows
        self._started = True
        if self._zstd is None:
            self._out = self._frame.decompress(block, 1 << 22)
            self._tail = self._frame.unconsumed_tail
        else:
            self._out = self._frame.decompress(block)
        self._pos = 0
        if self._frame.eof:
            self._tail = self._frame.unused_data + self._tail
            self._frame = self._new_frame()
            self._started = False

    def _fail(self, exc: BaseException) -> int:
        self.error = exc
        if self._strict:
            raise exc
        return 0

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
