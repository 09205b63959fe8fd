"""Attribute stage: decide which device each cluster of frames came from, then who saw whom.

Reference frames outrank everything: a cluster holding frames known to come from a device is
that device's. Otherwise the logs vote, but not by plain majority: leaked frames are claimed by
many strangers' devices, each of which also has its own cluster. A device can only claim a
cluster that holds a large share of *its own* claimed frames, so a rarely used camera is not
outvoted by the accounts its frames leaked to. A close call is left unattributed: a false
accusation costs more than a miss.

Access is decided from the registry: an account may see a device it owns or is shared on and,
under the default home scope, any other camera of the same home.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from typing import Any

from .casefile import Case

VIEW_EVENTS = {"snapshot_viewed"}


@dataclass(frozen=True)
class AttributionParams:
    access_scope: str = "home"  # or "device": only owner/shared accounts of that very device
    main_cluster_share: float = 0.25  # a device claims clusters holding >= this x its largest share
    ambiguity_ratio: float = 1.5  # the winner must beat the runner-up by this factor
    share_prior: float = 1.0  # pseudo-claims added to each device's total: one stray log line is weak evidence
    reference_majority: float = 0.8  # share of a cluster's reference frames that must agree
    log_evidence_confidence: float = 0.6

    def signature(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


DEFAULT_ATTRIBUTION_PARAMS = AttributionParams()


class Registry:
    """Who may see which device."""

    def __init__(self, devices: list[dict[str, Any]], scope: str = "home"):
        self.devices = {d["device_id"]: d for d in devices}
        self.scope = scope
        self.access: dict[str, set[str]] = defaultdict(set)
        self.homes_of: dict[str, set[str]] = defaultdict(set)
        for d in devices:
            accounts = {d["owner_account"], *json.loads(d["shared_accounts"] or "[]")}
            for account in accounts:
                self.access[account].add(d["device_id"])
                if d["home_id"]:
                    self.homes_of[account].add(d["home_id"])

    def home(self, device: str) -> str | None:
        d = self.devices.get(device)
        return d["home_id"] if d else None

    def owner(self, device: str) -> str | None:
        d = self.devices.get(device)
        return d["owner_account"] if d else None

    def known(self, device: str) -> bool:
        return device in self.devices

    def may_see(self, account: str, device: str) -> bool:
        if device in self.access.get(account, ()):
            return True
        if self.scope == "home":
            home = self.home(device)
            return home is not None and home in self.homes_of.get(account, ())
        return False


@dataclass
class AttributionStats:
    clusters: int = 0
    by_reference: int = 0
    by_logs: int = 0
    unattributed_clusters: int = 0
    snapshots_attributed: int = 0
    exposures: int = 0
    content_exposures: int = 0
    log_exposures: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def attribute_case(case: Case, params: AttributionParams = DEFAULT_ATTRIBUTION_PARAMS) -> AttributionStats:
    """Replace the case's cluster attributions, snapshot attributions and exposures."""
    registry = Registry(list(case.db.query("select * from devices")), params.access_scope)
    stats = AttributionStats()

    frame_cluster = {r["frame_id"]: r for r in case.db.query("select * from frame_clusters")}
    frames = list(case.db.query("select frame_id, role, snapshot, ref_device from frames"))
    claims = _claimed_devices(case)

    refs_per_cluster: dict[int, Counter] = defaultdict(Counter)
    votes: dict[int, Counter] = defaultdict(Counter)
    claimed_total: Counter = Counter()
    for f in frames:
        assignment = frame_cluster.get(f["frame_id"])
        if assignment is None:
            continue
        cid = assignment["cluster_id"]
        if f["role"] == "reference":
            refs_per_cluster[cid][f["ref_device"]] += 1
        elif f["snapshot"] in claims:
            device = claims[f["snapshot"]]
            votes[cid][device] += 1
            claimed_total[device] += 1

    # p(c|d): the share of device d's claimed frames that fall in cluster c, shrunk towards zero
    # for devices with few claims, so a device named once (all of its claims, trivially, in one
    # cluster) cannot tie a camera whose many requests land there.
    share: dict[tuple[int, str], float] = {}
    best_share: dict[str, float] = defaultdict(float)
    for cid, counter in votes.items():
        for device, count in counter.items():
            s = count / (claimed_total[device] + params.share_prior)
            share[(cid, device)] = s
            best_share[device] = max(best_share[device], s)

    cluster_rows = list(case.db.query("select cluster_id from clusters order by cluster_id"))
    decisions: dict[int, dict[str, Any]] = {}
    for row in cluster_rows:
        cid = row["cluster_id"]
        decisions[cid] = _decide(cid, refs_per_cluster.get(cid), votes.get(cid, Counter()), share, best_share, params)
    stats.clusters = len(decisions)
    stats.by_reference = sum(1 for d in decisions.values() if d["attribution"] == "reference")
    stats.by_logs = sum(1 for d in decisions.values() if d["attribution"] == "logs")
    stats.unattributed_clusters = stats.clusters - stats.by_reference - stats.by_logs

    # Per-snapshot attribution.
    attributions: list[dict[str, Any]] = []
    fp_status = {r["frame_id"]: (r["status"], r["reason"]) for r in case.db.query("select frame_id, status, reason from fingerprints")}
    for f in frames:
        if f["role"] != "snapshot":
            continue
        assignment = frame_cluster.get(f["frame_id"])
        row = {"snapshot": f["snapshot"], "frame_id": f["frame_id"], "cluster_id": None, "source_device": None,
               "source_home": None, "attribution": None, "confidence": None, "reason": None}
        if assignment is None:
            status, reason = fp_status.get(f["frame_id"], ("unfingerprinted", "not fingerprinted yet"))
            row["reason"] = _unclustered_reason(status, reason)
        else:
            decision = decisions[assignment["cluster_id"]]
            row["cluster_id"] = assignment["cluster_id"]
            if decision["source_device"]:
                row.update(source_device=decision["source_device"], source_home=registry.home(decision["source_device"]),
                           attribution=decision["attribution"], confidence=decision["confidence"])
                stats.snapshots_attributed += 1
            else:
                row["reason"] = decision["reason"]
        attributions.append(row)

    exposures = _exposures(case, registry, {a["snapshot"]: a for a in attributions}, frame_cluster, params)
    stats.exposures = len(exposures)
    stats.content_exposures = sum(1 for e in exposures if e["evidence"] == "content")
    stats.log_exposures = stats.exposures - stats.content_exposures

    with case.db.conn:
        case.db.execute("delete from attributions")
        case.db.execute("delete from exposures")
    with case.db.conn:
        case.db.conn.executemany(
            "update clusters set source_device = ?, attribution = ?, confidence = ?, votes = ?, reason = ? where cluster_id = ?",
            [(d["source_device"], d["attribution"], d["confidence"], d["votes"], d["reason"], cid) for cid, d in decisions.items()],
        )
    case.table("attributions").insert_all(attributions, batch_size=2000)
    case.table("exposures").insert_all(exposures, batch_size=2000)
    case.set_meta("attribution_params", params.signature())
    return stats


