"""Attribute stage: decide which device each group of frames came from, then who saw whom.

No cluster is trusted to be one camera. The unit of decision is the *core* (frames within the
stage-1 radius of each other: near-duplicates, surely one camera); the loose joins that make
clusters only carry a decision from one core to another when nothing contradicts it.

1. *Anchors.* A core is anchored to a device by its informative reference frames (they
   outrank log votes), or by the log votes of a device that has a large share of *its own*
   claimed frames there (so a rarely used camera is not outvoted by the accounts its frames
   leaked to). A core whose references disagree, or whose references are contradicted by a
   device whose own frames are mostly there, goes to review.
2. *Clusters.* A cluster whose anchors all name one device is that device's. With no anchor,
   the cluster-level vote decides (as before). When anchors name several devices the cluster
   holds several cameras: each unanchored part goes to the anchor that is clearly nearest in
   hash distance, or to review; it is never given whole to one device.
3. *Verification.* Before a frame accuses anybody (it was delivered to an account that may not
   see its device), it is compared one to one, on a 32x16 grey thumbnail's normalised
   correlation (and where that cannot tell two cameras apart, on a 64x32 one, aligned), with
   its device's own frames and with every camera it could otherwise be: the
   recipient's own cameras, the device the log named, the other anchors of its cluster. It
   accuses only when it matches its device well and clearly better than each of those. A frame
   that could be the recipient's own camera, or the logged device, goes to review.
4. *Error rate.* How far a wrong camera leads the right one on the incident's own frames (each
   own frame of a camera against a camera it shares a cluster with, minus against its own
   others) gives the chance that an accusation's lead over its nearest rival came from the
   wrong camera; each exposure carries it (`p_wrong`), the report their sum.

Access is decided from the registry: an account may see a device it owns or is shared on and,
under the default home scope, any other camera of the same home.
"""

from __future__ import annotations

import json
import math
from collections import Counter, OrderedDict, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable

import numpy as np

from .casefile import Case
from .fingerprint import DEFAULT_PARAMS as DEFAULT_FINGERPRINT_PARAMS
from .fingerprint import single_threaded_blas

VIEW_EVENTS = {"snapshot_viewed"}
REVIEW_PREFIX = "review: "
SPLIT_REVIEW = REVIEW_PREFIX + "as near "  # (a part of a split cluster between two anchors)
NO_THUMBNAIL = "frame cannot be verified one to one (no thumbnail: from an older case)"
TOO_SHORT = "truncated frame: too little decoded to verify it one to one"
UNVERIFIABLE = (NO_THUMBNAIL, TOO_SHORT)
ORPHAN_REASONS = ("the devices the logs name have their frames elsewhere", "no reference frame and no log event names",
                  "ambiguous between")  # unplaced by anchors and votes: the pixels may still place them


@dataclass(frozen=True)
class AttributionParams:
    access_scope: str = "home"  # or "device": only owner/shared accounts of that very device
    main_cluster_share: float = 0.25  # a device claims units holding >= this x its largest share
    ambiguity_ratio: float = 1.5  # the winner must beat the runner-up by this factor
    share_prior: float = 1.0  # pseudo-claims added to each device's total: one stray log line is weak evidence
    reference_majority: float = 0.8  # share of a unit's reference frames that must agree
    log_evidence_confidence: float = 0.6
    anchor_min_votes: int = 2  # a core is anchored by votes only with this many votes for the winner
    conflict_min_votes: int = 3  # a device contradicts a core's references with this many own votes there...
    conflict_share: float = 0.5  # ...holding at least this share of all its claimed frames
    split_min: float = 0.70  # a part of a split cluster joins an anchor it matches at least this well (grey)...
    split_margin: float = 0.06  # ...and better than any other anchor by this (edges)
    split_sample: int = 64  # anchor frames compared per device when splitting
    split_candidates: int = 32  # a split cluster of more devices scores each part only against the
    # this many whose anchors' gradients it matches best (else parts x devices x samples: 1,884
    # devices in one cluster at 10^6), and verification takes only this many of its devices as a
    # frame's rivals; at most this many, every device, exactly as before. 32 is twice the most
    # seen otherwise (16 at 10^5 thumbnails; 3 and 4 in the two accuracy-grid cells measured)
    verify: bool = True
    identify_by_pixels: bool = True  # frames no anchor or vote placed go to the clearly nearest camera by
    # thumbnail, where that accuses nobody
    verify_min: float = 0.80  # correlation of an evidence frame with its device's own frames
    verify_margin: float = 0.06  # ...and every other camera it could be this much worse (edge correlation)
    exemplars: int = 48  # own frames per device kept for verification
    margin_slope: float = 0.35  # ...plus this x (1 - its own edge correlation)
    lookalike_pair: float = 0.60  # a rival matching the source's own frames this well (edges, upper quartile) looks alike...
    coverage_gap: float = 0.25  # ...and a frame proves nothing between them where the rival's frames
    # match the source's frame nearest to it this much worse than they typically match the source's
    occlusion_keep: float = 0.85  # a frame near other cameras only through its loose own match is
    # compared again on this share of its best-agreeing gradients (1: never)
    pixel_rivals: int = 8  # the cameras whose own thumbnails match an evidence frame best are rivals too
    rule_out_frames: int = 8  # the logged camera, when the recipient may see it, is ruled out on fewer
    rule_out_best: float = 0.75  # ...own frames only by a frame matching its source at least this well
    rule_out_single: float = 0.90  # ...and on one own frame only by one matching it at least this well
    own_view_alike: float = 0.50  # ...and not at all when it looks like the source this well one way (rule 6)
    lookalike_lead: float = 0.03  # ...and a frame accuses the one of two look-alikes only if it matches it
    # this much better than any frame of the other matches any of the one
    resolve_split: bool = True  # a frame a split cluster held between its anchors is tried as each of them,
    # and goes to the one the full check lets through, when only one does
    fine_look: bool = True  # a rival too near on the 32x16 thumbnail is looked at again on the 64x32 one
    fine_shift: int = 2  # ...aligned within this many of its pixels (camera shake)...
    fine_margin: float = 0.05  # ...where the frame must lead it by this...
    fine_slope: float = 0.2  # ...plus this x (1 - its own fine match)
    grey_look: bool = True  # a rival too near in edges that looks nothing like the source (both ways
    grey_unlike: float = 0.45  # below this pair measure) is ruled out by the occlusion-tolerant grey
    grey_min: float = 0.90  # ...match when the frame matches its own camera at least this well that way...
    grey_lead: float = 0.08  # ...and leads the rival by this, on fair samples
    accuse_by_pixels: bool = True  # a frame no anchor or vote placed may accuse from its pixels alone when
    pixel_accuse_min: float = 0.96  # ...its room matches its camera's this well in occlusion-tolerant grey
    pixel_accuse_lead: float = 0.12  # ...and the room of the camera its log names this much worse...
    pixel_accuse_apart: float = 0.08  # ...and every other camera's at least this much worse (its own impostors)
    pixel_impostors: int = 40  # (the cameras nearest the frame in plain grey, where that lead is checked)
    pixel_grey_source: bool = True  # an accusing frame whose room is plainly another camera's than the one its
    # gradients rank first is tried as that camera's, behind the same three bars and the full check
    same_look: bool = True  # the camera the log names is ruled out only on its frames of the frame's own
    colour_min: float = 1.5  # look: day colour (chroma at least this) or night infrared (grey) (issue 12)
    vouched_min: float = 0.50  # (0: off) the lead over the logged camera counts only on the source's frames
    # that match another of its frames at least this well (edges): see `_Feats.vouched`
    same_look_apart: bool = True  # a rival too near in edges is ruled out by the fine or grey look only
    # where it has frames of the frame's own look
    max_p_wrong: float = 1.0  # (1: off) an accusation needs a lead that at most this share of wrong-camera leads reach

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
        self.home_devices: dict[str, set[str]] = defaultdict(set)
        for d in devices:
            accounts = {d["owner_account"], *json.loads(d["shared_accounts"] or "[]")}
            if d["home_id"]:
                self.home_devices[d["home_id"]].add(d["device_id"])
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

    def accuses(self, accounts: Iterable[str], device: str) -> bool:
        """Whether showing the device's frame to these accounts exposes it (one may not see it)."""
        return any(not self.may_see(account, device) for account in accounts)

    def own_view(self, accounts: Iterable[str], logged: str | None) -> str | None:
        """The logged camera when every recipient may see it: the log says this was an own view."""
        return logged if logged and all(self.may_see(account, logged) for account in accounts) else None

    def own_cameras(self, account: str) -> set[str]:
        """Every camera of the account's homes: any of them could be what it was shown."""
        out = set(self.access.get(account, ()))
        for home in self.homes_of.get(account, ()):
            out |= self.home_devices[home]
        return out


@dataclass
class AttributionStats:
    clusters: int = 0
    by_reference: int = 0
    by_logs: int = 0
    unattributed_clusters: int = 0
    split_clusters: int = 0
    snapshots_attributed: int = 0
    snapshots_in_review: int = 0
    verified_frames: int = 0
    rejected_frames: int = 0
    uninformative_references: int = 0
    exposures: int = 0
    content_exposures: int = 0
    log_exposures: int = 0
    expected_false_pairs: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Unit:
    """A core (or a frame on its own): the group surely of one camera."""

    key: str
    cluster: int
    frames: list[str] = field(default_factory=list)
    refs: Counter = field(default_factory=Counter)
    votes: Counter = field(default_factory=Counter)
    device: str | None = None  # the anchor
    kind: str | None = None  # reference | logs
    confidence: float | None = None
    review: list[str] | None = None  # candidates when the unit itself is contradictory
    reason: str | None = None


def _unit_key(row: dict[str, Any]) -> str:
    if row.get("core") is not None:
        return f"core:{row['core']}"
    if row.get("via") == "band":
        return f"frame:{row['frame_id']}"
    return f"cluster:{row['cluster_id']}"  # case files from before cores: the cluster is the unit


def attribute_case(case: Case, params: AttributionParams = DEFAULT_ATTRIBUTION_PARAMS) -> AttributionStats:
    """Replace the case's cluster attributions, snapshot attributions and exposures."""
    with single_threaded_blas():  # many small products: BLAS threads cost more than they save
        return _attribute_case(case, params)


