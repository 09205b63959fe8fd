"""What one simulated incident is made of: its knobs (`SimParams`), where it was written
(`Incident`), how hostile its frames are (difficulty profiles), and the constants, RNG stream
tags and time helpers every other part of the simulator shares.
"""

from __future__ import annotations

import multiprocessing
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path


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


def _mp_context() -> multiprocessing.context.BaseContext:
    """Fork when it is safe (single-threaded, fast: workers inherit the scene plan), else forkserver."""
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
