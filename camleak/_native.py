"""Compiled pair-scoring kernels (numba) for the quadratic parts of clustering.

Each kernel (in `camleak._kernels`) computes exactly what the numpy code in `camleak.cluster`
computes (the same pairs, distances and scores; tests/test_native.py compares them on random
hashes), a row range at a time, without the GIL, so two threads share the rows. They stream:
a pair is scored in a small tile buffer and only the few that pass are written out, so memory
grows with the pairs found, not with the pairs compared (the numpy tiles held a row block's
XOR, popcount and score arrays, and the shared sweep every pair within the conflict bound:
~2 x 10^8 of them at 10^6 thumbnails).

Hashes are passed word-major, (words, n) uint64 (`words_major` of `cluster.hex_to_words`'
rows), so a row's distances to a tile of columns are a few vectorised loops, one per word
(LLVM turns the popcounts into AVX2 ones). A score is pHash distance + weight x dHash
distance.

`use(pairs)` says whether to take the compiled path for a job of that many pair scores: not
when numba is missing or fails to import (or CAMLEAK_NATIVE=0 is set), and not for small jobs,
where numba's import and the cached kernels' load (~0.5-1 s of CPU) cost more than the numpy
path: the callers then use their numpy paths, which give the same results.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from types import ModuleType

import numpy as np

# numba installed and not switched off; whether it imports is found out on first use
AVAILABLE = os.environ.get("CAMLEAK_NATIVE", "1") != "0" and importlib.util.find_spec("numba") is not None
MIN_PAIRS = 50_000_000  # below this many pair scores numpy is as quick, counting numba's import
_loaded: ModuleType | None = None


def kernels() -> ModuleType | None:
    """The compiled kernels' module, imported on first use; None when numba cannot be imported."""
    global _loaded, AVAILABLE
    if _loaded is None and AVAILABLE:
        try:
            _loaded = importlib.import_module(f"{__package__}._kernels")
        except ImportError:  # e.g. a numba too old for this numpy: the numpy paths, same results
            AVAILABLE = False
    return _loaded if AVAILABLE else None


def use(pairs: float) -> bool:
    """Whether a job of `pairs` pair scores takes the compiled path."""
    return AVAILABLE and pairs >= MIN_PAIRS and kernels() is not None


def words_major(hashes: np.ndarray) -> np.ndarray:
    """(n, words) hash rows as a (words, n) C-contiguous array: each word's column contiguous."""
    return np.ascontiguousarray(hashes.T)


def split(count: int, parts: int, step: int = 1) -> list[tuple[int, int]]:
    """[0, count) cut into about `parts * 8` ranges, multiples of `step`, for the threads to take
    in turn (the upper triangle's rows get shorter: equal ranges would leave one thread idle)."""
    pieces = max(1, parts * 8)
    size = max(step, -(-count // pieces // step) * step)
    return [(a, min(count, a + size)) for a in range(0, count, size)]


def run_threads(work, ranges, threads: int = 2):  # type: ignore[no-untyped-def]
    """work(a, b) over the ranges on `threads` threads (the kernels release the GIL), results in
    range order."""
    if threads <= 1 or len(ranges) <= 1:
        return [work(a, b) for a, b in ranges]
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda r: work(*r), ranges))
