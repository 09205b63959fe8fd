"""Shared fixtures: small hand-made inputs and simulated incidents."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings
from PIL import Image, ImageDraw

from camleak.simulate import SimParams, generate_incident

# In CI the property tests replay a fixed sequence of examples, so a submission passes or fails on
# its code, not on the draw; exploring new examples is for developers' runs and the fuzzers.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


def scene(seed: int, size=(640, 360), night: bool = False) -> Image.Image:
    """A busy synthetic room, distinct per seed."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", size, tuple(int(v) for v in rng.integers(40, 200, 3)))
    draw = ImageDraw.Draw(image)
    w, h = size
    for _ in range(14):
        x0, y0 = int(rng.integers(0, w - 40)), int(rng.integers(0, h - 40))
        x1, y1 = x0 + int(rng.integers(30, w // 2)), y0 + int(rng.integers(30, h // 2))
        colour = tuple(int(v) for v in rng.integers(0, 255, 3))
        (draw.rectangle if rng.random() < 0.6 else draw.ellipse)([x0, y0, x1, y1], fill=colour)
    if night:
        image = image.convert("L").convert("RGB")
    return image


def jpeg(image: Image.Image, quality: int = 80) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def write_tar(path: Path, members: dict[str, bytes], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def write_registry(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["device_id", "home_id", "owner_account", "shared_accounts"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, rows: list[dict], compress: bool = False) -> Path:
    text = "".join(json.dumps(r) + "\n" for r in rows).encode()
    path.write_bytes(gzip.compress(text) if compress else text)
    return path


@pytest.fixture(scope="session")
def tiny_incident(tmp_path_factory):
    """A small simulated incident shared by the behaviour tests (read-only)."""
    root = tmp_path_factory.mktemp("incident")
    return generate_incident(root / "inc", SimParams(seed=11, homes=10, hours=8, bug_rate=0.5), workers=2)
