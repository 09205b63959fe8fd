"""Fingerprint stage: perceptual hashes and an informativeness score for every frame.

One decode serves every hash kind: JPEGs are decoded in Pillow's draft mode (DCT-scaled,
luma and chroma planes), which is all a 32x32 hash needs. Colour and night-infrared frames of
one room meet on grey levels; the chroma planes only say which of the two looks a frame has. The top band, where cameras burn in their timestamp, is kept out of the hashes.
A truncated frame is hashed on the band that decoded, so it can still be matched on that band.

`fingerprint_batch` is a pure function over (frame_id, bytes) pairs, so the work can be
spread over processes here, or over a distributed engine later, without a rewrite.
"""

from __future__ import annotations

import collections
import functools
import json
import multiprocessing
import multiprocessing.pool
import os
import signal
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import PIL
from PIL import Image, ImageFile
from threadpoolctl import ThreadpoolController

from . import archives, imageguard
from .casefile import Case
from .errors import InputError

Image.MAX_IMAGE_PIXELS = 64_000_000  # a decompression bomb is refused, not decoded


@dataclass(frozen=True)
class FingerprintParams:
    """Everything that changes what a fingerprint is; recorded with every row."""

    # 3: bands at several levels; 5: all regions in one stacked product; 6: contrast and thumb; 7: fine thumb;
    # 8: chroma
    algorithm: int = 8
    phash_size: int = 16  # (at most 64) 256-bit pHash: distances between homes concentrate far from those within one
    dhash_size: int = 8
    draft_size: tuple[int, int] = (128, 72)
    overlay_top: float = 0.12  # share of rows at the top kept out of the hash (timestamp)
    band_bottom: float = 0.55  # the band [overlay_top, band_bottom) is hashed on its own (band_phash)
    # Bands ending at these percents of the height are hashed too (column `bands`), so a truncated
    # frame is compared on the largest band that decoded, against the same rows of other frames.
    band_levels: tuple[int, ...] = (45, 55, 65, 75, 85)
    min_quality: float = 30.0  # below: too little information to say whose home it shows
    # Grey levels between the 2nd and 98th percentile of a 16x16 reduction: the structure that
    # sensor noise and JPEG grain cannot fake (they average away at that scale, a room does not).
    # A room at 3-12 % brightness under noise measures 5-20 (gradient quality up to 31); the
    # dimmest informative frames of the hard simulations 24-47 (1st percentile 47).
    min_contrast: float = 32.0
    thumb_size: tuple[int, int] = (32, 16)  # grey thumbnail kept for one-to-one verification (columns, rows)
    # A finer one (the 64x64 reduction's rows halved: square pixels on a 16:9 frame) for what the
    # coarse one cannot tell apart: two look-alike flats, whose zoom, shift and moved object are
    # under one pixel at 32x16 (issue 12). 2 KiB a frame.
    fine_size: tuple[int, int] = (64, 32)

    def signature(self) -> str:
        data = asdict(self) | {
            "pillow": PIL.__version__,
            "numpy": np.__version__,
        }
        return json.dumps(data, sort_keys=True)


DEFAULT_PARAMS = FingerprintParams()


def fingerprint_batch(
    items: list[tuple[str, bytes]], params: FingerprintParams = DEFAULT_PARAMS
) -> list[dict[str, Any]]:
    """Fingerprint rows for a batch of (frame_id, image bytes); never raises for bad images.

    Each frame is decoded on its own; the hashing of the whole batch is a handful of matrix
    products over the stacked regions (resampling and DCT folded into one matrix per side), so
    the stage costs little more than the decode itself.
    """
    with single_threaded_blas():
        return _fingerprint_batch(items, params)


@functools.cache
def _blas_controller() -> ThreadpoolController:
    return ThreadpoolController()


def single_threaded_blas():
    """The products here are small: a multi-threaded BLAS spends far more time waking threads
    (8x slower measured on 2 cores) than multiplying, and the stage is already spread over
    processes. The cluster and attribution stages use it too: their products are as small
    (on 10^4 snapshots, 2 cores: attribution 18.9 CPU s with OpenBLAS's 2 threads, 2.9 s with
    one, the same results)."""
    return _blas_controller().limit(limits=1, user_api="blas")


