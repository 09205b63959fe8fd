"""The whole triage as one call: ingest every input, fingerprint, cluster, attribute.

Ingest and fingerprinting share one pass over each archive (the fingerprint stage then only
catches what an earlier `ingest` left unhashed, or a change of parameters). Each stage is recorded as its own run in the case file, so a triage interrupted anywhere can
simply be run again: inputs already in are skipped, later stages replace their own output.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Sequence

from . import ingest
from .attribute import DEFAULT_ATTRIBUTION_PARAMS, AttributionParams, attribute_case
from .casefile import Case
from .cluster import DEFAULT_CLUSTER_PARAMS, ClusterParams, cluster_case
from .fingerprint import DEFAULT_PARAMS, FingerprintParams, HashPool, fingerprint_case

# A progress factory: given a label and an optional total, returns a context manager yielding
# an `advance(n)` callable and a `set_total(n)` callable. The CLI passes rich progress bars.
ProgressFactory = Callable[[str, int | None], ContextManager[tuple[Callable[[int], None], Callable[[int], None]]]]


def no_progress(label: str, total: int | None = None):
    return nullcontext((lambda n: None, lambda n: None))


@dataclass
class TriageInputs:
    devices: Sequence[str | Path]
    logs: Sequence[str | Path]
    snapshots: Sequence[str | Path]
    references: Sequence[str | Path] = ()
    field_map: dict[str, str] = field(default_factory=dict)
    log_format: str = "auto"


@dataclass
class TriageSettings:
    fingerprint: FingerprintParams = DEFAULT_PARAMS
    cluster: ClusterParams = DEFAULT_CLUSTER_PARAMS
    attribution: AttributionParams = DEFAULT_ATTRIBUTION_PARAMS
    workers: int | None = None
    dask: str | None = None  # a dask.distributed scheduler for the fingerprint stage (issue 14)


def run_ingest(case: Case, inputs: TriageInputs, progress: ProgressFactory = no_progress,
               settings: TriageSettings | None = None) -> dict[str, Any]:
    """Ingest every input. With `settings` (triage), snapshots and reference frames are also
    fingerprinted in the same pass, so each archive is read once."""
    counts: dict[str, Any] = {}
    with case.run("ingest", {"devices": inputs.devices, "logs": inputs.logs, "snapshots": inputs.snapshots,
                             "references": inputs.references, "field_map": inputs.field_map,
                             "log_format": inputs.log_format}) as run:
        counts["devices"] = ingest.ingest_devices(case, inputs.devices).as_dict()
        with progress("Reading delivery logs", None) as (advance, _):
            counts["logs"] = ingest.ingest_logs(case, inputs.logs, inputs.field_map, advance, inputs.log_format).as_dict()
        pool = _pool(settings) if settings is not None else nullcontext()
        with pool:
            one_pass = ingest.OnePass(pool) if settings is not None else None
            label = "Reading and fingerprinting" if one_pass else "Reading"
            with progress(f"{label} snapshot archives", None) as (advance, _):
                counts["snapshots"] = ingest.ingest_snapshots(case, inputs.snapshots, advance, one_pass).as_dict()
            if inputs.references:
                with progress(f"{label} reference frames", None) as (advance, _):
                    counts["references"] = ingest.ingest_references(case, inputs.references, advance, one_pass).as_dict()
            if one_pass is not None:
                counts["fingerprints"] = one_pass.as_dict()
        run.update(counts)
    return counts


def _pool(settings: TriageSettings):
    """The local process pool, or a Dask cluster's workers with the same interface."""
    if settings.dask:
        from .distributed import DaskPool
        return DaskPool(settings.dask, settings.fingerprint)
    return HashPool(settings.fingerprint, settings.workers)


def run_fingerprint(case: Case, settings: TriageSettings = TriageSettings(), progress: ProgressFactory = no_progress) -> dict[str, Any]:
    with case.run("fingerprint", {"params": settings.fingerprint.signature(), "workers": settings.workers}) as run:
        with progress("Fingerprinting frames", None) as (advance, set_total):
            stats = fingerprint_case(case, settings.fingerprint, settings.workers, advance, set_total, settings.dask,
                                     _pool(settings) if settings.dask else None)
        case.set_meta("fingerprint_params", settings.fingerprint.signature())
        run.update(stats.as_dict())
    return stats.as_dict()


def run_cluster(case: Case, settings: TriageSettings = TriageSettings()) -> dict[str, Any]:
    with case.run("cluster", {"params": settings.cluster.signature()}) as run:
        stats = cluster_case(case, settings.cluster)
        run.update(stats.as_dict())
    return stats.as_dict()


def run_attribute(case: Case, settings: TriageSettings = TriageSettings()) -> dict[str, Any]:
    with case.run("attribute", {"params": settings.attribution.signature()}) as run:
        stats = attribute_case(case, settings.attribution)
        run.update(stats.as_dict())
    return stats.as_dict()


def triage(case: Case, inputs: TriageInputs, settings: TriageSettings = TriageSettings(),
           progress: ProgressFactory = no_progress) -> dict[str, Any]:
    """Run every stage; returns each stage's counts. Each stage is also its own run."""
    with case.run("triage", {"inputs": inputs.__dict__, "workers": settings.workers, "dask": settings.dask,
                             "access_scope": settings.attribution.access_scope}) as run:
        run["ingest"] = run_ingest(case, inputs, progress, settings)
        run["fingerprint"] = run_fingerprint(case, settings, progress)
        run["cluster"] = run_cluster(case, settings)
        run["attribute"] = run_attribute(case, settings)
    return dict(run)