def _claimed_devices(case: Case) -> dict[str, str]:
    """The device each snapshot's log events claim it shows (the first served event's device)."""
    claims: dict[str, str] = {}
    for r in case.db.query(
        "select snapshot, device_id from events where snapshot is not null and device_id is not null "
        "order by (event != 'snapshot_served'), ts_ms, event_key"
    ):
        claims.setdefault(r["snapshot"], r["device_id"])
    return claims


def _decide(
    cid: int,
    refs: Counter | None,
    votes: Counter,
    share: dict[tuple[int, str], float],
    best_share: dict[str, float],
    params: AttributionParams,
) -> dict[str, Any]:
    decision: dict[str, Any] = {"source_device": None, "attribution": None, "confidence": None, "reason": None,
                                "votes": json.dumps(dict(sorted(votes.items())), sort_keys=True) if votes else None}
    if refs:
        device, count = refs.most_common(1)[0]
        total = sum(refs.values())
        if count / total >= params.reference_majority:
            decision.update(source_device=device, attribution="reference",
                            confidence=round(0.99 * count / total, 3))
        else:
            decision["reason"] = "reference frames of several devices in one cluster: " + ", ".join(sorted(refs))
        return decision
    if not votes:
        decision["reason"] = "no reference frame and no log event names a device for these frames"
        return decision
    candidates = sorted(
        ((share[(cid, d)], v, d) for d, v in votes.items() if share[(cid, d)] >= params.main_cluster_share * best_share[d]),
        key=lambda t: (-t[0], -t[1], t[2]),
    )
    if not candidates:
        decision["reason"] = "the devices the logs name have their frames elsewhere"
        return decision
    top_share, top_votes, top_device = candidates[0]
    runner = candidates[1][0] if len(candidates) > 1 else 0.0
    if runner and top_share < params.ambiguity_ratio * runner:
        decision["reason"] = f"ambiguous between {top_device} and {candidates[1][2]}"
        return decision
    confidence = 0.95 * top_share * (1 - runner / top_share) * (top_votes / (top_votes + 1))
    decision.update(source_device=top_device, attribution="logs", confidence=round(confidence, 3))
    return decision


