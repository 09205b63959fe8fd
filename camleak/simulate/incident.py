"""Writing one simulated incident: the world and its requests, the registry, the events, the
frames (served and reference), the archives, the log exports and ``truth.json``, in an order
that keeps every RNG stream where it was, so one seed always gives the same bytes.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np

from .archives import _tar_bytes, write_served
from .frames import _FrameSpec, _render_all, _spec_for
from .logs import _write_logs
from .params import (_APP_LOG, _ASSISTANT_LOG, _PROFILES, _REF_ARCHIVE, _REFERENCE, _SERVED, _T_LOGS, _T_REF, _T_STYLE, _T_WORLD,
                     _TAR_ARCHIVE, _WEB_LOG, _ZIP_ARCHIVE, ASSISTANT_FIELD_MAP, Incident, SimParams, _parse_ts)
from .plan import plan_scenes
from .truth import build_truth
from .world import _build_world, _simulate_requests


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
    where = write_served(root, [r.key for r in reqs], [s.fmt for s in specs], served,
                         np.random.default_rng([p.seed, _T_STYLE]), mtime, (start.year, start.month, start.day, 0, 0, 0))

    ref_paths: list[Path] = []
    if p.references:
        (root / _REF_ARCHIVE).write_bytes(_tar_bytes(list(zip(ref_names, refs)), mtime))
        ref_paths = [root / _REF_ARCHIVE]
    else:
        (root / _REF_ARCHIVE).unlink(missing_ok=True)  # never leave a stale one from an earlier run

    malformed, log_lines, dup = _write_logs(root, events, np.random.default_rng([p.seed, _T_LOGS, 1]))

    truth, counts = build_truth(p, world, reqs, specs, events, where, (ws, we), victim, t0, ref_devs, ref_specs,
                                ref_names, malformed, log_lines, dup)
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
