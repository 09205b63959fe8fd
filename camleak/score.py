"""Score a triage against a simulated incident's ground truth (used by `demo --score`,
the tests and the benchmarks)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .casefile import Case
from .report import build_report


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def identifiable_pairs(truth: dict[str, Any], reference_devices: set[str]) -> set[tuple[str, str]]:
    """The informative pairs whose source camera shows itself somewhere in the inputs: in an
    informative frame that the logs serve under its own name (its own views, or a leak logged
    honestly), or in reference frames given to the triage. A camera whose frames only ever appear
    under other devices' names, with no references, can be told apart but never named: no method
    can attribute its pairs, so they bound what recall can reach (a ceiling, loosely drawn: one
    such frame or reference makes every pair of that camera count, dark references included)."""
    informative = {tuple(p) for p in truth.get("exposure_pairs_informative", truth["exposure_pairs"])}
    shown = set(reference_devices)
    for snap in truth["snapshots"].values():
        if snap.get("informative", True) and not snap.get("truncated") and snap.get("logged_device") == snap["source_device"]:
            shown.add(snap["source_device"])
    return {p for p in informative if p[1] in shown}


def score_case(case: Case, truth_path: Path) -> dict[str, Any]:
    truth = json.loads(Path(truth_path).read_text())
    report = build_report(case, generated_at="-")
    found = {(e["recipient_account"], e["source_device"]) for e in report["exposures"]}
    true_pairs = {tuple(p) for p in truth["exposure_pairs"]}
    informative_pairs = {tuple(p) for p in truth.get("exposure_pairs_informative", truth["exposure_pairs"])}
    mixups = {tuple(p) for p in truth.get("home_mixups", [])}
    correct = found & true_pairs
    references = {r["ref_device"] for r in case.db.query(
        "select distinct ref_device from frames where role = 'reference' and ref_device is not null")}
    identifiable = identifiable_pairs(truth, references)

    snapshots = truth["snapshots"]
    attributed = {r["snapshot"]: r["source_device"] for r in case.db.query(
        "select snapshot, source_device from attributions where source_device is not null")}
    informative = [k for k, v in snapshots.items() if v.get("informative", True) and not v.get("truncated")]
    right = sum(1 for k in informative if attributed.get(k) == snapshots[k]["source_device"])
    wrong_all = sum(1 for k, dev in attributed.items() if k in snapshots and snapshots[k]["source_device"] != dev)
    uninformative_attributed = sum(1 for k in attributed if k in snapshots and not snapshots[k].get("informative", True))
    return {
        "exposure_pairs": {
            "reported": len(found),
            "true": len(true_pairs),
            "true_positive": len(correct),
            "false_positive": sorted(map(list, found - true_pairs)),
            "missed": len(true_pairs - found),
            "precision": _ratio(len(correct), len(found)),
            "recall": _ratio(len(correct), len(true_pairs)),
            "recall_informative": _ratio(len(found & informative_pairs), len(informative_pairs)),
            "identifiable": len(identifiable),
            "recall_identifiable": _ratio(len(found & identifiable), len(identifiable)),
            "home_mixups_reported": len(found & mixups),
        },
        "snapshot_attribution": {
            "informative_snapshots": len(informative),
            "attributed": len(attributed),
            "correct_informative": right,
            "accuracy_informative": _ratio(right, len(informative)),
            "precision": _ratio(len(attributed) - wrong_all, len(attributed)),
            "wrong": wrong_all,
            "uninformative_attributed": uninformative_attributed,
        },
    }
