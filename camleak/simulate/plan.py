"""Which candidate view each camera keeps, so that no two cameras hash alike by accident:
rejection sampling over scene candidates, with the costly signatures rendered ahead in a pool.
The plan depends on the seed alone, so every process derives the same one.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache

import numpy as np

from .paint import _paint_scene
from .params import _PROFILES, _T_LOOK, _mp_context
from .scenes import _lookalike_scene, _make_scene, _Scene, lookalike_source


@lru_cache(maxsize=64)
def _scene(seed: int, cam: int, look: float = 0.0) -> _Scene:
    """Camera `cam`'s view: the first candidate that hashes clearly apart from earlier cameras,
    or, for a look-alike camera, a slightly changed copy of an earlier camera's room."""
    source = lookalike_source(seed, cam, look)
    if source is not None:
        return _lookalike_scene(_scene(seed, source, look), np.random.default_rng([seed, _T_LOOK, cam, 1]))
    return _make_scene(seed, cam, _scene_attempt(seed, cam))


_SIG_SIZE = (256, 144)
_MAX_ATTEMPTS = 12
_MIN_APART = 20  # phash bits between any two cameras' clean bases (day or night, any combination)
_MAX_OWN = 12  # phash bits between one camera's own clean day and night bases
_PLANS: dict[int, tuple[list[int], "_Signatures"]] = {}


def _signature(scene: _Scene) -> np.ndarray:
    """phash bits (2 x 64) of a scene's clean day and night look, timestamp band excluded."""
    import imagehash  # only needed here; keeps module import cheap

    out = []
    for night in (False, True):
        g = _paint_scene(scene, night, _PROFILES["normal"].ir_jitter, _SIG_SIZE).convert("L")
        g = g.crop((0, g.height // 10, g.width, g.height))
        out.append(imagehash.phash(g).hash.reshape(-1))
    return np.array(out)


def _scene_attempt(seed: int, cam: int) -> int:
    """Which candidate view camera `cam` uses (rejection sampling, cameras 1..cam in order).

    Random scenes occasionally hash alike; a simulator whose cameras collide would make
    the tool's precision unmeasurable, so each camera keeps the first candidate that stays
    `_MIN_APART` bits from every earlier camera and close to its own infrared look.
    Depends only on the seed, so every process derives the same plan.
    """
    attempts, sigs = _PLANS.setdefault(seed, ([], _Signatures()))
    while len(attempts) < cam:
        n = len(attempts) + 1
        best: tuple[tuple[bool, int], int, np.ndarray] | None = None
        for k in range(_MAX_ATTEMPTS):
            sig = _SIGS.pop((seed, n, k), None)
            if sig is None:
                sig = _signature(_make_scene(seed, n, k))
            own = int((sig[0] != sig[1]).sum())
            apart = sigs.nearest(sig)
            rank = (own <= _MAX_OWN, min(apart, _MIN_APART))
            if best is None or rank > best[0]:
                best = (rank, k, sig)
            if own <= _MAX_OWN and apart >= _MIN_APART:
                break
        assert best is not None
        attempts.append(best[1])
        sigs.append(best[2])
    return attempts[cam - 1]


class _Signatures:
    """The kept cameras' signatures, packed (two 64-bit words each) in an array that grows by
    doubling: the distance from a candidate to every earlier camera is one XOR and popcount
    per word, where rebuilding a boolean array of all earlier signatures for every camera made
    planning quadratic (3,000 homes did not finish planning in 30 minutes)."""

    def __init__(self) -> None:
        self.words = np.zeros((64, 2), np.uint64)
        self.count = 0

    @staticmethod
    def _pack(sig: np.ndarray) -> np.ndarray:
        return np.packbits(sig.astype(bool), axis=-1).view(">u8").astype(np.uint64).reshape(2)

    def nearest(self, sig: np.ndarray) -> int:
        """The fewest phash bits between the candidate's day or night look and any earlier
        camera's day or night look (64 when there is none)."""
        if not self.count:
            return 64
        words = self.words[: self.count]
        return int(np.bitwise_count(words[:, :, None] ^ self._pack(sig)[None, None, :]).min())

    def append(self, sig: np.ndarray) -> None:
        if self.count == len(self.words):
            self.words = np.concatenate([self.words, np.zeros_like(self.words)])
        self.words[self.count] = self._pack(sig)
        self.count += 1


_SIGS: dict[tuple[int, int, int], np.ndarray] = {}  # (seed, cam, attempt) -> signature, computed ahead in a pool


def _signature_job(job: tuple[int, list[int], int]) -> list[np.ndarray]:
    seed, cams, attempt = job
    return [_signature(_make_scene(seed, n, attempt)) for n in cams]


def plan_scenes(seed: int, cameras: int, workers: int) -> None:
    """Plan every camera's scene as `_scene_attempt` does, with the first candidates' signatures
    (the costly part) rendered ahead in a process pool; the accept-or-retry pass stays sequential
    and reads them, so the plan is the same whatever the worker count."""
    done = len(_PLANS.get(seed, ([], []))[0])
    todo = list(range(done + 1, cameras + 1))
    if workers > 1 and len(todo) >= 64:
        chunk = max(16, len(todo) // (workers * 8) + 1)
        jobs = [(seed, todo[i:i + chunk], 0) for i in range(0, len(todo), chunk)]
        with ProcessPoolExecutor(max_workers=workers, mp_context=_mp_context()) as ex:
            for (_, cams, attempt), sigs in zip(jobs, ex.map(_signature_job, jobs)):
                _SIGS.update({(seed, n, attempt): sig for n, sig in zip(cams, sigs)})
    _scene_attempt(seed, cameras)
    for key in [k for k in _SIGS if k[0] == seed]:
        del _SIGS[key]
