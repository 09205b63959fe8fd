"""Report stage: the case's findings as the `camleak.report/1` JSON contract and exports.

The report is a pure function of the case file (plus a generation time), sorted throughout, so
two triages of the same inputs give byte-identical reports apart from `generated_at`.

Besides the per-pair exposures it states what privacy teams and postmortems must: the time
window and an hourly timeline of leaked deliveries, delivered versus viewed at event, owner and
recipient level, the four notification groups plus the unaffected count, breakdowns by
integration and event kind, and how much rests on pixels, on the log alone, or on nothing.
When playbooks ran on the case, `response` adds the response timeline (`camleak.response`).
The other formats (Markdown, HTML, CSV; `camleak.reporting`) render this same dict.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any, Iterator

from . import REPORT_SCHEMA, __version__
from .attribute import VIEW_EVENTS, Registry
from .casefile import Case, utcnow
from .response import response as _response
from .timeutil import format_ts

HOUR_MS = 3_600_000

UNKNOWN_OWNER = "(unknown owner of {device})"  # a device the registry does not list: nobody to write to

# Notification groups, in the order a privacy team works through them.
GROUP_OWNER_DELIVERED = "owner_delivered"  # an owner whose frames reached others, never viewed there
GROUP_OWNER_VIEWED = "owner_viewed"  # an owner whose frames a stranger opened
GROUP_RECIPIENT_ONLY = "recipient_only"  # received other homes' frames, own frames not exposed
GROUP_BOTH_ROLES = "both_roles"  # exposed owner and recipient at once
GROUPS = (GROUP_OWNER_DELIVERED, GROUP_OWNER_VIEWED, GROUP_RECIPIENT_ONLY, GROUP_BOTH_ROLES)
GROUP_TITLES = {
    GROUP_OWNER_DELIVERED: "Owner exposed, never viewed",
    GROUP_OWNER_VIEWED: "Owner exposed and viewed",
    GROUP_RECIPIENT_ONLY: "Recipient only",
    GROUP_BOTH_ROLES: "Both roles (exposed owner and recipient)",
}


@dataclass(frozen=True)
class LeakedEvent:
    """One log event that belongs to an exposure: a recipient got (or opened) a foreign frame."""

    ts: str
    ts_ms: int
    account: str
    source_device: str
    source_owner: str
    source_home: str | None
    snapshot: str | None
    event: str
    integration: str | None
    evidence: str  # content | log

    @property
    def viewed(self) -> bool:
        return self.event in VIEW_EVENTS


def _activity(entry: dict[str, Any]) -> dict[str, Any]:
    """The delivery figures an owner row and a recipient row share."""
    return {
        "frames": len(entry["frames"]),
        "delivered": entry["delivered"],
        "viewed": entry["viewed"],
        "viewed_frames": len(entry["viewed_frames"]),
        "first_seen": min(entry["times"])[1],
        "last_seen": max(entry["times"])[1],
        "integrations": sorted(entry["integrations"]),
        "evidence": "content" if "content" in entry["evidence"] else "log",
    }


def build_report(case: Case, *, generated_at: str | None = None) -> dict[str, Any]:
    exposures = [_exposure(row) for row in case.db.query(
        "select * from exposures order by recipient_account, source_device")]
    devices = {d["device_id"]: d for d in case.db.query("select * from devices")}
    _add_evidence_detail(case, exposures)
    leaked, at_risk = _classify_events(case)
    deliveries = [e for e in leaked if not e.viewed]
    views = [e for e in leaked if e.viewed]

    owners: dict[str, dict[str, Any]] = {}
    recipients: dict[str, dict[str, Any]] = {}
    for e in leaked:
        o = owners.setdefault(e.source_owner, {"devices": set(), "homes": set(), "frames": set(), "recipients": set(),
                                              "delivered": 0, "viewed": 0, "viewed_frames": set(), "times": [],
                                              "integrations": set(), "evidence": set()})
        r = recipients.setdefault(e.account, {"homes": set(), "frames": set(), "delivered": 0, "viewed": 0,
                                              "viewed_frames": set(), "times": [], "integrations": set(),
                                              "evidence": set()})
        o["devices"].add(e.source_device)
        o["homes"].add(e.source_home or e.source_device)
        o["recipients"].add(e.account)
        r["homes"].add(e.source_home or e.source_device)
        for side in (o, r):
            side["times"].append((e.ts_ms, e.ts))
            side["evidence"].add(e.evidence)
            if e.integration:
                side["integrations"].add(e.integration)
            if e.snapshot:
                side["frames"].add(e.snapshot)
            if e.viewed:
                side["viewed"] += 1
                if e.snapshot:
                    side["viewed_frames"].add(e.snapshot)
            else:
                side["delivered"] += 1

    owner_accounts = set(owners)
    owner_list = []
    for name in sorted(owners):
        o = owners[name]
        group = GROUP_BOTH_ROLES if name in recipients else (GROUP_OWNER_VIEWED if o["viewed"] else GROUP_OWNER_DELIVERED)
        owner_list.append({"owner_account": name, "devices": sorted(o["devices"]), "homes": len(o["homes"]),
                           "recipients": len(o["recipients"]), **_activity(o), "group": group})
    recipient_list = []
    for name in sorted(recipients):
        r = recipients[name]
        group = GROUP_BOTH_ROLES if name in owner_accounts else GROUP_RECIPIENT_ONLY
        recipient_list.append({"account": name, "source_homes": len(r["homes"]), **_activity(r), "group": group})

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
        "review_snapshots": case.count("attributions", "candidates is not null") if "candidates" in case.table("attributions").columns_dict else 0,
        "expected_false_pairs": round(sum(e["p_wrong"] or 0.0 for e in exposures), 4),
    }
    unlisted = sorted(d for o in owner_list if is_unknown_owner(o["owner_account"]) for d in o["devices"])
    notes = warnings(case)
    if unlisted:
        notes.append({"kind": "exposed_device_not_in_registry", "count": len(unlisted), "examples": unlisted[:5]})
    return {
        "schema": REPORT_SCHEMA,
        "generated_at": generated_at or utcnow(),
        "camleak_version": __version__,
        "case": _case_info(case, devices),
        "summary": summary,
        "time_window": _time_window(deliveries, views),
        "timeline": _timeline(deliveries, views),
        "timeline_detail": _timeline(deliveries, views, _detail_minutes(leaked)),
        "delivered_vs_viewed": _delivered_vs_viewed(deliveries, views, owner_list, recipient_list),
        "notification_groups": _notification_groups(case, owner_list, recipient_list, devices),
        "breakdowns": {"by_integration": _breakdown(leaked, lambda e: e.integration or "(none)"),
                       "by_event": _breakdown(leaked, lambda e: e.event)},
        "certainty": _certainty(deliveries, exposures, at_risk),
        "exposures": exposures,
        "owners": owner_list,
        "recipients": recipient_list,
        "unattributed": unattributed(case),
        "review": review(case),
        "warnings": notes,
        "response": _response(case),
    }


def is_unknown_owner(account: str) -> bool:
    """An owner placeholder for a device missing from the registry: counted, never notified."""
    return account.startswith(UNKNOWN_OWNER.split("{")[0])


def _registry(case: Case) -> Registry:
    """The registry with the access scope the exposures were computed under."""
    params = json.loads(case.meta("attribution_params") or "{}")
    return Registry(list(case.db.query("select * from devices")), params.get("access_scope", "home"))


def _classify_events(case: Case) -> tuple[list[LeakedEvent], list[dict[str, Any]]]:
    """Every event that belongs to an exposure, and every delivery whose frame proved nothing.

    Mirrors the attribute stage's rule (pixels decide; the log counts only when the frame could
    not be attributed); a test checks the per-pair totals against the exposures table.
    """
    registry = _registry(case)
    attributed = {r["snapshot"]: r for r in case.db.query(
        "select snapshot, source_device, reason from attributions")}
    leaked: list[LeakedEvent] = []
    at_risk: list[dict[str, Any]] = []
    for e in case.db.query("select ts, ts_ms, account_id, device_id, snapshot, event, integration "
                           "from events order by ts_ms, event_key"):
        account = e["account_id"]
        snap = attributed.get(e["snapshot"]) if e["snapshot"] else None
        source, evidence = None, None
        if snap and snap["source_device"]:
            if not registry.may_see(account, snap["source_device"]):
                source, evidence = snap["source_device"], "content"
        elif e["device_id"] and registry.known(e["device_id"]) and not registry.may_see(account, e["device_id"]):
            source, evidence = e["device_id"], "log"
        elif e["snapshot"] and e["event"] not in VIEW_EVENTS:
            reason = _reason_group(snap["reason"]) if snap else "snapshot not in any archive"
            at_risk.append({"reason": reason, "account": account, "snapshot": e["snapshot"], "ts_ms": e["ts_ms"]})
        if source is None:
            continue
        leaked.append(LeakedEvent(
            ts=e["ts"], ts_ms=e["ts_ms"], account=account, source_device=source,
            source_owner=registry.owner(source) or UNKNOWN_OWNER.format(device=source),
            source_home=registry.home(source), snapshot=e["snapshot"], event=e["event"] or "(none)",
            integration=e["integration"], evidence=evidence))
    return leaked, at_risk


def _time_window(deliveries: list[LeakedEvent], views: list[LeakedEvent]) -> dict[str, Any]:
    first = min(deliveries, key=lambda e: e.ts_ms, default=None)
    last = max(deliveries, key=lambda e: e.ts_ms, default=None)
    return {
        "first_delivery": first.ts if first else None,
        "last_delivery": last.ts if last else None,
        "hours": round((last.ts_ms - first.ts_ms) / HOUR_MS, 2) if first and last else 0.0,
        "first_view": min(views, key=lambda e: e.ts_ms).ts if views else None,
        "last_view": max(views, key=lambda e: e.ts_ms).ts if views else None,
    }


def _timeline(deliveries: list[LeakedEvent], views: list[LeakedEvent], minutes: int = 60) -> dict[str, Any]:
    """Leaked deliveries (and views) per UTC bucket, every bucket of the window listed, empty or not."""
    width = minutes * 60_000
    if not deliveries and not views:
        return {"bucket_minutes": minutes, "rows": []}
    buckets: dict[int, Counter] = defaultdict(Counter)
    for e in deliveries:
        buckets[e.ts_ms // width]["deliveries"] += 1
        buckets[e.ts_ms // width][e.evidence] += 1
    for e in views:
        buckets[e.ts_ms // width]["views"] += 1
    rows = []
    for slot in range(min(buckets), max(buckets) + 1):
        c = buckets.get(slot, Counter())
        rows.append({"start": format_ts(slot * width), "deliveries": c["deliveries"], "confirmed": c["content"],
                     "log_only": c["log"], "views": c["views"]})
    return {"bucket_minutes": minutes, "rows": rows}


def _detail_minutes(events: list[LeakedEvent], max_buckets: int = 48) -> int:
    """The finest bucket (5 min to 1 h) that shows the whole window in about `max_buckets` bars."""
    if not events:
        return 60
    span = max(e.ts_ms for e in events) - min(e.ts_ms for e in events)
    for minutes in (5, 10, 15, 30):
        if span / (minutes * 60_000) <= max_buckets - 2:
            return minutes
    return 60


def _delivered_vs_viewed(deliveries: list[LeakedEvent], views: list[LeakedEvent],
                         owners: list[dict[str, Any]], recipients: list[dict[str, Any]]) -> dict[str, Any]:
    delivered_frames = {e.snapshot for e in deliveries if e.snapshot}
    viewed_frames = {e.snapshot for e in views if e.snapshot}
    return {
        "events": {"delivered": len(deliveries), "viewed": len(views)},
        "snapshots": {"delivered": len(delivered_frames | viewed_frames), "viewed": len(viewed_frames)},
        "owners": {"exposed": len(owners), "viewed": sum(1 for o in owners if o["viewed"])},
        "recipients": {"received": len(recipients), "viewed": sum(1 for r in recipients if r["viewed"])},
    }


def _notification_groups(case: Case, owners: list[dict[str, Any]], recipients: list[dict[str, Any]],
                         devices: dict[str, Any]) -> dict[str, Any]:
    """Counts per group, plus who else is in the user base, so a share can be stated."""
    owners = [o for o in owners if not is_unknown_owner(o["owner_account"])]
    counts = Counter(o["group"] for o in owners if o["group"] != GROUP_BOTH_ROLES)
    counts.update(r["group"] for r in recipients)
    affected = {o["owner_account"] for o in owners} | {r["account"] for r in recipients}
    exposed_devices = {d for o in owners for d in o["devices"]}
    members = {a for d in exposed_devices if d in devices for a in json.loads(devices[d]["shared_accounts"] or "[]")}
    members -= affected
    base = {a for d in devices.values() for a in [d["owner_account"], *json.loads(d["shared_accounts"] or "[]")] if a}
    base |= {r["account_id"] for r in case.db.query("select distinct account_id from events where account_id is not null")}
    base |= affected
    out: dict[str, Any] = {g: counts.get(g, 0) for g in GROUPS}
    out["household_members"] = len(members)
    out["unaffected"] = len(base - affected - members)
    out["accounts_total"] = len(base)
    return out


def _breakdown(leaked: list[LeakedEvent], key) -> list[dict[str, Any]]:
    groups: dict[str, dict[str, Any]] = {}
    for e in leaked:
        g = groups.setdefault(key(e), {"deliveries": 0, "views": 0, "frames": set(), "recipients": set(),
                                       "owners": set(), "devices": set()})
        g["views" if e.viewed else "deliveries"] += 1
        if e.snapshot:
            g["frames"].add(e.snapshot)
        g["recipients"].add(e.account)
        g["owners"].add(e.source_owner)
        g["devices"].add(e.source_device)
    return [{"key": k, "deliveries": g["deliveries"], "views": g["views"], "frames": len(g["frames"]),
             "recipients": len(g["recipients"]), "owners": len(g["owners"]), "devices": len(g["devices"])}
            for k, g in sorted(groups.items())]


def _certainty(deliveries: list[LeakedEvent], exposures: list[dict[str, Any]],
               at_risk: list[dict[str, Any]]) -> dict[str, Any]:
    """Proven by pixels, resting on the log, or unknowable: so figures can be stated as approximate.

    Unattributable deliveries inside the leak window (first to last proven leaked delivery) are the
    ones that may hide further leaks; those outside it most likely went to their own home.
    """
    lo = min((e.ts_ms for e in deliveries), default=None)
    hi = max((e.ts_ms for e in deliveries), default=None)
    inside = lambda item: lo is not None and lo <= item["ts_ms"] <= hi  # noqa: E731
    reasons: dict[str, dict[str, Any]] = {}
    for item in at_risk:
        g = reasons.setdefault(item["reason"], {"deliveries": 0, "in_leak_window": 0, "accounts": set(), "snapshots": set()})
        g["deliveries"] += 1
        g["in_leak_window"] += inside(item)
        g["accounts"].add(item["account"])
        g["snapshots"].add(item["snapshot"])
    return {
        "confirmed": {"deliveries": sum(1 for e in deliveries if e.evidence == "content"),
                      "pairs": sum(1 for e in exposures if e["evidence"] == "content")},
        "log_only": {"deliveries": sum(1 for e in deliveries if e.evidence == "log"),
                     "pairs": sum(1 for e in exposures if e["evidence"] == "log")},
        "unattributable": {
            "deliveries": len(at_risk),
            "in_leak_window": sum(1 for i in at_risk if inside(i)),
            "accounts": len({i["account"] for i in at_risk}),
            "reasons": [{"reason": r, "deliveries": g["deliveries"], "in_leak_window": g["in_leak_window"],
                         "snapshots": len(g["snapshots"]), "accounts": len(g["accounts"])} for r, g in sorted(reasons.items())],
        },
    }


def _add_evidence_detail(case: Case, exposures: list[dict[str, Any]]) -> None:
    """Per evidence snapshot: its cluster, hash distance to the cluster medoid, and reference matches."""
    wanted = sorted({s for e in exposures for s in e["evidence_snapshots"]})
    if not wanted:
        for e in exposures:
            e["evidence_detail"] = []
        return
    details: dict[str, dict[str, Any]] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start:start + 500]
        for r in case.db.query(
            "select a.snapshot, a.cluster_id, a.source_device, a.attribution, a.confidence, a.reason, "
            "fc.via, fc.distance from attributions a left join frame_clusters fc on fc.frame_id = a.frame_id "
            f"where a.snapshot in ({','.join('?' * len(chunk))})", chunk):
            details[r["snapshot"]] = r
    refs = Counter()
    for r in case.db.query("select fc.cluster_id, f.ref_device, count(*) n from frames f join frame_clusters fc "
                           "on fc.frame_id = f.frame_id where f.role = 'reference' group by 1, 2"):
        refs[(r["cluster_id"], r["ref_device"])] = r["n"]
    for e in exposures:
        rows = []
        for snap in e["evidence_snapshots"]:
            d = details.get(snap)
            if d is None:
                rows.append({"snapshot": snap, "cluster": None, "matched_by": None, "hash_distance": None,
                             "attribution": None, "confidence": None, "reference_matches": 0,
                             "note": "snapshot not in any archive"})
                continue
            proves = d["source_device"] == e["source_device"]
            rows.append({
                "snapshot": snap,
                "cluster": d["cluster_id"],
                "matched_by": d["via"],
                "hash_distance": d["distance"],
                "attribution": d["attribution"] if proves else None,
                "confidence": d["confidence"] if proves else None,
                "reference_matches": refs.get((d["cluster_id"], e["source_device"]), 0) if d["cluster_id"] is not None else 0,
                "note": None if proves else (d["reason"] or "frame attributed elsewhere; the log names this device"),
            })
        e["evidence_detail"] = rows


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
        "p_wrong": row.get("p_wrong"),
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


def review(case: Case) -> list[dict[str, Any]]:
    """Frames held for review, grouped by the cameras they could be, with why and who got them."""
    if "candidates" not in case.table("attributions").columns_dict:
        return []
    groups: dict[tuple[str, ...], dict[str, Any]] = {}
    for row in case.db.query(
        "select a.snapshot, a.candidates, a.reason, count(e.event_key) n, group_concat(distinct e.account_id) accts "
        "from attributions a left join events e on e.snapshot = a.snapshot "
        "where a.candidates is not null group by a.snapshot order by a.snapshot"
    ):
        key = tuple(json.loads(row["candidates"]))
        g = groups.setdefault(key, {"candidates": list(key), "reasons": Counter(), "snapshots": 0, "events": 0,
                                    "accounts": set(), "examples": []})
        g["reasons"][(row["reason"] or "").removeprefix("review: ")] += 1
        g["snapshots"] += 1
        g["events"] += row["n"]
        g["accounts"].update(a for a in (row["accts"] or "").split(",") if a)
        if len(g["examples"]) < 5:
            g["examples"].append(row["snapshot"])
    return [{"candidates": g["candidates"], "reason": g["reasons"].most_common(1)[0][0], "snapshots": g["snapshots"],
             "events": g["events"], "accounts": len(g["accounts"]), "examples": g["examples"]}
            for _, g in sorted(groups.items())]


def _reason_group(reason: str | None) -> str:
    """Collapse per-frame detail (percentages, device names) into a countable reason."""
    if not reason:
        return "unknown"
    if reason.startswith("review: "):
        return "held for review: the pixels could not tell look-alike cameras apart (see review)"
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
        f"{'a.candidates, a.p_wrong' if 'candidates' in case.table('attributions').columns_dict else 'null candidates, null p_wrong'}, "
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
            "review_candidates": json.loads(row["candidates"]) if row["candidates"] else None,
            "p_wrong": row["p_wrong"],
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