def _attribute_case(case: Case, params: AttributionParams) -> AttributionStats:
    registry = Registry(list(case.db.query("select * from devices")), params.access_scope)
    stats = AttributionStats()
    claims = _claimed_devices(case)
    stats.uninformative_references = case.count(
        "frames", "role = 'reference' and frame_id in (select frame_id from fingerprints where status != 'ok')")

    frames = list(case.db.query(
        "select f.frame_id, f.role, f.snapshot, f.ref_device, fc.cluster_id, fc.core, fc.via "
        "from frames f left join frame_clusters fc on fc.frame_id = f.frame_id"))
    units: dict[str, _Unit] = {}
    unit_of: dict[str, str] = {}
    claimed_total: Counter = Counter()
    cluster_votes: dict[int, Counter] = defaultdict(Counter)
    for f in frames:
        if f["cluster_id"] is None:
            continue
        key = _unit_key(f)
        unit = units.setdefault(key, _Unit(key, f["cluster_id"]))
        unit.frames.append(f["frame_id"])
        unit_of[f["frame_id"]] = key
        if f["role"] == "reference":
            unit.refs[f["ref_device"]] += 1
        elif f["snapshot"] in claims:
            device = claims[f["snapshot"]]
            unit.votes[device] += 1
            cluster_votes[f["cluster_id"]][device] += 1
            claimed_total[device] += 1

    _anchor_units(units.values(), claimed_total, params)
    cluster_units: dict[int, list[_Unit]] = defaultdict(list)
    for unit in units.values():
        cluster_units[unit.cluster].append(unit)
    thumbs = _Thumbs(case)
    decisions: dict[int, dict[str, Any]] = {}
    cluster_share = _shares(cluster_votes, claimed_total, params)
    for row in case.db.query("select cluster_id from clusters order by cluster_id"):
        cid = row["cluster_id"]
        decisions[cid] = _resolve_cluster(cid, cluster_units.get(cid, []), cluster_votes.get(cid, Counter()),
                                          cluster_share, thumbs, params)
        stats.split_clusters += decisions[cid]["split"]
    stats.clusters = len(decisions)
    stats.by_reference = sum(1 for d in decisions.values() if d["attribution"] == "reference")
    stats.by_logs = sum(1 for d in decisions.values() if d["attribution"] == "logs")
    stats.unattributed_clusters = stats.clusters - stats.by_reference - stats.by_logs

    # Per-snapshot attribution from its unit's outcome.
    fp_status = {r["frame_id"]: (r["status"], r["reason"]) for r in case.db.query(  # (only the unclustered: at
        "select frame_id, status, reason from fingerprints "  # 10^6 the others are 200 MB of tuples never read)
        "where frame_id not in (select frame_id from frame_clusters)")}
    attributions: list[dict[str, Any]] = []
    for f in frames:
        if f["role"] != "snapshot":
            continue
        row = {"snapshot": f["snapshot"], "frame_id": f["frame_id"], "cluster_id": f["cluster_id"], "source_device": None,
               "source_home": None, "attribution": None, "confidence": None, "reason": None, "candidates": None,
               "p_wrong": None}
        if f["cluster_id"] is None:
            status, reason = fp_status.get(f["frame_id"], ("unfingerprinted", "not fingerprinted yet"))
            row["reason"] = _unclustered_reason(status, reason)
        else:
            unit = units[unit_of[f["frame_id"]]]
            if unit.device:
                row.update(source_device=unit.device, source_home=registry.home(unit.device),
                           attribution=unit.kind, confidence=unit.confidence)
            else:
                row["reason"] = unit.reason or decisions[f["cluster_id"]]["reason"]
                if unit.review:
                    row["candidates"] = json.dumps(sorted(unit.review))
        attributions.append(row)
    del frames, fp_status  # (a million rows at 10^6: room for verification's features)

    by_snapshot = {a["snapshot"]: a for a in attributions}
    if params.verify:
        verified, rejected, expected = _verify(case, registry, by_snapshot, units, unit_of, claims, params)
        stats.verified_frames, stats.rejected_frames = verified, rejected
    stats.snapshots_attributed = sum(1 for a in attributions if a["source_device"])
    stats.snapshots_in_review = sum(1 for a in attributions if a["candidates"])

    frame_cluster = {r["frame_id"]: r for r in case.db.query("select frame_id, distance from frame_clusters")}
    exposures = _exposures(case, registry, by_snapshot, frame_cluster, params)
    stats.exposures = len(exposures)
    stats.content_exposures = sum(1 for e in exposures if e["evidence"] == "content")
    stats.log_exposures = stats.exposures - stats.content_exposures
    stats.expected_false_pairs = round(sum(e["p_wrong"] or 0.0 for e in exposures), 4)

    with case.db.conn:
        case.db.execute("delete from attributions")
        case.db.execute("delete from exposures")
    with case.db.conn:
        case.db.conn.executemany(
            "update clusters set source_device = ?, attribution = ?, confidence = ?, votes = ?, reason = ? where cluster_id = ?",
            [(d["source_device"], d["attribution"], d["confidence"], d["votes"], d["reason"], cid) for cid, d in decisions.items()],
        )
    case.insert_rows("attributions", attributions)
    case.insert_rows("exposures", exposures)
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


def _shares(votes: dict[Any, Counter], claimed_total: Counter, params: AttributionParams
            ) -> tuple[dict[tuple[Any, str], float], dict[str, float]]:
    """p(unit|d): the share of device d's claimed frames that fall in a unit, shrunk towards zero
    for devices with few claims, so a device named once (all of its claims, trivially, in one
    place) cannot tie a camera whose many requests land there; and each device's best share."""
    share: dict[tuple[Any, str], float] = {}
    best: dict[str, float] = defaultdict(float)
    for key, counter in votes.items():
        for device, count in counter.items():
            s = count / (claimed_total[device] + params.share_prior)
            share[(key, device)] = s
            best[device] = max(best[device], s)
    return share, best


def _vote_winner(key: Any, votes: Counter, shares: tuple[dict, dict], params: AttributionParams
                 ) -> tuple[str | None, float | None, str]:
    """The device the votes of one unit or cluster name, its confidence, or why none."""
    share, best = shares
    if not votes:
        return None, None, "no reference frame and no log event names a device for these frames"
    candidates = sorted(
        ((share[(key, d)], v, d) for d, v in votes.items() if share[(key, d)] >= params.main_cluster_share * best[d]),
        key=lambda t: (-t[0], -t[1], t[2]),
    )
    if not candidates:
        return None, None, "the devices the logs name have their frames elsewhere"
    top_share, top_votes, top_device = candidates[0]
    runner = candidates[1][0] if len(candidates) > 1 else 0.0
    if runner and top_share < params.ambiguity_ratio * runner:
        return None, None, f"ambiguous between {top_device} and {candidates[1][2]}"
    confidence = 0.95 * top_share * (1 - runner / top_share) * (top_votes / (top_votes + 1))
    return top_device, round(confidence, 3), ""


def _anchor_units(units: Iterable[_Unit], claimed_total: Counter, params: AttributionParams) -> None:
    """Anchor each unit by its references or its own votes; flag contradictory ones for review."""
    units = list(units)
    shares = _shares({u.key: u.votes for u in units}, claimed_total, params)
    share, best = shares
    for unit in units:
        if unit.refs:
            device, count = unit.refs.most_common(1)[0]
            total = sum(unit.refs.values())
            if count / total < params.reference_majority:
                unit.review = sorted(unit.refs)
                unit.reason = REVIEW_PREFIX + "reference frames of several devices in one cluster: " + ", ".join(sorted(unit.refs))
                continue
            rivals = sorted(d for d, v in unit.votes.items() if d != device and v >= params.conflict_min_votes
                            and share[(unit.key, d)] >= params.conflict_share)
            if rivals:
                unit.review = sorted({device, *rivals})
                unit.reason = (REVIEW_PREFIX + f"reference frames of {device} among frames whose own logs say "
                               + ", ".join(rivals))
                continue
            unit.device, unit.kind, unit.confidence = device, "reference", round(0.99 * count / total, 3)
        elif unit.votes:
            device, confidence, _ = _vote_winner(unit.key, unit.votes, shares, params)
            if device and unit.votes[device] >= params.anchor_min_votes:
                unit.device, unit.kind, unit.confidence = device, "logs", confidence


