"""What running the response as a playbook costs over typing the same camleak commands.

On one simulated incident, into fresh case files:
- baseline: `camleak pull`, `fingerprint`, `cluster`, `attribute` and the four `report`
  formats, run one after another as separate processes, as a responder would type them;
- playbook: `camleak playbook run cross-account-snapshot-leak` with the same inputs, which runs
  the same commands as child processes and records every step in the case file.

It also checks that both produce the same JSON report (the response section aside).

    python benchmarks/playbook.py --homes 40 --hours 24 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from camleak.simulate import SimParams, generate_incident

CAMLEAK = [sys.executable, "-m", "camleak"]


def run(args: list[str], ok: tuple[int, ...] = (0,)) -> None:
    done = subprocess.run(CAMLEAK + args, capture_output=True, text=True)
    if done.returncode not in ok:
        raise SystemExit(f"camleak {' '.join(args[:2])} exited {done.returncode}: {done.stderr[-500:]}")


def by_hand(inc, work: Path) -> Path:
    case, reports = work / "case.db", work / "reports"
    sources = ["--devices", str(inc.devices), "--logs", str(inc.root / "logs"), "--snapshots", str(inc.root / "snapshots"),
               "--references", str(inc.root / "references")]
    fields = [a for k, v in inc.field_map.items() for a in ("--field", f"{k}={v}")]
    run(["pull", "--case", str(case), *sources, *fields])
    run(["fingerprint", "--case", str(case)])
    run(["cluster", "--case", str(case)])
    run(["attribute", "--case", str(case)])
    for fmt, out in (("json", "report.json"), ("md", "postmortem.md"), ("html", "report.html"), ("csv", "notification-lists")):
        run(["report", "--case", str(case), "--format", fmt, "-o", str(reports / out)])
    return reports / "report.json"


def as_playbook(inc, work: Path) -> Path:
    reports = work / "reports"
    sets = {"case": work / "case.db", "reports": reports, "devices": inc.devices, "logs": inc.root / "logs",
            "snapshots": inc.root / "snapshots", "references": inc.root / "references"}
    args = ["playbook", "run", "cross-account-snapshot-leak", "--no-interactive"]
    args += [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    run(args, ok=(4,))  # paused at the recovery checkpoint: every automated step before it ran
    return reports / "report.json"


def comparable(path: Path) -> dict:
    report = json.loads(path.read_text())
    for key in ("generated_at", "response", "case"):
        report.pop(key, None)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--homes", type=int, default=40)
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        inc = generate_incident(root / "incident", SimParams(seed=args.seed, homes=args.homes, hours=args.hours))
        print(f"incident: {inc.counts['snapshots']} snapshots, {inc.counts['events']} events, {args.homes} homes")
        times: dict[str, list[float]] = {"by hand": [], "playbook": []}
        reports: dict[str, Path] = {}
        for i in range(args.repeat):
            for label, fn in (("by hand", by_hand), ("playbook", as_playbook)):
                work = root / f"{label.replace(' ', '-')}-{i}"
                started = time.perf_counter()
                reports[label] = fn(inc, work)
                times[label].append(time.perf_counter() - started)
        same = comparable(reports["by hand"]) == comparable(reports["playbook"])
        base = statistics.median(times["by hand"])
        for label, values in times.items():
            median = statistics.median(values)
            print(f"{label:>9}: median {median:6.2f} s over {len(values)} runs "
                  f"(min {min(values):.2f}, max {max(values):.2f}); {median / base:.3f}x the commands by hand")
        print(f"overhead of the playbook: {statistics.median(times['playbook']) - base:+.2f} s per run "
              f"(8 camleak steps, 6 checkpoints recorded)")
        print(f"same JSON report (response section aside): {same}")
        if not same:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