def _unclustered_reason(status: str, reason: str | None) -> str:
    if status == "uninformative":
        return "uninformative frame (near-black or flat): never used as evidence"
    if status == "truncated":
        return f"truncated frame: {reason}"
    if status == "undecodable":
        return f"undecodable image: {reason}"
    if status == "ok":
        return "truncated frame whose decoded part matches no single camera"
    return reason or status


def _exposures(
    case: Case,
    registry: Registry,
    attribution: dict[str, dict[str, Any]],
    frame_cluster: dict[str, dict],
    params: AttributionParams,
) -> list[dict[str, Any]]:
    pairs: dict[tuple[str, str], dict[str, Any]] = {}
    for e in case.db.query("select * from events order by ts_ms, event_key"):
        account = e["account_id"]
        snap = attribution.get(e["snapshot"]) if e["snapshot"] else None
        source, evidence, confidence, distance = None, None, None, None
        if snap and snap["source_device"]:
            # Pixels decide. A log naming a foreign device is overruled by frames proven the account's own.
            if not registry.may_see(account, snap["source_device"]):
                source, evidence, confidence = snap["source_device"], "content", snap["confidence"]
                distance = frame_cluster.get(snap["frame_id"], {}).get("distance")
        elif e["device_id"] and registry.known(e["device_id"]) and not registry.may_see(account, e["device_id"]):
            source, evidence, confidence = e["device_id"], "log", params.log_evidence_confidence
        if source is None:
            continue
        item = pairs.setdefault((account, source), {
            "recipient_account": account, "source_device": source, "source_home": registry.home(source),
            "source_owner": registry.owner(source), "events": 0, "viewed_events": 0, "snapshots": set(),
            "first_seen": e["ts"], "last_seen": e["ts"], "first_ms": e["ts_ms"], "last_ms": e["ts_ms"],
            "integrations": set(), "evidence": set(), "attribution": set(), "confidence": 0.0,
            "evidence_snapshots": [], "max_distance": None,
        })
        item["events"] += 1
        if e["event"] in VIEW_EVENTS:
            item["viewed_events"] += 1
        if e["snapshot"]:
            if e["snapshot"] not in item["snapshots"] and len(item["evidence_snapshots"]) < 10:
                item["evidence_snapshots"].append(e["snapshot"])
            item["snapshots"].add(e["snapshot"])
        if e["ts_ms"] < item["first_ms"]:
            item["first_ms"], item["first_seen"] = e["ts_ms"], e["ts"]
        if e["ts_ms"] > item["last_ms"]:
            item["last_ms"], item["last_seen"] = e["ts_ms"], e["ts"]
        if e["integration"]:
            item["integrations"].add(e["integration"])
        item["evidence"].add(evidence)
        if evidence == "content":
            item["attribution"].add(snap["attribution"])
        item["confidence"] = max(item["confidence"], confidence or 0.0)
        if distance is not None:
            item["max_distance"] = max(item["max_distance"] or 0, distance)
    rows = []
    for _, item in sorted(pairs.items()):
        rows.append({
            **{k: item[k] for k in ("recipient_account", "source_device", "source_home", "source_owner", "events",
                                   "viewed_events", "first_seen", "last_seen", "max_distance")},
            "snapshots": len(item["snapshots"]),
            "integrations": json.dumps(sorted(item["integrations"])),
            "evidence": "content" if "content" in item["evidence"] else "log",
            "attribution": ",".join(sorted(item["attribution"])) or None,
            "confidence": round(item["confidence"], 3),
            "evidence_snapshots": json.dumps(item["evidence_snapshots"]),
        })
    return rows