def _resolve_cluster(cid: int, units: list[_Unit], votes: Counter, cluster_share: tuple[dict, dict],
                     thumbs: "_Thumbs", params: AttributionParams) -> dict[str, Any]:
    """Carry the anchors' decisions over the cluster's other units; split when anchors disagree."""
    decision: dict[str, Any] = {"source_device": None, "attribution": None, "confidence": None, "reason": None,
                                "split": 0, "votes": json.dumps(dict(sorted(votes.items())), sort_keys=True) if votes else None}
    anchored = [u for u in units if u.device]
    share, _ = cluster_share
    # Devices whose own frames are mostly here, by their logs, are present even unanchored.
    present = {d for d, v in votes.items() if v >= params.conflict_min_votes and share[(cid, d)] >= params.conflict_share}
    devices = sorted({u.device for u in anchored} | (present if anchored else set()))
    free = [u for u in units if not u.device and not u.review]
    if len(devices) == 1:
        device = devices[0]
        kinds = {u.kind for u in anchored}
        kind = "reference" if "reference" in kinds else "logs"
        confidence = max(u.confidence or 0.0 for u in anchored)
        for u in free:
            u.device, u.kind, u.confidence = device, kind, confidence
        decision.update(source_device=device, attribution=kind, confidence=confidence)
        return decision
    if not devices:
        if any(u.review for u in units):
            decision["reason"] = next(u.reason for u in units if u.review)
            return decision
        device, confidence, reason = _vote_winner(cid, votes, cluster_share, params)
        if device is None:
            decision["reason"] = reason
            for u in free:
                u.reason = reason
            return decision
        for u in free:
            u.device, u.kind, u.confidence = device, "logs", confidence
        decision.update(source_device=device, attribution="logs", confidence=confidence)
        return decision
    # Several cameras in one cluster: each free unit goes to the anchor it clearly correlates
    # with best, in rounds (a unit placed becomes an anchor for the next), or to review.
    decision["split"] = 1
    decision["reason"] = "cluster holds several cameras: " + ", ".join(devices)
    # (each by one pass over the units: a pass per device is devices x units, ~10^11 at 10^6)
    kind_of = {d: "logs" for d in devices}
    confidences: dict[str, list[float]] = defaultdict(list)
    for u in anchored:
        confidences[u.device].append(u.confidence or 0.0)
        if u.kind == "reference":
            kind_of[u.device] = "reference"
    conf_of = {d: max(confidences[d], default=params.log_evidence_confidence) for d in devices}
    present_here = set(devices)
    for u in free:  # frames whose own logs name only one camera present here: that camera's
        named = set(u.votes)
        if len(named) == 1 and (d := next(iter(named))) in present_here:
            u.device, u.kind, u.confidence = d, "logs", conf_of[d]
    pool: dict[str, list[str]] = {d: [] for d in devices}
    for u in units:
        if u.device in pool:
            pool[u.device].extend(u.frames)
    pool = {d: sorted(frames) for d, frames in pool.items()}
    pending = [u for u in free if not u.device]
    many = len(devices) > params.split_candidates
    for _ in range(3):
        sampled = {d: pool[d][:: max(1, len(pool[d]) // params.split_sample)] for d in devices}
        if many:
            placed = _split_many(pending, devices, sampled, thumbs.case, params)
        else:
            placed = _split_few(pending, devices, sampled, thumbs, params)
        for u, device in placed:
            u.device, u.kind, u.confidence, u.review, u.reason = device, kind_of[device], conf_of[device], None, None
            pool[device].extend(u.frames)
        pending = [u for u in pending if not u.device]
        if not placed or not pending:
            break
    for u in pending:
        if not u.review:
            u.review = devices
            u.reason = REVIEW_PREFIX + "part of a cluster of several cameras that no thumbnail places"
    return decision


def _split_verdict(u: _Unit, mine: tuple[np.ndarray, np.ndarray], devices: Iterable[str],
                   anchor: Callable[[str], tuple[np.ndarray, np.ndarray] | None], fine_ties: Callable[[list[tuple]], str | None],
                   params: AttributionParams) -> str | None:
    """One round's verdict on one part of a split cluster, scored against `devices` (every device
    of the cluster, or a few candidates): the device it goes to, or None after marking it for
    review. `anchor(d)`: the device's sampled anchors' (grey, edges) rows, or None; `fine_ties`
    gets the coarse scores, best first, when the coarse margin fails."""
    mine_i, mine_g = mine
    scores = []
    for d in devices:
        a = anchor(d)
        if a is None:
            scores.append((-1.0, -1.0, d))
            continue
        grey = float((mine_i @ a[0].T).max())
        edges = float((mine_g @ a[1].T).max())
        scores.append((edges, grey, d))
    scores.sort(reverse=True)
    (best, grey, device), (second, _, runner) = scores[0], scores[1]
    if grey >= params.split_min and best - second >= params.split_margin:  # verification has the final word
        return device
    if grey >= params.split_min and (fine_device := fine_ties(scores)):
        return fine_device  # the coarse thumbnails tie; the fine ones do not
    u.review = [device, runner]
    u.reason = SPLIT_REVIEW + f"{device} as {runner} in a cluster of several cameras"
    return None


def _split_few(pending: list[_Unit], devices: list[str], sampled: dict[str, list[str]], thumbs: "_Thumbs",
               params: AttributionParams) -> list[tuple[_Unit, str]]:
    """A round of the split when the cluster holds at most `split_candidates` devices: every part
    scored against every device, as it always was (the anchors are now stacked once a round and
    the fine thumbnails read once a round, not once a part: the same products, the same decisions)."""
    feats = thumbs.features([f for d in devices for f in sampled[d]] + [f for u in pending for f in u.frames])
    stacked: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}
    for d in devices:
        anchor = [feats[f] for f in sampled[d] if f in feats]
        stacked[d] = (np.stack([i for i, _ in anchor]), np.stack([g for _, g in anchor])) if anchor else None
    fine = _Fine(_fine_reader(thumbs.case), sampled, shift=params.fine_shift) if params.fine_look else None
    placed = []
    for u in pending:
        own = [feats[f] for f in u.frames if f in feats]
        if not own:
            continue
        mine = np.stack([i for i, _ in own]), np.stack([g for _, g in own])
        device = _split_verdict(u, mine, devices, stacked.get,
                                lambda _: _fine_nearest(u.frames, sampled, thumbs, params, fine=fine), params)
        if device:
            placed.append((u, device))
    return placed


def _split_many(pending: list[_Unit], devices: list[str], sampled: dict[str, list[str]], case: Case,
                params: AttributionParams, chunk: int = 2048) -> list[tuple[_Unit, str]]:
    """A round of the split when the cluster holds more than `split_candidates` devices (a chain of
    look-alike cameras: 1,884 in one cluster at 10^6, 142,856 sampled anchors). Each part is
    scored as `_split_few` scores it, but only against its candidates: the `split_candidates`
    devices whose sampled anchors' gradients its frames match best, found by one product of its
    frames with all anchors (chunks of frames against device-aligned blocks of anchors, the
    best per device by `np.maximum.reduceat`). Since that is the very measure the verdict ranks
    by, the best two are among the candidates and the coarse verdict is the one scoring every
    device gives (to rounding); a centroid a device instead held only 44 of 100 sampled parts'
    runners-up at 10^6. The fine look, when the coarse margin fails, compares the devices the
    coarse one tied (within `split_margin` of the best), not every device. Memory stays bounded:
    the anchors are kept as raw thumbnails (512 bytes each) and turned into features a block or a
    device at a time, the parts' features a chunk at a time, none in the case-wide cache."""
    ids = [f for d in devices for f in sampled[d]]
    raw = _read_thumbs(case, ids)
    kept = {d: [f for f in sampled[d] if f in raw] for d in devices}
    cached: OrderedDict[str, tuple[np.ndarray, np.ndarray] | None] = OrderedDict()

    def anchor(d: str) -> tuple[np.ndarray, np.ndarray] | None:
        if d in cached:
            cached.move_to_end(d)
            return cached[d]
        cached[d] = _features([raw[f] for f in kept[d]]) if kept[d] else None
        if len(cached) > 256:  # ~130 MB of features
            cached.popitem(last=False)
        return cached[d]

    # Device-aligned blocks of about `4 * chunk` anchors (a device with no anchor is never a
    # candidate unless too few devices have one)
    blocks = _device_blocks([kept[d] for d in devices], 4 * chunk)

    # Pass 1: each part's candidates (parts without a thumbnail are skipped, as in `_split_few`),
    # parts taken about `chunk` frames at a time.
    top = max(2, min(params.split_candidates, len(devices)))  # (the verdict compares the best two)
    cands: dict[int, np.ndarray] = {}
    start = 0
    while start < len(pending):
        end, size = start, 0
        while end < len(pending) and (size == 0 or size + len(pending[end].frames) <= chunk):
            size += len(pending[end].frames)
            end += 1
        found = _read_thumbs(case, [f for u in pending[start:end] for f in u.frames])
        if found:
            rows = {f: i for i, f in enumerate(found)}
            _, edges = _features(list(found.values()))
            best = np.full((len(rows), len(devices)), -np.inf, np.float32)
            for columns, frames, offsets in blocks:
                best[:, columns] = np.maximum.reduceat(edges @ _features([raw[f] for f in frames])[1].T, offsets, axis=1)
            for k in range(start, end):
                mine = [rows[f] for f in pending[k].frames if f in rows]
                if mine:
                    score = best[mine].max(axis=0)
                    pick = np.argpartition(-score, top - 1)[:top]
                    cands[k] = pick[np.argsort(-score[pick], kind="stable")]
            del rows, edges, best
        del found
        start = end

    # Pass 2: the exact scores, parts taken in the order of their nearest candidate so each
    # device's anchor features (and fine thumbnails) are built once for the parts near it.
    order = sorted(cands, key=lambda k: (int(cands[k][0]), k))
    fine = _Fine(_fine_reader(case), sampled, shift=params.fine_shift, keep_devices=64) if params.fine_look else None
    placed: list[tuple[int, _Unit, str]] = []
    for start in range(0, len(order), chunk // 4):
        part = order[start:start + chunk // 4]
        found = _read_thumbs(case, [f for k in part for f in pending[k].frames])
        for k in part:
            u = pending[k]
            own = [found[f] for f in u.frames if f in found]
            mine = _features(own)
            names = [devices[int(j)] for j in cands[k]]

            def ties(scores: list[tuple], u: _Unit = u) -> str | None:
                near = [d for e, _, d in scores if e >= scores[0][0] - params.split_margin]
                return _fine_nearest(u.frames, sampled, None, params, fine=fine, devices=near)

            device = _split_verdict(u, mine, names, anchor, ties, params)
            if device:
                placed.append((k, u, device))
        del found
    return [(u, d) for _, u, d in sorted(placed, key=lambda t: t[0])]  # in the parts' own order


class _Thumbs:
    """Thumbnail features by frame id, read from the case on demand (only what is compared)."""

    def __init__(self, case: Case):
        self.case = case
        self.cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.missing: set[str] = set()

    def features(self, frame_ids: Iterable[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        wanted = [f for f in dict.fromkeys(frame_ids) if f not in self.cache and f not in self.missing]
        raw = _read_thumbs(self.case, wanted)
        if raw:
            ids = sorted(raw)
            grey, edges = _features([raw[f] for f in ids])
            self.cache.update(zip(ids, zip(grey, edges)))
        self.missing.update(f for f in wanted if f not in raw)
        return self.cache


THUMB_WIDTH = 32
FINE_SIZE = DEFAULT_FINGERPRINT_PARAMS.fine_size  # (columns, rows)


def _read_thumbs(case: Case, frame_ids: Iterable[str], chunk: int = 500, column: str = "thumb") -> dict[str, Any]:
    """Raw thumbnails (or chroma) of just these frames (a million-frame case holds half a
    gigabyte of thumbnails, and two gigabytes of the fine ones)."""
    assert column in ("thumb", "fine", "chroma")
    wanted = sorted(set(frame_ids))
    out: dict[str, bytes] = {}
    for start in range(0, len(wanted), chunk):
        part = wanted[start:start + chunk]
        out.update(case.db.execute(
            f"select frame_id, {column} from fingerprints where {column} is not null "
            f"and frame_id in ({','.join('?' * len(part))})", part).fetchall())
    return out


def _fine_reader(case: Case) -> Callable[[list[str]], dict[str, bytes]]:
    return lambda frames: _read_thumbs(case, frames, column="fine")


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=1, keepdims=True)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)


def _features(thumbs: list[bytes], rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Normalised grey thumbnails and normalised thumbnail gradients (of the first `rows` rows).

    Grey correlation says whether two frames show the same room at all (robust to lighting);
    gradient correlation tells look-alike rooms apart: a slight zoom, shift or one moved object
    moves edges, which the grey levels of a 32x16 thumbnail barely register (on the hard
    look-alike simulations 91 % of look-alike frames lead the copy by >= 0.06 in gradient
    correlation, 33 % in grey)."""
    x = np.frombuffer(b"".join(thumbs), dtype=np.uint8).reshape(len(thumbs), -1, THUMB_WIDTH).astype(np.float32)
    if rows is not None:
        x = x[:, :rows]
    return _unit_rows(x.reshape(len(x), -1)), _unit_rows(_gradients(x).reshape(len(x), -1))


def _gradients(x: np.ndarray) -> np.ndarray:
    """(n, 2, rows-1, cols-1): horizontal then vertical grey differences of each thumbnail."""
    return np.stack([np.diff(x, axis=2)[:, :-1, :], np.diff(x, axis=1)[:, :, :-1]], axis=1)


class _Feats:
    """Exemplar features per device, and scores of a frame against a device's own frames."""

    def __init__(self, ids: dict[str, list[str]], feats: dict[str, tuple[np.ndarray, np.ndarray]],
                 stacks: tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | None = None):
        """`stacks`: each device's (grey, edges) rows of exactly `ids`, where the caller built them
        (`_exemplar_features`: no second copy of a gigabyte of exemplars at 10^6)."""
        self.feats = feats
        self.ids = {d: [f for f in m if f in feats] for d, m in ids.items()}
        self.ids = {d: m for d, m in self.ids.items() if m}
        if stacks is not None:
            self.grey, self.edges = stacks
        else:
            self.grey = {d: np.stack([feats[f][0] for f in m]) for d, m in self.ids.items()}
            self.edges = {d: np.stack([feats[f][1] for f in m]) for d, m in self.ids.items()}
        self._pairs: dict[tuple[str, str], tuple[float, float, float]] = {}
        self._every: dict[str, np.ndarray] = {}
        self._where: dict[str, dict[str, list[int]]] = {}
        self.fine: _Fine | None = None  # the finer thumbnails, where the case has them
        self.colour: dict[str, bool] = {}  # frame -> day colour (True) or night infrared, where known
        self._looks: dict[str, dict[bool, np.ndarray] | None] = {}
        self._support: dict[str, np.ndarray] = {}

    def _others(self, frame: str, device: str) -> np.ndarray | None:
        """Positions of the device's frames other than `frame` (read-only; shared between calls)."""
        if device not in self.ids:
            return None
        if device not in self._every:  # built once per device, not per call (~25 us a call on 48 frames)
            every = np.arange(len(self.ids[device]), dtype=np.int64)
            every.flags.writeable = False
            where: dict[str, list[int]] = defaultdict(list)
            for i, f in enumerate(self.ids[device]):
                where[f].append(i)
            self._every[device], self._where[device] = every, dict(where)
        at = self._where[device].get(frame)
        keep = self._every[device] if at is None else np.delete(self._every[device], at)
        return keep if len(keep) else None

    def count(self, frame: str, device: str) -> int:
        keep = self._others(frame, device)
        return 0 if keep is None else len(keep)

    def best(self, frame: str, device: str, kind: str = "edges") -> float | None:
        """The frame's best correlation with a device's own frames (itself excluded), or None.

        `robust`: grey correlation on the 85 % of pixels that agree best with each of the three
        nearest frames, so a person walking through does not hide that the room is the same."""
        keep = self._others(frame, device)
        if keep is None:
            return None
        grey, edges = self.feats[frame]
        if kind == "edges":
            return float((self.edges[device][keep] @ edges).max())
        scores = self.grey[device][keep] @ grey
        if kind == "grey":
            return float(scores.max())
        top = self.grey[device][keep[np.argsort(-scores)[:3]]]
        return float(max(_trimmed_correlation(grey, y) for y in top))

    def vouched(self, frame: str, device: str, bar: float) -> float | None:
        """The frame's best edge correlation with those of the device's frames that match
        another of its frames at least `bar` (its "support"); None where the device has one frame
        or none of its frames is vouched for.

        A frame is the device's by the clustering or its log; one its camera's other frames do not
        vouch for (a person filling the view swamps the room's edges) proves little about the room,
        yet matches any other frame of a person at the same spot (3,000 homes hard look-alike seed
        1: two own views, each with a person in front, matched one such frame of another camera at
        0.83-0.84 and their own cameras' frames at 0.28-0.31; that frame matched its own camera's
        others at 0.27-0.31). Of 1,846 true accusations on 1,000 homes hard look-alike seed 1 whose
        log names another camera, none leads that camera by less than 0.24 on vouched frames."""
        keep = self._others(frame, device)
        if keep is None:
            return None
        if device not in self._support:  # (a device of one frame: its support is -inf, none vouched)
            edges = self.edges[device]
            scores = edges @ edges.T
            np.fill_diagonal(scores, -np.inf)
            self._support[device] = scores.max(axis=1)
        keep = keep[self._support[device][keep] >= bar]
        if not len(keep):  # none vouched for (a camera seen in a few frames, each of another look):
            return None  # nothing to tell its stray frames from the rest by
        return float((self.edges[device][keep] @ self.feats[frame][1]).max())

    def best_of(self, frame: str, device: str, n: int) -> float | None:
        """The best edge correlation the frame would have with `n` of the device's own frames
        drawn at random (its expectation): the best of 48 frames beats the best of 4 by chance
        alone, so a rival with few frames is compared with an equally small sample."""
        keep = self._others(frame, device)
        if keep is None:
            return None
        scores = np.sort(self.edges[device][keep] @ self.feats[frame][1])[::-1]
        return _expected_best(scores, n)

    def trimmed(self, frame: str, device: str, keep: float, kind: str = "edges") -> np.ndarray:
        """Occlusion-tolerant correlations (edges or grey) with each of the device's own frames, best first."""
        index = 1 if kind == "edges" else 0
        rows = (self.edges if index else self.grey)[device][self._others(frame, device)]
        return np.sort(_trimmed_rows(self.feats[frame][index], rows, keep))[::-1]

    def nearest(self, frame: str, device: str) -> str | None:
        keep = self._others(frame, device)
        if keep is None:
            return None
        return self.ids[device][int(keep[np.argmax(self.edges[device][keep] @ self.feats[frame][1])])]

    def looks(self, device: str) -> dict[bool, np.ndarray] | None:
        """Positions of the device's frames of each look (colour: True), or None where the look of
        one of them is not known (a case file fingerprinted before chroma was)."""
        if device not in self._looks:
            members = self.ids.get(device, [])
            if any(f not in self.colour for f in members):
                self._looks[device] = None
            else:
                flags = np.array([self.colour[f] for f in members], dtype=bool)
                self._looks[device] = {look: np.flatnonzero(flags == look) for look in (True, False)}
        return self._looks[device]

    def unlike_look(self, frame: str, device: str) -> bool:
        """Whether none of the device's frames (the frame itself apart) has the frame's look."""
        look, looks = self.colour.get(frame), self.looks(device)
        if look is None or looks is None:
            return False
        keep = self._others(frame, device)
        return keep is None or not np.isin(looks[look], keep).any()

    def apart_in_some_look(self, source: str, rival: str, bar: float, least: int = 3) -> bool:
        """Whether, in a look both cameras have at least `least` frames of, their rooms are plainly
        different (the pair measure of `pair`, both ways, under `bar`, on those frames only; one
        frame of a look-alike, another tint and zoom, can match its twin's as badly as a stranger's)."""
        mine, theirs = self.looks(source), self.looks(rival)
        if mine is None or theirs is None:
            return False
        for look in (True, False):
            a, b = mine[look], theirs[look]
            if len(a) >= least and len(b) >= least:
                typical, likeness, _ = _pair_measure(self.edges[source][a], self.edges[rival][b])
                if max(typical, likeness) < bar:
                    return True
        return False

    def pair(self, source: str, rival: str) -> tuple[float, float]:
        """How well two cameras' own frames match, typically: the upper quartile, over the source's
        frames, of each one's best match among the rival's, and the same over the rival's frames.
        Look-alike rooms score high both ways; a stray frame of one attributed to the other makes
        only one side high (every frame of the one camera matches the stray, no frame of it
        matches the rest of the other)."""
        key = (source, rival)
        if key not in self._pairs:
            self._pairs[key] = _pair_measure(self.edges[source], self.edges[rival])
        return self._pairs[key][:2]

    def ceiling(self, source: str, rival: str) -> float:
        """The best any frame of the rival matches any frame of the source."""
        self.pair(source, rival)
        return self._pairs[(source, rival)][2]


def _pair_measure(mine: np.ndarray, theirs: np.ndarray) -> tuple[float, float, float]:
    """`_Feats.pair`'s measure on two sets of gradient rows: the upper quartile of each one's best
    match among the other's, both ways, and the best match of all."""
    scores = mine @ theirs.T
    return (float(np.quantile(scores.max(axis=1), 0.75)), float(np.quantile(scores.max(axis=0), 0.75)),
            float(scores.max()))


def _fine_windows(grads: np.ndarray, shift: int) -> np.ndarray:
    """(shifts, d): the gradients in each window displaced by up to `shift` pixels, normalised,
    so one product scores this frame against other frames' central windows at every alignment."""
    _, rows, cols = grads.shape
    return np.stack([_unit_rows(grads[:, shift + dy:rows - shift + dy, shift + dx:cols - shift + dx].reshape(1, -1))[0]
                     for dy in range(-shift, shift + 1) for dx in range(-shift, shift + 1)])


def _fine_centre(grads: np.ndarray, shift: int) -> np.ndarray:
    return grads[:, shift:grads.shape[1] - shift, shift:grads.shape[2] - shift].reshape(-1)


class _Fine:
    """Scores on the 64x32 thumbnail's gradients, each pair at its best alignment within
    `shift` pixels. At 32x16 a look-alike flat's zoom, shift and moved object are under a pixel,
    as large as camera shake; at 64x32, aligned, they are not (on 300 homes hard look-alike
    seed 1, 34 of the 36 informative frames held for review between two look-alikes led their
    own camera by more than 0.05 this way, median 0.19). Read from the case only for what a
    close call compares, and only so much kept (13 KB an exemplar, 320 KB a frame's 25
    alignments): the least recently used devices and frames are dropped (at most about 150 MB
    and 20 MB)."""

    def __init__(self, read: Callable[[list[str]], dict[str, bytes]], ids: dict[str, list[str]],
                 size: tuple[int, int] = FINE_SIZE, shift: int = 2, keep_devices: int = 256, keep_frames: int = 64):
        self.read, self.ids, self.size, self.shift = read, ids, size, shift
        self.keep_devices, self.keep_frames = keep_devices, keep_frames
        self._centres: OrderedDict[str, tuple[list[str], np.ndarray]] = OrderedDict()
        self._windows: OrderedDict[str, np.ndarray | None] = OrderedDict()

    def _grads(self, frames: list[str]) -> dict[str, np.ndarray]:
        found = self.read(frames) if frames else {}
        width, height = self.size
        out = {}
        for f in frames:
            raw = found.get(f)
            if raw is not None and len(raw) == width * height:  # (another fine_size: unused)
                out[f] = _gradients(np.frombuffer(raw, dtype=np.uint8).reshape(1, height, width).astype(np.float32))[0]
        return out

    def windows(self, frame: str) -> np.ndarray | None:
        if frame in self._windows:
            self._windows.move_to_end(frame)
            return self._windows[frame]
        grads = self._grads([frame]).get(frame)
        self._windows[frame] = None if grads is None else _fine_windows(grads, self.shift)
        if len(self._windows) > self.keep_frames:
            self._windows.popitem(last=False)
        return self._windows[frame]

    def centres(self, device: str) -> tuple[list[str], np.ndarray]:
        if device in self._centres:
            self._centres.move_to_end(device)
            return self._centres[device]
        grads = self._grads(self.ids.get(device, []))
        kept = [f for f in self.ids.get(device, []) if f in grads]
        centres = (_unit_rows(np.stack([_fine_centre(grads[f], self.shift) for f in kept])) if kept
                   else np.zeros((0, 0), np.float32))
        self._centres[device] = (kept, centres)
        if len(self._centres) > self.keep_devices:
            self._centres.popitem(last=False)
        return kept, centres

    def _aligned(self, frame: str, device: str) -> tuple[list[str], np.ndarray] | None:
        windows = self.windows(frame)
        members, centres = self.centres(device)
        if windows is None or not members:
            return None
        keep = [i for i, f in enumerate(members) if f != frame]
        if not keep:
            return None
        return [members[i] for i in keep], (centres[keep] @ windows.T).max(axis=1)

    def scores(self, frame: str, device: str) -> np.ndarray | None:
        """The frame's best-aligned correlation with each of the device's own frames (itself
        excluded), best first; None when either side has no fine thumbnail."""
        aligned = self._aligned(frame, device)
        return None if aligned is None else np.sort(aligned[1])[::-1]

    def reach(self, frame: str, source: str, rival: str) -> float:
        """How well the rival's frames match the source's own frame nearest to this one: the
        look-alike's reach into this very view (on 300 homes hard look-alike seed 1, against
        the best any frame of the rival matches any of the source, it let 81 % of look-alike
        frames through rather than 75 %, and no frame of the one twin put on the other)."""
        aligned = self._aligned(frame, source)
        if aligned is None:
            return 1.0
        members, scores = aligned
        theirs = self.scores(members[int(np.argmax(scores))], rival)
        return 1.0 if theirs is None else float(theirs[0])


def _fine_margin(best: float, params: AttributionParams) -> float:
    """`_margin` on the fine thumbnail: the lead asked there, more for a loose match."""
    return params.fine_margin + params.fine_slope * max(0.0, 1.0 - best)


def _fine_nearest(frames: list[str], anchors: dict[str, list[str]], thumbs: "_Thumbs | None", params: AttributionParams,
                  fine: "_Fine | None" = None, devices: Iterable[str] | None = None) -> str | None:
    """The anchor device the frames' fine thumbnails clearly match best (by the verification's
    fine margin over the next one), or None. `fine`: a `_Fine` over these anchors shared between
    calls (else one is built from `thumbs`' case); `devices`: only these of the anchors."""
    if not params.fine_look:
        return None
    fine = fine if fine is not None else _Fine(_fine_reader(thumbs.case), anchors, shift=params.fine_shift)
    devices = list(anchors) if devices is None else list(devices)
    ranked = []
    for device in devices:
        scores = [float(sc[0]) for f in frames if (sc := fine.scores(f, device)) is not None]
        if scores:
            ranked.append((max(scores), device))
    if len(ranked) < len(devices) or len(ranked) < 2:
        return None
    ranked.sort(reverse=True)
    (best, device), (second, _) = ranked[0], ranked[1]
    return device if best - second >= _fine_margin(best, params) else None


def _fine_apart(frame: str, source: str, rival: str, lookalike: bool, feats: "_Feats", params: AttributionParams
                ) -> bool:
    """Whether the fine thumbnails tell the frame's camera from a rival the coarse ones could not:
    the same fair samples, a lead of `fine_margin` (more for a loose match) and, against a
    look-alike, a match beyond the rival's reach into this view."""
    fine = feats.fine
    if fine is None or not params.fine_look:
        return False
    own, theirs = fine.scores(frame, source), fine.scores(frame, rival)
    if own is None or theirs is None:
        return False
    best = float(own[0])
    fair = _expected_best(own, len(theirs)) if len(theirs) < len(own) else best
    if float(theirs[0]) > fair - _fine_margin(best, params):
        return False
    return not lookalike or best >= fine.reach(frame, source, rival) + params.lookalike_lead


def _grey_apart(frame: str, source: str, rival: str, feats: "_Feats", params: AttributionParams) -> bool:
    """Whether the room itself, in grey with the worst-agreeing pixels left out (a person in the
    way), says which of two unlike cameras the frame is. Edges are what tell look-alike flats
    apart, but a person in the frame brings edges of its own that match any camera where
    somebody once stood in that place; the rest of the room does not. Only for rivals that look
    nothing like the source: look-alikes share their grey room."""
    if not params.grey_look or max(feats.pair(source, rival)) >= params.grey_unlike:
        return False
    return _grey_leads(frame, source, rival, feats, params)


def _grey_leads(frame: str, source: str, rival: str, feats: "_Feats", params: AttributionParams) -> bool:
    """The grey look's measure alone: the frame is clearly its source's room rather than the rival's."""
    own = feats.trimmed(frame, source, params.occlusion_keep, "grey")
    theirs = feats.trimmed(frame, rival, params.occlusion_keep, "grey")
    if not len(own) or not len(theirs) or own[0] < params.grey_min:
        return False
    return _grey_ahead(own, theirs, params.grey_lead)


def _expected_best(scores: np.ndarray, n: int) -> float:
    """E[max] of `n` of these (sorted descending) scores drawn without replacement."""
    total = len(scores)
    if n >= total:
        return float(scores[0])
    # P(the i-th best is the best of the sample) = C(total-1-i, n-1) / C(total, n)
    weights = np.array([math.comb(total - 1 - i, n - 1) for i in range(total - n + 1)], dtype=np.float64)
    return float(scores[: len(weights)] @ (weights / math.comb(total, n)))


def _verify(case: Case, registry: Registry, by_snapshot: dict[str, dict[str, Any]], units: dict[str, _Unit],
            unit_of: dict[str, str], claims: dict[str, str], params: AttributionParams) -> tuple[int, int, float]:
    """One-to-one check of every frame that would accuse somebody (see the module docstring).
    A frame that fails is moved to review with the cameras it could be; one that passes gets
    `p_wrong`, the share of wrong-camera leads in this incident as large as its lead."""
    recipients: dict[str, set[str]] = defaultdict(set)
    for r in case.db.query("select distinct snapshot, account_id from events where snapshot is not null"):
        recipients[r["snapshot"]].add(r["account_id"])
    evidence = [a for a in by_snapshot.values() if a["source_device"]
                and registry.accuses(recipients.get(a["snapshot"], ()), a["source_device"])]
    orphans = [a for a in by_snapshot.values() if params.identify_by_pixels and not a["source_device"]
               and a["cluster_id"] is not None and (a["reason"] or "").startswith(ORPHAN_REASONS)]
    held = [a for a in by_snapshot.values() if params.resolve_split and not a["source_device"] and a["candidates"]
            and (a["reason"] or "").startswith(SPLIT_REVIEW)]
    if not evidence and not orphans and not held:
        return 0, 0, 0.0
    # Each device's own frames: informative references, and frames delivered only to accounts
    # that may see it (their attribution is not an accusation, so they are the device's looks).
    own: dict[str, list[str]] = defaultdict(list)
    for r in case.db.query("select f.frame_id, f.ref_device from frames f join fingerprints p on p.frame_id = f.frame_id "
                           "where f.role = 'reference' and p.status = 'ok' and p.thumb is not null order by f.frame_id"):
        own[r["ref_device"]].append(r["frame_id"])
    leaked_frames = {a["frame_id"] for a in evidence}
    partial = {r["frame_id"] for r in case.db.query("select frame_id from fingerprints where truncated = 1")}
    for a in sorted(by_snapshot.values(), key=lambda a: a["frame_id"]):
        if a["source_device"] and a["frame_id"] not in leaked_frames and a["frame_id"] not in partial:
            own[a["source_device"]].append(a["frame_id"])
    for a in evidence:  # a device seen only in leaked frames: its other leaked frames are all it has
        if len(own[a["source_device"]]) < 3 and a["frame_id"] not in partial:
            own[a["source_device"]].append(a["frame_id"])
    # A requested camera none of whose frames is attributed to it (its own views absorbed into a
    # look-alike's cluster, or too few to anchor anything): what its log says it showed stands in.
    frame_of = {snap: a["frame_id"] for snap, a in by_snapshot.items()}
    lacking = {d for d in claims.values() if not own.get(d)}
    for snap, device in sorted(claims.items()):
        frame = frame_of.get(snap)
        if device in lacking and frame and frame not in partial:
            own[device].append(frame)
    exemplars: dict[str, list[str]] = {}
    for device, members in own.items():
        step = max(1, len(members) // params.exemplars)
        exemplars[device] = members[::step][: params.exemplars]
    orphans = [a for a in orphans if a["frame_id"] not in partial]
    held = [a for a in held if a["frame_id"] not in partial]
    unplaced = {a["frame_id"] for a in orphans} | {a["frame_id"] for a in held}
    needed = {f for m in exemplars.values() for f in m} | leaked_frames | unplaced
    thumbs = _read_thumbs(case, needed)
    feats, stacks = _exemplar_features(thumbs, exemplars)
    whole = _Feats(exemplars, feats, stacks)
    if params.same_look:
        whole.colour = {f: c >= params.colour_min for f, c in _read_thumbs(case, needed, column="chroma").items()}
    if params.fine_look:
        whole.fine = _Fine(_fine_reader(case), whole.ids, shift=params.fine_shift)
    impostor = np.sort(_impostor_scores(whole, units, most=params.split_candidates))  # (sorted: `_tail`)
    near = _hash_near_devices(case, sorted(leaked_frames | unplaced), whole.ids, params)
    requested = set(claims.values())  # cameras with log traffic: their frames exist somewhere
    fraction = {r["frame_id"]: r["decoded_fraction"] for r in case.db.query(
        "select frame_id, decoded_fraction from fingerprints where truncated = 1") if r["frame_id"] in leaked_frames}
    cluster_devices: dict[int, set[str]] = defaultdict(set)
    for u in units.values():
        if u.device:
            cluster_devices[u.cluster].add(u.device)
    # Wherever the hashes put them, the cameras whose own thumbnails match an evidence frame best
    # are its rivals too (300 homes hard look-alike seed 3: a leak of an original went to its copy,
    # the original in another cluster and more than the hash reach away).
    verified = rejected = 0
    # A frame whose pixels alone accuse, or a part of a split cluster that one anchor's identity
    # lets through, is checked again as every accusing frame is (against the recipient's own
    # cameras too) and gets its p_wrong
    placed = _identify_by_pixels(orphans, whole, near, recipients, registry, claims, requested, lacking, params)
    placed += _resolve_split(held, whole, near, recipients, registry, claims, requested, lacking, params)
    evidence += [a for a in placed if registry.accuses(recipients.get(a["snapshot"], ()), a["source_device"])]
    pixel_near = _pixel_nearest(sorted({a["frame_id"] for a in evidence}), whole, sorted(whole.ids), params.pixel_rivals)
    crowded = _crowded_rivals(evidence, units, unit_of, cluster_devices, whole, params)
    for a in evidence:
        source = a["source_device"]
        frame = a["frame_id"]
        unit = units[unit_of[frame]]
        rivals = set()
        for account in recipients.get(a["snapshot"], ()):
            if not registry.may_see(account, source):
                rivals |= registry.own_cameras(account)
        logged = _logged_device(a["snapshot"], claims, registry)
        if logged:
            rivals.add(logged)
        rivals |= crowded[frame] if frame in crowded else cluster_devices[unit.cluster]
        rivals |= near.get(frame, set())  # any camera, anywhere, whose own frames hash near this one
        rivals |= set(pixel_near.get(frame, ()))  # ...or whose thumbnails match it best
        rivals.discard(source)
        own_view = registry.own_view(recipients[a["snapshot"]], logged)
        if fraction.get(frame, 1.0) < 1.0:  # truncated: compare only the thumbnail rows that decoded
            problem, best = _check_rows(frame, fraction[frame], source, rivals, logged, requested, thumbs, whole.ids,
                                        params, own_view, colour=whole.colour)
        else:
            problem, best = _check(frame, source, rivals, logged, requested, whole, params, own_view)
        if problem:
            rejected += 1
            a.update(source_device=None, source_home=None, attribution=None, confidence=None)
            if problem[0] in UNVERIFIABLE:  # nothing to tell apart: not a look-alike question
                a.update(reason=problem[0], candidates=None)
            else:
                a.update(reason=REVIEW_PREFIX + problem[0], candidates=json.dumps(sorted({source, *problem[1]})))
            continue
        lead = best - max((score for r in rivals if (score := whole.best(frame, r)) is not None), default=-1.0)
        p_wrong = _tail(impostor, lead)
        if p_wrong > params.max_p_wrong:  # controlled per accusation: this one is too likely wrong
            rejected += 1
            a.update(source_device=None, source_home=None, attribution=None, confidence=None,
                     reason=REVIEW_PREFIX + f"wrong cameras in this incident lead as far ({p_wrong:.2f} of them)",
                     candidates=json.dumps(sorted({source, *rivals})[:8]))
            continue
        verified += 1
        a["p_wrong"] = p_wrong
    return verified, rejected, 0.0


def _crowded_rivals(evidence: list[dict[str, Any]], units: dict[str, _Unit], unit_of: dict[str, str],
                    cluster_devices: dict[int, set[str]], feats: _Feats, params: AttributionParams
                    ) -> dict[str, set[str]]:
    """The rivals an evidence frame's cluster gives it, where that cluster holds more than
    `split_candidates` devices (else every device of its cluster is a rival, as always): the
    `split_candidates` of them whose exemplars its thumbnail matches best (`_pixel_nearest`, the
    measure `_check` ranks a rival by), and those with no exemplars at all (a requested one then
    stops the accusation, as it would have). Checking every frame of a chain of ~1,900 look-alike
    cameras against all of them is frames x devices."""
    out: dict[str, set[str]] = {}
    by_cluster: dict[int, list[str]] = defaultdict(list)
    for a in evidence:
        cluster = units[unit_of[a["frame_id"]]].cluster
        if len(cluster_devices[cluster]) > params.split_candidates:
            by_cluster[cluster].append(a["frame_id"])
    for cluster, frames in sorted(by_cluster.items()):
        devices = cluster_devices[cluster]
        bare = {d for d in devices if d not in feats.ids}
        ranking = _pixel_nearest(sorted(set(frames)), feats, sorted(devices - bare), params.split_candidates + 1)
        for f in frames:
            out[f] = bare | set(ranking.get(f, ()))
    return out


def _exemplar_features(thumbs: dict[str, bytes], exemplars: dict[str, list[str]], chunk: int = 4096
                       ) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]:
    """Features of every frame read, and each device's exemplar rows stacked: computed a device
    at a time (its stack; an exemplar's own features are views of it) and the other frames a
    chunk at a time, so at 10^6 (~190,000 exemplars, 1.1 GB of features) they are held once,
    not also as one batch of every frame beside the stacks."""
    feats: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    grey: dict[str, np.ndarray] = {}
    edges: dict[str, np.ndarray] = {}
    for device, members in exemplars.items():
        present = [f for f in members if f in thumbs]
        if not present:
            continue
        grey[device], edges[device] = _features([thumbs[f] for f in present])
        for i, f in enumerate(present):
            feats.setdefault(f, (grey[device][i], edges[device][i]))
    rest = sorted(f for f in thumbs if f not in feats)
    for start in range(0, len(rest), chunk):
        part = rest[start:start + chunk]
        feats.update(zip(part, zip(*_features([thumbs[f] for f in part]))))
    return feats, (grey, edges)


def _logged_device(snapshot: str, claims: dict[str, str], registry: Registry) -> str | None:
    """The registered device the snapshot's log names, if any: a rival of every accusation."""
    logged = claims.get(snapshot)
    return logged if logged and registry.known(logged) else None


def _device_blocks(members: list[list[str]], rows: int) -> list[tuple[list[int], list[str], list[int]]]:
    """Devices (by index; those with no frames left out) in consecutive blocks that close once they
    hold `rows` frames: each block's device indices, its frames in order, and where each device's
    frames start, so frames scored against one block take each device's best by
    `np.maximum.reduceat` (a whole incident's exemplars at once is gigabytes at 10^6)."""
    blocks: list[tuple[list[int], list[str], list[int]]] = []
    columns: list[int] = []
    frames: list[str] = []
    starts: list[int] = []
    for k, m in enumerate(members):
        if not m:
            continue
        columns.append(k)
        starts.append(len(frames))
        frames.extend(m)
        if len(frames) >= rows:
            blocks.append((columns, frames, starts))
            columns, frames, starts = [], [], []
    if columns:
        blocks.append((columns, frames, starts))
    return blocks


def _pixel_nearest(frames: list[str], feats: _Feats, devices: list[str], most: int, chunk: int = 1024,
                   block: int = 16384, kind: str = "edges") -> dict[str, list[str]]:
    """For each frame, the `most` devices whose own frames its thumbnail gradients (or, with
    `kind="grey"`, its plain grey thumbnail) match best, best first: the cameras it could be by
    its pixels, wherever the hashes put them."""
    frames = [f for f in frames if f in feats.feats]
    if not frames or not devices:
        return {}
    index = 0 if kind == "grey" else 1
    table = feats.grey if index == 0 else feats.edges
    # Devices in blocks of about `block` exemplars, each stacked only while a chunk of frames is
    # scored against it: all of them at once is another gigabyte at 10^6 (4,000 devices). Each
    # block's layout (its devices, where each starts, where each frame sits) once, not per chunk.
    layouts: list[tuple[list[int], list[str], list[int], dict[str, list[int]]]] = []
    for columns, members, starts in _device_blocks([feats.ids[d] for d in devices], block):
        column: dict[str, list[int]] = defaultdict(list)
        for i, f in enumerate(members):
            column[f].append(i)
        layouts.append((columns, [devices[k] for k in columns], starts, column))
    out: dict[str, list[str]] = {}
    for begin in range(0, len(frames), chunk):
        part = frames[begin:begin + chunk]
        mine = np.stack([feats.feats[f][index] for f in part])
        best = np.empty((len(part), len(devices)), np.float32)
        for columns, names, starts, column in layouts:
            scores = mine @ np.concatenate([table[d] for d in names]).T
            for row, f in enumerate(part):  # a frame is not its own match (a stand-in exemplar may be itself)
                if f in column:
                    scores[row, column[f]] = -np.inf
            best[:, columns] = np.maximum.reduceat(scores, starts, axis=1)
        for f, row in zip(part, best):
            out[f] = [devices[int(i)] for i in np.argsort(-row, kind="stable")[:most] if np.isfinite(row[i])]
    return out


def _identify_by_pixels(orphans: list[dict[str, Any]], feats: _Feats, near: dict[str, set[str]],
                        recipients: dict[str, set[str]], registry: Registry, claims: dict[str, str],
                        requested: set[str], stand_ins: set[str], params: AttributionParams,
                        rivals_kept: int = 8) -> list[dict[str, Any]]:
    """Frames no anchor or vote placed (their cluster is unanchored, or the devices their logs
    name show their frames elsewhere) get the camera whose own frames their thumbnail matches
    best, when the full one-to-one check holds against the next cameras in that ranking, the
    hash-near ones and the logged one, and, where that would accuse, the room is plainly that
    camera's and no other's (`_pixels_accuse`). A camera known only through the frames its
    log claims (`stand_ins`) is a rival, never the answer. Returns the frames placed."""
    devices = sorted(d for d in feats.ids if d not in stand_ins)
    # (an unplaced frame is nobody's exemplar: those are references and placed frames)
    ranking = _pixel_nearest([a["frame_id"] for a in orphans], feats, devices, 1 + rivals_kept)
    accusing = [a["frame_id"] for a in orphans if a["frame_id"] in ranking
                and registry.accuses(recipients.get(a["snapshot"], ()), ranking[a["frame_id"]][0])]
    # The rooms nearest each accusing frame in plain grey (stand-ins included: they are impostors
    # too), for bar 3 and the grey-best camera; one stacked product for all of them
    impostors = _pixel_nearest(accusing, feats, sorted(feats.ids), params.pixel_impostors + 2, kind="grey")
    found = []
    for a in orphans:
        frame = a["frame_id"]
        if frame not in ranking:
            continue
        source = ranking[frame][0]
        logged = _logged_device(a["snapshot"], claims, registry)
        seen_by = recipients.get(a["snapshot"], ())
        own_view = None
        if registry.accuses(seen_by, source):
            # It would accuse, and the full check alone is not enough: the frames left unplaced are
            # the hard ones (a person in the way, a view the true camera was never seen in); on 300
            # homes hard look-alike seed 4, 5 of 150 such frames went to a wrong camera that passed
            # it, each a false pair (own views whose camera had no night views of its own).
            near_in_grey = impostors.get(frame, [])
            if not _pixels_accuse(frame, source, logged, feats, params, near_in_grey):
                source = _grey_source(frame, source, logged, feats, stand_ins, params, near_in_grey)
                if source is None or not registry.accuses(seen_by, source):
                    continue
            own_view = registry.own_view(seen_by, logged)  # (and rule 6 holds for the own camera the log names)
        rivals = set(ranking[frame]) | near.get(frame, set())
        if logged:
            rivals.add(logged)
        rivals.discard(source)
        problem, best = _check(frame, source, rivals, logged, requested, feats, params, own_view)
        if problem is None:
            found.append(_placed_by_pixels(a, source, best, registry))
    return found


def _resolve_split(held: list[dict[str, Any]], feats: _Feats, near: dict[str, set[str]],
                   recipients: dict[str, set[str]], registry: Registry, claims: dict[str, str], requested: set[str],
                   stand_ins: set[str], params: AttributionParams) -> list[dict[str, Any]]:
    """Frames a split cluster held between its anchors (their thumbnails no nearer one than the
    other) are tried as each candidate in turn, with the full one-to-one check against the
    others and every camera it could otherwise be; a frame that exactly one candidate's check
    lets through is that camera's (`attribution: pixels`). The check is the one every
    accusation passes, and it was set on this very question: each look-alike frame tried as if
    it were the other camera's (rule 7). Returns the frames placed."""
    devices = sorted(d for d in feats.ids if d not in stand_ins)
    ranking = _pixel_nearest([a["frame_id"] for a in held], feats, devices, params.pixel_rivals)
    placed = []
    for a in held:
        frame, snapshot = a["frame_id"], a["snapshot"]
        candidates = [c for c in json.loads(a["candidates"]) if registry.known(c)]
        logged = _logged_device(snapshot, claims, registry)
        seen_by = recipients.get(snapshot, ())
        own_view = registry.own_view(seen_by, logged)
        others = set(ranking.get(frame, ())) | near.get(frame, set()) | ({logged} if logged else set())
        for account in seen_by:
            others |= registry.own_cameras(account)
        passed = []
        for source in candidates:
            if source in stand_ins:
                continue
            rivals = (others | set(candidates)) - {source}
            problem, best = _check(frame, source, rivals, logged, requested, feats, params, own_view)
            if problem is None:
                passed.append((source, best))
        if len(passed) == 1:
            placed.append(_placed_by_pixels(a, *passed[0], registry))
    return placed


def _placed_by_pixels(a: dict[str, Any], source: str, best: float, registry: Registry) -> dict[str, Any]:
    a.update(source_device=source, source_home=registry.home(source), attribution="pixels",
             confidence=round(best, 3), reason=None, candidates=None)
    return a


def _pixels_accuse(frame: str, source: str, logged: str | None, feats: _Feats, params: AttributionParams,
                   near_in_grey: list[str] | None = None) -> bool:
    """Whether a frame no anchor or vote placed may accuse from its pixels: its room, in grey with
    the worst-agreeing pixels left out, is plainly its camera's, and plainly not the room of the
    camera its log names (which must have frames of its own to tell). On the grid's 300-home
    hard cells, the unplaced frames whose pixels would wrongly accuse were own views whose camera
    had no frames like them: they matched the wrong camera at 0.82-0.94 this way, and their own
    camera nearly as well or better; the leak frames placed right matched at 0.85-0.996."""
    if not params.accuse_by_pixels or not logged or logged == source or not feats.count(frame, logged):
        return False
    own = feats.trimmed(frame, source, params.occlusion_keep, "grey")
    if not len(own) or float(own[0]) < params.pixel_accuse_min:
        return False
    if not _grey_ahead(own, feats.trimmed(frame, logged, params.occlusion_keep, "grey"), params.pixel_accuse_lead):
        return False
    # Specificity measured on the incident itself: a frame whose own camera has no frames like it
    # (a night own view of a camera seen only by day) still has some room it matches best, but
    # barely better than the next rooms. On the own views of 1,000 homes hard look-alike seed 2
    # that passed the two bars above, the best room led the next by at most 0.027; leaks placed
    # right led it by 0.003-0.187 (300 homes hard seed 1, hard look-alike seed 4: 0.033-0.183).
    # On 300 homes hard look-alike seed 3 a day own view led by 0.0595 (the full check held it):
    # hence 0.08, not 0.06.
    return all(_grey_ahead(own, feats.trimmed(frame, rival, params.occlusion_keep, "grey"), params.pixel_accuse_apart)
               for rival in _impostors(frame, feats, params, near_in_grey, skip={source, logged}))


def _impostors(frame: str, feats: _Feats, params: AttributionParams, near_in_grey: list[str] | None,
               skip: set[str | None]) -> list[str]:
    """The `pixel_impostors` cameras whose own frames match the frame best in plain grey, less `skip`."""
    if near_in_grey is None:
        near_in_grey = _pixel_nearest([frame], feats, sorted(feats.ids), params.pixel_impostors + len(skip),
                                      kind="grey").get(frame, [])
    return [d for d in near_in_grey if d not in skip][: params.pixel_impostors]


def _grey_source(frame: str, ranked: str, logged: str | None, feats: _Feats, stand_ins: set[str],
                 params: AttributionParams, near_in_grey: list[str] | None = None) -> str | None:
    """The camera whose room the frame plainly shows when that is not the camera its gradients
    ranked first: the best of the grey-nearest cameras in occlusion-tolerant grey, if it passes
    `_pixels_accuse` and leads the ranked one by the same specificity bar. Gradients rank a frame
    with a person in the way or a shifted exposure below rooms that merely share its layout; the
    grey room match, with the worst-agreeing pixels left out, does not. On the pixel candidates of
    1,000 homes hard look-alike seed 2, 300 homes hard seed 1 and 40 homes hard seeds 2-4 without
    references, 11 frames failed the bars on their ranked camera and passed them on the grey-best
    one; all 11 were that camera's (none wrong)."""
    if not params.pixel_grey_source or not params.accuse_by_pixels:
        return None
    # The candidate is picked on each camera's three frames nearest in plain grey, all in one
    # product; the bars then see every frame of it.
    grey = feats.feats[frame][0]
    rows, owners = [], []
    for device in _impostors(frame, feats, params, near_in_grey, skip={ranked, logged}):
        keep = feats._others(frame, device)
        if device in stand_ins or keep is None:
            continue
        top = keep[np.argsort(-(feats.grey[device][keep] @ grey), kind="stable")[:3]]
        rows.append(feats.grey[device][top])
        owners.extend([device] * len(top))
    if not rows:
        return None
    scores = _trimmed_rows(grey, np.concatenate(rows), params.occlusion_keep)
    at = int(np.argmax(scores))
    if float(scores[at]) < params.pixel_accuse_min:
        return None
    device = owners[at]
    if not _pixels_accuse(frame, device, logged, feats, params, near_in_grey):
        return None
    if feats.count(frame, ranked) and not _grey_ahead(feats.trimmed(frame, device, params.occlusion_keep, "grey"),
                                                      feats.trimmed(frame, ranked, params.occlusion_keep, "grey"),
                                                      params.pixel_accuse_apart):
        return None
    return device


def _grey_ahead(own: np.ndarray, theirs: np.ndarray, lead: float) -> bool:
    """Whether the best of `own` leads the best of `theirs` by `lead`, on fair samples (the best of
    48 frames beats the best of 4 by chance alone)."""
    if not len(theirs):
        return True
    fair = _expected_best(own, len(theirs)) if len(theirs) < len(own) else float(own[0])
    return float(theirs[0]) <= fair - lead


def _trimmed_correlation(x: np.ndarray, y: np.ndarray, keep: float = 0.85) -> float:
    residual = np.abs(x - y)
    mask = residual <= np.quantile(residual, keep)
    a, b = x[mask] - x[mask].mean(), y[mask] - y[mask].mean()
    return float(a @ b / max(1e-6, float(np.linalg.norm(a) * np.linalg.norm(b))))


def _margin(best: float, params: AttributionParams) -> float:
    """The lead an evidence frame needs over every rival camera: more when its own match is
    loose. A frame that matches its camera's own frames only at 0.6 (a person in the way, an
    odd exposure) is a noisy measurement, and on the look-alike simulations such frames led
    the wrong one of two look-alike cameras by up to 0.13."""
    return params.verify_margin + params.margin_slope * max(0.0, 1.0 - best)


def _check(frame: str, source: str, rivals: set[str], logged: str | None, requested: set[str], feats: _Feats,
           params: AttributionParams, own_view: str | None = None) -> tuple[tuple[str, list[str]] | None, float]:
    """Why the frame cannot accuse (and the cameras it could be), or None, and its best edge score."""
    if frame not in feats.feats:
        return (NO_THUMBNAIL, sorted(rivals)), 0.0
    best = feats.best(frame, source)
    if best is None:
        return (f"no other frame of {source} to verify against", sorted(rivals)), 0.0
    robust = feats.best(frame, source, "robust")
    if robust < params.verify_min:
        return (f"matches {source}'s own frames only loosely (correlation {robust:.2f})", sorted(rivals)), best
    close, uncovered, loose = [], [], []
    by_grey = False  # whether the grey look ruled out a rival
    own_count = feats.count(frame, source)
    nearest = None
    for rival in sorted(rivals):
        score = feats.best(frame, rival)
        if score is None:
            if rival == logged or rival in requested:
                return (f"{rival}, which the recipient could have been shown, has no frames of its own to compare with",
                        [rival]), best
            continue
        if (rival == logged and params.same_look and feats.unlike_look(frame, rival)
                and not feats.apart_in_some_look(source, rival, params.lookalike_pair)):
            # The log's word stands unless the camera it names is ruled out on frames of this one's
            # look: by day colour and night infrared one room differs as much as two rooms do
            # (3,000 homes hard look-alike seed 1: seven own views of look-alike cameras, each
            # twin's exemplars all of one look after the twins' frames clustered by look, were
            # accused as the other twin's). Unless, in a look both have, the two rooms plainly differ.
            kind = "day colour" if feats.colour[frame] else "night infrared"
            return (f"{rival}, which the log names, has no {kind} frames like this one to rule it out by",
                    [rival]), best
        rival_count = feats.count(frame, rival)
        if rival == own_view and rival_count < params.rule_out_frames and best < (
                params.rule_out_single if rival_count == 1 else params.rule_out_best):
            # the log says own view; a camera seen in a handful of frames is not ruled out by a
            # loose match (300 homes hard look-alike seed 1: a night own view matched a look-alike
            # at 0.68 and the logged camera's 4 frames at 0.31; of 1,029 true own-view-logged
            # accusations on seeds 1 and 4, one had both a match below 0.75 and under 8 such frames).
            # One frame is no sample of a camera's looks at all (3,000 homes hard look-alike seed 1:
            # a day own view matched its look-alike twin at 0.83 and its camera's one other frame at
            # 0.32; the one true accusation there against a one-frame own camera matched at 0.98)
            return (f"{rival}, the recipient's own camera that the log names, has too few frames of its own "
                    f"({rival_count}) to rule out", [rival]), best
        fair = feats.best_of(frame, source, rival_count) if rival_count < own_count else best
        typical, likeness = feats.pair(source, rival)
        lookalike = min(typical, likeness) >= params.lookalike_pair
        if rival == own_view and max(typical, likeness) >= params.own_view_alike:
            # The log says the recipient was shown its own camera, and that camera looks like the
            # source: thumbnails of two look-alike rooms cannot overrule the log (the last false
            # pairs of the grid, 300 homes seed 1 and 1,000 homes seed 1 hard look-alike, were
            # such own views, their pixels nearer the look-alike by 0.1-0.2). Alike one way is
            # enough here (1,000 homes hard look-alike seed 2: two night own views, their
            # camera's night views all attributed to its look-alike, pairs 0.49/0.62 and 0.52/0.62).
            # The bar is 0.50, not rule 4's 0.60: 3,000 homes hard look-alike seed 1 accused a day own
            # view of cam-5306 as its twin cam-0869's, the pair alike at 0.50/0.54.
            return (f"{rival}, the recipient's own camera that the log names, looks like {source}", [rival]), best
        if rival == logged and params.vouched_min and (vouched := feats.vouched(frame, source, params.vouched_min)) is not None \
                and vouched <= score:
            # Only frames of the source that its other frames do not vouch for put it ahead of the
            # camera the log names (a person in the view matched a person: `_Feats.vouched`).
            return (f"matches {source} better than {rival}, which the log names, only on frames of {source} "
                    f"that match none of its others", [rival]), best
        near = score > fair - _margin(best, params)
        # Against a look-alike the lead only counts where it is beyond what the two cameras' own
        # frames reach across: with camera shake as large as the shift between two look-alike
        # flats, some frames of the one match the other as well as its own.
        capped = lookalike and best < feats.ceiling(source, rival) + params.lookalike_lead
        # The fine and grey looks compare rooms; a rival seen only in the other look (day colour
        # against night infrared) is no room to compare with, and "apart" there means nothing
        # (set on 3,000 homes hard look-alike seed 2, 12 hours: four leaks given to another camera,
        # their true camera a near rival with 1-4 frames, all of the other look; seed 3: no change).
        across = params.same_look_apart and feats.unlike_look(frame, rival)
        if (near or capped) and (across or not _fine_apart(frame, source, rival, lookalike, feats, params)):
            if not across and _grey_apart(frame, source, rival, feats, params):
                by_grey = True
            else:
                # (neither the finer thumbnail, aligned, nor the grey room told them apart)
                if near and score < fair and not lookalike and params.occlusion_keep < 1:
                    # Near only because the frame matches its own camera loosely (a person in the way),
                    # and no look-alike: the occlusion-tolerant comparison below may still tell them apart.
                    loose.append(rival)
                else:
                    close.append(rival)
                continue
        if lookalike:
            # A look-alike of the source: the lead only counts where the rival has frames like
            # this one (a night view of the copy, when only its day views were ever attributed,
            # looks more like the original's night views than like any frame of the copy).
            nearest = nearest or feats.nearest(frame, source)
            if nearest is not None and (feats.best(nearest, rival) or 0.0) < typical - params.coverage_gap:
                uncovered.append(rival)
    if loose and not close:
        close = _occluded_check(frame, source, loose, feats, params)
    if (by_grey and not close and own_view and own_view != source and feats.count(frame, own_view)
            and not _grey_leads(frame, source, own_view, feats, params)):
        # Where the grey room decided, the recipient's own camera that the log names must be ruled
        # out in grey too: its few frames may all be day views (1,000 homes hard look-alike seed 2: a
        # night own view, alike its camera's 12 day frames at 0.37 in edges but 0.90 in grey,
        # went to the look-alike that had absorbed that camera's night views).
        close = [own_view]
    if close:
        return (f"could be {', '.join(close)} as well as {source}", close), best
    if uncovered:
        return (f"{', '.join(uncovered)}, which looks like {source}, has no frames like this one to compare with",
                uncovered), best
    return None, best


def _occluded_check(frame: str, source: str, rivals: list[str], feats: _Feats, params: AttributionParams) -> list[str]:
    """The rivals still near on edge correlation over the best-agreeing `occlusion_keep` of the
    thumbnail gradients (a person or a moved chair changes one part of the room; what is left
    still says which room it is): the same lead is asked, on the same fair samples. Only for
    rivals that look nothing like the source, whose frames differ everywhere rather than in one
    object (on the hard simulations such frames match their own camera at 0.43-0.67 plainly
    and 0.85-0.97 this way, other cameras at most 0.86)."""
    own = feats.trimmed(frame, source, params.occlusion_keep)
    best = float(own[0])
    near = []
    for rival in rivals:
        theirs = feats.trimmed(frame, rival, params.occlusion_keep)
        fair = _expected_best(own, len(theirs)) if len(theirs) < len(own) else best
        if theirs[0] > fair - _margin(best, params):
            near.append(rival)
    return near


def _trimmed_rows(x: np.ndarray, rows: np.ndarray, keep: float) -> np.ndarray:
    """`_trimmed_correlation` of x with every row at once."""
    residual = np.abs(rows - x)
    mask = residual <= np.quantile(residual, keep, axis=1, keepdims=True)
    count = np.maximum(mask.sum(axis=1, keepdims=True), 1)
    xa = (x - (mask * x).sum(axis=1, keepdims=True) / count) * mask
    ya = (rows - (mask * rows).sum(axis=1, keepdims=True) / count) * mask
    norm = np.sqrt((xa * xa).sum(axis=1) * (ya * ya).sum(axis=1))
    return (xa * ya).sum(axis=1) / np.maximum(norm, 1e-6)


def _check_rows(frame: str, decoded: float, source: str, rivals: set[str], logged: str | None, requested: set[str],
                thumbs: dict[str, bytes], ex_ids: dict[str, list[str]], params: AttributionParams,
                own_view: str | None = None, overlay_top: float = 0.12, height: int = 16, min_rows: int = 6,
                colour: dict[str, bool] | None = None) -> tuple[tuple[str, list[str]] | None, float]:
    """`_check` on the thumbnail rows above a truncated frame's grey fill, for every side alike."""
    rows = int(height * (decoded - overlay_top) / (1 - overlay_top))
    if frame not in thumbs or rows < min_rows:
        return (TOO_SHORT, sorted(rivals)), 0.0
    local_ids = {d: [f for f in ex_ids.get(d, []) if f in thumbs] for d in {source, *rivals}}
    wanted = sorted({frame, *(f for m in local_ids.values() for f in m)})
    feats = dict(zip(wanted, zip(*_features([thumbs[f] for f in wanted], rows))))
    local = _Feats(local_ids, feats)
    local.colour = colour or {}
    return _check(frame, source, rivals, logged, requested, local, params, own_view)


def _hash_near_devices(case: Case, frames: list[str], exemplars: dict[str, list[str]], params: AttributionParams,
                       per_device: int = 16, reach: int = 182, most: int = 8) -> dict[str, set[str]]:
    """For each evidence frame, the devices (at most `most`, nearest first) with an own frame
    within `reach` (pHash + 4 x dHash, the stage-3 candidate bound): the cameras it could be
    confused with although the clustering put them elsewhere. Cost: frames x sampled exemplars."""
    from .cluster import _score_chunks, hex_to_words
    sample = {d: m[:: max(1, len(m) // per_device)][:per_device] for d, m in exemplars.items()}
    wanted = set(frames) | {f for m in sample.values() for f in m}
    hashes: dict[str, tuple[str, str]] = {}
    ids = sorted(wanted)
    for start in range(0, len(ids), 500):
        part = ids[start:start + 500]
        hashes.update((r[0], (r[1], r[2])) for r in case.db.execute(
            f"select frame_id, phash, dhash from fingerprints where phash is not null and frame_id in ({','.join('?' * len(part))})",
            part).fetchall())
    queries = [f for f in frames if f in hashes]
    targets = [(d, f) for d in sorted(sample) for f in sample[d] if f in hashes]
    out: dict[str, set[str]] = {}
    if not queries or not targets:
        return out
    qp, qd = hex_to_words(hashes[f][0] for f in queries), hex_to_words(hashes[f][1] for f in queries)
    tp, td = hex_to_words(hashes[f][0] for _, f in targets), hex_to_words(hashes[f][1] for _, f in targets)
    owner = np.array([d for d, _ in targets])
    for rows, score in _score_chunks(qp, qd, tp, td, 4):
        for k, row in enumerate(rows.tolist()):
            hit = np.nonzero(score[k] <= reach)[0]
            if not len(hit):
                continue
            ranked = hit[np.argsort(score[k][hit], kind="stable")]
            devices: list[str] = []
            for d in owner[ranked].tolist():
                if d not in devices:
                    devices.append(d)
                if len(devices) >= most:
                    break
            out[queries[row]] = set(devices)
    return out


def _impostor_scores(feats: _Feats, units: dict[str, _Unit], sample: int = 400, most: int | None = None
                     ) -> np.ndarray:
    """How far a wrong camera leads the right one, on the incident's own frames: for every pair
    of devices that share a cluster (the confusable ones; with none, a fixed sample of pairs),
    each own frame of the one scored against the other's frames minus against its own others
    (edge correlation). Nearly all are negative; look-alike rooms under camera shake give the
    positive tail that an accusation's lead must be weighed against. In a cluster of more than
    `most` devices (a chain of look-alikes: ~1,900 in one at 10^6, 1.8 million pairs) a device
    is paired only with the `most` cluster-mates whose mean exemplar gradients are nearest its
    own: its confusable ones."""
    devices = sorted(feats.ids)
    if len(devices) < 2:
        return np.zeros(0, dtype=np.float32)
    by_cluster: dict[int, set[str]] = defaultdict(set)
    for u in units.values():
        if u.device and u.device in feats.ids:
            by_cluster[u.cluster].add(u.device)
    crowded = [ds for ds in by_cluster.values() if most is not None and len(ds) > most]
    pairs = {tuple(sorted((a, b))) for ds in by_cluster.values() if not (most is not None and len(ds) > most)
             for a in ds for b in ds if a < b}
    for ds in crowded:
        names = sorted(ds)
        mean = np.stack([feats.edges[d].mean(axis=0) for d in names])
        mean /= np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-6)
        near = mean @ mean.T
        np.fill_diagonal(near, -np.inf)
        for i, row in enumerate(np.argpartition(-near, most - 1, axis=1)[:, :most]):
            pairs.update(tuple(sorted((names[i], names[int(j)]))) for j in row)
    if not pairs:
        rng = np.random.default_rng(12)
        for _ in range(sample):
            i, j = rng.choice(len(devices), 2, replace=False)
            pairs.add(tuple(sorted((devices[i], devices[j]))))
    leads = []
    for a, b in sorted(pairs):
        for own, other in ((b, a), (a, b)):
            if len(feats.ids[own]) < 2:
                continue
            within = feats.edges[own] @ feats.edges[own].T
            np.fill_diagonal(within, -np.inf)
            leads.append((feats.edges[own] @ feats.edges[other].T).max(axis=1) - within.max(axis=1))
    return np.concatenate(leads).astype(np.float32) if leads else np.zeros(0, dtype=np.float32)


def _tail(impostor: np.ndarray, score: float) -> float:
    """Share of wrong-camera leads at least `score` (half a draw when none is). `impostor` sorted:
    a binary search, not a scan of millions of leads for each accusation at 10^6."""
    if not len(impostor):
        return 1.0
    at_least = len(impostor) - int(np.searchsorted(impostor, np.float32(score), side="left"))
    return round(max(0.5, float(at_least)) / len(impostor), 6)


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
        source, evidence, confidence, distance, p_wrong = None, None, None, None, None
        if snap and snap["source_device"]:
            # Pixels decide. A log naming a foreign device is overruled by frames proven the account's own.
            if not registry.may_see(account, snap["source_device"]):
                source, evidence, confidence = snap["source_device"], "content", snap["confidence"]
                distance = frame_cluster.get(snap["frame_id"], {}).get("distance")
                p_wrong = snap.get("p_wrong")
        elif e["device_id"] and registry.known(e["device_id"]) and not registry.may_see(account, e["device_id"]):
            source, evidence, confidence = e["device_id"], "log", params.log_evidence_confidence
        if source is None:
            continue
        item = pairs.setdefault((account, source), {
            "recipient_account": account, "source_device": source, "source_home": registry.home(source),
            "source_owner": registry.owner(source), "events": 0, "viewed_events": 0, "snapshots": set(),
            "first_seen": e["ts"], "last_seen": e["ts"], "first_ms": e["ts_ms"], "last_ms": e["ts_ms"],
            "integrations": set(), "evidence": set(), "attribution": set(), "confidence": 0.0,
            "evidence_snapshots": [], "max_distance": None, "p_wrong": None,
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
            if p_wrong is not None:  # the pair is wrong only if every one of its frames is
                item["p_wrong"] = p_wrong if item["p_wrong"] is None else min(item["p_wrong"], p_wrong)
        item["confidence"] = max(item["confidence"], confidence or 0.0)
        if distance is not None:
            item["max_distance"] = max(item["max_distance"] or 0, distance)
    rows = []
    for _, item in sorted(pairs.items()):
        rows.append({
            **{k: item[k] for k in ("recipient_account", "source_device", "source_home", "source_owner", "events",
                                   "viewed_events", "first_seen", "last_seen", "max_distance", "p_wrong")},
            "snapshots": len(item["snapshots"]),
            "integrations": json.dumps(sorted(item["integrations"])),
            "evidence": "content" if "content" in item["evidence"] else "log",
            "attribution": ",".join(sorted(item["attribution"])) or None,
            "confidence": round(item["confidence"], 3),
            "evidence_snapshots": json.dumps(item["evidence_snapshots"]),
        })
    return rows
