"""Throughput of `camleak pull` against loopback servers, each next to a baseline measured in
the same run.

- Log store: N events pulled from the loopback Loki (tests/fakestores.py) page by page into a
  case, versus ingesting the same events from a local JSON-lines file (the existing ingest).
- File: a download with checksum, Range-capable writing and retries, versus a bare httpx
  streaming GET of the same file to disk; and the same download cut half-way, then resumed.

    python benchmarks/pull.py --events 100000 --megabytes 100
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fakestores import FakeServer  # noqa: E402

from camleak import ingest  # noqa: E402
from camleak.casefile import Case  # noqa: E402
from camleak.remote import net  # noqa: E402
from camleak.remote.download import download  # noqa: E402
from camleak.remote.pull import PullOptions, pull  # noqa: E402
from camleak.remote.spec import parse_spec  # noqa: E402
from camleak.timeutil import format_ts, parse_ts  # noqa: E402


def events(n: int) -> list[str]:
    rng = random.Random(7)
    t0 = parse_ts("2026-11-20T00:00:00Z")
    return [json.dumps({"ts": format_ts(t0 + i * 37), "account_id": f"acc-{rng.randrange(5000)}",
                        "device_id": f"cam-{rng.randrange(800)}", "snapshot": f"snap-{i}",
                        "event": "snapshot_served", "integration": "alexa", "request_id": f"req-{i}"})
            for i in range(n)]


def timed(fn):
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--limit", type=int, default=5000, help="Loki lines per query")
    parser.add_argument("--megabytes", type=int, default=100)
    args = parser.parse_args()
    policy = net.RetryPolicy(attempts=5, backoff=0.01)
    with tempfile.TemporaryDirectory() as tmp, FakeServer() as server:
        tmp = Path(tmp)
        lines = events(args.events)
        (tmp / "events.jsonl").write_text("".join(line + "\n" for line in lines))
        for line in lines:
            server.loki_entries.append((parse_ts(json.loads(line)["ts"]) * 1_000_000, line, {"app": "bench"}))

        with Case(tmp / "local.db") as case:
            stats, local_s = timed(lambda: ingest.ingest_logs(case, [tmp / "events.jsonl"]))
        spec = (f'loki+{server.base}?query={{app="bench"}}&from=2026-11-19T00:00:00Z'
                f"&to=2026-11-23T00:00:00Z&limit={args.limit}")
        with Case(tmp / "remote.db") as case:
            (_, summaries), remote_s = timed(lambda: pull(case, {"logs": [spec]}, PullOptions(policy=policy)))
        s = summaries[0]
        assert s.events == stats.items == args.events, (s.events, stats.items)
        print(f"log store  : {args.events:,} events, {s.pages} pages of {args.limit}, {s.bytes / 1e6:.1f} MB")
        print(f"  local ingest (baseline) {local_s:6.2f} s  {args.events / local_s:10,.0f} events/s")
        print(f"  pull from Loki          {remote_s:6.2f} s  {args.events / remote_s:10,.0f} events/s"
              f"  ratio {remote_s / local_s:.2f}x the local time")

        data = random.Random(1).randbytes(args.megabytes << 20)
        server.files["big.tar"] = data
        url = f"{server.base}/files/big.tar"

        def bare() -> None:
            with httpx.Client() as http, http.stream("GET", url) as response, open(tmp / "bare", "wb") as out:
                for chunk in response.iter_raw(1 << 16):
                    out.write(chunk)

        _, bare_s = timed(bare)
        (tmp / "a").mkdir()
        (tmp / "b").mkdir()
        with httpx.Client() as http:
            got, ours_s = timed(lambda: download(http, parse_spec(url), tmp / "a", policy=policy, use_sidecar=False))
            assert got.sha256 == hashlib.sha256(data).hexdigest()
            server.faults["files:big.tar"] = ["drop"]
            cut, cut_s = timed(lambda: download(http, parse_spec(url), tmp / "b", policy=policy, use_sidecar=False))
            assert cut.path.read_bytes() == data and cut.retries == 1
        mb = len(data) / (1 << 20)
        print(f"file       : {mb:.0f} MiB")
        print(f"  bare httpx GET (baseline) {bare_s:6.2f} s  {mb / bare_s:8.1f} MiB/s")
        print(f"  camleak download + sha256 {ours_s:6.2f} s  {mb / ours_s:8.1f} MiB/s  ratio {ours_s / bare_s:.2f}x")
        print(f"  cut half-way, resumed     {cut_s:6.2f} s  {mb / cut_s:8.1f} MiB/s  ratio {cut_s / bare_s:.2f}x "
              f"(byte-identical: yes)")


if __name__ == "__main__":
    main()
