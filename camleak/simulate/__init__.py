"""Deterministic simulator of a cross-account camera snapshot leak.

camleak's demo, tests and benchmarks need incidents whose ground truth is known:
which frames came from which camera, which accounts received foreign frames, which
log lines lie. This package builds such an incident (devices, overlapping log exports,
snapshot archives, reference frames) into a folder and writes ``truth.json`` next to
it, so every other stage can score itself against the truth.

Everything is derived from ``SimParams.seed``: world decisions from one RNG stream,
each frame's look from an RNG seeded with (seed, frame index). Rendering runs in a
process pool, but no output depends on scheduling, so one seed always gives the same
bytes whatever the number of workers.

The parts, lowest first: ``params`` (knobs, profiles, constants), ``scenes`` (what each camera
sees), ``paint`` (a scene as pixels), ``plan`` (which candidate scene each camera keeps),
``frames`` (each served or reference frame, rendered in a pool), ``world`` (homes, accounts,
requests, the leak), ``logs`` and ``archives`` (the files), ``truth`` (what really happened),
and ``incident`` (all of it written into one folder).
"""

from .frames import render_frame
from .incident import generate_incident
from .params import ASSISTANT_FIELD_MAP, INTEGRATIONS, Incident, SimParams
from .plan import plan_scenes
from .scenes import lookalike_source

__all__ = [
    "ASSISTANT_FIELD_MAP",
    "INTEGRATIONS",
    "Incident",
    "SimParams",
    "generate_incident",
    "lookalike_source",
    "plan_scenes",
    "render_frame",
]
