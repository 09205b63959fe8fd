"""Frames: a camera's cached base image plus each frame's lights, person, shake, noise and
burnt-in time, encoded (JPEG, PNG, WebP) and possibly cut short; rendered in a process pool
whose scheduling never changes a byte.
"""

from __future__ import annotations

import io
import math
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from functools import lru_cache
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFont

from .paint import _paint_scene, _radial
from .params import (_H, _PAD, _PREVIEW, _PROFILES, _REFERENCE, _SIZES, _T_LIGHTS, _T_NOISE, _T_PIXELS, _T_SPEC, _W,
                     SimParams, _is_night, _mp_context, _ms_to_dt, _parse_ts, _Profile)
from .plan import _scene
from .scenes import _Scene


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
