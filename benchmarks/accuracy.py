"""Accuracy of exposure pairs and snapshot attribution on simulated incidents, on a scale axis.

For each cell (homes x difficulty x look-alike share x references) and seed, the same incident
is triaged by camleak and, in the same run, by the naive approach (64-bit pHash of the whole
frame, distance <= 10, connected components, majority vote of the logged device), and both are
scored against the simulator's truth. Generated incidents are cached (`--cache`), so a rerun
after a change to camleak only triages again.

    python benchmarks/accuracy.py --seeds 1 2 3 4 5 --difficulty normal hard
    python benchmarks/accuracy.py --grid            # the issue-12 grid (about an hour and a half)
    python benchmarks/accuracy.py --homes 1000 --seeds 11 --difficulty normal
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
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
from camleak.fingerprint import DEFAULT_PARAMS
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


def incident_for(cache: Path, homes: int, difficulty: str, lookalike: float, seed: int, hours: int):
    """The incident of one cell and seed, generated once into the cache (references always
    written; a cell without references simply does not pass them to the triage)."""
    out = cache / f"h{homes}-{difficulty}-l{lookalike:g}-s{seed}-t{hours}"
    params = SimParams(seed=seed, difficulty=difficulty, homes=homes, hours=hours, lookalike=lookalike)
    if not (out / "truth.json").exists():
        if out.exists():
            shutil.rmtree(out)
        started = time.monotonic()
        incident = generate_incident(out, params)
        (out / "generated_s").write_text(f"{time.monotonic() - started:.1f}")
    truth = json.loads((out / "truth.json").read_text())
    return out, truth


def run(seed: int, difficulty: str, homes: int, hours: int, cache: Path, lookalike: float = 0.0,
        references: bool = True, reuse: bool = False, with_naive: bool = True) -> dict:
    out, truth = incident_for(cache, homes, difficulty, lookalike, seed, hours)
    case_path = out / f"case{'' if references else '-norefs'}.db"
    if reuse and case_path.exists():  # fingerprints and clusters kept: only attribution again
        with Case(case_path) as case:  # (unless they were made under other fingerprint parameters)
            if (case.count("runs", "command = 'cluster' and status = 'ok'")
                    and case.meta("fingerprint_params") == DEFAULT_PARAMS.signature()):
                return _score(case, out, truth, homes, difficulty, lookalike, references, seed, with_naive, attribute_only=True)
    case_path.unlink(missing_ok=True)
    inputs = pipeline.TriageInputs(
        devices=[out / "devices.csv"],
        logs=[out / "logs/app-events.jsonl.gz", out / "logs/assistant-events.jsonl.zst", out / "logs/web-events.csv"],
        snapshots=[out / "snapshots/served-1.tar.gz", out / "snapshots/served-2.zip"],
        references=[out / "references/refs.tar"] if references else [], field_map=truth["field_map"])
    with Case(case_path) as case:
        started = time.monotonic()
        pipeline.triage(case, inputs)
        return _score(case, out, truth, homes, difficulty, lookalike, references, seed, with_naive,
                      seconds=time.monotonic() - started)


def _score(case: Case, out: Path, truth: dict, homes: int, difficulty: str, lookalike: float, references: bool,
           seed: int, with_naive: bool, seconds: float | None = None, attribute_only: bool = False) -> dict:
    if attribute_only:
        started = time.monotonic()
        pipeline.run_attribute(case)
        seconds = time.monotonic() - started
    score = score_case(case, out / "truth.json")
    review = case.count("attributions", "candidates is not null")
    expected = round(case.db.execute("select coalesce(sum(p_wrong), 0) from exposures").fetchone()[0], 3)
    baseline = naive(case, truth) if with_naive else {"precision": None, "recall": None, "accuracy_informative": None}
    pairs, snaps = score["exposure_pairs"], score["snapshot_attribution"]
    return {"homes": homes, "difficulty": difficulty, "lookalike": lookalike, "refs": int(references), "seed": seed,
            "snapshots": truth["counts"]["snapshots"], "true_pairs": pairs["true"], "reported": pairs["reported"],
            "false_pairs": len(pairs["false_positive"]), "expected_false": expected,
            "precision": pairs["precision"], "recall": pairs["recall"], "recall_informative": pairs["recall_informative"],
            "recall_identifiable": pairs["recall_identifiable"],
            "accuracy_informative": snaps["accuracy_informative"], "wrong_frames": snaps["wrong"], "review_frames": review,
            "mixups_reported": pairs["home_mixups_reported"], "triage_s": round(seconds, 1),
            "stage": "attribute" if attribute_only else "triage",
            "naive_precision": baseline["precision"], "naive_recall": baseline["recall"],
            "naive_accuracy_informative": baseline["accuracy_informative"]}


GRID = (  # (homes, difficulties, look-alike shares, references, seeds): the issue-12 grid
    [(40, d, la, refs, s) for d in ("normal", "hard") for la in (0.0, 0.08) for refs in (True, False) for s in (1, 2, 3, 4, 5)]
    + [(300, d, la, True, s) for d in ("normal", "hard") for la in (0.0, 0.08) for s in (1, 2, 3)]
    + [(1000, "hard", 0.08, True, s) for s in (1, 2)] + [(1000, "normal", 0.0, True, 11)]
    + [(3000, "hard", 0.08, True, 1)]
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--difficulty", nargs="+", default=["normal", "hard"])
    parser.add_argument("--homes", type=int, nargs="+", default=[40])
    parser.add_argument("--lookalike", type=float, nargs="+", default=[0.0])
    parser.add_argument("--no-references", action="store_true", help="also score each incident without references")
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--grid", action="store_true", help="the issue-12 grid of sizes, difficulties and look-alike shares")
    parser.add_argument("--max-homes", type=int, default=None, help="with --grid: leave out the cells above this size")
    parser.add_argument("--reuse-cases", action="store_true",
                        help="where a cell's case file is already fingerprinted and clustered, only attribute again")
    parser.add_argument("--no-naive", action="store_true", help="leave out the naive baseline (it decodes every frame)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "camleak-accuracy-cache")
    args = parser.parse_args()
    if args.grid:
        cells = [c for c in GRID if args.max_homes is None or c[0] <= args.max_homes]
    else:
        cells = [(h, d, la, refs, s) for h in args.homes for d in args.difficulty for la in args.lookalike
                 for refs in ((True, False) if args.no_references else (True,)) for s in args.seeds]
    columns = ["homes", "difficulty", "lookalike", "refs", "seed", "snapshots", "true_pairs", "reported", "false_pairs",
               "expected_false", "precision", "recall", "recall_informative", "recall_identifiable", "accuracy_informative", "wrong_frames", "review_frames",
               "mixups_reported", "naive_precision", "naive_recall", "naive_accuracy_informative", "triage_s", "stage"]
    print("\t".join(columns), flush=True)
    args.cache.mkdir(parents=True, exist_ok=True)
    rows = []
    for homes, difficulty, lookalike, refs, seed in cells:
        row = run(seed, difficulty, homes, args.hours, args.cache, lookalike, refs, args.reuse_cases, not args.no_naive)
        rows.append(row)
        print("\t".join(str(row[c]) for c in columns), flush=True)
    by_cell: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        by_cell[(r["homes"], r["difficulty"], r["lookalike"], r["refs"])].append(r)
    for (homes, difficulty, lookalike, refs), sel in sorted(by_cell.items()):
        mean = lambda k: round(float(np.mean([r[k] for r in sel if r[k] is not None])), 4)  # noqa: E731
        print(f"# {homes} homes {difficulty} look-alike {lookalike:g} refs {refs}: false pairs "
              f"{sum(r['false_pairs'] for r in sel)} | precision min {min(r['precision'] or 0 for r in sel)} "
              f"recall_informative min {min(r['recall_informative'] or 0 for r in sel)} accuracy min "
              f"{min(r['accuracy_informative'] or 0 for r in sel)} review {mean('review_frames')} | naive precision "
              f"{mean('naive_precision')} recall {mean('naive_recall')} | triage {mean('triage_s')} s", flush=True)


if __name__ == "__main__":
    main()
