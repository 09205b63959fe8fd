"""The fingerprint stage as tasks on a dask.distributed cluster (`--dask ADDRESS`, `CAMLEAK_DASK`).

`DaskPool` has the local `HashPool`'s interface, so the one-pass ingest and the fingerprint
stage use either unchanged. Work goes out in two shapes:

- object keys (`submit_objects`): the worker reads the objects from object storage (or a
  shared path, as `file://`) itself, identifies and fingerprints them and sends back rows
  only, so the scheduler never carries image bytes a worker can fetch itself;
- bytes (`submit`): members of a local tar or zip, which only this process can read in one
  pass, travel with their task.

Results come back as they finish and are written to the case at once. A task whose worker
dies is rescheduled by the scheduler on another worker (and retried `retries` times if it
raised); every result is a pure function of the bytes, so the case ends identical. The case,
clustering and attribution stay on this machine. Workers need camleak installed (with the
extra for the object store) and their own credentials from their cloud's standard chain:
none is sent to them.
"""

from __future__ import annotations

import os
from typing import Any

from .errors import InputError
from .fingerprint import DEFAULT_PARAMS, FingerprintParams, fingerprint_batch
from . import objectstore
from .objectstore import MissingExtra

ENV = "CAMLEAK_DASK"
BATCH = 64  # frames per task: large enough that scheduling costs little against decoding
RETRIES = 3


def address(option: str | None) -> str | None:
    """The scheduler address from `--dask`, else from CAMLEAK_DASK, else None (local pool)."""
    value = option or os.environ.get(ENV) or None
    return value.strip() if value else None


def _client(address: str):
    try:
        from distributed import Client
    except ImportError as exc:
        raise MissingExtra(f"--dask {address}: needs camleak's 'dask' extra (pip install 'camleak[dask]'): {exc}") from exc
    try:
        return Client(address, timeout="20s", set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise InputError(f"--dask {address}: no Dask scheduler answered there ({type(exc).__name__}: {exc})") from exc


class DaskPool:
    """Batches fingerprinted on a Dask cluster while this process reads and writes on."""

    def __init__(self, scheduler: str, params: FingerprintParams = DEFAULT_PARAMS, depth: int | None = None):
        self.address = scheduler
        self.params = params
        self.batch_size = BATCH
        self.depth = depth
        self.client = None
        self.workers = 0
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
        self.depth = self.depth or max(4, threads * 3)
        self._bytes = as_completed(loop=self.client.loop)
        self._objects = as_completed(loop=self.client.loop)
        self._tags: dict[str, Any] = {}
        return self

    # -- bytes travel with the task ------------------------------------------------------
    def submit(self, batch: list[tuple[str, bytes]], tag: Any = None) -> list[tuple[Any, list[dict]]]:
        if not batch:
            return []
        future = self.client.submit(fingerprint_batch, batch, self.params, pure=False, retries=RETRIES)
        self._tags[future.key] = tag
        self._bytes.add(future)
        return self._collect_bytes(block=self._in_flight() > self.depth)

    def drain(self) -> list[tuple[Any, list[dict]]]:
        done = []
        while not self._bytes.is_empty():
            done.extend(self._collect_bytes(block=True))
        return done

    def _collect_bytes(self, block: bool) -> list[tuple[Any, list[dict]]]:
        done = []
        for future in self._ready(self._bytes, block):
            done.append((self._tags.pop(future.key), self._result(future)))
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
        for future in self._ready(self._objects, block):
            done.extend(self._result(future))
        return done

    # -------------------------------------------------------------------------------------
    def _in_flight(self) -> int:
        return self._bytes.count() + self._objects.count()

    @staticmethod
    def _ready(completed, block: bool) -> list:
        if completed.is_empty():
            return []
        if block:
            return [next(completed), *completed.next_batch(block=False)]
        return list(completed.next_batch(block=False)) if completed.has_ready() else []

    def _result(self, future) -> Any:
        try:
            return future.result()
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"--dask {self.address}: a fingerprint task failed after {RETRIES} retries "
                             f"({type(exc).__name__}: {exc}); run the same command again to resume") from exc
        finally:
            future.release()

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


def process_objects(tasks: list[tuple[str, str, str]], params: Any = None) -> list[dict[str, Any]]:
    """Read, identify and (with `params`) fingerprint objects: the unit of work a Dask worker
    runs, so image bytes travel from the store to the worker only. `tasks` are (tag, protocol,
    path); each result has the tag, sha256, size, kind, reason, error and fingerprint row."""
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
