"""Evidence thumbnails read back from the snapshot archives, pixelated unless asked otherwise.

A privacy page must not spread the leaked footage further, so by default each frame is reduced
to a coarse mosaic *before* it is embedded: the sharp pixels never reach the HTML file. Images
stay in their archives (the case records input and member); each archive is read once.
"""

from __future__ import annotations

import base64
import io
import zipfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from PIL import Image, ImageFilter

from ..archives import archive_kind, iter_members
from ..casefile import Case
from ..errors import InputError
from ..fingerprint import _truncated_images

THUMB_SIZE = (192, 108)
MOSAIC_SIZE = (12, 7)  # blocks across and down: colours and layout survive, faces and rooms do not


@dataclass(frozen=True)
class Thumbnail:
    data_uri: str | None  # None when the image could not be read back
    note: str | None = None


def thumbnails(case: Case, frame_ids: Iterable[str], *, reveal: bool) -> dict[str, Thumbnail]:
    """Thumbnail per frame id (snapshot or reference frame), reading each archive once."""
    wanted = sorted(set(frame_ids))
    where: dict[int, dict[str, str]] = defaultdict(dict)  # input id -> member -> frame id
    for start in range(0, len(wanted), 500):
        chunk = wanted[start:start + 500]
        for r in case.db.query(f"select frame_id, input_id, member from frames where frame_id in ({','.join('?' * len(chunk))})", chunk):
            where[r["input_id"]][r["member"]] = r["frame_id"]
    paths = {r["id"]: Path(r["path"]) for r in case.db.query("select id, path from inputs")}
    out: dict[str, Thumbnail] = {}
    for input_id, members in where.items():
        path = paths.get(input_id)
        if path is None or not path.exists():
            for fid in members.values():
                out[fid] = Thumbnail(None, "archive no longer at its ingested path")
            continue
        for member, data in _read_members(path, set(members)):
            out[members[member]] = _thumbnail(data, reveal)
    for fid in wanted:
        out.setdefault(fid, Thumbnail(None, "image not found in its archive"))
    return out


def _read_members(path: Path, names: set[str]) -> Iterable[tuple[str, bytes]]:
    try:
        kind = archive_kind(path)
        if kind == "dir":
            for name in sorted(names):
                file = path / name
                if file.is_file():
                    yield name, file.read_bytes()
        elif kind == "zip":
            with zipfile.ZipFile(path) as archive:
                for name in sorted(names):
                    try:
                        yield name, archive.read(name)
                    except KeyError:
                        continue
        else:
            left = set(names)
            for member in iter_members(path):
                if member.name in left:
                    left.discard(member.name)
                    yield member.name, member.data
                    if not left:
                        break
    except (InputError, OSError, zipfile.BadZipFile):
        return


def _decode(data: bytes, allow_truncated: bool) -> Image.Image:
    with _truncated_images(allow_truncated), Image.open(io.BytesIO(data)) as image:
        image.draft("RGB", (THUMB_SIZE[0] * 2, THUMB_SIZE[1] * 2))
        return image.convert("RGB")


def _thumbnail(data: bytes, reveal: bool) -> Thumbnail:
    note = None
    try:
        try:
            image = _decode(data, False)
        except OSError as exc:
            if "truncated" not in str(exc):
                raise
            image, note = _decode(data, True), "truncated: only the upper part decoded"
    except (OSError, ValueError, Image.DecompressionBombError):
        return Thumbnail(None, "image could not be decoded (corrupt)")
    image.thumbnail(THUMB_SIZE, Image.Resampling.LANCZOS)
    if not reveal:
        size = image.size
        image = image.resize(MOSAIC_SIZE, Image.Resampling.BOX).resize(size, Image.Resampling.NEAREST)
        image = image.filter(ImageFilter.GaussianBlur(1.5))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=70 if reveal else 50)
    return Thumbnail("data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"), note)


def evidence_frames(case: Case, exposures: list[dict], per_exposure: int) -> tuple[dict[str, str], dict[tuple[str, str], str]]:
    """Frame ids of the evidence snapshots, and one reference frame per (cluster, device) that anchors it."""
    snaps = sorted({d["snapshot"] for e in exposures for d in e["evidence_detail"][:per_exposure]})
    frame_of: dict[str, str] = {}
    for start in range(0, len(snaps), 500):
        chunk = snaps[start:start + 500]
        for r in case.db.query(f"select snapshot, frame_id from frames where role = 'snapshot' and snapshot in "
                               f"({','.join('?' * len(chunk))}) order by frame_id", chunk):
            frame_of.setdefault(r["snapshot"], r["frame_id"])
    refs: dict[tuple[str, str], str] = {}
    for r in case.db.query("select fc.cluster_id, f.ref_device, min(f.frame_id) frame_id from frames f join frame_clusters fc "
                           "on fc.frame_id = f.frame_id where f.role = 'reference' group by 1, 2"):
        refs[(str(r["cluster_id"]), r["ref_device"])] = r["frame_id"]
    return frame_of, refs