def _fingerprint_batch(items: list[tuple[str, bytes]], params: FingerprintParams) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    frames: list[tuple[dict[str, Any], np.ndarray]] = []
    for frame_id, data in items:
        row, pixels = _decode_row(frame_id, data, params)
        rows.append(row)
        if pixels is not None:
            frames.append((row, pixels))
    _hash_frames(frames, params)
    for row in rows:
        row.pop("_complete", None)
        row.pop("_decoded_rows", None)
        row.pop("_height", None)
        middle = row.pop("_middle", None)  # the [band_phash, band_dhash] of `bands`, where it decoded
        if row["status"] != "ok":
            continue
        if middle is not None:
            row["band_phash"], row["band_dhash"] = middle
        if row["quality"] < params.min_quality:
            row.update(status="uninformative",
                       reason=f"quality {row['quality']:.1f} below {params.min_quality:g} (near-black or flat)")
        elif row["contrast"] is not None and row["contrast"] < params.min_contrast:
            row.update(status="uninformative",
                       reason=f"contrast {row['contrast']:.1f} below {params.min_contrast:g} grey levels (near-black or flat)")
    return rows


def _band_end(level: int, height: int) -> int:
    return int(round(height * level / 100))


@functools.lru_cache(maxsize=1024)
def _levels(decoded_rows: int, height: int, params: FingerprintParams) -> tuple[int, ...]:
    """The band levels (percent of the height) that decoded entirely, smallest first."""
    return tuple(level for level in params.band_levels if decoded_rows >= _band_end(level, height))


def fingerprint_one(frame_id: str, data: bytes, params: FingerprintParams = DEFAULT_PARAMS) -> dict[str, Any]:
    return fingerprint_batch([(frame_id, data)], params)[0]


def _decode_row(frame_id: str, data: bytes, params: FingerprintParams) -> tuple[dict[str, Any], np.ndarray | None]:
    """The row's decode facts, and the grey pixels to hash (None when there is nothing to hash)."""
    row: dict[str, Any] = {
        "frame_id": frame_id,
        "status": "ok",
        "reason": None,
        "format": archives.image_kind(data),
        "width": None,
        "height": None,
        "truncated": 0,
        "decoded_fraction": 1.0,
        "quality": None,
        "phash": None,
        "dhash": None,
        "band_phash": None,
        "band_dhash": None,
        "bands": None,
        "contrast": None,
        "thumb": None,
        "fine": None,
        "chroma": None,
    }
    try:
        grey, size, truncated, row["chroma"] = _decode_grey(data, params)
    except Exception as exc:  # any decoder failure is a property of this frame, not of the run
        row.update(status="undecodable", reason=_reason(exc))
        return row, None
    row["width"], row["height"] = size
    if grey.mode == "L":  # always, from _decode_grey; np.asarray's route to the same bytes is slower
        pixels = np.frombuffer(grey.tobytes(), dtype=np.uint8).reshape(grey.height, grey.width)
    else:
        pixels = np.asarray(grey, dtype=np.uint8)
    height = pixels.shape[0]
    if min(pixels.shape) < _MIN_SIDE:  # (a one-row image has no band to hash: it would divide by zero)
        row.update(status="uninformative", reason=f"{size[0]}x{size[1]} pixels: too small to show whose home it is")
        return row, None
    decoded_rows = _decoded_rows(pixels) if truncated else height
    row["truncated"] = int(truncated)
    row["decoded_fraction"] = round(decoded_rows / height, 3)
    if not _levels(decoded_rows, height, params):
        row.update(status="truncated", reason=f"only {row['decoded_fraction']:.0%} of the image decoded")
        return row, None
    row["_complete"] = decoded_rows >= height
    row["_decoded_rows"], row["_height"] = decoded_rows, height
    return row, pixels


