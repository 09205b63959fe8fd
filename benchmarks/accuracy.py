"""Accuracy of exposure pairs and snapshot attribution on simulated incidents.

For each seed and difficulty, the same incident is triaged by camleak and, in the same run, by
the naive approach (64-bit pHash of the whole frame, distance <= 10, connected components,
majority vote of the logged device), and both are scored against the simulator's truth.

    python benchmarks/accuracy.py --seeds 1 2 3 4 5 --difficulty normal hard
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image, ImageFile

from camleak import archives, pipeline
from camleak.attribute import Registry
from camleak.casefile import Case
from camleak.cluster import components
from camleak.score import score_case
from camleak.simulate import SimParams, generate_incident


def naive(case: Case, truth: dict) -> dict:
    """The approach camleak replaces: whole-frame pHash, threshold, components, majority vote."""
    keys, hashes = [], []
    for inp in case.db.query("select id, path from inputs where kind = 'snapshots'"):
        names = {r["member"]: r["snapshot"] for r in case.db.query("select member, snapshot from frames where input_id = ?", [inp["id"]])}
        for member in archives.iter_members(Path(inp["path"])):
            if member.name in names:
                try:
                    ImageFile.LOAD_TRUNCATED_IMAGES = True  # the naive loop takes whatever decodes
                    h = imagehash.phash(Image.open(io.BytesIO(member.data)))
                except Exception:
                    continue
                finally:
                    ImageFile.LOAD_TRUNCATED_IMAGES = False
                keys.append(names[member.name])
                hashes.append(int(str(h), 16))
    ph = np.array(hashes, dtype=np.uint64)
    pairs = []
    for i in range(len(ph)):
        close = np.nonzero(np.bitwise_count(ph[i + 1:] ^ ph[i]) <= 10)[0] + i + 1
        pairs.append((np.full(len(close), i), close))
    labels = components(len(ph), pairs)
    claims = {r["snapshot"]: r["device_id"] for r in case.db.query(
        "select snapshot, device_id from events where event = 'snapshot_served' and snapshot is not null")}
    votes: dict[int, Counter] = defaultdict(Counter)
    root = labels.tolist()
    for i, key in enumerate(keys):
        if claims.get(key):
            votes[root[i]][claims[key]] += 1
    device_of = {keys[i]: votes[root[i]].most_common(1)[0][0] for i in range(len(keys)) if votes[root[i]]}
    registry = Registry(list(case.db.query("select * from devices")))
    found = set()
    for e in case.db.query("select account_id, snapshot from events where snapshot is not null"):
        device = device_of.get(e["snapshot"])
        if device and not registry.may_see(e["account_id"], device):
            found.add((e["account_id"], device))
    true_pairs = {tuple(p) for p in truth["exposure_pairs"]}
    informative = [k for k, v in truth["snapshots"].items() if v["informative"] and not v["truncated"]]
    right = sum(1 for k in informative if device_of.get(k) == truth["snapshots"][k]["source_device"])
    return {
        "precision": round(len(found & true_pairs) / len(found), 4) if found else None,
        "recall": round(len(found & true_pairs) / len(true_pairs), 4) if true_pairs else None,
        "accuracy_informative": round(right / len(informative), 4) if informative else None,
    }


def run(seed: int, difficulty: str, homes: int, hours: int, workdir: Path) -> dict:
    out = workdir / f"{difficulty}-{seed}"
    incident = generate_incident(out, SimParams(seed=seed, difficulty=difficulty, homes=homes, hours=hours))
    with Case(out / "case.db") as case:
        started = time.monotonic()
        pipeline.triage(case, pipeline.TriageInputs(devices=[incident.devices], logs=incident.logs, snapshots=incident.snapshots,
                                                    references=incident.references, field_map=incident.field_map))
        seconds = time.monotonic() - started
        score = score_case(case, incident.truth)
        baseline = naive(case, json.loads(incident.truth.read_text()))
    pairs, snaps = score["exposure_pairs"], score["snapshot_attribution"]
    return {"seed": seed, "difficulty": difficulty, "snapshots": incident.counts["snapshots"], "true_pairs": pairs["true"],
            "precision": pairs["precision"], "recall": pairs["recall"], "recall_informative": pairs["recall_informative"],
            "accuracy_informative": snaps["accuracy_informative"], "snapshot_precision": snaps["precision"],
            "mixups_reported": pairs["home_mixups_reported"], "triage_s": round(seconds, 1),
            "naive_precision": baseline["precision"], "naive_recall": baseline["recall"],
            "naive_accuracy_informative": baseline["accuracy_informative"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--difficulty", nargs="+", default=["normal", "hard"])
    parser.add_argument("--homes", type=int, default=40)
    parser.add_argument("--hours", type=int, default=24)
    args = parser.parse_args()
    columns = ["difficulty", "seed", "snapshots", "true_pairs", "precision", "recall", "recall_informative",
               "accuracy_informative", "snapshot_precision", "mixups_reported", "naive_precision", "naive_recall",
               "naive_accuracy_informative", "triage_s"]
    print("\t".join(columns))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for difficulty in args.difficulty:
            for seed in args.seeds:
                row = run(seed, difficulty, args.homes, args.hours, Path(tmp))
                rows.append(row)
                print("\t".join(str(row[c]) for c in columns), flush=True)
    for difficulty in args.difficulty:
        sel = [r for r in rows if r["difficulty"] == difficulty]
        mean = lambda k: round(float(np.mean([r[k] for r in sel if r[k] is not None])), 4)  # noqa: E731
        print(f"# {difficulty}: camleak precision {mean('precision')} recall {mean('recall')} "
              f"snapshot accuracy {mean('accuracy_informative')} | naive precision {mean('naive_precision')} "
              f"recall {mean('naive_recall')} snapshot accuracy {mean('naive_accuracy_informative')}", file=sys.stdout)


if __name__ == "__main__":
    main()
