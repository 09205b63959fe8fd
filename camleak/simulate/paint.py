"""Rasterising a scene: day colour or night infrared greys at any size, and the
illumination falloff of an IR-lit or vignetted frame.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from .params import _H, _W
from .scenes import _lum, _Scene


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
