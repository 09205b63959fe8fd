"""Check that two case files of the same incident hold the same results (issue 13).

    python benchmarks/same_results.py A.db B.db [--json A.json B.json]

Compares, row for row (ordered by primary key), every result table: frames (the input id
mapped to the input's sha256, since ids follow ingest order), fingerprints (params included),
clusters, frame_clusters, attributions, exposures, devices, events, problems (without ids),
and the inputs' kinds, sha256s, items and skips. With --json, the two `report --format json`
outputs too, apart from `generated_at` and the case path. `--paths OLD NEW`: the two cases were
built from the same incident at two paths (say, through two symlinked cache folders); OLD in any
text of the first is read as NEW. Prints what differs; exit 1 if any.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sqlite3
import sys

TABLES = {
    "fingerprints": "frame_id",
    "clusters": "cluster_id",
    "frame_clusters": "frame_id",
    "attributions": "snapshot",
    "exposures": "recipient_account, source_device",
    "devices": "device_id",
    "events": "event_key",
}


def _inputs(conn: sqlite3.Connection) -> dict[int, str]:
    return {i: f"{k}:{s}" for i, k, s in conn.execute("select id, kind, sha256 from inputs")}


PATHS: tuple[str, str] | None = None


def _norm(value):
    if PATHS and isinstance(value, str):
        return value.replace(*PATHS)
    return value


def _rows(conn: sqlite3.Connection, table: str, order: str, drop: tuple[str, ...] = (), first: bool = False):
    cols = [r[1] for r in conn.execute(f"pragma table_info([{table}])") if r[1] not in drop]
    inputs = _inputs(conn)
    where = "input_id" in cols
    for row in conn.execute(f"select {', '.join(f'[{c}]' for c in cols)} from [{table}] order by {order}"):
        row = list(row)
        if where:
            k = cols.index("input_id")
            row[k] = inputs.get(row[k], row[k])
        yield tuple(_norm(v) for v in row) if first else tuple(row)


def _digest(rows) -> tuple[int, str]:
    h = hashlib.sha256()
    n = 0
    for row in rows:
        h.update(repr(row).encode())
        n += 1
    return n, h.hexdigest()


def compare(a: str, b: str) -> list[str]:
    ca, cb = sqlite3.connect(a), sqlite3.connect(b)
    diffs = []
    checks = [(t, o, ()) for t, o in TABLES.items()]
    checks.append(("frames", "frame_id", ()))
    checks.append(("problems", "stage, kind, message, member, line", ("id", "path")))
    checks.append(("inputs", "kind, sha256", ("id", "path", "ingested_at", "size")))
    for table, order, drop in checks:
        da, db_ = _digest(_rows(ca, table, order, drop, True)), _digest(_rows(cb, table, order, drop))
        status = "same" if da == db_ else "DIFFERENT"
        print(f"{table:16s} {da[0]:9d} rows  {db_[0]:9d} rows  {status}")
        if da != db_:
            diffs.append(table)
            for n, (ra, rb) in enumerate(zip(_rows(ca, table, order, drop, True), _rows(cb, table, order, drop))):
                if ra != rb:
                    print(f"  first difference at row {n}:\n    {ra!r:.400}\n    {rb!r:.400}")
                    break
    return diffs


def _clean(report: dict) -> dict:
    report = dict(report)
    report.pop("generated_at", None)
    report.pop("case", None)
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--json", nargs=2)
    parser.add_argument("--paths", nargs=2, metavar=("OLD", "NEW"))
    args = parser.parse_args()
    global PATHS
    PATHS = tuple(args.paths) if args.paths else None
    diffs = compare(args.a, args.b)
    if args.json:
        text_a = open(args.json[0]).read()
        if PATHS:
            text_a = text_a.replace(*(json.dumps(p)[1:-1] for p in PATHS))
        ja, jb = _clean(json.loads(text_a)), _clean(json.load(open(args.json[1])))
        same = ja == jb
        print(f"report json      {'same' if same else 'DIFFERENT'} (keys {sorted(ja)})")
        if not same:
            diffs.append("report")
            for key in sorted(set(ja) | set(jb)):
                if ja.get(key) != jb.get(key):
                    print(f"  differs in {key}")
    print("RESULT:", "identical" if not diffs else f"differences in {', '.join(diffs)}")
    sys.exit(1 if diffs else 0)


if __name__ == "__main__":
    main()
