"""Write seed corpora for the fuzz harnesses (generated, never committed).

    python fuzz/seeds.py            # -> fuzz/corpus/images/, fuzz/corpus/archives/
"""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import zstandard
from PIL import Image, ImageDraw

HERE = Path(__file__).parent


def scene(seed: int, size=(64, 36)) -> Image.Image:
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", size, tuple(int(v) for v in rng.integers(40, 200, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(5):
        x0, y0 = int(rng.integers(0, size[0] - 8)), int(rng.integers(0, size[1] - 8))
        draw.rectangle([x0, y0, x0 + 10, y0 + 8], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    return image


def encode(image: Image.Image, fmt: str, **save) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


def image_seeds() -> dict[str, bytes]:
    base = scene(1)
    exif = Image.Exif()
    exif[0x0112] = 6
    return {
        "plain.jpg": encode(base, "JPEG", quality=70),
        "progressive.jpg": encode(base, "JPEG", progressive=True),
        "exif.jpg": encode(base, "JPEG", exif=exif.tobytes()),
        "cmyk.jpg": encode(base.convert("CMYK"), "JPEG"),
        "grey.png": encode(base.convert("L"), "PNG"),
        "palette.png": encode(base.convert("P"), "PNG", transparency=0),
        "rgba.png": encode(base.convert("RGBA"), "PNG"),
        "i16.png": encode(base.convert("I;16"), "PNG"),
        "anim.gif": encode(base, "GIF", save_all=True, append_images=[scene(2)]),
        "anim.webp": encode(base, "WEBP", save_all=True, append_images=[scene(2)]),
        "lossless.webp": encode(base, "WEBP", lossless=True),
        "bmp.bmp": encode(base, "BMP"),
        "float.tif": encode(base.convert("F"), "TIFF"),
    }


def archive_seeds() -> dict[str, bytes]:
    images = image_seeds()
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for name, data in list(images.items())[:4]:
            info = tarfile.TarInfo(f"snaps/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for kind, link in ((tarfile.SYMTYPE, "/etc/passwd"), (tarfile.LNKTYPE, "snaps/plain.jpg")):
            info = tarfile.TarInfo(f"link{kind.decode()}.jpg")
            info.type, info.linkname = kind, link
            archive.addfile(info)
        manifest = b'{"path": "snaps/plain.jpg", "snapshot": "k1"}\n'
        info = tarfile.TarInfo("manifest.jsonl")
        info.size = len(manifest)
        archive.addfile(info, io.BytesIO(manifest))
    plain = tar.getvalue()
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in list(images.items())[4:8]:
            archive.writestr(name, data)
        archive.writestr("../up.jpg", images["plain.jpg"])
    return {"a.tar": plain, "a.tar.gz": gzip.compress(plain), "a.tar.zst": zstandard.ZstdCompressor().compress(plain),
            "a.zip": zipped.getvalue()}


def main() -> None:
    for folder, seeds in (("images", image_seeds()), ("archives", archive_seeds())):
        out = HERE / "corpus" / folder
        out.mkdir(parents=True, exist_ok=True)
        for name, data in seeds.items():
            (out / name).write_bytes(data)
        print(f"{out}: {len(seeds)} seeds")


if __name__ == "__main__":
    main()
