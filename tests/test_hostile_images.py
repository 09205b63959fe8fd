"""Hostile and broken images: fingerprinted when they can be, otherwise counted with a reason
that reaches the case file and the report's `unattributed`."""

from __future__ import annotations

import io
import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from camleak import imageguard
from camleak.cli import app
from camleak.cluster import distances, hex_to_words
from camleak.fingerprint import fingerprint_one

from conftest import jpeg, scene, write_jsonl, write_registry, write_tar

STATUSES = {"ok", "uninformative", "truncated", "undecodable"}


def encode(image: Image.Image, fmt: str, **save) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


def dist(a: str, b: str) -> int:
    return int(distances(hex_to_words([a])[0], hex_to_words([b])[0]))


BASE = scene(5, (640, 360))
REFERENCE = fingerprint_one("ref", jpeg(BASE))


def grey16(image: Image.Image) -> Image.Image:
    pixels = np.asarray(image.convert("L")).astype("<u2") * 257
    out = Image.new("I;16", image.size)
    out.frombytes(pixels.tobytes())
    return out


VARIANTS = {
    "cmyk_jpeg": lambda: jpeg(BASE.convert("CMYK")),
    "grey16_png": lambda: encode(grey16(BASE), "PNG"),
    "palette_png": lambda: encode(BASE.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
    "palette_transparent_png": lambda: encode(BASE.convert("P"), "PNG", transparency=0),
    "rgba_png": lambda: encode(BASE.convert("RGBA"), "PNG"),
    "float_tiff": lambda: encode(BASE.convert("F"), "TIFF"),
    "int32_tiff": lambda: encode(BASE.convert("I"), "TIFF"),
    "animated_gif": lambda: encode(BASE, "GIF", save_all=True, append_images=[scene(6, (640, 360))], duration=100),
    "animated_webp": lambda: encode(BASE, "WEBP", save_all=True, append_images=[scene(6, (640, 360))], duration=100),
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_modes_and_animations_are_fingerprinted_like_the_plain_frame(name):
    row = fingerprint_one(name, VARIANTS[name]())
    assert row["status"] == "ok", row["reason"]
    # the same scene: well within the distance at which frames of one camera link
    assert dist(row["phash"], REFERENCE["phash"]) <= 20, name


def test_sixteen_bit_is_scaled_not_clipped_flat():
    row = fingerprint_one("g16", encode(grey16(BASE), "PNG"))
    assert row["quality"] > 50  # clipping at 255 would have made it one flat white frame


def test_exif_orientation_is_applied():
    sideways = BASE.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    row = fingerprint_one("exif", encode(sideways, "JPEG", exif=exif.tobytes(), quality=85))
    assert row["status"] == "ok" and dist(row["phash"], REFERENCE["phash"]) <= 20
    broken = bytearray(encode(BASE, "JPEG", exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff"))
    assert fingerprint_one("bad-exif", bytes(broken))["status"] == "ok"  # bad EXIF costs nothing


def _png_with_size(width: int, height: int) -> bytes:
    png = encode(Image.new("L", (1, 1)), "PNG")
    header = struct.pack(">II", width, height) + png[24:29]
    return png[:16] + header + struct.pack(">I", zlib.crc32(b"IHDR" + header)) + png[33:]


def test_decompression_bomb_is_refused_before_decoding():
    for width, height in ((100_000, 100_000), (9000, 9000)):  # above Pillow's own hard limit, and between
        row = fingerprint_one("bomb", _png_with_size(width, height))
        assert row["status"] == "undecodable" and "decompression bomb" in row["reason"], row["reason"]
    with pytest.raises(imageguard.ImageRefused, match=r"declares 9000 x 9000 pixels \(81 MP\), over the 64 MP limit"):
        imageguard.open_image(_png_with_size(9000, 9000))


def test_png_with_bad_crc_is_read_when_only_the_checksum_is_wrong():
    data = bytearray(encode(BASE, "PNG"))
    idat = data.find(b"IDAT")
    length = struct.unpack(">I", data[idat - 4 : idat])[0]
    data[idat + 4 + length] ^= 0xFF  # the IDAT chunk's CRC
    data[29] ^= 0xFF  # and IHDR's
    row = fingerprint_one("crc", bytes(data))
    assert row["status"] == "ok" and dist(row["phash"], fingerprint_one("p", encode(BASE, "PNG"))["phash"]) == 0
    data[idat + 40] ^= 0xFF  # now the compressed pixels themselves
    row = fingerprint_one("crc2", bytes(data))
    assert row["status"] in STATUSES and (row["status"] == "ok" or row["reason"])


def test_zero_bytes_and_text_named_jpg():
    assert fingerprint_one("z", b"") | {} == fingerprint_one("z", b"")
    assert fingerprint_one("z", b"")["reason"] == "empty file (0 bytes)"
    row = fingerprint_one("t", b"just some text in a file named .jpg\n")
    assert row["status"] == "undecodable" and "not a recognisable image" in row["reason"]


SMALL = {
    "jpeg": jpeg(scene(7, (160, 90)), 70),
    "png": encode(scene(7, (160, 90)), "PNG"),
    "gif": encode(scene(7, (160, 90)).convert("P"), "GIF"),
    "webp": encode(scene(7, (160, 90)), "WEBP"),
}


@pytest.mark.parametrize("fmt", sorted(SMALL))
def test_truncated_at_every_point_never_raises(fmt):
    data = SMALL[fmt]
    seen = set()
    step = 4 if fmt == "gif" else 1  # GIF decodes slowly; every fourth cut still crosses every block
    for cut in range(0, len(data), step):
        row = fingerprint_one(f"{fmt}-{cut}", data[:cut])
        assert row["status"] in STATUSES
        assert row["status"] == "ok" or row["reason"], (cut, row)
        seen.add(row["status"])
    assert "undecodable" in seen  # early cuts cannot be read at all


def test_undecodable_frames_reach_unattributed_with_their_reason(tmp_path):
    """A text file named .jpg and a bomb are frames the logs delivered: the report must say why
    they were not attributed, not that the snapshot was missing."""
    write_registry(tmp_path / "devices.csv", [
        {"device_id": "cam-1", "home_id": "h1", "owner_account": "acct-1", "shared_accounts": ""},
        {"device_id": "cam-2", "home_id": "h2", "owner_account": "acct-2", "shared_accounts": ""},
    ])
    members = {f"s{i}.jpg": jpeg(scene(1, (320, 180)), 60 + i) for i in range(4)}
    members["text.jpg"] = b"this is text"
    members["bomb.png"] = _png_with_size(100_000, 100_000)
    members["empty.jpg"] = b""
    write_tar(tmp_path / "snaps.tar.gz", members)
    events = [{"ts": 1763640000 + i, "account_id": "acct-1", "device_id": "cam-1", "snapshot": key.split(".")[0],
               "event": "snapshot_served", "request_id": f"r{i}"} for i, key in enumerate(members)]
    write_jsonl(tmp_path / "logs.jsonl", events)
    case = tmp_path / "case.db"
    result = CliRunner().invoke(app, ["triage", "--case", str(case), "--devices", str(tmp_path / "devices.csv"),
                                      "--logs", str(tmp_path / "logs.jsonl"), "--snapshots", str(tmp_path / "snaps.tar.gz"),
                                      "--workers", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads(CliRunner().invoke(app, ["report", "--case", str(case)]).stdout)
    groups = {g["reason"]: g for g in report["unattributed"]}
    assert groups["undecodable image"]["snapshots"] == 3
    assert sorted(groups["undecodable image"]["examples"]) == ["bomb", "empty", "text"]
    assert "snapshot not in any archive" not in groups
    exported = [json.loads(line) for line in CliRunner().invoke(app, ["export", "snapshots", "--case", str(case)]).stdout.splitlines()]
    reasons = {r["snapshot"]: r["reason"] for r in exported}
    assert "decompression bomb" in reasons["bomb"] and "empty file" in reasons["empty"]
    assert "not a recognisable image" in reasons["text"]


def test_truncated_jpeg_decodes_without_the_global_switch_and_like_it():
    """The truncated-JPEG path no longer flips Pillow's process-wide LOAD_TRUNCATED_IMAGES (not
    thread-safe); the pixels, and so the fingerprints, are those the switch gave."""
    from PIL import ImageFile

    from camleak.fingerprint import DEFAULT_PARAMS, _open_draft, _truncated_images

    data = jpeg(scene(4))
    seen_switch = []

    def watching(allowed):
        seen_switch.append(allowed)
        return _truncated_images(allowed)

    for fraction in (0.3, 0.55, 0.8, 0.97):
        cut = data[: int(len(data) * fraction)]
        image = imageguard.load_truncated(cut, lambda d: _open_draft(d, DEFAULT_PARAMS), watching)
        with _truncated_images(True):
            reference = _open_draft(cut, DEFAULT_PARAMS)
            reference.load()
        assert np.array_equal(np.asarray(image), np.asarray(reference)), fraction
    assert seen_switch == [] and ImageFile.LOAD_TRUNCATED_IMAGES is False
    png = encode(scene(4), "PNG")
    imageguard.load_truncated(png[: len(png) // 2], lambda d: Image.open(io.BytesIO(d)), watching)
    assert seen_switch == [True]  # other formats still need it, under a lock
