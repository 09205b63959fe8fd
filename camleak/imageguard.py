"""Hardening for image decoding: what a hostile or broken snapshot may not do to a run.

The fingerprint stage calls three things from here: `open_image` (refuse bombs before a
pixel is decoded, repair PNG checksums; an animation is read on its first frame), `to_grey`
or `to_grey_and_chroma` (apply EXIF orientation, bring CMYK, 16-bit, float, palette and alpha images to 8-bit grey
without clipping them flat), and `reason` (one clear sentence for why a frame was not used,
which ends up in the case file and in the report's `unattributed`).
"""

from __future__ import annotations

import io
import operator
import struct
import threading
import warnings
import zlib
from typing import Callable, ContextManager

import numpy as np
import PIL
from PIL import ExifTags, Image, ImageOps

# A frame from a camera is a few megapixels; 64 MP leaves room for stills from any real camera
# while refusing a file that declares, say, 100000 x 100000 pixels in a few hundred bytes.
MAX_PIXELS = 64_000_000
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ImageRefused(ValueError):
    """An image camleak will not decode; the message is the reason recorded for the frame."""


def open_image(data: bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open (not decode) an image, refusing what must not be decoded."""
    if not data:
        raise ImageRefused("empty file (0 bytes)")
    if data.startswith(PNG_SIGNATURE):
        data = repair_png_checksums(data)
    with warnings.catch_warnings():
        # Pillow only warns between its limit and twice it; the explicit check below refuses.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        warnings.simplefilter("ignore", UserWarning)  # "Corrupt EXIF data": noise, not a failure
        image = Image.open(io.BytesIO(data))
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageRefused(f"declares an empty size ({width} x {height} pixels)")
    if width * height > max_pixels:
        raise ImageRefused(
            f"declares {width} x {height} pixels ({width * height / 1e6:.0f} MP), over the "
            f"{max_pixels / 1e6:.0f} MP limit: refused as a likely decompression bomb"
        )
    # An animation opens on its first frame, which stands for it; asking for n_frames would walk
    # every frame of a hostile file before a pixel is needed.
    return image


JPEG_END = b"\xff\xd9"
_TRUNCATION_SWITCH = threading.Lock()


def load_truncated(data: bytes, reopen: Callable[[bytes], Image.Image],
                   allow_truncated: Callable[[bool], ContextManager]) -> Image.Image:
    """What decodes of an image cut short, without flipping Pillow's process-wide
    LOAD_TRUNCATED_IMAGES for other threads where that can be avoided.

    A JPEG (nearly every camera frame) gets the end-of-image marker it lacks: libjpeg then fills
    the missing rows with grey, the very pixels the global switch gives. Other formats still need
    the switch; it is flipped under a lock so two decodes here never interleave on it.
    """
    if data[:3] == b"\xff\xd8\xff" and not data.endswith(JPEG_END):
        try:
            image = reopen(data + JPEG_END)
            image.load()
            return image
        except (OSError, SyntaxError, ValueError):
            pass  # not recoverable that way: fall back to the switch
    with _TRUNCATION_SWITCH, allow_truncated(True):
        image = reopen(data)
        image.load()
    return image


def repair_png_checksums(data: bytes) -> bytes:
    """The PNG with every chunk CRC recomputed, or the bytes unchanged when all were right.

    A wrong CRC says some byte changed, not that the pixels are unusable: zlib still checks the
    image data itself, so a frame whose only damage is a checksum is read rather than lost.
    """
    out = bytearray(data)
    pos, changed = len(PNG_SIGNATURE), False
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        end = pos + 8 + length
        if end + 4 > len(data):
            break  # a truncated chunk: the decoder reports it
        crc = zlib.crc32(data[pos + 4 : end]) & 0xFFFFFFFF
        if data[end : end + 4] != struct.pack(">I", crc):
            out[end : end + 4] = struct.pack(">I", crc)
            changed = True
        if data[pos + 4 : pos + 8] == b"IEND":
            break
        pos = end + 4
    return bytes(out) if changed else data


_TRANSPOSING = frozenset(range(2, 9))  # the EXIF orientations ImageOps.exif_transpose acts on


def to_grey(image: Image.Image) -> Image.Image:
    """8-bit grey, upright: EXIF orientation applied, high bit depths scaled, not clipped."""
    return to_grey_and_chroma(image)[0]


def to_grey_and_chroma(image: Image.Image) -> tuple[Image.Image, float]:
    """`to_grey`'s image, and how coloured the frame is: the mean |Cb-128| + |Cr-128| (0 for a
    grey image). A camera in night-infrared mode sends grey frames, by day colour ones; a frame
    is compared with a camera's frames of its own look (issue 12). A JPEG drafted in YCbCr
    gives its luma plane as the grey (the very bytes a grey draft decodes to) and its chroma
    planes for free."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Corrupt EXIF data" would flood stderr from workers
            # exif_transpose's own first steps; it is called only where it would move pixels,
            # since otherwise it returns a copy (most of its cost) of the very same image
            image.load()
            if image.getexif().get(ExifTags.Base.Orientation, 1) in _TRANSPOSING:
                image = ImageOps.exif_transpose(image)
    except Exception:  # broken EXIF costs the orientation, not the frame
        pass
    mode = image.mode
    if mode == "L":
        return image, 0.0
    if mode.startswith("I") or mode == "F":
        return _scaled_grey(image), 0.0
    if mode == "YCbCr":
        return image.getchannel(0), _chroma(image)
    if mode in ("1", "P", "PA", "LA", "La", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"):
        via = {"CMYK": "RGB", "YCbCr": "RGB", "PA": "RGBA"}.get(mode)
        image = image.convert(via) if via else image
        return image.convert("L"), _chroma(image)
    try:
        image = image.convert("RGB")
        return image.convert("L"), _chroma(image)
    except (ValueError, OSError) as exc:
        raise ImageRefused(f"unsupported colour mode {mode!r}") from exc


def _chroma(image: Image.Image) -> float:
    """Mean |Cb-128| + |Cr-128|, from the histograms (five times cheaper than the pixels); a frame
    wider than about 160 pixels is reduced first (colour is not in the detail)."""
    if image.mode in ("1", "L", "LA", "La"):
        return 0.0
    if image.mode not in ("RGB", "RGBA", "RGBX", "YCbCr"):
        image = image.convert("RGB")
    factor = max(1, image.width // 160)
    small = image.reduce(factor) if factor > 1 else image
    if small.mode != "YCbCr":
        small = small.convert("RGB").convert("YCbCr")
    total = sum(map(operator.mul, small.histogram()[256:768], _FROM_GREY))  # (cheaper than numpy on 512 counts)
    return round(total / max(1, small.width * small.height), 2)


_FROM_GREY = [abs(level - 128) for level in range(256)] * 2  # the Cb and the Cr histogram


def _scaled_grey(image: Image.Image) -> Image.Image:
    """16-bit, 32-bit and float images: scale to 0-255 by their range instead of clipping at 255.

    The image is first reduced to about hash resolution, so a 60 MP float frame costs tens of
    megabytes here rather than gigabytes."""
    if image.mode not in ("I", "F"):
        image = image.convert("I")  # the I;16 variants, exactly
    factor = max(1, min(image.width, image.height) // 512)
    if factor > 1:
        image = image.reduce(factor)
    with np.errstate(all="ignore"):  # NaN and infinities in a hostile float image are handled here
        return _scale_to_byte(np.asarray(image, dtype=np.float64).copy(), image.mode)


def _scale_to_byte(pixels: np.ndarray, mode: str) -> Image.Image:
    np.nan_to_num(pixels, copy=False, nan=0.0, posinf=0.0, neginf=0.0)  # float64: no overflow on float32 extremes
    high = float(pixels.max()) if pixels.size else 0.0
    low = float(pixels.min()) if pixels.size else 0.0
    if 255.0 < high <= 65535.0 and low >= 0.0:
        pixels /= 257.0
    elif high > 255.0 or low < 0.0:
        pixels -= low
        pixels *= 255.0 / ((high - low) or 1.0)
    elif mode == "F" and high <= 1.0:
        pixels *= 255.0
    np.rint(pixels, out=pixels)
    np.clip(pixels, 0, 255, out=pixels)
    return Image.fromarray(pixels.astype(np.uint8), mode="L")


def reason(exc: BaseException) -> str | None:
    """A clear reason for a decode failure that needs one, or None for the caller's default."""
    if isinstance(exc, ImageRefused):
        return str(exc)
    if isinstance(exc, PIL.UnidentifiedImageError):
        return "not a recognisable image"
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return f"declared dimensions too large: refused as a likely decompression bomb ({exc})"[:200]
    if isinstance(exc, MemoryError):
        return "too large to decode in memory"
    text = str(exc)
    if "truncated" in text or isinstance(exc, EOFError):
        return f"image data ends early ({text or type(exc).__name__})"
    if isinstance(exc, SyntaxError):
        return f"malformed image ({text})"[:200]
    return None
