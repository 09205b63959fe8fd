"""Deterministic simulator of a cross-account camera snapshot leak.

camleak's demo, tests and benchmarks need incidents whose ground truth is known:
which frames came from which camera, which accounts received foreign frames, which
log lines lie. This module builds such an incident (devices, overlapping log exports,
snapshot archives, reference frames) into a folder and writes ``truth.json`` next to
it, so every other stage can score itself against the truth.

Everything is derived from ``SimParams.seed``: world decisions from one RNG stream,
each frame's look from an RNG seeded with (seed, frame index). Rendering runs in a
process pool, but no output depends on scheduling, so one seed always gives the same
bytes whatever the number of workers.
"""

from __future__ import annotations

import colorsys
import csv
import gzip
import io
import json
import math
import multiprocessing
import os
import tarfile
import threading
import zipfile
from collections import Counter, deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
import zstandard
from PIL import Image, ImageChops, ImageDraw, ImageFont

__all__ = [
    "ASSISTANT_FIELD_MAP",
    "INTEGRATIONS",
    "Incident",
    "SimParams",
    "generate_incident",
    "render_frame",
]

INTEGRATIONS: tuple[str, ...] = ("google-home", "alexa", "mobile-app", "web")

#: Dotted paths of the canonical fields in the nested (Cloud Logging-shaped) export.
ASSISTANT_FIELD_MAP: dict[str, str] = {
    "ts": "timestamp",
    "account_id": "jsonPayload.agentUserId",
    "device_id": "jsonPayload.deviceId",
    "snapshot": "jsonPayload.snapshotKey",
    "event": "jsonPayload.eventType",
    "integration": "jsonPayload.integration",
    "request_id": "jsonPayload.requestId",
}

_CANONICAL = ("ts", "account_id", "device_id", "snapshot", "event", "integration", "request_id")
_APP_LOG = "logs/app-events.jsonl.gz"
_ASSISTANT_LOG = "logs/assistant-events.jsonl.zst"
_WEB_LOG = "logs/web-events.csv"
_TAR_ARCHIVE = "snapshots/served-1.tar.gz"
_ZIP_ARCHIVE = "snapshots/served-2.zip"
_REF_ARCHIVE = "references/refs.tar"
# Which export an integration's events land in (overlap duplicates go elsewhere too).
_EXPORT_OF = {"mobile-app": _APP_LOG, "google-home": _ASSISTANT_LOG, "alexa": _ASSISTANT_LOG, "web": _WEB_LOG}

_SIZES = ((320, 180), (640, 360), (1280, 720))
_W, _H = 1280, 720  # scene canvas; smaller sizes are box-reduced from it
_PAD = 8  # edge padding around cached bases so shake is a plain crop
_NIGHT_FROM, _NIGHT_UNTIL = 20, 6

# RNG stream tags: each purpose gets its own stream so adding draws to one never shifts another.
_T_WORLD, _T_SCENE, _T_SPEC, _T_PIXELS, _T_LIGHTS, _T_NOISE, _T_REF, _T_LOGS, _T_STYLE, _T_LOOK = range(1, 11)
_SERVED, _REFERENCE, _PREVIEW = 0, 1, 2  # frame kinds: separate per-frame RNG streams


@dataclass
class SimParams:
    """Knobs of one simulated incident; equal params give byte-identical output."""

    seed: int = 7
    homes: int = 40
    hours: int = 24
    bug_rate: float = 0.3  # share of requests inside the bug window served another home's snapshot
    difficulty: str = "normal"  # "easy" | "normal" | "hard"
    references: bool = True  # write reference frames for some devices
    lookalike: float = 0.0  # share of cameras whose room copies an earlier camera's (identical flats, hotel rooms)
    start: str = "2026-11-20T00:00:00Z"


@dataclass
class Incident:
    """Where the generated inputs and the truth were written."""

    root: Path
    devices: Path
    logs: list[Path]
    snapshots: list[Path]
    references: list[Path]
    truth: Path
    field_map: dict[str, str]
    counts: dict[str, int]

    def triage_args(self, case: Path, *, references: bool = True) -> list[str]:
        """The `camleak triage` arguments that analyse this incident into `case`."""
        args = ["triage", "--case", str(case), "--devices", str(self.devices)]
        for option, paths in (("--logs", self.logs), ("--snapshots", self.snapshots),
                              ("--references", self.references if references else [])):
            for path in paths:
                args += [option, str(path)]
        for name, path in self.field_map.items():
            args += ["--field", f"{name}={path}"]
        return args


@dataclass(frozen=True)
class _Profile:
    """How hard frames are to attribute; magnitudes grow easy < normal < hard."""

    shake: int
    quality: tuple[int, int]
    truncated: float
    near_black: float  # share of night frames with the IR illuminator off
    alt_format: float  # share saved as PNG/WebP instead of JPEG
    noise_day: float
    noise_night: float
    person_p: float
    person_area: tuple[float, float]
    lights_off_p: float
    lights_off_gain: tuple[float, float]
    ir_jitter: float  # spread of per-object IR reflectance vs day luminance
    vignette: tuple[float, float]
    flatten: tuple[float, float]  # IR contrast factor range (1 = unchanged)


_PROFILES: dict[str, _Profile] = {
    "easy": _Profile(2, (70, 90), 0.01, 0.02, 0.03, 1.5, 3.0, 0.15, (0.03, 0.08), 0.20,
                     (0.70, 0.90), 0.10, (0.05, 0.15), (0.85, 0.97)),
    "normal": _Profile(4, (50, 90), 0.03, 0.04, 0.04, 2.5, 5.0, 0.25, (0.03, 0.12), 0.30,
                       (0.55, 0.85), 0.18, (0.10, 0.25), (0.75, 0.92)),
    "hard": _Profile(6, (35, 90), 0.06, 0.06, 0.05, 4.0, 8.0, 0.35, (0.03, 0.15), 0.40,
                     (0.40, 0.80), 0.28, (0.20, 0.40), (0.65, 0.88)),
}


# --------------------------------------------------------------------------- time helpers


def _parse_ts(text: str) -> datetime:
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _ms_to_dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def _rfc3339_ms(ms: int) -> str:
    dt = _ms_to_dt(ms)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


def _is_night(ms: int) -> bool:
    hour = _ms_to_dt(ms).hour
    return hour >= _NIGHT_FROM or hour < _NIGHT_UNTIL


# --------------------------------------------------------------------------- scenes


def _lum(c: tuple[int, int, int]) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def _colour(rng: np.random.Generator, lo: float = 25, hi: float = 235, sat: float = 0.6) -> tuple[int, int, int]:
    """A random colour with a chosen luminance, so scenes differ in grey structure too."""
    target = rng.uniform(lo, hi)
    r, g, b = colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.05, sat), 1.0)
    base = 255 * (0.299 * r + 0.587 * g + 0.114 * b)
    k = target / base
    rgb = np.clip(np.array([r, g, b]) * 255 * k, 0, 255)
    return int(rgb[0]), int(rgb[1]), int(rgb[2])


def _shade(c: tuple[int, int, int], k: float) -> tuple[int, int, int]:
    return tuple(int(min(255, max(0, v * k))) for v in c)  # type: ignore[return-value]


class _Scene(NamedTuple):
    """A camera's fixed view: background regions plus drawn objects (normalised coords)."""

    regions: list[list[tuple[float, float]]]  # background polygons, painted in order
    region_style: list[tuple]  # per region: (colour_a, colour_b, axis, z1, z2)
    ops: list[tuple]  # drawing ops: (kind, geometry, colour, z1, z2, extra)
    floor_y: float
    vignette_u: float
    flatten_u: float
    hotspot: float
    centre: tuple[float, float]  # where the IR illuminator points, as a fraction of width/height
    ts_box: bool
    grey_night: bool


def _region_map(rng: np.random.Generator, kind: str) -> tuple[list[list[tuple[float, float]]], float]:
    """Background regions of a scene kind as polygons (normalised coords), painted in order."""
    full = [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]
    if kind == "room":
        yl, yr = rng.uniform(0.45, 0.8), rng.uniform(0.45, 0.8)
        return [full, [(0, yl), (1, yr), (1, 1), (0, 1)]], (yl + yr) / 2
    if kind == "corner":
        cx, yc, k = rng.uniform(0.25, 0.75), rng.uniform(0.45, 0.7), rng.uniform(0.15, 0.45)
        floor = [(0, yc + k * cx), (cx, yc), (1, yc + k * (1 - cx)), (1, 1), (0, 1)]
        return [full, [(cx, 0), (1, 0), (1, 1), (cx, 1)], floor], yc + k * 0.2
    if kind == "hall":
        x0, x1 = sorted(rng.uniform(0.2, 0.8, 2))
        if x1 - x0 < 0.15:
            x1 = min(0.9, x0 + 0.2)
        y0, y1 = rng.uniform(0.15, 0.4), rng.uniform(0.55, 0.8)
        return [full,
                [(0, 0), (x0, y0), (x0, y1), (0, 1)],
                [(1, 0), (x1, y0), (x1, y1), (1, 1)],
                [(0, 0), (1, 0), (x1, y0), (x0, y0)],
                [(0, 1), (x0, y1), (x1, y1), (1, 1)]], y1
    # outdoor: sky, ground, and a path wedge
    hz, px, spread = rng.uniform(0.3, 0.6), rng.uniform(0.2, 0.8), rng.uniform(0.3, 0.9)
    path = [(px - 0.05, hz), (px + 0.05, hz), (px + 0.05 + (1 - hz) * spread, 1), (px - 0.05 - (1 - hz) * spread, 1)]
    return [full, [(0, hz), (1, hz), (1, 1), (0, 1)], path], hz