_MIN_SIDE = 8  # decoded pixels on each side below which a frame is not hashed at all
_SMALL = 64  # every region is reduced to 64x64 first (imagehash's pHash size for 16x16 hashes)


@functools.lru_cache(maxsize=256)
def _box(out: int, size: int) -> np.ndarray:
    """(out, size) matrix of area-average resampling (Pillow's BOX filter) along one axis."""
    edges = np.arange(out + 1) * (size / out)
    left = np.maximum(edges[:-1, None], np.arange(size)[None, :])
    right = np.minimum(edges[1:, None], np.arange(size)[None, :] + 1)
    return (np.clip(right - left, 0, None) * (out / size)).astype(np.float32)


@functools.lru_cache(maxsize=8)
def _dct(keep: int, size: int) -> np.ndarray:
    """First `keep` rows of the (unnormalised) DCT-II on `size` points, as imagehash uses."""
    k = np.arange(keep)[:, None]
    n = np.arange(size)[None, :]
    return (2 * np.cos(np.pi * k * (2 * n + 1) / (2 * size))).astype(np.float32)


def _hash_frames(frames: list[tuple[dict[str, Any], np.ndarray]], params: FingerprintParams) -> None:
    """Hashes and quality of every decoded frame, a same-size group at a time.

    The regions hashed are the frame below the overlay and the bands from the overlay down to
    several heights; each is, in effect, reduced to 64x64 (area average) and hashed. All frames
    of one size are reduced across their columns with one product; then the row reduction and
    the DCT (or the dHash's 8-row reduction) of every region are folded into one stacked row
    matrix (zero below each band's last row), so all regions cost one more product.
    """
    groups: dict[tuple[int, ...], list[int]] = collections.defaultdict(list)
    for index, (_, pixels) in enumerate(frames):
        groups[pixels.shape].append(index)
    kinds = 1 + len(params.band_levels)  # the whole region, then each band
    ph_chars, dh_chars = params.phash_size ** 2 // 4, params.dhash_size ** 2 // 4
    middle = str(int(round(params.band_bottom * 100)))  # the band also stored as band_phash/band_dhash
    for (height, width), members in groups.items():
        top = int(round(height * params.overlay_top))
        count, rows_high = len(members), height - top
        stack = np.empty((count, rows_high, width), dtype=np.float32)
        for j, i in enumerate(members):
            stack[j] = frames[i][1][top:]
        columns = (stack.reshape(count * rows_high, width) @ _box(_SMALL, width).T).reshape(count, rows_high, _SMALL)
        phash_rows, dhash_rows = _stacked_rows(height, params)
        coefficients = _both_sides(columns, phash_rows, _dct(params.phash_size, _SMALL)).reshape(count, kinds, -1)
        phash_bits = coefficients > _median(coefficients)
        tiny = _both_sides(columns, dhash_rows, _box(params.dhash_size + 1, _SMALL)).reshape(count, kinds, params.dhash_size, -1)
        dhash_bits = (tiny[..., 1:] > tiny[..., :-1]).reshape(count, kinds, -1)
        # every region's hashes of a frame as one hex string each, cut per region below
        phash_hex = np.packbits(phash_bits, axis=2).reshape(count, -1)
        dhash_hex = np.packbits(dhash_bits, axis=2).reshape(count, -1)
        rows = [frames[i][0] for i in members]
        complete = [k for k, row in enumerate(rows) if row["_complete"]]
        quality, contrast, thumbs, fines = {}, {}, {}, {}
        if complete:
            small = _left(columns[complete], _box(_SMALL, rows_high))
            quality = dict(zip(complete, _quality(small).tolist()))
            contrast = dict(zip(complete, _contrast(small).tolist()))
            tw, th = params.thumb_size
            thumb = _both_sides(small, _box(th, _SMALL), _box(tw, _SMALL))
            thumbs = dict(zip(complete, np.clip(np.rint(thumb), 0, 255).astype(np.uint8)))
            fw, fh = params.fine_size
            # 64 columns wide, the fine thumbnail keeps the reduction's columns (_box(64, 64) is
            # the identity): only its rows are halved
            fine = _left(small, _box(fh, _SMALL)) if fw == _SMALL else _both_sides(small, _box(fh, _SMALL), _box(fw, _SMALL))
            fines = dict(zip(complete, np.clip(np.rint(fine), 0, 255).astype(np.uint8)))
        for k, row in enumerate(rows):
            ph, dh = phash_hex[k].tobytes().hex(), dhash_hex[k].tobytes().hex()
            levels = _levels(row["_decoded_rows"], height, params)
            if row["_complete"]:
                row.update(phash=ph[:ph_chars], dhash=dh[:dh_chars], quality=round(quality[k], 2),
                           contrast=round(contrast[k], 2), thumb=thumbs[k].tobytes(), fine=fines[k].tobytes())
            else:  # a truncated frame's quality: that of its largest band
                covered = _band_end(levels[-1], height) - top
                band = _left(columns[k:k + 1, :covered, :], _box(_SMALL, covered))
                row["quality"] = round(float(_quality(band)[0]), 2)
                row["contrast"] = round(float(_contrast(band)[0]), 2)
                # the whole region's thumbnail: rows below the decoded part are fill, and the
                # verification compares only the rows above it (from `decoded_fraction`)
                whole = _left(columns[k:k + 1], _box(_SMALL, rows_high))
                tw, th = params.thumb_size
                row["thumb"] = np.clip(np.rint(_both_sides(whole, _box(th, _SMALL), _box(tw, _SMALL))[0]), 0, 255
                                       ).astype(np.uint8).tobytes()
            bands = {}
            for position, level in enumerate(params.band_levels, start=1):
                if level in levels:
                    bands[str(level)] = (ph[position * ph_chars:(position + 1) * ph_chars],
                                         dh[position * dh_chars:(position + 1) * dh_chars])
            row["bands"] = _bands_json(bands)
            if middle in bands:
                row["_middle"] = bands[middle]


