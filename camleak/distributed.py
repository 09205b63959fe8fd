"""The fingerprint stage as tasks on a dask.distributed cluster (`--dask ADDRESS`, `CAMLEAK_DASK`).

`DaskPool` has the local `HashPool`'s interface, so the one-pass ingest and the fingerprint
stage use either unchanged. Work goes out in two shapes:

- object keys (`submit_objects`): the worker reads the objects from object storage (or a
  shared path, as `file://`) itself, identifies and fingerprints them and sends back rows
  only, so the scheduler never carries image bytes a worker can fetch itself;
- bytes (`submit`): members of a local tar or zip, which only this process can read in one
  pass, are scattered straight to one worker (not through the scheduler) and fingerprinted
  there.

A task is up to `TASK_BYTES` of images or `TASK_FRAMES` frames (about half a second of one
core), so Dask's cost per task (client, scheduler and worker: a few ms) stays small, and at most
`depth` tasks are in flight. Results are gathered straight from the workers as they finish and
written to the case at once. A task whose worker dies is rescheduled by the scheduler on
another worker (and retried `RETRIES` times if it raised); a bytes batch whose worker died
with it is sent again from here. Every result is a pure function of the bytes, so the case
ends identical. The case, clustering and attribution stay on this machine. Workers need
camleak installed (with the extra for the object store) and their own credentials from their
cloud's standard chain: none is sent to them. A client that cannot reach the workers directly
sets DASK_DISTRIBUTED__CLIENT__DIRECT_TO_WORKERS=False (results and bytes then go through the
scheduler).
"""

from __future__ import annotations

import os
import time
from typing import Any

from .errors import InputError
from .fingerprint import DEFAULT_PARAMS, FingerprintParams, fingerprint_batch, tune_allocator
from . import objectstore
from .objectstore import MissingExtra

ENV = "CAMLEAK_DASK"
# Task sizes: a task should cost well over the ~ms a Dask task costs the client, scheduler and
# worker, yet leave enough tasks to keep every worker busy to the end. ~4 MiB of images is
# ~130 frames at 640x360, about half a second of one core.
TASK_BYTES = 4 << 20
TASK_FRAMES = 256  # at most, whatever their size
RETRIES = 3


def address(option: str | None) -> str | None:
    """The scheduler address from `--dask`, else from CAMLEAK_DASK, else None (local pool)."""
    value = option or os.environ.get(ENV) or None
    return value.strip() if value else None


def _direct() -> bool:
    """Results come straight from the workers and local bytes go straight to one (the
    scheduler carries neither), unless Dask's own setting says otherwise (a client that cannot
    reach the workers: DASK_DISTRIBUTED__CLIENT__DIRECT_TO_WORKERS=False)."""
    import dask
    value = dask.config.get("distributed.client.direct-to-workers", None)
    return True if value is None else bool(value)


def _client(address: str):
    try:
        from distributed import Client
    except ImportError as exc:
        raise MissingExtra(f"--dask {address}: needs camleak's 'dask' extra (pip install 'camleak[dask]'): {exc}") from exc
    try:
        return Client(address, timeout="20s", set_as_default=False, direct_to_workers=_direct())
    except (OSError, TimeoutError) as exc:
        raise InputError(f"--dask {address}: no Dask scheduler answered there ({type(exc).__name__}: {exc})") from exc


