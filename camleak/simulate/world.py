"""The incident's world: homes, cameras and accounts with who may see what, and the requests
over the simulated period, including the leak window, same-home mix-ups and the rarely used
camera that the accounts its frames leaked to outvote in the logs.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from .params import INTEGRATIONS, SimParams


@dataclass
class _Camera:
    number: int
    device_id: str
    home_id: str
    owner: str
    shared: list[str]
    rate: float = 0.0
    rare: bool = False
    own_requests: int = 0


@dataclass
class _Request:
    t_ms: int
    cam: int  # requested camera number
    account: str
    integration: str
    source: int = 0  # served camera number
    kind: str = "own"  # own | leak | home_mixup
    honest: bool = False
    forced: bool = False
    key: str = ""
    extra: dict = field(default_factory=dict)


class _World(NamedTuple):
    cams: dict[int, _Camera]
    homes: dict[str, list[int]]
    home_accounts: dict[str, list[str]]
    account_home: dict[str, str]
    prefs: dict[str, np.ndarray]
    pref_cdf: dict[str, np.ndarray]  # filled on first use


def _build_world(p: SimParams, rng: np.random.Generator) -> _World:
    """Homes, cameras and accounts, with a few partially shared homes."""
    used: set[str] = set()

    def new_account() -> str:
        while True:
            a = f"acct-{int(rng.integers(0, 16 ** 6)):06x}"
            if a not in used:
                used.add(a)
                return a

    cams: dict[int, _Camera] = {}
    homes: dict[str, list[int]] = {}
    home_accounts: dict[str, list[str]] = {}
    for hi in range(1, p.homes + 1):
        hid = f"home-{hi:03d}"
        ncam = int(rng.choice([1, 2, 3], p=[0.35, 0.4, 0.25]))
        owner = new_account()
        members = [new_account() for _ in range(int(rng.choice([0, 1, 2], p=[0.35, 0.4, 0.25])))]
        nums = []
        for _ in range(ncam):
            num = len(cams) + 1
            cams[num] = _Camera(num, f"cam-{num:04d}", hid, owner, list(members))
            nums.append(num)
        if members and ncam > 1 and rng.random() < 0.2:  # a member sees only some cameras
            m = members[int(rng.integers(len(members)))]
            keep = nums[int(rng.integers(ncam))]
            for n in nums:
                if n != keep and rng.random() < 0.7:
                    cams[n].shared.remove(m)
        homes[hid] = nums
        home_accounts[hid] = [owner, *members]
    # Guarantee one partially shared home when the world allows it.
    if not any(set(cams[n].shared) != set(home_accounts[h][1:]) for h, ns in homes.items() for n in ns):
        for h, ns in homes.items():
            if len(ns) > 1 and len(home_accounts[h]) > 1:
                cams[ns[-1]].shared.remove(home_accounts[h][1])
                break
    account_home = {a: h for h, accts in home_accounts.items() for a in accts}
    prefs = {}
    for a in sorted(account_home):
        w = rng.dirichlet([0.6, 0.6, 0.6, 0.6])
        prefs[a] = w
    # request rates: lognormal, ~2 requests per camera-hour on average; ~10% rarely used
    for n in sorted(cams):
        cams[n].rate = float(rng.lognormal(math.log(2.0) - 0.32, 0.8))
    nrare = max(1, round(0.1 * len(cams))) if len(cams) >= 3 else 0
    for n in sorted(int(x) for x in rng.choice(sorted(cams), size=nrare, replace=False)):
        cams[n].rare = True
    return _World(cams, homes, home_accounts, account_home, prefs, {})


def _entitled(cam: _Camera) -> list[str]:
    return [cam.owner, *cam.shared]


@lru_cache(maxsize=16)
def _owner_first_cdf(accounts: int) -> np.ndarray:
    weights = np.array([2.0] + [1.0] * (accounts - 1))
    return _cdf(weights / weights.sum())


def _cdf(p: np.ndarray) -> np.ndarray:
    cdf = np.asarray(p, dtype=np.float64).cumsum()
    return cdf / cdf[-1]


def _choose(rng: np.random.Generator, cdf: np.ndarray) -> int:
    """`rng.choice(len(p), p=p)` for a precomputed cdf: the same single uniform draw and search
    (so the same stream and result), without the per-call checks that made a 1,000-home world
    spend most of its time in numpy's argument validation."""
    return int(cdf.searchsorted(rng.random(), side="right"))


def _new_request(world: _World, rng: np.random.Generator, cam: _Camera, t_ms: int, account: str | None = None) -> _Request:
    accts = _entitled(cam)
    if account is None:
        account = accts[_choose(rng, _owner_first_cdf(len(accts)))]
    cdf = world.pref_cdf.get(account)
    if cdf is None:
        cdf = world.pref_cdf[account] = _cdf(world.prefs[account])
    integ = INTEGRATIONS[_choose(rng, cdf)]
    return _Request(t_ms, cam.number, account, integ, source=cam.number)