def _bands_json(bands: dict[str, tuple[str, str]]) -> str:
    """json.dumps(bands, sort_keys=True), character for character, for keys of digits and
    values of hex digits (nothing to escape), without building an encoder per frame."""
    return "{" + ", ".join(f'"{key}": ["{ph}", "{dh}"]' for key, (ph, dh) in sorted(bands.items())) + "}"


def _median(values: np.ndarray) -> np.ndarray:
    """np.median(values, axis=-1, keepdims=True), the same float32 numbers (the mean of the one
    or two middle values), from numpy's vectorised sort instead of its partition, which is
    several times slower on rows of a few hundred values. The values are finite (pixels)."""
    ordered = np.sort(values, axis=-1)
    n = values.shape[-1]
    if n % 2:
        return ordered[..., n // 2:n // 2 + 1]
    return (ordered[..., n // 2 - 1:n // 2] + ordered[..., n // 2:n // 2 + 1]) / np.float32(2)


@functools.lru_cache(maxsize=64)
def _stacked_rows(height: int, params: FingerprintParams) -> tuple[np.ndarray, np.ndarray]:
    """For frames `height` rows high: the row matrices of the whole region and of every band,
    stacked: pHash (64-row area reduction, then DCT rows) and dHash (64-row reduction, then 8
    rows). A band's matrices are zero below its last row."""
    top = int(round(height * params.overlay_top))
    phash, dhash = [], []
    for end in [height] + [_band_end(level, height) for level in params.band_levels]:
        reduce = np.zeros((_SMALL, height - top), dtype=np.float32)
        reduce[:, : end - top] = _box(_SMALL, end - top)
        phash.append(_dct(params.phash_size, _SMALL) @ reduce)
        dhash.append(_box(params.dhash_size, _SMALL) @ reduce)
    return np.vstack(phash), np.vstack(dhash)


def _both_sides(stack: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """rows @ stack[i] @ cols.T for every i, as two plain 2-D products (batched matmul over
    many small matrices is several times slower)."""
    count, height, width = stack.shape
    right = stack.reshape(count * height, width) @ cols.T  # (count*height, c)
    c = cols.shape[0]
    right = right.reshape(count, height, c).transpose(1, 0, 2).reshape(height, count * c)
    return (rows @ right).reshape(rows.shape[0], count, c).transpose(1, 0, 2)


def _left(stack: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """rows @ stack[i] for every i: `_both_sides(stack, rows, identity)` without multiplying by
    the identity (exactly the same numbers: the values are finite and not negative)."""
    count, height, width = stack.shape
    right = stack.transpose(1, 0, 2).reshape(height, count * width)
    return (rows @ right).reshape(rows.shape[0], count, width).transpose(1, 0, 2)


def _quality(small: np.ndarray) -> np.ndarray:
    """PDQ-style gradient energy of 64x64 reductions, 0 (flat) to 100 (busy)."""
    small = small * (100.0 / 255.0)
    gradient = np.abs(np.diff(small, axis=1)).sum(axis=(1, 2)) + np.abs(np.diff(small, axis=2)).sum(axis=(1, 2))
    return np.minimum(100.0, gradient / 90.0)


def _contrast(small: np.ndarray) -> np.ndarray:
    """Grey levels between the 2nd and 98th percentile of each 64x64 reduction cut to 16x16:
    the coarse structure of the scene, on which pixel noise has averaged away."""
    count = small.shape[0]
    # = small.reshape(count, 16, 4, 16, 4).mean(axis=(2, 4)): numpy's own order of additions
    # (each 4 columns in turn, then those sums of 4 rows in turn), ten times faster than its
    # reduction over two short axes
    blocks = small.reshape(count, 16, 4, 16, 4)
    across = ((blocks[..., 0] + blocks[..., 1]) + blocks[..., 2]) + blocks[..., 3]
    coarse = ((((across[:, :, 0] + across[:, :, 1]) + across[:, :, 2]) + across[:, :, 3]) / np.float32(16)).reshape(count, -1)
    low, high = np.percentile(coarse, [2, 98], axis=1)
    return high - low


class _truncated_images:
    """Pillow's truncated-image switch is process-global; set it for one decode, then restore it,
    so a caller that turned it on cannot hide truncation from us (nor we change it for them).
    (A class: cheaper per frame than a generator-based context manager.)"""

    def __init__(self, allowed: bool):
        self.allowed = allowed

    def __enter__(self) -> None:
        self.saved = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = self.allowed

    def __exit__(self, *exc: object) -> None:
        ImageFile.LOAD_TRUNCATED_IMAGES = self.saved


def _open_draft(data: bytes, params: FingerprintParams) -> Image.Image:
    image = imageguard.open_image(data)
    if image.format == "JPEG":
        image.draft("YCbCr", params.draft_size)  # (luma exactly as a grey draft; chroma for the look)
    return image


def _decode_grey(data: bytes, params: FingerprintParams) -> tuple[Image.Image, tuple[int, int], bool, float]:
    """Grey image at hash resolution, the original size, whether the file was truncated, and
    its chroma (`imageguard.to_grey_and_chroma`)."""
    if not data:
        raise imageguard.ImageRefused("empty file (0 bytes)")
    truncated = False
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        warnings.simplefilter("ignore", UserWarning)  # hostile TIFF/EXIF chatter; the frame's status says enough
        image = _open_draft(data, params)
        size = image.size
        try:
            with _truncated_images(False):
                image.load()
        except OSError as exc:
            if "truncated" not in str(exc):
                raise
            truncated = True
            image = imageguard.load_truncated(data, lambda d: _open_draft(d, params), _truncated_images)
    image, chroma = imageguard.to_grey_and_chroma(image)  # EXIF orientation, CMYK/16-bit/palette to 8-bit grey
    if image.width > 4 * params.draft_size[0]:
        ratio = (4 * params.draft_size[0]) / image.width
        image = image.resize((4 * params.draft_size[0], max(1, round(image.height * ratio))), Image.Resampling.BOX)
    return image, size, truncated, chroma


def _decoded_rows(pixels: np.ndarray) -> int:
    """Rows above the uniform grey a truncated JPEG decodes to (its partial last row excluded)."""
    fill = pixels[-1, -1]
    rows = pixels.shape[0]
    while rows > 0 and np.all(pixels[rows - 1] == fill):
        rows -= 1
    tail = max(1, pixels.shape[1] // 8)
    while rows > 0 and np.all(pixels[rows - 1, -tail:] == fill):
        rows -= 1
    return rows


def quality_score(region: np.ndarray, params: FingerprintParams = DEFAULT_PARAMS) -> float:
    """PDQ-style gradient energy on a 64x64 reduction, 0 (flat) to 100 (busy).

    Sensor noise on a black frame averages away in the reduction; real scene structure does not.
    """
    region = np.asarray(region, dtype=np.float32)
    small = _box(_SMALL, region.shape[0]) @ region @ _box(_SMALL, region.shape[1]).T
    return float(_quality(small[None])[0])


def _reason(exc: Exception) -> str:
    if guarded := imageguard.reason(exc):
        return guarded
    if isinstance(exc, PIL.UnidentifiedImageError):
        return "not a recognisable image"
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return "declared dimensions too large (decompression bomb)"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:200]


# ---------------------------------------------------------------------------------------
# The stage over a case file
# ---------------------------------------------------------------------------------------
BATCH_SIZE = 32


@dataclass
class FingerprintStats:
    frames: int = 0
    fingerprinted: int = 0
    reused: int = 0
    ok: int = 0
    uninformative: int = 0
    truncated: int = 0
    undecodable: int = 0
    missing: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def fingerprint_case(
    case: Case,
    params: FingerprintParams = DEFAULT_PARAMS,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
    dask: str | None = None,
    pool: Any = None,
) -> FingerprintStats:
    """Fingerprint every frame that has no fingerprint under the current parameters.

    `pool`: a pool with `HashPool`'s interface to use instead of local processes (the caller
    builds a Dask one for `dask`, so this stage never imports the distributed layer above it)."""
    if dask is not None and pool is None:
        raise ValueError("fingerprint_case(dask=...) needs the Dask pool to use (pipeline builds it)")
    signature = params.signature()
    stats = FingerprintStats(frames=case.count("frames"))
    todo: dict[int, dict[str, str]] = {}
    for row in case.db.query(
        "select f.frame_id, f.member, f.input_id from frames f left join fingerprints p "
        "on p.frame_id = f.frame_id where p.params is null or p.params != ?",
        [signature],
    ):
        todo.setdefault(row["input_id"], {})[row["member"]] = row["frame_id"]
    pending = sum(len(v) for v in todo.values())
    stats.reused = stats.frames - pending
    if on_total:
        on_total(pending)
    if pending:
        inputs = {r["id"]: r for r in case.db.query("select id, path, kind from inputs")}
        missing: list[tuple[int, str, str]] = []
        batches = _batches(inputs, todo, missing, remote=dask is not None,
                           per_task=getattr(pool, "task_objects", BATCH_SIZE * 2))
        table = case.table("fingerprints")
        for rows in _map(batches, params, workers, pool, missing):
            for row in rows:
                row["params"] = signature
                stats.fingerprinted += 1
            table.upsert_all(rows, pk="frame_id", alter=True)  # alter: case files from before `bands`
            if progress:
                progress(len(rows))
        for input_id, path, name in missing:
            stats.missing += 1
            case.add_problem("fingerprint", "member_missing", f"{path}!{name}: member no longer in the archive",
                             input_id=input_id, path=path, member=name)
    for status, count in case.db.execute(
        "select status, count(*) from fingerprints where frame_id in (select frame_id from frames) group by status"
    ).fetchall():
        if hasattr(stats, status):
            setattr(stats, status, count)
    return stats


class ObjectTasks(list):
    """(frame id, protocol, path) of frames a worker reads itself (object storage)."""

    input_id: int = 0
    url: str = ""
    members: dict[str, str] = {}


def _batches(
    inputs: dict[int, dict], todo: dict[int, dict[str, str]], missing: list[tuple[int, str, str]],
    remote: bool = False, per_task: int = BATCH_SIZE * 2,
) -> Iterator[list[tuple[str, bytes]] | ObjectTasks]:
    """Stream members that need work straight from each archive, in batches."""
    for input_id in sorted(todo):
        wanted = dict(todo[input_id])
        if _is_object_input(inputs[input_id]["path"]):  # object storage (issue 14): read by key
            if remote:
                yield from _object_tasks(inputs[input_id]["path"], input_id, wanted, per_task)
            else:
                yield from _object_batches(inputs[input_id]["path"], input_id, wanted, missing)
            continue
        path = Path(inputs[input_id]["path"])
        if not path.exists():
            raise InputError(f"{path}: archive recorded in the case is gone; cannot fingerprint its frames")
        batch: list[tuple[str, bytes]] = []
        for member in archives.iter_members(path):
            frame_id = wanted.pop(member.name, None)
            if frame_id is None:
                continue
            batch.append((frame_id, member.data))
            if len(batch) >= BATCH_SIZE:
                yield batch
                batch = []
            if not wanted:
                break
        if batch:
            yield batch
        missing.extend((input_id, str(path), name) for name in wanted)


def _is_object_input(path: str) -> bool:
    from .objectstore import is_object_url
    return is_object_url(path)


def _object_batches(url: str, input_id: int, wanted: dict[str, str],
                    missing: list[tuple[int, str, str]]) -> Iterator[list[tuple[str, bytes]]]:
    """Frames of an object-storage input, read a batch of keys at a time."""
    from . import objectstore
    location = objectstore.parse(url)
    members = sorted(wanted)
    for start in range(0, len(members), BATCH_SIZE):
        keys = members[start:start + BATCH_SIZE]
        got = objectstore.read_many(location.protocol, [location.path(k) for k in keys], location.label)
        batch = []
        for key in keys:
            value = got.get(location.path(key))
            if isinstance(value, bytes):
                batch.append((wanted[key], value))
            elif isinstance(value, FileNotFoundError) or value is None:
                missing.append((input_id, url, key))
            else:
                raise InputError(f"{url}: {key} could not be read ({value}); run the same command again to resume")
        if batch:
            yield batch


def _object_tasks(url: str, input_id: int, wanted: dict[str, str], per_task: int = BATCH_SIZE * 2) -> Iterator[ObjectTasks]:
    from . import objectstore
    location = objectstore.parse(url)
    members = sorted(wanted)
    for start in range(0, len(members), per_task):
        tasks = ObjectTasks((wanted[k], location.protocol, location.path(k)) for k in members[start:start + per_task])
        tasks.input_id, tasks.url = input_id, url
        tasks.members = {wanted[k]: k for k in members[start:start + per_task]}
        yield tasks


def _map(batches: Iterable[list[tuple[str, bytes]] | ObjectTasks], params: FingerprintParams, workers: int | None,
         pool: Any = None, missing: list | None = None) -> Iterator[list[dict]]:
    pool_cm: Any = pool if pool is not None else HashPool(params, workers)
    members: dict[str, tuple[int, str, str]] = {}

    def rows_of(results: list[dict]) -> list[dict]:
        rows = []
        for result in results:
            where = members.pop(result["tag"], (0, "", result["tag"]))
            if result.get("fingerprint") is not None:
                rows.append(result["fingerprint"])
            elif "error" in result and not result.get("gone"):
                raise InputError(f"{where[1]}: {where[2]} could not be read ({result['error']}); run the same "
                                 "command again to resume")
            elif missing is not None:
                missing.append(where)
        return rows

    with pool_cm as pool:
        for batch in batches:
            if isinstance(batch, ObjectTasks):
                members.update({fid: (batch.input_id, batch.url, key) for fid, key in batch.members.items()})
                yield rows_of(pool.submit_objects(list(batch)))
                continue
            for _, rows in pool.submit(batch):
                yield rows
        for _, rows in pool.drain():
            yield rows
        if hasattr(pool, "drain_objects"):
            yield rows_of(pool.drain_objects())


def _ignore_sigint() -> None:
    """Workers leave Ctrl-C to the main process, which stops them: a worker interrupted while
    taking a task dies holding the pool's queue lock, and the pool's shutdown then hangs."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tune_allocator()


@functools.cache
def tune_allocator() -> bool:
    """In a process that does nothing but fingerprint (a pool or Dask worker): keep the batch's
    arrays (a few MB each) on glibc's heap instead of a fresh mmap per array.

    Every batch allocates and frees the same few-MB arrays. glibc maps each one fresh (and
    zero-fills it page by page) once its mmap threshold is fixed, which Dask's nanny does by
    setting MALLOC_TRIM_THRESHOLD_ for its workers. Measured on 1,024 frames (6 runs each, 2
    cores under load): 1.7-2.2 CPU s and 423,000 page faults with Dask's setting, 1.3-1.7 s and
    156,000 with glibc's defaults, 1.1-1.35 s and 5,000 with these thresholds. Memory kept: at
    most 128 MiB of freed heap per worker. Linux/glibc only; a no-op elsewhere. Returns
    whether it applied."""
    import ctypes
    import sys
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold, 128 << 20))


class _Pool(multiprocessing.pool.Pool):
    """multiprocessing's pool, whose worker-handler thread does not wake at every result.

    The stock handler also waits on the result pipe, which stays readable until the result
    thread has read a whole batch's rows, so it spins meanwhile (10^4 frames: 0.35-0.55 CPU s
    in that thread of the main process, for nothing). What it maintains needs no such wake-up:
    a worker that exits wakes it by its own sentinel, and close() and an emptied task cache by
    the change notifier, which stays among the sentinels."""

    def _get_sentinels(self):
        return [self._change_notifier._reader]


class HashPool:
    """Batches of (id, bytes) fingerprinted in worker processes while the caller reads on.

    The caller decompresses and writes rows while the workers hash, so every core is busy; at
    most `depth` batches are in flight, so memory is bounded by the batch size, not the input.
    Results come back in submission order, each with the tag it was submitted with.
    """

    def __init__(self, params: FingerprintParams = DEFAULT_PARAMS, workers: int | None = None, depth: int | None = None):
        self.params = params
        self.workers = workers or os.cpu_count() or 1
        self.depth = depth or self.workers * 4
        self.batch_size = BATCH_SIZE
        self._pool = None
        self._in_flight: collections.deque = collections.deque()

    def __enter__(self) -> "HashPool":
        if self.workers > 1:
            context = multiprocessing.get_context("fork" if hasattr(os, "fork") else "spawn")
            self._pool = _Pool(self.workers, initializer=_ignore_sigint, context=context)
        return self

    def submit(self, batch: list[tuple[str, bytes]], tag: Any = None) -> list[tuple[Any, list[dict]]]:
        """Queue a batch; returns the batches finished meanwhile (blocking only when full)."""
        if not batch:
            return []
        if self._pool is None:
            return [(tag, fingerprint_batch(batch, self.params))]
        self._in_flight.append((tag, self._pool.apply_async(fingerprint_batch, (batch, self.params))))
        done = []
        while self._in_flight and (len(self._in_flight) > self.depth or self._in_flight[0][1].ready()):
            tag0, result = self._in_flight.popleft()
            done.append((tag0, result.get()))
        return done

    def drain(self) -> list[tuple[Any, list[dict]]]:
        """Every batch still in flight, finished."""
        done = []
        while self._in_flight:
            tag, result = self._in_flight.popleft()
            done.append((tag, result.get()))
        return done

    def __exit__(self, *exc: object) -> None:
        self._in_flight.clear()
        if self._pool is not None:
            if exc[0] is None:
                self._pool.close()
            else:
                self._pool.terminate()
            self._pool.join()  # reaped, so their CPU time counts in the run's cpu_s
            self._pool = None