class DaskPool:
    """Batches fingerprinted on a Dask cluster while this process reads and writes on.

    At most `depth` tasks are in flight (submitting more blocks until one finishes), so memory
    here and on the workers is bounded by the task size, not the input. Results are gathered
    straight from the workers. Bytes this process read (archive members) are scattered
    straight to a worker, never through the scheduler, and kept here until their task is done:
    if the worker holding them is lost, the batch is sent again."""

    def __init__(self, scheduler: str, params: FingerprintParams = DEFAULT_PARAMS, depth: int | None = None):
        self.address = scheduler
        self.params = params
        self.batch_size = TASK_FRAMES  # frames per bytes task (the one-pass stager reads these two)
        self.batch_bytes = TASK_BYTES
        self.task_objects = TASK_FRAMES  # objects per object task
        self.task_bytes = TASK_BYTES
        self.depth = depth
        self.client = None
        self.workers = 0
        self.direct = True
        self.tasks = 0  # tasks completed, for the benchmarks
        self.resent = 0  # bytes batches sent again (their worker was lost)
        self._bytes = None
        self._objects = None

    def __enter__(self) -> "DaskPool":
        self.client = _client(self.address)  # a missing extra is named here
        from distributed import as_completed
        threads = sum(w.get("nthreads", 1) for w in self.client.scheduler_info()["workers"].values())
        if threads == 0:
            self.client.wait_for_workers(1, timeout=60)
            threads = sum(w.get("nthreads", 1) for w in self.client.scheduler_info()["workers"].values())
        self.workers = threads
        self.direct = bool(self.client.direct_to_workers)
        self.depth = self.depth or 2 * threads + 2  # one running and one waiting on every thread, and spare
        self._bytes = as_completed(loop=self.client.loop)
        self._objects = as_completed(loop=self.client.loop)
        self._sent: dict[str, tuple[Any, list[tuple[str, bytes]], Any, int]] = {}
        return self

    # -- bytes this process read (archive members) ---------------------------------------
    def submit(self, batch: list[tuple[str, bytes]], tag: Any = None) -> list[tuple[Any, list[dict]]]:
        if not batch:
            return []
        self._send(batch, tag, 0)
        return self._collect_bytes(block=self._in_flight() > self.depth)

    def _send(self, batch: list[tuple[str, bytes]], tag: Any, attempt: int) -> None:
        data = self._scatter(batch) if self.direct else batch
        future = self.client.submit(fingerprint_task, data, self.params, pure=False, retries=RETRIES)
        self._sent[future.key] = (tag, batch, data if self.direct else None, attempt)
        self._bytes.add(future)

    def _scatter(self, batch: list[tuple[str, bytes]]) -> Any:
        """The batch as one key on one worker (round robin), sent there directly; a worker
        that dies while receiving it is skipped once the scheduler has noticed."""
        for attempt in range(RETRIES + 1):
            try:
                return self.client.scatter([batch], direct=True, hash=False)[0]
            except OSError as exc:  # distributed's CommClosedError too
                if attempt == RETRIES:
                    raise InputError(f"--dask {self.address}: could not send a batch to any worker ({exc}); run "
                                     "the same command again to resume") from exc
                time.sleep(1.0 + attempt)
        raise AssertionError("unreachable")

    def drain(self) -> list[tuple[Any, list[dict]]]:
        done = []
        while not self._bytes.is_empty():
            done.extend(self._collect_bytes(block=True))
        return done

    def _collect_bytes(self, block: bool) -> list[tuple[Any, list[dict]]]:
        done = []
        for future, outcome in self._gathered(self._bytes, block):
            tag, batch, scattered, attempt = self._sent.pop(future.key)
            if scattered is not None:
                scattered.release()
            if isinstance(outcome, _Failed):
                if attempt >= RETRIES:
                    raise self._failure(outcome.error)
                self.resent += 1
                self._send(batch, tag, attempt + 1)  # its worker (and the scattered bytes) were lost
                continue
            done.append((tag, outcome))
        return done

    # -- the worker reads the objects itself ---------------------------------------------
    def submit_objects(self, tasks: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
        if not tasks:
            return []
        future = self.client.submit(process_objects, tasks, self.params, pure=False, retries=RETRIES)
        self._objects.add(future)
        return self._collect_objects(block=self._in_flight() > self.depth)

    def drain_objects(self) -> list[dict[str, Any]]:
        done = []
        while not self._objects.is_empty():
            done.extend(self._collect_objects(block=True))
        return done

    def _collect_objects(self, block: bool) -> list[dict[str, Any]]:
        done = []
        for _future, outcome in self._gathered(self._objects, block):
            if isinstance(outcome, _Failed):
                raise self._failure(outcome.error)
            done.extend(outcome)
        return done

    # -------------------------------------------------------------------------------------
    def _in_flight(self) -> int:
        return self._bytes.count() + self._objects.count()

    def _gathered(self, completed, block: bool) -> list[tuple[Any, Any]]:
        """The finished futures (waiting for one if `block`) with their results, gathered in
        one round trip; a failed future's outcome is a `_Failed`."""
        if completed.is_empty():
            return []
        if block:
            ready = [next(completed), *completed.next_batch(block=False)]
        else:
            ready = list(completed.next_batch(block=False)) if completed.has_ready() else []
        if not ready:
            return []
        out = []
        good = [f for f in ready if f.status == "finished"]
        try:
            results = dict(zip([f.key for f in good], self.client.gather(good, direct=self.direct))) if good else {}
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException:  # a result lost with its worker after it finished: one at a time
            results = {}
            for future in good:
                try:
                    results[future.key] = future.result()
                except (KeyboardInterrupt, SystemExit):
                    raise
                except BaseException:
                    pass
        for future in ready:
            if future.key in results:
                out.append((future, results[future.key]))
            else:
                out.append((future, _Failed(self._error(future))))
            future.release()
        self.tasks += len(ready)
        return out

    def _error(self, future) -> BaseException:
        try:
            future.result()
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # distributed's CancelledError (a lost scattered batch) is no Exception
            return exc
        return RuntimeError(f"no result for {future.key}")

    def _failure(self, exc: BaseException) -> InputError:
        if isinstance(exc, InputError):
            return exc
        error = InputError(f"--dask {self.address}: a fingerprint task failed after {RETRIES} retries "
                           f"({type(exc).__name__}: {exc}); run the same command again to resume")
        error.__cause__ = exc
        return error

    def __exit__(self, *exc: object) -> None:
        if self.client is not None:
            if exc[0] is not None:
                for completed in (self._bytes, self._objects):
                    if completed is not None:
                        futures = list(completed.futures)
                        if futures:
                            self.client.cancel(futures)
            self.client.close()
            self.client = None


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


def fingerprint_task(batch: list[tuple[str, bytes]], params: FingerprintParams) -> list[dict[str, Any]]:
    """`fingerprint_batch` as a Dask worker runs it (on bytes this process read)."""
    tune_allocator()
    return fingerprint_batch(batch, params)


def process_objects(tasks: list[tuple[str, str, str]], params: Any = None) -> list[dict[str, Any]]:
    """Read, identify and (with `params`) fingerprint objects: the unit of work a Dask worker
    runs, so image bytes travel from the store to the worker only. `tasks` are (tag, protocol,
    path); each result has the tag, sha256, size, kind, reason, error and fingerprint row."""
    tune_allocator()
    results: list[dict[str, Any]] = []
    by_protocol: dict[str, list[tuple[str, str]]] = {}
    for tag, protocol, path in tasks:
        by_protocol.setdefault(protocol, []).append((tag, path))
    hash_items: list[tuple[str, bytes]] = []
    for protocol, items in by_protocol.items():
        found, images = objectstore.read_identified(protocol, items)
        results.extend(found)
        if params is not None:
            hash_items.extend(images)
    if hash_items:
        rows = {row["frame_id"]: row for row in fingerprint_batch(hash_items, params)}
        for result in results:
            if result["tag"] in rows:
                result["fingerprint"] = rows[result["tag"]]
    return results
