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


def score_case(case: Case, truth_path: Path) -> dict[str, Any]:
    truth = json.loads(Path(truth_path).read_text())
    report = build_report(case, generated_at="-")
    found = {(e["recipient_account"], e["source_device"]) for e in report["exposures"]}
    true_pairs = {tuple(p) for p in truth["exposure_pairs"]}
    informative_pairs = {tuple(p) for p in truth.get("exposure_pairs_informative", truth["exposure_pairs"])}
    mixups = {tuple(p) for p in truth.get("home_mixups", [])}
    correct = found & true_pairs

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
