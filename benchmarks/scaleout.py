"""Frames/s of the fingerprint stage on snapshots read from object storage (SeaweedFS on
loopback): the local process pool, then a dask.distributed cluster of 1 and 2 workers.

The same simulated incident's snapshots are put in a bucket as loose objects under a date
prefix (one archive beside them), then ingested in one pass (list, read, identify, hash,
write) into a fresh case per run. The Dask scheduler and workers run as processes of their
own (`dask scheduler`, `dask worker --nworkers N --nthreads 1`), as in a deployment, so the
CPU seconds of every process are reported apart:

- client: this process (lists, writes the case; with the local pool it also reads the
  objects and hashes them for provenance);
- pool / workers: the local pool's processes, or the Dask worker processes;
- scheduler, nanny: the Dask scheduler and the `dask worker` process holding the nannies;
- weed: the SeaweedFS server (it shares the same cores).

Runs are interleaved (local, 1 worker, 2 workers, then again) so that a change in the other
load on a shared machine hits every configuration alike; every run is printed, and the ratios
are given on the median run of each configuration, in wall time and in worker CPU seconds.
`--profile DIR` records every process with py-spy (raw collapsed stacks, one file each).

    pip install -e '.[s3,dask,test]'
    nice -n 10 python benchmarks/scaleout.py --homes 60 --hours 24 --repeat 2
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from seaweed import Seaweed, fs_for, upload_incident  # noqa: E402

from camleak import objectstore  # noqa: E402
from camleak.casefile import Case  # noqa: E402
from camleak.fingerprint import DEFAULT_PARAMS, HashPool  # noqa: E402
from camleak.ingest import OnePass, ingest_snapshots  # noqa: E402
from camleak.simulate import SimParams, generate_incident  # noqa: E402

CACHE = Path("/work/bench-cache") if Path("/work/bench-cache").is_dir() else Path(tempfile.gettempdir())


def _cpu(pid: int, children: bool = False) -> float:
    """User + system CPU seconds of one process (and, with `children`, of its reaped children)."""
    import psutil
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return t.user + t.system + ((t.children_user + t.children_system) if children else 0.0)


def _tree_cpu(pid: int) -> float:
    import psutil
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


class DaskProcesses:
    """A scheduler and `dask worker --nworkers n --nthreads 1` as processes of their own."""

    def __init__(self, n: int, root: Path, env: dict[str, str] | None = None):
        self.n = n
        self.file = root / f"scheduler-{n}-{time.monotonic_ns()}.json"
        quiet = {"stdout": subprocess.DEVNULL, "stderr": open(root / "dask.log", "ab"), "env": {**os.environ, **(env or {})}}
        self.scheduler = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
             "--no-dashboard", "--scheduler-file", str(self.file)], **quiet)
        deadline = time.monotonic() + 60
        while not self.file.exists():
            if time.monotonic() > deadline or self.scheduler.poll() is not None:
                raise RuntimeError("dask scheduler did not start")
            time.sleep(0.1)
        time.sleep(0.2)
        self.address = json.loads(self.file.read_text())["address"]
        self.nannies = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", self.address, "--nworkers", str(n),
             "--nthreads", "1", "--no-dashboard", "--memory-limit", "0"], **quiet)
        from distributed import Client
        self.client = Client(self.address, set_as_default=False)
        self.client.wait_for_workers(n, timeout=120)
        self.workers = sorted(self.client.run(os.getpid).values())

    def cpu(self) -> dict[str, float]:
        return {"scheduler": _cpu(self.scheduler.pid), "nanny": _cpu(self.nannies.pid),
                "workers": sum(_cpu(pid) for pid in self.workers)}

    def pids(self) -> dict[str, int]:
        return {"scheduler": self.scheduler.pid, "nanny": self.nannies.pid,
                **{f"worker{i}": pid for i, pid in enumerate(self.workers)}}

    def close(self) -> None:
        self.client.close()
        for proc in (self.nannies, self.scheduler):
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _profilers(pids: dict[str, int], folder: Path | None, label: str) -> list[subprocess.Popen]:
    if folder is None:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    return [subprocess.Popen(["py-spy", "record", "--pid", str(pid), "--rate", "50", "--format", "raw", "--threads",
                              "--nonblocking", "-o", str(folder / f"{label}-{role}.txt")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for role, pid in pids.items()]


def _stop(profilers: list[subprocess.Popen]) -> None:
    for proc in profilers:
        proc.send_signal(signal.SIGINT)
    for proc in profilers:
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


def _own_cpu() -> dict[str, float]:
    import psutil
    t = psutil.Process().cpu_times()
    return {"client": t.user + t.system, "pool": t.children_user + t.children_system}


def run_once(url: str, root: Path, label: str, weed_pid: int, cluster: DaskProcesses | None = None,
             profile: Path | None = None) -> dict:
    """One ingest of the prefix into a fresh case; wall and CPU seconds of every process."""
    case_path = root / f"{label}-{time.monotonic_ns()}.db"
    pids = {"client": os.getpid(), **(cluster.pids() if cluster else {})}
    with Case(case_path, create=True) as case:
        profilers = _profilers(pids, profile, f"{label}-{time.monotonic_ns()}")
        time.sleep(1.0 if profilers else 0)

        def sample() -> dict[str, float]:
            return {**_own_cpu(), "weed": _tree_cpu(weed_pid), **(cluster.cpu() if cluster else {})}

        before = sample()
        load0, wall0 = os.getloadavg()[0], time.perf_counter()
        if cluster:
            from camleak.distributed import DaskPool
            pool = DaskPool(cluster.address, DEFAULT_PARAMS)
        else:
            pool = HashPool(DEFAULT_PARAMS, 2)  # its processes are reaped at its exit: "pool"
        with pool:
            stats = ingest_snapshots(case, [url], None, OnePass(pool))
        wall = time.perf_counter() - wall0
        after = sample()
        _stop(profilers)
        frames = case.count("fingerprints")
    cpu = {k: round(after[k] - before[k], 3) for k in after}
    if cluster:
        cpu.pop("pool")
    else:
        cpu["workers"] = cpu.pop("pool")
    total = sum(cpu.values())
    return {"label": label, "frames": frames, "wall_s": round(wall, 3), "cpu": cpu, "cpu_s": round(total, 3),
            "fps": frames / wall, "fps_per_cpu": frames / total if total else 0.0,
            "fps_per_worker_cpu": frames / cpu["workers"] if cpu["workers"] else 0.0, "items": stats.items,
            "load": round((load0 + os.getloadavg()[0]) / 2, 2), "tasks": getattr(pool, "tasks", None)}


def _incident(args):
    incident_dir = CACHE / f"issue14-scaleout-{args.homes}h{args.hours}s{args.seed}"
    saved = incident_dir.with_suffix(".pickle")
    if saved.exists():
        return pickle.loads(saved.read_bytes())
    inc = generate_incident(incident_dir / "inc", SimParams(seed=args.seed, homes=args.homes, hours=args.hours),
                            workers=2)
    saved.write_bytes(pickle.dumps(inc))
    return inc


def _print_run(r: dict) -> None:
    c = r["cpu"]
    print(f"{r['label']}\t{r['frames']}\t{r['wall_s']:.2f}\t{r['fps']:.0f}\t{c['client']:.2f}\t{c['workers']:.2f}\t"
          f"{c.get('scheduler', 0):.2f}\t{c.get('nanny', 0):.2f}\t{c['weed']:.2f}\t{r['cpu_s']:.2f}\t"
          f"{r['fps_per_worker_cpu']:.0f}\t{r['load']:.1f}\t{r['tasks'] or ''}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--homes", type=int, default=60)
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=2, help="runs per configuration (interleaved)")
    parser.add_argument("--configs", default="local,1,2", help="local and/or Dask worker counts, comma-separated")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy every process into this folder")
    parser.add_argument("--json", type=Path, default=None, help="append every run as a JSON line here")
    parser.add_argument("--dask-env", action="append", default=[], metavar="NAME=VALUE",
                        help="environment of the scheduler and workers, e.g. "
                             "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False (Dask's own profiler, 10 ms ticks)")
    args = parser.parse_args()
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    inc = _incident(args)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        root = Path(tmp)
        with Seaweed(root / "weed") as server:
            fs = fs_for(server.endpoint)
            server.ready_for_writes(fs, "scaleout")
            url = upload_incident(fs, "scaleout", inc)["snapshots"][0]
            os.environ["AWS_ENDPOINT_URL"] = server.endpoint  # the workers inherit it
            objectstore._filesystem.cache_clear()
            print(f"# load average {os.getloadavg()[0]:.2f}; {os.cpu_count()} cores; nice {os.nice(0)}; "
                  f"Dask environment {args.dask_env or 'default'}")
            print("config\tframes\twall_s\tframes/s\tclient_cpu\tworker_cpu\tscheduler_cpu\tnanny_cpu\t"
                  "weed_cpu\ttotal_cpu\tframes/worker_cpu_s\tload\ttasks", flush=True)
            results: dict[str, list[dict]] = {}
            for _ in range(args.repeat):
                for config in configs:
                    cluster = None
                    if config == "local":
                        label = "local-pool-2"
                    else:
                        label = f"dask-{config}-worker"
                        cluster = DaskProcesses(int(config), root, dict(e.split("=", 1) for e in args.dask_env))
                    try:
                        r = run_once(url, root, label, server.process.pid, cluster, args.profile)
                    finally:
                        if cluster:
                            cluster.close()
                    _print_run(r)
                    if args.json:
                        with args.json.open("a") as fh:
                            fh.write(json.dumps(r) + "\n")
                    results.setdefault(label, []).append(r)
    _summary(results)


def _median(runs: list[dict], key) -> float:
    return statistics.median(key(r) for r in runs)


def _summary(results: dict[str, list[dict]]) -> None:
    print("# medians: config\twall_s\tclient_cpu\tworker_cpu\tscheduler+nanny_cpu\tweed_cpu\ttotal_cpu")
    med = {}
    for label, runs in results.items():
        m = med[label] = {
            "wall": _median(runs, lambda r: r["wall_s"]),
            "client": _median(runs, lambda r: r["cpu"]["client"]),
            "workers": _median(runs, lambda r: r["cpu"]["workers"]),
            "dask": _median(runs, lambda r: r["cpu"].get("scheduler", 0) + r["cpu"].get("nanny", 0)),
            "weed": _median(runs, lambda r: r["cpu"]["weed"]),
            "total": _median(runs, lambda r: r["cpu_s"]),
            "frames": runs[0]["frames"],
        }
        print(f"# {label}\t{m['wall']:.2f}\t{m['client']:.2f}\t{m['workers']:.2f}\t{m['dask']:.2f}\t{m['weed']:.2f}\t"
              f"{m['total']:.2f}")
    one, two, local = med.get("dask-1-worker"), med.get("dask-2-worker"), med.get("local-pool-2")
    if one and two:
        print(f"# 1 -> 2 Dask workers: {one['wall'] / two['wall']:.2f}x in wall time; worker CPU s per frame "
              f"{one['workers'] / one['frames'] * 1e3:.2f} ms (1) vs {two['workers'] / two['frames'] * 1e3:.2f} ms (2): "
              f"{one['workers'] / two['workers']:.2f}x the throughput per worker CPU second")
        # On C cores a run needs at least max(worker CPU / workers, total CPU / C) seconds; the
        # non-worker CPU (client, scheduler, nanny, SeaweedFS) shares the same cores.
        cores = os.cpu_count() or 1
        rest = two["total"] - two["workers"]
        best_two = max(two["workers"] / 2, two["total"] / cores)
        best_one = max(one["workers"], one["total"] / cores)
        print(f"# ceiling on {cores} cores (idle machine, these CPU seconds): 1 worker >= {best_one:.1f} s, "
              f"2 workers >= {best_two:.1f} s, so 1 -> 2 at most {best_one / best_two:.2f}x; non-worker CPU with 2 "
              f"workers {rest:.1f} s = {rest / two['total']:.0%} of all CPU")
    if two and local:
        print(f"# Dask (2 workers) against the local pool of 2: {two['wall'] / local['wall'] - 1:+.1%} wall, "
              f"{two['total'] / local['total'] - 1:+.1%} total CPU s, {two['workers'] / local['workers'] - 1:+.1%} "
              f"worker CPU s")


if __name__ == "__main__":
    main()
