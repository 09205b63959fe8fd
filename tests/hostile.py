"""Generators for hostile and broken inputs: every fixture is built by code, none is committed."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path

from PIL import Image

from conftest import jpeg, scene


def image_bytes(seed: int, fmt: str = "JPEG", size=(320, 180), **save) -> bytes:
    buffer = io.BytesIO()
    picture = scene(seed, size)
    if fmt == "JPEG":
        return jpeg(picture)
    picture.save(buffer, fmt, **save)
    return buffer.getvalue()


def tar_entry(name: str, data: bytes = b"", *, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data


def write_raw_tar(path: Path, entries: list[tuple[tarfile.TarInfo, bytes]], mode: str = "w:gz") -> Path:
    """A tar of exactly these headers, in order: links, devices, repeated names, odd names."""
    with tarfile.open(path, mode, format=tarfile.GNU_FORMAT, encoding="utf-8", errors="surrogateescape") as archive:
        for info, data in entries:
            archive.addfile(info, io.BytesIO(data) if info.type == tarfile.REGTYPE else None)
    return path


def zip_with(path: Path, members: list[tuple[str, bytes, int | None]]) -> Path:
    """A zip whose entries carry the given Unix mode (symlinks, devices) when one is given."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data, mode in members:
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if mode is not None:
                info.external_attr = mode << 16
            archive.writestr(info, data)
    return path


def zip_bomb(path: Path, mib: int, extra: dict[str, bytes] | None = None) -> Path:
    """A tiny zip holding `mib` MiB of zeros (ratio about 1000) beside ordinary members."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
        with archive.open("bomb.jpg", "w", force_zip64=True) as fh:
            block = bytes(1 << 20)
            for _ in range(mib):
                fh.write(block)
    return path


def corrupt_central_directory(path: Path) -> Path:
    data = bytearray(path.read_bytes())
    at = data.rfind(b"PK\x01\x02")
    data[at : at + 4] = b"XX\x01\x02"
    path.write_bytes(bytes(data))
    return path


def flag_encrypted(path: Path) -> Path:
    """Mark every zip entry encrypted (general-purpose bit 0) in local and central headers."""
    data = bytearray(path.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.find(signature)
        while at >= 0:
            data[at + offset] |= 0x01
            at = data.find(signature, at + 4)
    path.write_bytes(bytes(data))
    return path


def tree_snapshot(root: Path) -> dict[str, int]:
    """Every path under root with its size: what a run may have written."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            full = os.path.join(folder, name)
            out[os.path.relpath(full, root)] = os.lstat(full).st_size if name in files else -1
    return out


def open_image(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))
