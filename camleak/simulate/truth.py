"""The ground truth of a simulated incident: for every snapshot the camera that really took it,
who received it and how it was logged; the true exposure pairs (and those the pixels can prove);
the counts a report should reproduce. Scoring reads it back from ``truth.json``.
"""

from __future__ import annotations

from dataclasses import asdict

from .frames import _FrameSpec
from .params import ASSISTANT_FIELD_MAP, SimParams, _rfc3339_ms
from .scenes import lookalike_source
from .world import _Request, _World


def build_truth(p: SimParams, world: _World, reqs: list[_Request], specs: list[_FrameSpec], events: list[dict],
                where: dict[str, tuple[str, str]], window: tuple[int, int], victim: int | None, t0: int,
                ref_devs: list[int], ref_specs: list[_FrameSpec], ref_names: list[str], malformed: list[dict],
                log_lines: int, dup: int) -> tuple[dict, dict[str, int]]:
    """The `camleak.truth/1` document and its counts, from the world and what was written."""
    cams = world.cams
    ws, we = window

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
    return truth, counts
