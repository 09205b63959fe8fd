"""Procedural camera views: what each camera sees (rooms, corners, halls, outdoor scenes,
their objects and colours), and the look-alike copies of an earlier camera's room.
"""

from __future__ import annotations

import colorsys
from typing import NamedTuple

import numpy as np

from .params import _T_LOOK, _T_SCENE


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