def _simulate_requests(p: SimParams, world: _World, rng: np.random.Generator, t0: int
                       ) -> tuple[list[_Request], tuple[int, int], int | None]:
    """Who asked for which camera when, and what they were actually served."""
    span = p.hours * 3_600_000
    cams = world.cams
    reqs: list[_Request] = []
    for n in sorted(cams):
        cam = cams[n]
        count = int(rng.integers(1, 4)) if cam.rare else int(rng.poisson(cam.rate * p.hours))
        for _ in range(count):
            reqs.append(_new_request(world, rng, cam, t0 + int(rng.integers(0, span)), None))
    dur = min(2 * 3_600_000, span // 3)
    lo = int(0.3 * span)
    hi = max(lo, int(0.7 * span) - dur)
    ws = t0 + int(rng.integers(lo, hi + 1))
    we = ws + dur
    reqs.sort(key=lambda r: (r.t_ms, r.cam, r.account))

    victim: int | None = None
    rares = [n for n in sorted(cams) if cams[n].rare]
    if rares and p.bug_rate > 0 and len(world.homes) > 1:
        victim = rares[int(rng.integers(len(rares)))]
    recent: deque[int] = deque(maxlen=20)
    mixup_p = 0.01
    numbers = sorted(cams)
    position = {n: i for i, n in enumerate(numbers)}
    for r in reqs:
        home = cams[r.cam].home_id
        # The cameras of other homes, in camera order, without listing them: a home's cameras
        # are consecutive, so the k-th other camera skips the home's run (linear, not cameras^2).
        own = world.homes[home]
        first, span_own = position[own[0]], len(own)
        n_others = len(numbers) - span_own
        protected = r.cam == victim  # keep the victim's few own frames its own
        if ws <= r.t_ms < we and n_others and not protected and rng.random() < p.bug_rate:
            pool = [n for n in recent if cams[n].home_id != home]
            if pool and rng.random() < 0.5:
                r.source = pool[int(rng.integers(len(pool)))]
            else:
                k = int(rng.integers(n_others))
                r.source = numbers[k if k < first else k + span_own]
            r.kind = "leak"
        elif len(world.homes[home]) > 1 and not protected and rng.random() < mixup_p:
            sib = [n for n in world.homes[home] if n != r.cam]
            r.source = sib[int(rng.integers(len(sib)))]
            r.kind = "home_mixup"
        recent.append(r.cam)

    own_counts = Counter(r.cam for r in reqs)
    for n in cams:
        cams[n].own_requests = own_counts[n]

    if victim is not None:
        reqs = _force_outvoted(world, rng, reqs, victim, ws, we)
    _ensure_mixups(world, rng, reqs, victim)
    for r in reqs:  # ~10% of leaks are logged under the device actually served
        if r.kind == "leak" and not r.forced and rng.random() < 0.1:
            r.honest = True
    reqs.sort(key=lambda r: (r.t_ms, r.cam, r.account))
    return reqs, (ws, we), victim


def _ensure_mixups(world: _World, rng: np.random.Generator, reqs: list[_Request], victim: int | None) -> None:
    """Guarantee the not-a-leak cases exist: a same-home mix-up, ideally to an unlisted member."""
    cams = world.cams

    def lacking(r: _Request) -> list[int]:
        return [s for s in world.homes[cams[r.cam].home_id] if s != r.cam and r.account not in _entitled(cams[s])]

    mixups = [r for r in reqs if r.kind == "home_mixup"]
    if any(r.account not in _entitled(cams[r.source]) for r in mixups):
        return
    cands = [r for r in reqs if r.kind == "own" and r.cam != victim and len(world.homes[cams[r.cam].home_id]) > 1]
    subtle = [r for r in cands if lacking(r)]
    if subtle:
        r = subtle[int(rng.integers(len(subtle)))]
        r.source, r.kind = lacking(r)[0], "home_mixup"
    elif cands and not mixups:
        r = cands[int(rng.integers(len(cands)))]
        r.source, r.kind = [s for s in world.homes[cams[r.cam].home_id] if s != r.cam][0], "home_mixup"


def _force_outvoted(world: _World, rng: np.random.Generator, reqs: list[_Request], victim: int,
                    ws: int, we: int) -> list[_Request]:
    """Make the victim camera leak to more accounts (and log votes) than it has own requests."""
    cams = world.cams
    own = cams[victim].own_requests
    need = own + 1
    vhome = cams[victim].home_id
    other_homes = [h for h in sorted(world.homes) if h != vhome]
    # aggressor: the busiest camera of the other home with the most accounts
    best = max(other_homes, key=lambda h: (len(world.home_accounts[h]),
                                           sum(cams[n].rate for n in world.homes[h]), h))
    aggressor = max(world.homes[best], key=lambda n: (len(_entitled(cams[n])), cams[n].rate, -n))
    targets: list[tuple[str, int]] = []  # (recipient, camera they request)
    agg_accts = _entitled(cams[aggressor])
    for i in range(need):  # aggressor-logged deliveries outvote the victim's own
        targets.append((agg_accts[i % len(agg_accts)], aggressor))
    recips = {a for a, _ in targets}
    for h in other_homes:
        if len(recips) >= need:
            break
        if h == best:
            continue
        n = world.homes[h][0]
        a = cams[n].owner
        targets.append((a, n))
        recips.add(a)
    used: set[int] = set()
    for account, cam in targets:
        match = None
        for i, r in enumerate(reqs):
            if i not in used and ws <= r.t_ms < we and r.account == account and r.cam == cam:
                match = i
                break
        if match is None:
            r = _new_request(world, rng, cams[cam], int(rng.integers(ws, we)), account)
            reqs.append(r)
            cams[cam].own_requests += 1
            match = len(reqs) - 1
        used.add(match)
        r = reqs[match]
        r.source, r.kind, r.forced = victim, "leak", True
    return reqs