def _z(rng: np.random.Generator) -> tuple[float, float]:
    return float(rng.normal()), float(rng.normal())


@lru_cache(maxsize=64)
def _scene(seed: int, cam: int, look: float = 0.0) -> _Scene:
    """Camera `cam`'s view: the first candidate that hashes clearly apart from earlier cameras,
    or, for a look-alike camera, a slightly changed copy of an earlier camera's room."""
    source = lookalike_source(seed, cam, look)
    if source is not None:
        return _lookalike_scene(_scene(seed, source, look), np.random.default_rng([seed, _T_LOOK, cam, 1]))
    return _make_scene(seed, cam, _scene_attempt(seed, cam))


def lookalike_source(seed: int, cam: int, look: float) -> int | None:
    """The earlier camera whose room camera `cam` copies, or None. Sources are at least three
    camera numbers back, so always in another home (a home has at most three cameras). Drawn from
    the camera's own stream: the share changes which cameras copy, never anything else."""
    if look <= 0 or cam <= 3:
        return None
    rng = np.random.default_rng([seed, _T_LOOK, cam])
    if rng.random() >= look:
        return None
    return int(rng.integers(1, cam - 2))


def _lookalike_scene(scene: _Scene, rng: np.random.Generator) -> _Scene:
    """The same layout seen with a slight zoom and shift, another tint, one object changed."""
    zoom = rng.uniform(1.02, 1.07)
    cx, cy = rng.uniform(0.35, 0.65, 2)
    sx, sy = rng.uniform(-0.03, 0.03, 2)

    def move(x: float, y: float) -> tuple[float, float]:
        return (x - cx) * zoom + cx + sx, (y - cy) * zoom + cy + sy

    tint = rng.uniform(0.85, 1.15, 3)

    def tinted(c):
        return None if c is None else tuple(int(min(255, max(0, v * t))) for v, t in zip(c, tint))

    regions = [[move(x, y) for x, y in poly] for poly in scene.regions]
    styles = [(tinted(a), tinted(b), axis, z1, z2) for a, b, axis, z1, z2 in scene.region_style]
    ops = []
    for kind, geom, colour, z1, z2, extra in scene.ops:
        (x0, y0), (x1, y1) = move(geom[0], geom[1]), move(geom[2], geom[3])
        ops.append((kind, (x0, y0, x1, y1), tinted(colour), z1, z2, extra))
    solid = [i for i, op in enumerate(ops) if op[2] is not None]
    if solid:  # one object changed: another colour, moved a little
        i = solid[int(rng.integers(len(solid)))]
        kind, (x0, y0, x1, y1), _, z1, z2, extra = ops[i]
        dx, dy = rng.uniform(-0.08, 0.08, 2)
        ops[i] = (kind, (x0 + dx, y0 + dy, x1 + dx, y1 + dy), _colour(rng, 20, 230), *_z(rng), extra)
    return scene._replace(regions=regions, region_style=styles, ops=ops, floor_y=float(move(0.5, scene.floor_y)[1]),
                          ts_box=bool(rng.random() < 0.4))


def _make_scene(seed: int, cam: int, attempt: int) -> _Scene:
    """Procedurally generate one candidate view from (seed, camera, attempt) alone."""
    rng = np.random.default_rng([seed, _T_SCENE, cam, attempt])
    kind = str(rng.choice(["room", "corner", "hall", "outdoor"], p=[0.4, 0.25, 0.15, 0.2]))
    regions, floor_y = _region_map(rng, kind)
    styles: list[tuple] = []
    for r in range(len(regions)):
        if kind == "outdoor" and r == 0:
            top = _colour(rng, 150, 235, 0.5)
            bottom = _shade(top, rng.uniform(0.8, 1.1))
        else:
            top = _colour(rng, 20, 230)
            bottom = _shade(top, rng.uniform(0.55, 1.25))
        styles.append((top, bottom, "y" if rng.random() < 0.7 else "x", *_z(rng)))
    ops: list[tuple] = []
    if kind != "outdoor" and rng.random() < 0.3:  # wallpaper stripes
        c = _shade(styles[0][0], rng.uniform(0.75, 0.92))
        ops.append(("stripes", (0, 0, 1, floor_y), c, *_z(rng), (int(rng.integers(18, 60)), bool(rng.random() < 0.5))))
    if kind == "outdoor":
        for _ in range(int(rng.integers(1, 4))):  # buildings with window grids
            bx = rng.uniform(-0.1, 0.8)
            bw, bh = rng.uniform(0.15, 0.45), rng.uniform(0.15, 0.45)
            box = (bx, floor_y - bh, bx + bw, floor_y + 0.02)
            ops.append(("rect", box, _colour(rng, 30, 220), *_z(rng), None))
            ops.append(("grid", box, _colour(rng, 20, 240), *_z(rng), (int(rng.integers(2, 6)), int(rng.integers(2, 5)))))
        for _ in range(int(rng.integers(1, 4))):  # hedges, trees, cars
            cx, cy = rng.uniform(0, 1), rng.uniform(floor_y, 1.0)
            rw, rh = rng.uniform(0.08, 0.3), rng.uniform(0.06, 0.2)
            ops.append(("ellipse" if rng.random() < 0.6 else "rrect", (cx - rw, cy - rh, cx + rw, cy + rh),
                        _colour(rng, 20, 200), *_z(rng), None))
        if rng.random() < 0.6:
            ops.append(("noise", (0, floor_y, 1, 1), None, 0.0, 0.0, (int(rng.integers(10, 30)), int(rng.integers(1 << 30)))))
    else:
        n_wall = int(rng.integers(1, 4))
        for i in range(n_wall):  # window, door, picture, shelf on the wall
            what = str(rng.choice(["window", "door", "picture", "shelf"], p=[0.35, 0.2, 0.25, 0.2]))
            if i == 0 and rng.random() < 0.6:
                what = "window"
            if what == "window":
                ww, wh = rng.uniform(0.12, 0.32), rng.uniform(0.15, 0.35)
                x0, y0 = rng.uniform(0, 1 - ww), rng.uniform(0.03, max(0.05, floor_y - wh - 0.05))
                box = (x0, y0, x0 + ww, y0 + wh)
                ops.append(("rect", box, _colour(rng, 170, 245, 0.35), *_z(rng), None))
                ops.append(("grid", box, _colour(rng, 40, 240, 0.2), *_z(rng), (int(rng.integers(1, 4)), int(rng.integers(1, 3)))))
                if rng.random() < 0.35:  # blinds
                    ops.append(("stripes", box, _colour(rng, 120, 230, 0.2), *_z(rng), (int(rng.integers(6, 14)), True)))
            elif what == "door":
                dw = rng.uniform(0.09, 0.16)
                x0 = rng.uniform(0, 1 - dw)
                box = (x0, max(0.02, floor_y - rng.uniform(0.35, 0.55)), x0 + dw, floor_y + 0.01)
                ops.append(("rect", box, _colour(rng, 30, 220), *_z(rng), None))
                ops.append(("ellipse", (box[2] - dw * 0.2, (box[1] + box[3]) / 2, box[2] - dw * 0.12, (box[1] + box[3]) / 2 + 0.015),
                            _colour(rng, 150, 240), *_z(rng), None))
            elif what == "picture":
                pw, ph = rng.uniform(0.06, 0.2), rng.uniform(0.06, 0.18)
                x0, y0 = rng.uniform(0, 1 - pw), rng.uniform(0.05, max(0.06, floor_y - ph - 0.08))
                ops.append(("rect", (x0 - 0.008, y0 - 0.012, x0 + pw + 0.008, y0 + ph + 0.012), _colour(rng, 10, 120), *_z(rng), None))
                ops.append(("rect", (x0, y0, x0 + pw, y0 + ph), _colour(rng, 40, 240, 0.8), *_z(rng), None))
            else:
                sw = rng.uniform(0.1, 0.25)
                x0 = rng.uniform(0, 1 - sw)
                box = (x0, max(0.02, floor_y - rng.uniform(0.3, 0.6)), x0 + sw, floor_y + 0.03)
                ops.append(("rect", box, _colour(rng, 25, 200), *_z(rng), None))
                ops.append(("stripes", box, _colour(rng, 10, 120), *_z(rng), (int(rng.integers(4, 8)), True)))
        for _ in range(int(rng.integers(2, 6))):  # furniture on the floor
            what = str(rng.choice(["sofa", "table", "rug", "bed", "cabinet", "plant", "lamp"]))
            cx = rng.uniform(0.05, 0.95)
            base = rng.uniform(floor_y + 0.05, 1.05)
            c = _colour(rng, 15, 235, 0.7)
            if what in ("sofa", "bed", "cabinet"):
                fw = rng.uniform(0.15, 0.45) if what != "cabinet" else rng.uniform(0.08, 0.2)
                fh = rng.uniform(0.12, 0.3) if what != "cabinet" else rng.uniform(0.2, 0.4)
                box = (cx - fw / 2, base - fh, cx + fw / 2, base)
                ops.append(("rrect", box, c, *_z(rng), 0.15))
                if what != "cabinet":
                    ops.append(("rrect", (box[0], box[1], box[2], box[1] + fh * 0.4), _shade(c, rng.uniform(0.6, 1.3)), *_z(rng), 0.3))
                else:
                    ops.append(("stripes", box, _shade(c, 0.6), *_z(rng), (int(rng.integers(2, 5)), True)))
            elif what == "table":
                fw, fh = rng.uniform(0.12, 0.3), rng.uniform(0.1, 0.2)
                top = base - fh
                ops.append(("rect", (cx - fw / 2, top, cx + fw / 2, top + 0.03), c, *_z(rng), None))
                ops.append(("rect", (cx - fw / 2 + 0.01, top, cx - fw / 2 + 0.025, base), c, *_z(rng), None))
                ops.append(("rect", (cx + fw / 2 - 0.025, top, cx + fw / 2 - 0.01, base), c, *_z(rng), None))
            elif what == "rug":
                rw, rh = rng.uniform(0.12, 0.35), rng.uniform(0.04, 0.12)
                box = (cx - rw, base - rh, cx + rw, base + rh)
                ops.append(("ellipse", box, c, *_z(rng), None))
                if rng.random() < 0.5:
                    ops.append(("noise", box, None, 0.0, 0.0, (int(rng.integers(10, 35)), int(rng.integers(1 << 30)))))
            elif what == "plant":
                pw = rng.uniform(0.03, 0.07)
                ops.append(("rect", (cx - pw / 2, base - 0.1, cx + pw / 2, base), _colour(rng, 30, 160), *_z(rng), None))
                ops.append(("ellipse", (cx - pw * 1.6, base - 0.3, cx + pw * 1.6, base - 0.08), _colour(rng, 30, 140, 0.7), *_z(rng), None))
            else:
                ops.append(("rect", (cx - 0.004, base - 0.4, cx + 0.004, base), _colour(rng, 10, 100), *_z(rng), None))
                ops.append(("ellipse", (cx - 0.05, base - 0.47, cx + 0.05, base - 0.38), _colour(rng, 140, 245, 0.4), *_z(rng), None))
    if rng.random() < 0.5:  # a textured wall or ground patch
        x0, y0 = rng.uniform(0, 0.7), rng.uniform(0, 0.7)
        ops.append(("noise", (x0, y0, x0 + rng.uniform(0.1, 0.3), y0 + rng.uniform(0.1, 0.3)), None, 0.0, 0.0,
                    (int(rng.integers(8, 25)), int(rng.integers(1 << 30)))))
    return _Scene(regions, styles, ops, float(floor_y), float(rng.uniform()), float(rng.uniform()),
                  float(rng.uniform(0.0, 0.25)), (float(rng.uniform(0.25, 0.75)), float(rng.uniform(0.3, 0.7))),
                  bool(rng.random() < 0.4), bool(rng.random() < 0.3))


