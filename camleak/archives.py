"""Read images straight out of snapshot archives and folders, without unpacking to disk.

Tar archives are read as streams (`r|*`), so a .tar.gz or .tar.zst of any size is read
once, front to back; zip archives are read member by member from their central directory.
"""

from __future__ import annotations

import io
import json
import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

import zstandard

from .errors import InputError
from .sources import DecompressReader, compression_of, walk_dir

MANIFEST_NAME = "manifest.jsonl"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}

MiB = 1 << 20


@dataclass(frozen=True)
class ArchiveLimits:
    """Caps that keep a hostile archive from exhausting memory, disk or time.

    Snapshots are small images: a member larger than `max_member_bytes` is skipped and counted.
    An archive whose content would expand past `max_total_bytes`, or more than `max_ratio`
    times its own size once past `ratio_floor`, is refused as a likely decompression bomb,
    before its content is decompressed.
    """

    max_member_bytes: int = 256 * MiB
    max_total_bytes: int = 64 * 1024 * MiB
    max_ratio: float = 100.0
    ratio_floor: int = 64 * MiB


DEFAULT_LIMITS = ArchiveLimits()


class Member:
    """One file inside an archive (or folder): its name relative to the root and its bytes.

    A member that is not read (a link, a device, too large, a name seen before, the point where
    a damaged archive stops) carries `problem` (a kind for the case's problems table) and
    `reason`, and no data. A folder member's bytes are read only when asked for.
    """

    __slots__ = ("name", "_data", "_load", "problem", "reason")

    def __init__(self, name: str, data: bytes | None = None, *, load: Callable[[], bytes] | None = None,
                 problem: str | None = None, reason: str | None = None):
        self.name = name
        self._data = data
        self._load = load
        self.problem = problem
        self.reason = reason

    @property
    def data(self) -> bytes:
        if self._data is None:
            self._data = self._load() if self._load is not None else b""
        return self._data

    @property
    def skipped(self) -> bool:
        return self.problem is not None

    def __repr__(self) -> str:
        return f"Member({self.name!r}, problem={self.problem!r})"


def archive_kind(path: Path) -> str:
    """'dir', 'zip' or 'tar'; anything else is an input error naming the file."""
    if path.is_dir():
        return "dir"
    with open(path, "rb") as fh:
        head = fh.read(512)
    if archive_magic(head) == "tar":
        # A POSIX tar says so in its first header. Ask this before zipfile, which looks for an
        # end-of-central-directory record near the end and finds one inside a tar member's data.
        return "tar"
    try:
        if zipfile.is_zipfile(path):
            return "zip"
    except zipfile.BadZipFile as exc:  # is_zipfile raises, not answers, on a multi-disk zip64 record
        raise InputError(f"{path}: a zip archive camleak cannot read ({exc})") from exc
    compression = compression_of(path)
    if compression in ("gzip", "zstd"):
        return "tar"
    try:
        if tarfile.is_tarfile(path):
            return "tar"
    except (OSError, EOFError, tarfile.TarError, zlib.error):
        pass
    if path.suffix.lower() == ".zip" or _has_zip_local_header(path):
        raise InputError(f"{path}: a zip archive whose central directory is missing or corrupt; "
                         "repair it (e.g. `zip -FF`) or export it again")
    raise InputError(
        f"{path}: not a snapshot archive (expected .tar, .tar.gz, .tgz, .tar.zst, .zip or a folder)"
    )


