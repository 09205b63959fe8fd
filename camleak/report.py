"""Report stage: the case's findings as the `camleak.report/1` JSON contract and exports.

The report is a pure function of the case file (plus a generation time), sorted throughout, so
two triages of the same inputs give byte-identical reports apart from `generated_at`.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Any, Iterator

from . import REPORT_SCHEMA, __version__
from .casefile import Case, utcnow

def build_report(case: Case, *, generated_at: str | None = None) -> dict[str, Any]:
    exposures = [_exposure(row) for row in case.db.query(
        "select * from exposures order by recipient_account, source_device")]
    devices = {d["device_id"]: d for d in case.db.query("select * from devices")}

    owners: dict[str, dict[str, Any]] = {}
    owner_recipients: dict[str, set[str]] = defaultdict(set)
    recipients: dict[str, dict[str, Any]] = {}
    for e in exposures:
        owner = e["source_owner"] or f"(unknown owner of {e['source_device']})"
        o = owners.setdefault(owner, {"owner_account": owner, "devices": set(), "frames": 0, "viewed": 0})
        o["devices"].add(e["source_device"])
        o["frames"] += e["snapshots"]
        o["viewed"] += e["viewed_events"]
        owner_recipients[owner].add(e["recipient_account"])
        r = recipients.setdefault(e["recipient_account"], {"account": e["recipient_account"], "source_homes": set(), "frames": 0, "viewed": 0})
        r["source_homes"].add(e["source_home"] or e["source_device"])
        r["frames"] += e["snapshots"]
        r["viewed"] += e["viewed_events"]

    owner_list = []
    for name in sorted(owners):
        o = owners[name]
        owner_list.append({
            "owner_account": name,
            "devices": sorted(o["devices"]),
            "frames": o["frames"],
            "recipients": len(owner_recipients[name]),
            "viewed": o["viewed"],
            "group": "owner_viewed" if o["viewed"] else "owner_delivered",
        })
    recipient_list = [
        {"account": r["account"], "source_homes": len(r["source_homes"]), "frames": r["frames"], "viewed": r["viewed"]}
        for r in (recipients[k] for k in sorted(recipients))
    ]

    times = [e["first_seen"] for e in exposures] + [e["last_seen"] for e in exposures]
    summary = {
        "exposure_pairs": len(exposures),
        "recipient_accounts": len(recipient_list),
        "owners_affected": len(owner_list),
        "devices_exposed": len({e["source_device"] for e in exposures}),
        "events": sum(e["events"] for e in exposures),
        "viewed_events": sum(e["viewed_events"] for e in exposures),
        "snapshots": sum(e["snapshots"] for e in exposures),
        "content_evidence_pairs": sum(1 for e in exposures if e["evidence"] == "content"),
        "log_evidence_pairs": sum(1 for e in exposures if e["evidence"] == "log"),
        "first_seen": min(times) if times else None,
        "last_seen": max(times) if times else None,
    }
    return {
        "schema": REPORT_SCHEMA,
        "generated_at": generated_at or utcnow(),
        "camleak_version": __version__,
        "case": _case_info(case, devices),
        "summary": summary,
        "exposures": exposures,
        "owners": owner_list,
        "recipients": recipient_list,
        "unattributed": unattributed(case),
        "warnings": warnings(case),
    }


def _exposure(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "recipient_account": row["recipient_account"],
        "source_device": row["source_device"],
        "source_home": row["source_home"],
        "source_owner": row["source_owner"],
        "events": row["events"],
        "viewed_events": row["viewed_events"],
        "snapshots": row["snapshots"],
        "first_seen": row["first_seen"],
        "last_seen": row["last_seen"],
        "integrations": json.loads(row["integrations"] or "[]"),
        "evidence": row["evidence"],
        "attribution": row["attribution"],
        "confidence": row["confidence"],
        "evidence_snapshots": json.loads(row["evidence_snapshots"] or "[]"),
        "max_hash_distance": row["max_distance"],
    }


def _case_info(case: Case, devices: dict[str, Any]) -> dict[str, Any]:
    inputs = Counter()
    for row in case.db.query("select kind, count(*) n from inputs where status = 'complete' group by kind"):
        inputs[row["kind"]] = row["n"]
    return {
        "inputs": dict(sorted(inputs.items())),
        "devices": len(devices),
        "events": case.count("events"),
        "snapshots": case.count("frames", "role = 'snapshot'"),
        "reference_frames": case.count("frames", "role = 'reference'"),
        "clusters": case.count("clusters"),
        "fingerprint_params": json.loads(case.meta("fingerprint_params") or "null"),
    }


def unattributed(case: Case) -> list[dict[str, Any]]:
    """What could not be attributed, grouped by reason, with the deliveries it affects."""
    groups: dict[str, dict[str, Any]] = {}
    for row in case.db.query(
        "select a.reason, a.snapshot, count(e.event_key) n, group_concat(distinct e.account_id) accts "
        "from attributions a left join events e on e.snapshot = a.snapshot "
        "where a.source_device is null group by a.snapshot order by a.snapshot"
    ):
        reason = _reason_group(row["reason"])
        g = groups.setdefault(reason, {"reason": reason, "snapshots": 0, "events": 0, "accounts": set(), "examples": []})
        g["snapshots"] += 1
        g["events"] += row["n"]
        g["accounts"].update((row["accts"] or "").split(",") if row["accts"] else [])
        if len(g["examples"]) < 5:
            g["examples"].append(row["snapshot"])
    missing = list(case.db.query(
        "select e.snapshot, count(*) n, group_concat(distinct e.account_id) accts from events e "
        "left join frames f on f.snapshot = e.snapshot where e.snapshot is not null and f.frame_id is null "
        "group by e.snapshot order by e.snapshot"))
    if missing:
        reason = "snapshot not in any archive"
        groups[reason] = {"reason": reason, "snapshots": len(missing), "events": sum(m["n"] for m in missing),
                          "accounts": {a for m in missing for a in (m["accts"] or "").split(",") if a},
                          "examples": [m["snapshot"] for m in missing[:5]]}
    out = []
    for reason in sorted(groups):
        g = groups[reason]
        out.append({"reason": reason, "snapshots": g["snapshots"], "events": g["events"],
                    "accounts": len(g["accounts"]), "examples": g["examples"]})
    return out


def _reason_group(reason: str | None) -> str:
    """Collapse per-frame detail (percentages, device names) into a countable reason."""
    if not reason:
        return "unknown"
    for prefix in ("uninformative frame", "truncated frame", "undecodable image", "ambiguous between",
                   "reference frames of several devices"):
        if reason.startswith(prefix):
            return {"ambiguous between": "cluster ambiguous between devices"}.get(prefix, prefix)
    return reason


def warnings(case: Case) -> list[dict[str, Any]]:
    """Problems met while reading inputs, counted by kind, with the first few locations."""
    out = []
    for row in case.db.query("select kind, count(*) n from problems group by kind order by kind"):
        examples = [r["message"] for r in case.db.query(
            "select message from problems where kind = ? order by id limit 5", [row["kind"]])]
        out.append({"kind": row["kind"], "count": row["n"], "examples": examples})
    unknown = [r["device_id"] for r in case.db.query(
        "select distinct e.device_id from events e left join devices d on d.device_id = e.device_id "
        "where e.device_id is not null and d.device_id is null order by e.device_id")]
    if unknown and case.count("devices"):
        out.append({"kind": "unknown_device_in_logs", "count": len(unknown), "examples": unknown[:5]})
    return out


def iter_snapshot_export(case: Case) -> Iterator[dict[str, Any]]:
    """One record per snapshot: where it clustered, whose it is, and its fingerprint."""
    for row in case.db.query(
        "select f.snapshot, f.frame_id, a.cluster_id, a.source_device, a.attribution, a.confidence, a.reason, "
        "p.status, p.quality, p.truncated, p.decoded_fraction, p.phash, p.dhash, p.band_phash, p.band_dhash, "
        "p.width, p.height, p.format from frames f left join attributions a on a.frame_id = f.frame_id "
        "left join fingerprints p on p.frame_id = f.frame_id where f.role = 'snapshot' order by f.snapshot"
    ):
        yield {
            "snapshot": row["snapshot"],
            "cluster": row["cluster_id"],
            "source_device": row["source_device"],
            "attribution": row["attribution"],
            "confidence": row["confidence"],
            "reason": row["reason"],
            "quality": row["quality"],
            "status": row["status"],
            "truncated": bool(row["truncated"]) if row["truncated"] is not None else None,
            "decoded_fraction": row["decoded_fraction"],
            "width": row["width"],
            "height": row["height"],
            "format": row["format"],
            "hashes": {"phash": row["phash"], "dhash": row["dhash"], "band_phash": row["band_phash"], "band_dhash": row["band_dhash"]},
        }


def dumps(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=False, ensure_ascii=False) + "\n"