_SIG_SIZE = (256, 144)
_MAX_ATTEMPTS = 12
_MIN_APART = 20  # phash bits between any two cameras' clean bases (day or night, any combination)
_MAX_OWN = 12  # phash bits between one camera's own clean day and night bases
_PLANS: dict[int, tuple[list[int], list[np.ndarray]]] = {}


def _signature(scene: _Scene) -> np.ndarray:
    """phash bits (2 x 64) of a scene's clean day and night look, timestamp band excluded."""
    import imagehash  # only needed here; keeps module import cheap

    out = []
    for night in (False, True):
        g = _paint_scene(scene, night, _PROFILES["normal"].ir_jitter, _SIG_SIZE).convert("L")
        g = g.crop((0, g.height // 10, g.width, g.height))
        out.append(imagehash.phash(g).hash.reshape(-1))
    return np.array(out)


def _scene_attempt(seed: int, cam: int) -> int:
    """Which candidate view camera `cam` uses (rejection sampling, cameras 1..cam in order).

    Random scenes occasionally hash alike; a simulator whose cameras collide would make
    the tool's precision unmeasurable, so each camera keeps the first candidate that stays
    `_MIN_APART` bits from every earlier camera and close to its own infrared look.
    Depends only on the seed, so every process derives the same plan.
    """
    attempts, sigs = _PLANS.setdefault(seed, ([], []))
    while len(attempts) < cam:
        n = len(attempts) + 1
        prev = np.array(sigs) if sigs else np.zeros((0, 2, 64), bool)
        best: tuple[tuple[bool, int], int, np.ndarray] | None = None
        for k in range(_MAX_ATTEMPTS):
            sig = _SIGS.pop((seed, n, k), None)
            if sig is None:
                sig = _signature(_make_scene(seed, n, k))
            own = int((sig[0] != sig[1]).sum())
            apart = int((prev[:, :, None, :] != sig[None, None, :, :]).sum(-1).min()) if len(prev) else 64
            rank = (own <= _MAX_OWN, min(apart, _MIN_APART))
            if best is None or rank > best[0]:
                best = (rank, k, sig)
            if own <= _MAX_OWN and apart >= _MIN_APART:
                break
        assert best is not None
        attempts.append(best[1])
        sigs.append(best[2])
    return attempts[cam - 1]


_SIGS: dict[tuple[int, int, int], np.ndarray] = {}  # (seed, cam, attempt) -> signature, computed ahead in a pool


def _signature_job(job: tuple[int, list[int], int]) -> list[np.ndarray]:
    seed, cams, attempt = job
    return [_signature(_make_scene(seed, n, attempt)) for n in cams]


def plan_scenes(seed: int, cameras: int, workers: int) -> None:
    """Plan every camera's scene as `_scene_attempt` does, with the first candidates' signatures
    (the costly part) rendered ahead in a process pool; the accept-or-retry pass stays sequential
    and reads them, so the plan is the same whatever the worker count."""
    done = len(_PLANS.get(seed, ([], []))[0])
    todo = list(range(done + 1, cameras + 1))
    if workers > 1 and len(todo) >= 64:
        chunk = max(16, len(todo) // (workers * 8) + 1)
        jobs = [(seed, todo[i:i + chunk], 0) for i in range(0, len(todo), chunk)]
        with ProcessPoolExecutor(max_workers=workers, mp_context=_mp_context()) as ex:
            for (_, cams, attempt), sigs in zip(jobs, ex.map(_signature_job, jobs)):
                _SIGS.update({(seed, n, attempt): sig for n, sig in zip(cams, sigs)})
    _scene_attempt(seed, cameras)
    for key in [k for k in _SIGS if k[0] == seed]:
        del _SIGS[key]


def _ir_grey(colour: tuple[int, int, int], z1: float, z2: float, jitter: float) -> int:
    """Infrared grey of a surface: its day luminance bent by a per-object reflectance."""
    return int(np.clip(_lum(colour) * math.exp(z1 * jitter) + z2 * 40 * jitter, 4, 250))


def _paint_scene(scene: _Scene, night: bool, jitter: float, size: tuple[int, int] = (_W, _H)) -> Image.Image:
    """Rasterise a scene (1280x720 normally): colour by day, reflectance greys for infrared."""
    w, h = size
    k = w / _W  # pixel quantities in the scene are given for the 1280 canvas
    mode = "L" if night else "RGB"
    img = Image.new(mode, (w, h))
    t = np.linspace(0.0, 1.0, max(w, h), dtype=np.float32)
    for poly, (ca, cb, axis, z1, z2) in zip(scene.regions, scene.region_style):
        n = h if axis == "y" else w
        if night:
            ga, gb = _ir_grey(ca, z1, z2, jitter), _ir_grey(cb, z1, z2, jitter)
            ramp = (ga + (gb - ga) * t[:n]).astype(np.uint8)
        else:
            a, b = np.array(ca, np.float32), np.array(cb, np.float32)
            ramp = (a + (b - a) * t[:n, None]).astype(np.uint8)
        ramp = ramp.reshape((n, 1) + ramp.shape[1:]) if axis == "y" else ramp.reshape((1, n) + ramp.shape[1:])
        grad = Image.fromarray(np.ascontiguousarray(ramp), mode).resize((w, h), Image.NEAREST)
        mask = Image.new("L", (w, h))
        ImageDraw.Draw(mask).polygon([(x * w, y * h) for x, y in poly], fill=255)
        img.paste(grad, (0, 0), mask)
    draw = ImageDraw.Draw(img)
    for kind, geom, colour, z1, z2, extra in scene.ops:
        box = (geom[0] * w, geom[1] * h, geom[2] * w, geom[3] * h)
        box = (box[0], box[1], max(box[0] + 1, box[2]), max(box[1] + 1, box[3]))
        fill = None
        if colour is not None:
            fill = _ir_grey(colour, z1, z2, jitter) if night else colour
        if kind == "rect":
            draw.rectangle(box, fill=fill)
        elif kind == "rrect":
            draw.rounded_rectangle(box, radius=(extra or 0.2) * min(box[2] - box[0], box[3] - box[1]), fill=fill)
        elif kind == "ellipse":
            draw.ellipse(box, fill=fill)
        elif kind == "stripes":  # extra = (n, horizontal): n lines across, or one line every n px
            n, horizontal = extra
            if horizontal:
                width = max(2, int((box[3] - box[1]) / (n * 4)))
                for i in range(1, n + 1):
                    yy = box[1] + (box[3] - box[1]) * i / (n + 1)
                    draw.line((box[0], yy, box[2], yy), fill=fill, width=width)
            else:
                step = max(2.0, n * k)
                xx = box[0] + step
                while xx < box[2]:
                    draw.line((xx, box[1], xx, box[3]), fill=fill, width=max(1, int(step / 5)))
                    xx += step
        elif kind == "grid":
            cols, rows = extra
            lw = max(1, int(min(box[2] - box[0], box[3] - box[1]) * 0.03), int(3 * k))
            for i in range(1, cols):
                xx = box[0] + (box[2] - box[0]) * i / cols
                draw.line((xx, box[1], xx, box[3]), fill=fill, width=lw)
            for i in range(1, rows):
                yy = box[1] + (box[3] - box[1]) * i / rows
                draw.line((box[0], yy, box[2], yy), fill=fill, width=lw)
        elif kind == "noise":
            amp, nseed = extra
            x0, y0 = max(0, int(box[0])), max(0, int(box[1]))
            x1, y1 = min(w, int(box[2])), min(h, int(box[3]))
            if x1 - x0 < 2 or y1 - y0 < 2:
                continue
            patch = np.asarray(img.crop((x0, y0, x1, y1)), np.int16)
            nrng = np.random.default_rng(nseed)
            cell = max(2, round(8 * k))
            blobs = nrng.normal(0, amp, ((y1 - y0) // cell + 1, (x1 - x0) // cell + 1)).astype(np.float32)
            blobs = np.repeat(np.repeat(blobs, cell, 0), cell, 1)[: y1 - y0, : x1 - x0]
            patch = patch + (blobs if night else blobs[:, :, None]).astype(np.int16)
            img.paste(Image.fromarray(patch.clip(0, 255).astype(np.uint8), img.mode), (x0, y0))
    return img


@lru_cache(maxsize=16)
def _radial(strength: float, hotspot: float, centre: tuple[float, float] = (0.5, 0.5)) -> Image.Image:
    """Illumination falloff of an IR-lit (or lens-vignetted) frame as an L mask, 255 at `centre`."""
    h, w = _H // 4, _W // 4
    y = (np.arange(h, dtype=np.float32)[:, None] - h * centre[1]) / (h / 2)
    x = (np.arange(w, dtype=np.float32)[None, :] - w * centre[0]) / (w / 2)
    r2 = x * x * 0.6 + y * y * 0.4
    gain = (1 - strength * r2) * (1 + hotspot * np.exp(-r2 * 4))
    gain = gain / max(1.0, float(gain.max()))
    return Image.fromarray((gain.clip(0, 1) * 255).astype(np.uint8), "L").resize((_W, _H), Image.BILINEAR)


@lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


@lru_cache(maxsize=8)
def _base_full(seed: int, cam: int, night: bool, difficulty: str, look: float = 0.0) -> Image.Image:
    """A camera's 1280x720 day-colour or night-infrared base, rendered once per process."""
    prof = _PROFILES[difficulty]
    scene = _scene(seed, cam, look)
    img = _paint_scene(scene, night, prof.ir_jitter)
    if not night:
        return ImageChops.multiply(img, _radial(0.08, 0.0).convert("RGB"))
    v = prof.vignette[0] + (prof.vignette[1] - prof.vignette[0]) * scene.vignette_u
    img = ImageChops.multiply(img, _radial(round(v, 4), round(scene.hotspot, 4), scene.centre))
    k = prof.flatten[0] + (prof.flatten[1] - prof.flatten[0]) * scene.flatten_u
    m = float(np.asarray(img.reduce(8)).mean())
    return img.point([int(min(255, max(0, m + (i - m) * k))) for i in range(256)])


@lru_cache(maxsize=24)
def _base(seed: int, cam: int, night: bool, difficulty: str, size: tuple[int, int], look: float = 0.0) -> Image.Image:
    """The base at one output size, edge-padded so camera shake is a crop."""
    full = _base_full(seed, cam, night, difficulty, look)
    img = full if size == (_W, _H) else full.reduce(_W // size[0])
    arr = np.asarray(img)
    pad = ((_PAD, _PAD), (_PAD, _PAD)) + (((0, 0),) if arr.ndim == 3 else ())
    return Image.fromarray(np.pad(arr, pad, mode="edge"), img.mode)


@lru_cache(maxsize=6)
def _noise_field(channels: int, sigma: float) -> Image.Image:
    """A fixed sensor-noise texture (centred on 128); frames crop it at random offsets."""
    rng = np.random.default_rng([_T_NOISE, channels, int(sigma * 100)])
    shape = (_H + 64, _W + 64) + ((channels,) if channels > 1 else ())
    arr = np.clip(128 + rng.normal(0, sigma, shape), 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB" if channels == 3 else "L")


# --------------------------------------------------------------------------- frames


@lru_cache(maxsize=3)
def _dark_pattern(w: int, h: int) -> np.ndarray:
    """Fixed-pattern dark signal of the (single) camera model: smooth blotches of 0-9 levels."""
    rng = np.random.default_rng([_T_NOISE, 0xDA4C])
    coarse = Image.fromarray((rng.uniform(0, 1, (5, 9)) * 255).astype(np.uint8), "L")
    return np.asarray(coarse.resize((w, h), Image.BICUBIC), np.float32) * (9 / 255)


class _FrameSpec(NamedTuple):
    """Everything about one frame except its pixels' randomness (cheap to pickle)."""

    tag: int
    index: int
    cam: int
    ts_ms: int
    night: bool
    width: int
    height: int
    fmt: str  # "jpeg" | "png" | "webp"
    quality: int
    black: bool
    cut: float  # fraction of bytes kept; 0.0 keeps the whole file


def _lights(seed: int, cam: int, ts_ms: int, prof: _Profile) -> tuple[float, float, tuple[float, float, float]]:
    """Room lighting per camera and half hour, so frames close in time share it."""
    rng = np.random.default_rng([seed, _T_LIGHTS, cam, ts_ms // 1_800_000])
    if rng.random() < prof.lights_off_p:
        gain = rng.uniform(*prof.lights_off_gain)
        contrast = rng.uniform(0.75, 0.95)
    else:
        gain = rng.uniform(0.92, 1.1)
        contrast = rng.uniform(0.95, 1.1)
    tint = tuple(float(x) for x in rng.uniform(0.93, 1.07, 3))
    return float(gain), float(contrast), tint  # type: ignore[return-value]


def _draw_person(draw: ImageDraw.ImageDraw, rng: np.random.Generator, w: int, h: int, night: bool,
                 area: tuple[float, float]) -> None:
    """A walking silhouette (head ellipse + rounded body) covering `area` of the frame."""
    target = rng.uniform(*area) * w * h
    pw = math.sqrt(target / (2.6 * 0.85))
    ph = 2.6 * pw
    if ph > 0.95 * h:
        ph = 0.95 * h
        pw = target / (0.85 * ph)
    x0 = rng.uniform(0, w - pw)
    bottom = rng.uniform(max(ph, 0.65 * h), h + 0.05 * h)
    y0 = bottom - ph
    head = 0.36 * ph
    if night:
        body_c = int(rng.integers(120, 235))
        head_c = min(255, body_c + int(rng.integers(0, 30)))
        legs_c = int(rng.integers(60, 200))
    else:
        body_c = tuple(int(v) for v in rng.integers(10, 245, 3))
        head_c = tuple(int(v) for v in (rng.integers(90, 230) * np.array([1.0, 0.8, 0.65])))
        legs_c = tuple(int(v) for v in rng.integers(10, 160, 3))
    hw = min(pw * 0.55, head * 0.6)
    cx = x0 + pw / 2
    draw.ellipse((cx - hw / 2, y0, cx + hw / 2, y0 + head * 0.55), fill=head_c)
    draw.rounded_rectangle((x0, y0 + head * 0.55, x0 + pw, y0 + ph * 0.62), radius=pw * 0.3, fill=body_c)
    draw.rounded_rectangle((x0 + pw * 0.12, y0 + ph * 0.58, x0 + pw * 0.88, bottom), radius=pw * 0.15, fill=legs_c)


def _draw_timestamp(img: Image.Image, ts_ms: int, boxed: bool) -> None:
    """Burn in the frame's time, top-left, like camera firmware does."""
    w, h = img.size
    size = max(9, round(h * 0.045))
    font = _font(size)
    text = f"{_ms_to_dt(ts_ms):%Y-%m-%d %H:%M:%S}"
    xy = (max(3, round(w * 0.015)), max(2, round(h * 0.015)))
    draw = ImageDraw.Draw(img)
    white = 255 if img.mode == "L" else (255, 255, 255)
    black = 0 if img.mode == "L" else (0, 0, 0)
    if boxed:
        x0, y0, x1, y1 = draw.textbbox(xy, text, font=font)
        draw.rectangle((x0 - 3, y0 - 2, x1 + 3, y1 + 2), fill=black)
        draw.text(xy, text, font=font, fill=white)
    else:
        draw.text(xy, text, font=font, fill=white, stroke_width=max(1, size // 9), stroke_fill=black)


def _render_image(seed: int, difficulty: str, spec: _FrameSpec, look: float = 0.0) -> Image.Image:
    """Pixels of one frame: the camera's base plus this frame's lights, person, shake, noise."""
    prof = _PROFILES[difficulty]
    rng = np.random.default_rng([seed, _T_PIXELS, spec.tag, spec.index])
    w, h = spec.width, spec.height
    scene = _scene(seed, spec.cam, look)
    if spec.black:
        return _render_dark(seed, difficulty, spec, look, rng, scene)
    s = prof.shake
    dx, dy = (int(v) for v in rng.integers(-s, s + 1, 2))
    base = _base(seed, spec.cam, spec.night, difficulty, (w, h), look)
    img = base.crop((_PAD + dx, _PAD + dy, _PAD + dx + w, _PAD + dy + h))
    if spec.night:
        g = rng.uniform(0.9, 1.1)  # IR auto-exposure drift
        img = img.point(np.clip(np.arange(256) * g, 0, 255).astype(np.uint8).tolist())
    else:
        gain, contrast, tint = _lights(seed, spec.cam, spec.ts_ms, prof)
        gain *= rng.uniform(0.96, 1.04)
        ramp = (np.arange(256, dtype=np.float64) - 128) * contrast + 128
        lut = np.concatenate([np.clip(ramp * gain * t, 0, 255) for t in tint]).astype(np.uint8)
        img = img.point(lut.tolist())
    if rng.random() < prof.person_p:
        _draw_person(ImageDraw.Draw(img), rng, w, h, spec.night, prof.person_area)
    sigma = prof.noise_night if spec.night else prof.noise_day
    noise = _noise_field(1 if spec.night else 3, sigma)
    ox, oy = int(rng.integers(0, noise.width - w + 1)), int(rng.integers(0, noise.height - h + 1))
    img = ImageChops.add(img, noise.crop((ox, oy, ox + w, oy + h)), 1.0, -128)
    _draw_timestamp(img, spec.ts_ms, scene.ts_box)
    return img


def _render_dark(seed: int, difficulty: str, spec: _FrameSpec, look: float, rng: np.random.Generator,
                 scene: _Scene) -> Image.Image:
    """Lights off and infrared failed. Either the sensor's dark signal alone (its fixed pattern,
    alike for every home), or the room itself at 3-12 % brightness under sensor noise: real
    structure, but faint enough that noise and JPEG grain decide its hash."""
    w, h = spec.width, spec.height
    dark = _dark_pattern(w, h) * rng.uniform(0.8, 1.0)
    if rng.random() < 0.35:
        arr = rng.uniform(0.5, 2) + dark + rng.integers(0, 3, (h, w))
        img = Image.fromarray(np.clip(arr, 0, 12).astype(np.uint8), "L")
    else:
        s = _PROFILES[difficulty].shake
        dx, dy = (int(v) for v in rng.integers(-s, s + 1, 2))
        base = _base(seed, spec.cam, spec.night, difficulty, (w, h), look).convert("L")
        room = np.asarray(base.crop((_PAD + dx, _PAD + dy, _PAD + dx + w, _PAD + dy + h)), np.float32)
        sigma = rng.uniform(1.2, 3.5)
        arr = room * rng.uniform(0.03, 0.12) + dark + rng.normal(0, sigma, (h, w)) + rng.uniform(0, 3)
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L")
    if rng.random() < 0.7:
        _draw_timestamp(img, spec.ts_ms, scene.ts_box)
    return img


def _encode(img: Image.Image, spec: _FrameSpec, grey_ok: bool) -> bytes:
    """Encode as the spec says and cut truncated files short."""
    if img.mode == "L" and not grey_ok:
        img = img.convert("RGB")
    buf = io.BytesIO()
    if spec.fmt == "png":
        img.save(buf, "PNG", compress_level=1)
    elif spec.fmt == "webp":
        img.save(buf, "WEBP", quality=spec.quality, method=2)
    else:
        img.save(buf, "JPEG", quality=spec.quality)
    data = buf.getvalue()
    if spec.cut:
        data = data[: int(len(data) * spec.cut)]
    return data


def _render_bytes(seed: int, difficulty: str, spec: _FrameSpec, look: float = 0.0) -> bytes:
    scene = _scene(seed, spec.cam, look)
    return _encode(_render_image(seed, difficulty, spec, look), spec, scene.grey_night and spec.fmt == "jpeg")


def _render_chunk(job: tuple[int, str, float, list[_FrameSpec]]) -> list[bytes]:
    """Worker entry: render a camera-sorted run of frames (keeps the base cache warm)."""
    seed, difficulty, look, specs = job
    return [_render_bytes(seed, difficulty, s, look) for s in specs]


def render_frame(device_id: str, when: datetime | str, *, seed: int = 7, difficulty: str = "normal",
                 size: tuple[int, int] = (640, 360), index: int = 0, near_black: bool = False,
                 lookalike: float = 0.0) -> Image.Image:
    """Render one decoded frame of a simulated camera (for tests and hash sanity checks).

    `device_id` is ``cam-NNNN``; the scene depends only on (seed, NNNN), the variation on
    `index`. Day or infrared night follows the hour of `when` (UTC).
    """
    if size not in _SIZES:
        raise ValueError(f"size must be one of {_SIZES}")
    if difficulty not in _PROFILES:
        raise ValueError(f"difficulty must be one of {sorted(_PROFILES)}")
    dt = _parse_ts(when) if isinstance(when, str) else when
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    ms = int(dt.timestamp() * 1000)
    cam = int(device_id.rsplit("-", 1)[1])
    spec = _FrameSpec(_PREVIEW, index, cam, ms, _is_night(ms), size[0], size[1], "jpeg", 90, near_black, 0.0)
    return _render_image(seed, difficulty, spec, lookalike)


# --------------------------------------------------------------------------- world


@dataclass
class _Camera:
    number: int
    device_id: str
    home_id: str
    owner: str
    shared: list[str]
    rate: float = 0.0
    rare: bool = False
    own_requests: int = 0


@dataclass
class _Request:
    t_ms: int
    cam: int  # requested camera number
    account: str
    integration: str
    source: int = 0  # served camera number
    kind: str = "own"  # own | leak | home_mixup
    honest: bool = False
    forced: bool = False
    key: str = ""
    extra: dict = field(default_factory=dict)


class _World(NamedTuple):
    cams: dict[int, _Camera]
    homes: dict[str, list[int]]
    home_accounts: dict[str, list[str]]
    account_home: dict[str, str]
    prefs: dict[str, np.ndarray]
    pref_cdf: dict[str, np.ndarray]  # filled on first use


def _build_world(p: SimParams, rng: np.random.Generator) -> _World:
    """Homes, cameras and accounts, with a few partially shared homes."""
    used: set[str] = set()

    def new_account() -> str:
        while True:
            a = f"acct-{int(rng.integers(0, 16 ** 6)):06x}"
            if a not in used:
                used.add(a)
                return a

    cams: dict[int, _Camera] = {}
    homes: dict[str, list[int]] = {}
    home_accounts: dict[str, list[str]] = {}
    for hi in range(1, p.homes + 1):
        hid = f"home-{hi:03d}"
        ncam = int(rng.choice([1, 2, 3], p=[0.35, 0.4, 0.25]))
        owner = new_account()
        members = [new_account() for _ in range(int(rng.choice([0, 1, 2], p=[0.35, 0.4, 0.25])))]
        nums = []
        for _ in range(ncam):
            num = len(cams) + 1
            cams[num] = _Camera(num, f"cam-{num:04d}", hid, owner, list(members))
            nums.append(num)
        if members and ncam > 1 and rng.random() < 0.2:  # a member sees only some cameras
            m = members[int(rng.integers(len(members)))]
            keep = nums[int(rng.integers(ncam))]
            for n in nums:
                if n != keep and rng.random() < 0.7:
                    cams[n].shared.remove(m)
        homes[hid] = nums
        home_accounts[hid] = [owner, *members]
    # Guarantee one partially shared home when the world allows it.
    if not any(set(cams[n].shared) != set(home_accounts[h][1:]) for h, ns in homes.items() for n in ns):
        for h, ns in homes.items():
            if len(ns) > 1 and len(home_accounts[h]) > 1:
                cams[ns[-1]].shared.remove(home_accounts[h][1])
                break
    account_home = {a: h for h, accts in home_accounts.items() for a in accts}
    prefs = {}
    for a in sorted(account_home):
        w = rng.dirichlet([0.6, 0.6, 0.6, 0.6])
        prefs[a] = w
    # request rates: lognormal, ~2 requests per camera-hour on average; ~10% rarely used
    for n in sorted(cams):
        cams[n].rate = float(rng.lognormal(math.log(2.0) - 0.32, 0.8))
    nrare = max(1, round(0.1 * len(cams))) if len(cams) >= 3 else 0
    for n in sorted(int(x) for x in rng.choice(sorted(cams), size=nrare, replace=False)):
        cams[n].rare = True
    return _World(cams, homes, home_accounts, account_home, prefs, {})


def _entitled(cam: _Camera) -> list[str]:
    return [cam.owner, *cam.shared]


@lru_cache(maxsize=16)
def _owner_first_cdf(accounts: int) -> np.ndarray:
    weights = np.array([2.0] + [1.0] * (accounts - 1))
    return _cdf(weights / weights.sum())


def _cdf(p: np.ndarray) -> np.ndarray:
    cdf = np.asarray(p, dtype=np.float64).cumsum()
    return cdf / cdf[-1]


def _choose(rng: np.random.Generator, cdf: np.ndarray) -> int:
    """`rng.choice(len(p), p=p)` for a precomputed cdf: the same single uniform draw and search
    (so the same stream and result), without the per-call checks that made a 1,000-home world
    spend most of its time in numpy's argument validation."""
    return int(cdf.searchsorted(rng.random(), side="right"))


def _new_request(world: _World, rng: np.random.Generator, cam: _Camera, t_ms: int, account: str | None = None) -> _Request:
    accts = _entitled(cam)
    if account is None:
        account = accts[_choose(rng, _owner_first_cdf(len(accts)))]
    cdf = world.pref_cdf.get(account)
    if cdf is None:
        cdf = world.pref_cdf[account] = _cdf(world.prefs[account])
    integ = INTEGRATIONS[_choose(rng, cdf)]
    return _Request(t_ms, cam.number, account, integ, source=cam.number)


def _simulate_requests(p: SimParams, world: _World, rng: np.random.Generator, t0: int
                       ) -> tuple[list[_Request], tuple[int, int], int | None]:
    """Who asked for which camera when, and what they were actually served."""
    span = p.hours * 3_600_000
    cams = world.cams
    reqs: list[_Request] = []
    for n in sorted(cams):
        cam = cams[n]
        count = int(rng.integers(1, 4)) if cam.rare else int(rng.poisson(cam.rate * p.hours))
        for _ in range(count):
            reqs.append(_new_request(world, rng, cam, t0 + int(rng.integers(0, span)), None))
    dur = min(2 * 3_600_000, span // 3)
    lo = int(0.3 * span)
    hi = max(lo, int(0.7 * span) - dur)
    ws = t0 + int(rng.integers(lo, hi + 1))
    we = ws + dur
    reqs.sort(key=lambda r: (r.t_ms, r.cam, r.account))

    victim: int | None = None
    rares = [n for n in sorted(cams) if cams[n].rare]
    if rares and p.bug_rate > 0 and len(world.homes) > 1:
        victim = rares[int(rng.integers(len(rares)))]
    recent: deque[int] = deque(maxlen=20)
    mixup_p = 0.01
    numbers = sorted(cams)
    position = {n: i for i, n in enumerate(numbers)}
    for r in reqs:
        home = cams[r.cam].home_id
        # The cameras of other homes, in camera order, without listing them: a home's cameras
        # are consecutive, so the k-th other camera skips the home's run (linear, not cameras^2).
        own = world.homes[home]
        first, span_own = position[own[0]], len(own)
        n_others = len(numbers) - span_own
        protected = r.cam == victim  # keep the victim's few own frames its own
        if ws <= r.t_ms < we and n_others and not protected and rng.random() < p.bug_rate:
            pool = [n for n in recent if cams[n].home_id != home]
            if pool and rng.random() < 0.5:
                r.source = pool[int(rng.integers(len(pool)))]
            else:
                k = int(rng.integers(n_others))
                r.source = numbers[k if k < first else k + span_own]
            r.kind = "leak"
        elif len(world.homes[home]) > 1 and not protected and rng.random() < mixup_p:
            sib = [n for n in world.homes[home] if n != r.cam]
            r.source = sib[int(rng.integers(len(sib)))]
            r.kind = "home_mixup"
        recent.append(r.cam)

    own_counts = Counter(r.cam for r in reqs)
    for n in cams:
        cams[n].own_requests = own_counts[n]

    if victim is not None:
        reqs = _force_outvoted(world, rng, reqs, victim, ws, we)
    _ensure_mixups(world, rng, reqs, victim)
    for r in reqs:  # ~10% of leaks are logged under the device actually served
        if r.kind == "leak" and not r.forced and rng.random() < 0.1:
            r.honest = True
    reqs.sort(key=lambda r: (r.t_ms, r.cam, r.account))
    return reqs, (ws, we), victim


def _ensure_mixups(world: _World, rng: np.random.Generator, reqs: list[_Request], victim: int | None) -> None:
    """Guarantee the not-a-leak cases exist: a same-home mix-up, ideally to an unlisted member."""
    cams = world.cams

    def lacking(r: _Request) -> list[int]:
        return [s for s in world.homes[cams[r.cam].home_id] if s != r.cam and r.account not in _entitled(cams[s])]

    mixups = [r for r in reqs if r.kind == "home_mixup"]
    if any(r.account not in _entitled(cams[r.source]) for r in mixups):
        return
    cands = [r for r in reqs if r.kind == "own" and r.cam != victim and len(world.homes[cams[r.cam].home_id]) > 1]
    subtle = [r for r in cands if lacking(r)]
    if subtle:
        r = subtle[int(rng.integers(len(subtle)))]
        r.source, r.kind = lacking(r)[0], "home_mixup"
    elif cands and not mixups:
        r = cands[int(rng.integers(len(cands)))]
        r.source, r.kind = [s for s in world.homes[cams[r.cam].home_id] if s != r.cam][0], "home_mixup"


def _force_outvoted(world: _World, rng: np.random.Generator, reqs: list[_Request], victim: int,
                    ws: int, we: int) -> list[_Request]:
    """Make the victim camera leak to more accounts (and log votes) than it has own requests."""
    cams = world.cams
    own = cams[victim].own_requests
    need = own + 1
    vhome = cams[victim].home_id
    other_homes = [h for h in sorted(world.homes) if h != vhome]
    # aggressor: the busiest camera of the other home with the most accounts
    best = max(other_homes, key=lambda h: (len(world.home_accounts[h]),
                                           sum(cams[n].rate for n in world.homes[h]), h))
    aggressor = max(world.homes[best], key=lambda n: (len(_entitled(cams[n])), cams[n].rate, -n))
    targets: list[tuple[str, int]] = []  # (recipient, camera they request)
    agg_accts = _entitled(cams[aggressor])
    for i in range(need):  # aggressor-logged deliveries outvote the victim's own
        targets.append((agg_accts[i % len(agg_accts)], aggressor))
    recips = {a for a, _ in targets}
    for h in other_homes:
        if len(recips) >= need:
            break
        if h == best:
            continue
        n = world.homes[h][0]
        a = cams[n].owner
        targets.append((a, n))
        recips.add(a)
    used: set[int] = set()
    for account, cam in targets:
        match = None
        for i, r in enumerate(reqs):
            if i not in used and ws <= r.t_ms < we and r.account == account and r.cam == cam:
                match = i
                break
        if match is None:
            r = _new_request(world, rng, cams[cam], int(rng.integers(ws, we)), account)
            reqs.append(r)
            cams[cam].own_requests += 1
            match = len(reqs) - 1
        used.add(match)
        r = reqs[match]
        r.source, r.kind, r.forced = victim, "leak", True
    return reqs


# --------------------------------------------------------------------------- files


def _spec_for(p: SimParams, prof: _Profile, tag: int, index: int, cam: int, ts_ms: int) -> _FrameSpec:
    """Per-frame choices (size, format, quality, breakage) from the frame's own RNG."""
    rng = np.random.default_rng([p.seed, _T_SPEC, tag, index])
    night = _is_night(ts_ms)
    if tag == _REFERENCE:
        w, h = _SIZES[1] if rng.random() < 0.8 else _SIZES[2]
        q = int(rng.integers((prof.quality[0] + prof.quality[1]) // 2, prof.quality[1] + 1))
        dark = night and rng.random() < 0.3  # an owner's own night clip with the lights and IR off
        return _FrameSpec(tag, index, cam, ts_ms, night, w, h, "jpeg", q, dark, 0.0)
    u = rng.random()
    w, h = _SIZES[0] if u < 0.25 else (_SIZES[2] if u < 0.35 else _SIZES[1])
    q = int(rng.integers(prof.quality[0], prof.quality[1] + 1))
    fmt = "jpeg"
    if rng.random() < prof.alt_format:
        fmt = "png" if rng.random() < 0.5 else "webp"
    black = night and rng.random() < prof.near_black
    cut = 0.0
    if fmt == "jpeg" and rng.random() < prof.truncated:
        cut = float(rng.uniform(0.45, 0.9))
    return _FrameSpec(tag, index, cam, ts_ms, night, w, h, fmt, q, black, cut)


def _mp_context() -> multiprocessing.context.BaseContext:
    """Fork when it is safe (single-threaded, fast: workers inherit the scene plan), else forkserver."""
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def _render_all(seed: int, difficulty: str, specs: list[_FrameSpec], workers: int, look: float = 0.0) -> list[bytes]:
    """Render specs in a process pool; output order follows `specs`, not scheduling."""
    order = sorted(range(len(specs)), key=lambda i: (specs[i].cam, specs[i].night, specs[i].width, i))
    chunk = max(16, min(96, len(order) // max(1, workers * 6) + 1))
    groups = [order[i:i + chunk] for i in range(0, len(order), chunk)]
    jobs = [(seed, difficulty, look, [specs[i] for i in g]) for g in groups]
    if workers <= 1 or len(specs) < 64:
        results = [_render_chunk(j) for j in jobs]
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=_mp_context()) as ex:
            results = list(ex.map(_render_chunk, jobs))
    out: list[bytes] = [b""] * len(specs)
    for g, res in zip(groups, results):
        for i, data in zip(g, res):
            out[i] = data
    return out


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


def _assistant_ts(ms: int, rng: np.random.Generator) -> str:
    dt = _ms_to_dt(ms)
    if rng.random() < 0.5:
        return f"{dt:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}{int(rng.integers(0, 1000)):03d}+00:00"
    return f"{dt:%Y-%m-%dT%H:%M:%S}+00:00"


def _insert_malformed(lines: list[str], bad: list[tuple[str, str]], rng: np.random.Generator,
                      first: int) -> list[tuple[str, str | None]]:
    """Insert malformed lines at random positions (never before line `first`)."""
    out: list[tuple[str, str | None]] = [(ln, None) for ln in lines]
    for text, kind in bad:
        pos = int(rng.integers(first, len(out) + 1))
        out.insert(pos, (text, kind))
    return out


def _write_logs(root: Path, events: list[dict], rng: np.random.Generator) -> tuple[list[dict], int, int]:
    """Split events into three overlapping exports; returns malformed lines, lines written, duplicates."""
    files: dict[str, list[dict]] = {_APP_LOG: [], _ASSISTANT_LOG: [], _WEB_LOG: []}
    dup = 0
    names = list(files)
    for ev in events:
        primary = _EXPORT_OF[ev["integration"]]
        files[primary].append(ev)
        if rng.random() < 0.1:
            alt = [n for n in names if n != primary]
            files[alt[int(rng.integers(2))]].append(ev)
            dup += 1
    for evs in files.values():
        evs.sort(key=lambda e: (e["ts_ms"], e["request_id"], e["event"]))
    malformed: list[dict] = []
    written = 0

    # app export: canonical JSON lines, gzip
    app = [json.dumps({"ts": _rfc3339_ms(e["ts_ms"]), **{k: e[k] for k in _CANONICAL[1:]}}, separators=(",", ":"))
           for e in files[_APP_LOG]]
    written += len(app)
    bad = []
    if app:
        src = app[int(rng.integers(len(app)))]
        bad.append((src[: int(len(src) * rng.uniform(0.3, 0.8))], "truncated_json"))
    bad.append(("<html><body><h1>502 Bad Gateway</h1></body></html>", "garbage"))
    rows = _insert_malformed(app, bad, rng, 1)
    data = "".join(t + "\n" for t, _ in rows).encode()
    with open(root / _APP_LOG, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(data)
    malformed += [{"file": _APP_LOG, "line": i + 1, "kind": k} for i, (_, k) in enumerate(rows) if k]

    # assistant export: Cloud Logging-shaped nested lines, zstd
    asst = []
    for e in files[_ASSISTANT_LOG]:
        payload = {"agentUserId": e["account_id"], "deviceId": e["device_id"], "eventType": e["event"],
                   "integration": e["integration"], "requestId": e["request_id"]}
        if e["snapshot"] is not None:
            payload["snapshotKey"] = e["snapshot"]
        asst.append(json.dumps({"timestamp": _assistant_ts(e["ts_ms"], rng), "severity": "INFO",
                                "logName": "projects/camcloud-prod/logs/assistant-bridge",
                                "jsonPayload": payload}, separators=(",", ":")))
    written += len(asst)
    bad = []
    if asst:
        src = asst[int(rng.integers(len(asst)))]
        bad.append((src[: int(len(src) * rng.uniform(0.3, 0.8))], "truncated_json"))
    if rng.random() < 0.5:
        bad.append(("\x00\x00\x00\x00#partial-flush", "garbage"))
    rows = _insert_malformed(asst, bad, rng, 1)
    data = "".join(t + "\n" for t, _ in rows).encode()
    (root / _ASSISTANT_LOG).write_bytes(zstandard.ZstdCompressor(level=3).compress(data))
    malformed += [{"file": _ASSISTANT_LOG, "line": i + 1, "kind": k} for i, (_, k) in enumerate(rows) if k]

    # web export: CSV, ts as epoch ms or epoch seconds
    web = []
    for e in files[_WEB_LOG]:
        ts = e["ts_ms"] if rng.random() < 0.5 else e["ts_ms"] // 1000
        web.append([str(ts), e["account_id"], e["device_id"], e["snapshot"] or "", e["event"],
                    e["integration"], e["request_id"]])
    written += len(web)

    def csv_line(row: list[str]) -> str:
        s = io.StringIO()
        csv.writer(s, lineterminator="").writerow(row)
        return s.getvalue()

    web_lines = [csv_line(r) for r in web]
    bad = []
    for _ in range(1 + int(rng.random() < 0.5)):
        if web:
            bad.append((csv_line(web[int(rng.integers(len(web)))][:-1]), "missing_column"))
    rows = _insert_malformed(web_lines, bad, rng, 0)
    text = csv_line(list(_CANONICAL)) + "\n" + "".join(t + "\n" for t, _ in rows)
    (root / _WEB_LOG).write_bytes(text.encode())
    malformed += [{"file": _WEB_LOG, "line": i + 2, "kind": k} for i, (_, k) in enumerate(rows) if k]
    return malformed, written, dup


def _hex(rng: np.random.Generator, digits: int, used: set[str], prefix: str) -> str:
    while True:
        v = prefix + rng.bytes(digits // 2).hex()
        if v not in used:
            used.add(v)
            return v


def generate_incident(out_dir: Path, params: SimParams = SimParams(), workers: int | None = None) -> Incident:
    """Write a simulated incident (inputs + truth.json) into `out_dir` and describe it."""
    p = params
    if p.difficulty not in _PROFILES:
        raise ValueError(f"difficulty must be one of {sorted(_PROFILES)}, not {p.difficulty!r}")
    if p.homes < 1 or p.hours < 1 or not 0.0 <= p.bug_rate <= 1.0:
        raise ValueError("need homes >= 1, hours >= 1 and 0 <= bug_rate <= 1")
    prof = _PROFILES[p.difficulty]
    workers = max(1, workers if workers is not None else (os.cpu_count() or 1))
    root = Path(out_dir)
    for sub in ("logs", "snapshots") + (("references",) if p.references else ()):
        (root / sub).mkdir(parents=True, exist_ok=True)
    start = _parse_ts(p.start)
    t0 = int(start.timestamp() * 1000)
    mtime = int(start.timestamp())

    rng = np.random.default_rng([p.seed, _T_WORLD])
    world = _build_world(p, rng)
    cams = world.cams
    plan_scenes(p.seed, len(cams), workers)  # plan every scene once, before render workers fork
    reqs, (ws, we), victim = _simulate_requests(p, world, rng, t0)

    # devices.csv
    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(["device_id", "home_id", "owner_account", "shared_accounts"])
    for n in sorted(cams):
        c = cams[n]
        wr.writerow([c.device_id, c.home_id, c.owner, ";".join(c.shared)])
    (root / "devices.csv").write_text(buf.getvalue())

    # events and snapshot keys
    lrng = np.random.default_rng([p.seed, _T_LOGS])
    used_keys: set[str] = set()
    used_ids: set[str] = set()
    events: list[dict] = []
    specs: list[_FrameSpec] = []
    for i, r in enumerate(reqs):
        r.key = _hex(lrng, 12, used_keys, "snap-")
        logged = cams[r.source if r.honest else r.cam].device_id
        base = {"account_id": r.account, "device_id": logged, "integration": r.integration}
        events.append({"ts_ms": r.t_ms, **base, "snapshot": r.key, "event": "snapshot_served",
                       "request_id": _hex(lrng, 16, used_ids, "req-")})
        r.extra["viewed"] = bool(lrng.random() < 0.3)
        if r.extra["viewed"]:
            events.append({"ts_ms": r.t_ms + int(lrng.integers(3_000, 600_000)), **base, "snapshot": r.key,
                           "event": "snapshot_viewed", "request_id": _hex(lrng, 16, used_ids, "req-")})
        if lrng.random() < 0.06:
            events.append({"ts_ms": r.t_ms + int(lrng.integers(1_000, 30_000)), **base,
                           "device_id": cams[r.cam].device_id, "snapshot": None, "event": "stream_started",
                           "request_id": _hex(lrng, 16, used_ids, "req-")})
        specs.append(_spec_for(p, prof, _SERVED, i, r.source, r.t_ms))
    events.sort(key=lambda e: (e["ts_ms"], e["request_id"]))

    # reference frames: ~40% of devices, always including the rarely used ones
    ref_devs: list[int] = []
    ref_specs: list[_FrameSpec] = []
    ref_names: list[str] = []
    if p.references:
        rrng = np.random.default_rng([p.seed, _T_REF])
        rare = [n for n in sorted(cams) if cams[n].rare]
        rest = [n for n in sorted(cams) if not cams[n].rare]
        extra = max(0, round(0.4 * len(cams)) - len(rare))
        picked = [int(x) for x in rrng.choice(rest, size=min(extra, len(rest)), replace=False)] if rest else []
        ref_devs = sorted(set(rare) | set(picked))
        for n in ref_devs:
            for j in range(int(rrng.integers(2, 4))):
                ts = t0 - 86_400_000 + int(rrng.integers(0, 86_400_000 + p.hours * 3_600_000))
                ref_specs.append(_spec_for(p, prof, _REFERENCE, len(ref_specs), n, ts))
                ref_names.append(f"refs/{cams[n].device_id}/{j + 1:04d}.jpg")

    blobs = _render_all(p.seed, p.difficulty, specs + ref_specs, workers, p.lookalike)
    served, refs = blobs[: len(specs)], blobs[len(specs):]

    # snapshot archives
    arng = np.random.default_rng([p.seed, _T_STYLE])
    tar_members: list[tuple[str, bytes]] = []
    zip_members: list[tuple[str, bytes, bool]] = []
    manifest: list[str] = []
    where: dict[str, tuple[str, str]] = {}
    ext = {"jpeg": "jpg", "png": "png", "webp": "webp"}
    for r, spec, data in zip(reqs, specs, served):
        if arng.random() < 0.5:
            name = f"served/{r.key}.{ext[spec.fmt]}"
            tar_members.append((name, data))
            where[r.key] = (_TAR_ARCHIVE, name)
        else:
            name = f"obj/{len(zip_members) + 1:06d}.bin"
            zip_members.append((name, data, False))
            manifest.append(json.dumps({"path": name, "snapshot": r.key}, separators=(",", ":")))
            where[r.key] = (_ZIP_ARCHIVE, name)
    _write_tar_gz(root / _TAR_ARCHIVE, tar_members, mtime)
    zip_members.insert(0, ("manifest.jsonl", "".join(m + "\n" for m in manifest).encode(), True))
    _write_zip(root / _ZIP_ARCHIVE, zip_members, (start.year, start.month, start.day, 0, 0, 0))
    ref_paths: list[Path] = []
    if p.references:
        (root / _REF_ARCHIVE).write_bytes(_tar_bytes(list(zip(ref_names, refs)), mtime))
        ref_paths = [root / _REF_ARCHIVE]
    else:
        (root / _REF_ARCHIVE).unlink(missing_ok=True)  # never leave a stale one from an earlier run

    malformed, log_lines, dup = _write_logs(root, events, np.random.default_rng([p.seed, _T_LOGS, 1]))

    # truth
    def has_access(account: str, cam: int) -> bool:
        return world.account_home.get(account) == cams[cam].home_id

    snaps: dict[str, dict] = {}
    exposures: set[tuple[str, str]] = set()
    informative: set[tuple[str, str]] = set()
    viewed_pairs: set[tuple[str, str]] = set()
    mixups: set[tuple[str, str]] = set()
    for r, spec in zip(reqs, specs):
        src = cams[r.source].device_id
        snaps[r.key] = {
            "source_device": src, "requested_device": cams[r.cam].device_id,
            "logged_device": cams[r.source if r.honest else r.cam].device_id,
            "recipient": r.account, "ts": _rfc3339_ms(r.t_ms), "integration": r.integration,
            "informative": not spec.black, "truncated": spec.cut > 0, "night": spec.night,
            "kind": r.kind, "honest_log": r.honest, "viewed": r.extra["viewed"],
            "format": spec.fmt, "size": [spec.width, spec.height],
            "archive": where[r.key][0], "member": where[r.key][1],
        }
        if not has_access(r.account, r.source):
            pair = (r.account, src)
            exposures.add(pair)
            if (not spec.black and not spec.cut) or r.honest:
                informative.add(pair)
            if r.extra["viewed"]:
                viewed_pairs.add(pair)
        elif r.kind == "home_mixup":
            mixups.add((r.account, src))
    leaks = [r for r in reqs if r.kind == "leak"]
    counts = {
        "homes": len(world.homes), "devices": len(cams), "accounts": len(world.account_home),
        "snapshots": len(reqs), "events": len(events),
        "served_events": sum(e["event"] == "snapshot_served" for e in events),
        "viewed_events": sum(e["event"] == "snapshot_viewed" for e in events),
        "stream_events": sum(e["event"] == "stream_started" for e in events),
        "log_lines": log_lines, "duplicate_events": dup,
        "leaked_deliveries": len(leaks), "honest_log_leaks": sum(r.honest for r in leaks),
        "leak_recipients": len({r.account for r in leaks}),
        "exposure_pairs": len(exposures), "exposure_pairs_informative": len(informative),
        "viewed_pairs": len(viewed_pairs),
        "home_mixups": sum(r.kind == "home_mixup" for r in reqs), "home_mixup_pairs": len(mixups),
        "malformed_lines": len(malformed),
        "near_black": sum(s.black for s in specs), "truncated": sum(s.cut > 0 for s in specs),
        "night_frames": sum(s.night for s in specs),
        "png": sum(s.fmt == "png" for s in specs), "webp": sum(s.fmt == "webp" for s in specs),
        "references": len(ref_specs), "reference_devices": len(ref_devs),
        "dark_references": sum(s.black for s in ref_specs),
        "lookalike_devices": sum(lookalike_source(p.seed, n, p.lookalike) is not None for n in cams),
    }
    truth = {
        "schema": "camleak.truth/1",
        "params": asdict(p),
        "period": [_rfc3339_ms(t0), _rfc3339_ms(t0 + p.hours * 3_600_000)],
        "bug_window": [_rfc3339_ms(ws), _rfc3339_ms(we)],
        "field_map": dict(ASSISTANT_FIELD_MAP),
        "devices": {c.device_id: {"home_id": c.home_id, "owner_account": c.owner, "shared_accounts": c.shared,
                                  "rarely_used": c.rare, "own_requests": c.own_requests,
                                  "has_references": n in ref_devs,
                                  "lookalike_of": (cams[src].device_id if (src := lookalike_source(p.seed, n, p.lookalike))
                                                   else None)}
                    for n, c in sorted(cams.items())},
        "homes": {h: {"devices": [cams[n].device_id for n in ns], "accounts": world.home_accounts[h]}
                  for h, ns in sorted(world.homes.items())},
        "outvoted_device": cams[victim].device_id if victim is not None else None,
        "snapshots": snaps,
        "exposure_pairs": sorted(list(x) for x in exposures),
        "exposure_pairs_informative": sorted(list(x) for x in informative),
        "viewed_pairs": sorted(list(x) for x in viewed_pairs),
        "home_mixups": sorted(list(x) for x in mixups),
        "malformed_lines": malformed,
        "references": {name: cams[s.cam].device_id for name, s in zip(ref_names, ref_specs)},
        "counts": counts,
    }
    (root / "truth.json").write_text(json.dumps(truth, indent=1, sort_keys=True) + "\n")
    return Incident(
        root=root,
        devices=root / "devices.csv",
        logs=[root / _APP_LOG, root / _ASSISTANT_LOG, root / _WEB_LOG],
        snapshots=[root / _TAR_ARCHIVE, root / _ZIP_ARCHIVE],
        references=ref_paths,
        truth=root / "truth.json",
        field_map=dict(ASSISTANT_FIELD_MAP),
        counts=counts,
    )