def _has_zip_local_header(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == b"PK\x03\x04"


def iter_members(path: Path, *, exclude: Path | None = None, limits: ArchiveLimits = DEFAULT_LIMITS) -> Iterator[Member]:
    """Every file in the archive, in archive order (folders: sorted).

    Names are cleaned to valid text; the second member of a name is reported, not read, so a
    name always means the same bytes. `exclude` is the case file, never read from a folder.
    """
    kind = archive_kind(path)
    if kind == "dir":
        members = _iter_dir(path, exclude, limits)
    elif kind == "zip":
        members = _iter_zip(path, limits)
    else:
        members = _iter_tar(path, limits)
    seen: set[str] = set()
    for member in members:
        if member.name in seen and not member.skipped:
            yield Member(member.name, problem="duplicate_member_name",
                         reason="a second member with the same name; the first is kept")
            continue
        seen.add(member.name)
        yield member


def clean_name(name: str) -> str:
    """A member name as valid UTF-8 text: undecodable bytes become `\\xNN` escapes."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace").encode(
            "utf-8", "backslashreplace").decode("utf-8")


def unsafe_path(name: str) -> str | None:
    """Why a member path would land outside its archive if it were extracted, or None.

    camleak never extracts (members are read into memory), so such members are still read;
    the reason is recorded because it says something about who made the archive.
    """
    if ".." not in name and name[:1] not in ("/", "\\") and not (len(name) > 1 and name[1] == ":"):
        return None  # the common case, decided without building a path (this runs for every member)
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if ".." in posix.parts:
        return "path climbs out of the archive ('..')"
    return None


def _check_expansion(path: Path, expanded: int, limits: ArchiveLimits, on_disk: int | None = None) -> None:
    """`on_disk`: the archive's size, when the caller has it (a tar is checked at every member)."""
    on_disk = max(1, path.stat().st_size if on_disk is None else on_disk)
    if expanded > limits.max_total_bytes:
        raise InputError(f"{path}: content expands past {limits.max_total_bytes // MiB} MiB, the limit for one "
                         "archive; split it into smaller archives")
    if expanded > limits.ratio_floor and expanded > limits.max_ratio * on_disk:
        raise InputError(f"{path}: content would expand to {expanded // MiB} MiB, {expanded / on_disk:.0f} times "
                         f"the archive's size (limit {limits.max_ratio:g}x); refused as a likely decompression bomb")


def _iter_dir(root: Path, exclude: Path | None, limits: ArchiveLimits) -> Iterator[Member]:
    for name, path, info in walk_dir(root, exclude):
        name = clean_name(name)
        if info is None:
            yield Member(name, problem="unreadable_member", reason="folder could not be listed")
        elif stat.S_ISLNK(info.st_mode):
            yield Member(name, problem="link_member", reason="symbolic link, not followed")
        elif not stat.S_ISREG(info.st_mode):
            yield Member(name, problem="special_member", reason="not a regular file (device, FIFO or socket)")
        elif info.st_size > limits.max_member_bytes:
            yield Member(name, problem="member_too_large",
                         reason=f"{info.st_size // MiB} MiB, over the {limits.max_member_bytes // MiB} MiB limit for one image")
        else:
            yield Member(name, load=path.read_bytes)


_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, zlib.error, RuntimeError,
               NotImplementedError, ValueError, KeyError)


def _iter_zip(path: Path, limits: ArchiveLimits) -> Iterator[Member]:
    try:
        archive = zipfile.ZipFile(path)
    except _ZIP_ERRORS as exc:
        raise InputError(f"{path}: unreadable zip archive, central directory damaged? ({exc})") from exc
    with archive:
        checked: list[tuple[zipfile.ZipInfo, Member | None]] = [(info, _zip_refusal(info, limits)) for info in archive.infolist()]
        _check_expansion(path, sum(info.file_size for info, refused in checked if refused is None), limits)
        for info, refused in checked:
            if _zip_is_dir(info):
                continue
            if refused is not None:
                yield refused
                continue
            try:
                data = archive.read(info)  # never more than the declared size
            except _ZIP_ERRORS as exc:
                yield Member(clean_name(info.filename), problem="unreadable_member",
                             reason=f"unreadable ({type(exc).__name__}: {exc})"[:300])
                continue
            yield Member(clean_name(info.filename), data)


def _zip_is_dir(info: zipfile.ZipInfo) -> bool:
    """ZipInfo.is_dir, safe for an empty name (zipfile's own raises IndexError on one)."""
    return info.filename.endswith("/")


