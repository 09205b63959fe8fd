"""Snapshot archives written byte-for-byte reproducibly: a tar (plain or gzip, fixed times and
owners) and a zip with a manifest mapping opaque member names to snapshot keys.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import zipfile
from pathlib import Path

import numpy as np

from .params import _TAR_ARCHIVE, _ZIP_ARCHIVE


def _tar_bytes(members: list[tuple[str, bytes]], mtime: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), mtime, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _write_tar_gz(path: Path, members: list[tuple[str, bytes]], mtime: int) -> None:
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=1) as gz:
        gz.write(_tar_bytes(members, mtime))


def _write_zip(path: Path, members: list[tuple[str, bytes, bool]], date_time: tuple[int, ...]) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data, deflate in members:
            info = zipfile.ZipInfo(name, date_time=date_time)  # type: ignore[arg-type]
            info.compress_type = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            info.create_system = 3
            zf.writestr(info, data)


def write_served(root: Path, keys: list[str], formats: list[str], served: list[bytes], arng: np.random.Generator,
                 mtime: int, date_time: tuple[int, ...]) -> dict[str, tuple[str, str]]:
    """Split served frames between the tar.gz (named by key) and the zip (opaque names plus a
    manifest), one coin per frame; returns snapshot key -> (archive, member)."""
    tar_members: list[tuple[str, bytes]] = []
    zip_members: list[tuple[str, bytes, bool]] = []
    manifest: list[str] = []
    where: dict[str, tuple[str, str]] = {}
    ext = {"jpeg": "jpg", "png": "png", "webp": "webp"}
    for key, fmt, data in zip(keys, formats, served):
        if arng.random() < 0.5:
            name = f"served/{key}.{ext[fmt]}"
            tar_members.append((name, data))
            where[key] = (_TAR_ARCHIVE, name)
        else:
            name = f"obj/{len(zip_members) + 1:06d}.bin"
            zip_members.append((name, data, False))
            manifest.append(json.dumps({"path": name, "snapshot": key}, separators=(",", ":")))
            where[key] = (_ZIP_ARCHIVE, name)
    _write_tar_gz(root / _TAR_ARCHIVE, tar_members, mtime)
    zip_members.insert(0, ("manifest.jsonl", "".join(m + "\n" for m in manifest).encode(), True))
    _write_zip(root / _ZIP_ARCHIVE, zip_members, date_time)
    return where