def _zip_refusal(info: zipfile.ZipInfo, limits: ArchiveLimits) -> Member | None:
    """A skipped member for a zip entry that must not be read (its header says so), else None."""
    name = clean_name(info.filename)
    mode = info.external_attr >> 16
    if _zip_is_dir(info):
        return None
    if not name:
        return Member(name, problem="unreadable_member", reason="zip entry with an empty name")
    if stat.S_ISLNK(mode):
        return Member(name, problem="link_member", reason="symbolic link, not followed")
    if stat.S_IFMT(mode) and not stat.S_ISREG(mode):
        return Member(name, problem="special_member", reason="not a regular file (device, FIFO or socket)")
    if info.file_size > limits.max_member_bytes:
        return Member(name, problem="member_too_large",
                      reason=f"declares {info.file_size // MiB} MiB, over the {limits.max_member_bytes // MiB} MiB limit for one image")
    if info.file_size > limits.ratio_floor and info.file_size > limits.max_ratio * max(1, info.compress_size):
        return Member(name, problem="member_too_large",
                      reason=f"expands {info.file_size / max(1, info.compress_size):.0f} times its compressed size "
                             f"(limit {limits.max_ratio:g}x); refused as a likely zip bomb")
    return None


_TAR_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error, zstandard.ZstdError, ValueError)


def _iter_tar(path: Path, limits: ArchiveLimits) -> Iterator[Member]:
    """Stream the tar front to back; a cut or damaged stream keeps the members before it."""
    raw = open(path, "rb")
    try:
        compression = compression_of(path)
        # Our own decompressor notices a cut or damaged stream (tarfile's would end quietly)
        # and still hands out every byte that decoded before it.
        stream = DecompressReader(raw, compression, strict=False) if compression else None
        try:
            if stream is not None:
                archive = tarfile.open(fileobj=stream, mode="r|")
            else:
                archive = tarfile.open(fileobj=raw, mode="r|*")
        except _TAR_ERRORS as exc:
            cause = f"; the stream itself: {stream.error}" if stream is not None and stream.error else ""
            raise InputError(f"{path}: unreadable tar archive ({exc}{cause})") from exc
        with archive:
            last = "the start"
            on_disk = path.stat().st_size
            while True:
                try:
                    info = archive.next()
                except _TAR_ERRORS as exc:
                    yield _cut(path, last, stream.error if stream is not None and stream.error else exc)
                    return
                if info is None:
                    if stream is not None and stream.error is not None:
                        yield _cut(path, last, stream.error)
                    return
                name = clean_name(info.name)
                last = repr(name)
                if info.isdir():
                    continue
                _check_expansion(path, info.offset_data + info.size, limits, on_disk)
                if info.issym() or info.islnk():
                    kind = "symbolic" if info.issym() else "hard"
                    yield Member(name, problem="link_member", reason=f"{kind} link to {clean_name(info.linkname)!r}, not followed")
                    continue
                if not info.isfile():
                    yield Member(name, problem="special_member", reason="not a regular file (device, FIFO or other)")
                    continue
                if info.size > limits.max_member_bytes:
                    yield Member(name, problem="member_too_large",
                                 reason=f"{info.size // MiB} MiB, over the {limits.max_member_bytes // MiB} MiB limit for one image")
                    continue
                try:
                    fh = archive.extractfile(info)
                    data = fh.read() if fh is not None else b""
                except _TAR_ERRORS as exc:
                    yield _cut(path, f"inside {name!r}", stream.error if stream is not None and stream.error else exc)
                    return
                yield Member(name, data)
    finally:
        raw.close()


def _cut(path: Path, where: str, exc: BaseException) -> Member:
    return Member("", problem="truncated_archive",
                  reason=f"archive ends early or is damaged after {where} ({type(exc).__name__}: {exc}); "
                         "the members before it were kept")


def archive_magic(data: bytes) -> str | None:
    """The archive or compression format of a member's bytes, for nested archives."""
    if data[:4] == b"PK\x03\x04" or data[:4] == b"PK\x05\x06":
        return "zip"
    if data[:2] == b"\x1f\x8b":
        return "gzip"
    if data[:4] == b"\x28\xb5\x2f\xfd":
        return "zstd"
    if data[257:262] == b"ustar":
        return "tar"
    if data[:3] == b"BZh" or data[:6] == b"\xfd7zXZ\x00":
        return "compressed"
    return None


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
    # a name without it anywhere cannot end in it, however the path normalises (asked of every member)
    return MANIFEST_NAME in name and PurePosixPath(name).name == MANIFEST_NAME


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
