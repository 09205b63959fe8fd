"""The response timeline: what the responders did, read back from the playbook tables.

`camleak playbook run` records one `playbook_runs` row per run and one `playbook_steps` row per
attempt at a step (a failed step resumed, or a manual checkpoint confirmed later, gets a new
row). The report states from them which runs happened, every attempt in time order, and how far
each phase of the response (detection, containment, evidence, analysis, notification, recovery,
verification) got, so a postmortem shows the response next to the leak it answered.

A step's captured `output` may name accounts; it is never read here. Its one-line `summary` is
built from counts and is safe to show.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Iterable

from .casefile import Case
from .playbook import PHASES  # the playbook format defines the phases of a response

RUN_STATUSES = ("running", "complete", "pending", "paused", "failed", "interrupted")  # pending: all but manual checkpoints done
STEP_STATUSES = ("running", "ok", "failed", "interrupted", "pending", "confirmed", "skipped")
STEP_KINDS = ("camleak", "manual")
DONE_STATUSES = frozenset({"ok", "confirmed", "skipped"})
PHASE_STATUSES = ("failed", "pending", "running", "done")

# What a step's latest status reads as in the Markdown and HTML tables.
OUTCOME = {
    "running": "running",
    "ok": "ok",
    "failed": "FAILED",
    "interrupted": "interrupted",
    "pending": "pending (awaiting confirmation)",
    "confirmed": "confirmed",
    "skipped": "skipped",
}


def empty() -> dict[str, Any]:
    return {"playbook_runs": [], "timeline": [], "phases": []}


def response(case: Case) -> dict[str, Any]:
    """The report's `response` key: playbook runs, every step attempt in time order, and phases."""
    if not (case.db["playbook_runs"].exists() and case.db["playbook_steps"].exists()):
        return empty()
    runs = list(case.db.query("select * from playbook_runs order by id"))
    if not runs:
        return empty()
    playbook_of = {r["id"]: r["playbook"] for r in runs}
    attempts = list(case.db.query("select * from playbook_steps order by id"))
    timeline = [_attempt(a, playbook_of.get(a["run_id"])) for a in
                sorted(attempts, key=lambda a: (a["started"] is None, a["started"] or "", a["id"]))]
    return {
        "playbook_runs": [_run(r, [a for a in attempts if a["run_id"] == r["id"]]) for r in runs],
        "timeline": timeline,
        "phases": _phases(timeline),
    }


def latest_attempts(attempts: Iterable[dict[str, Any]], key=lambda a: a["step"]) -> dict[Any, dict[str, Any]]:
    """The last attempt per `key`, by (started, id): a later attempt supersedes an earlier one."""
    latest: dict[Any, dict[str, Any]] = {}
    for a in sorted(attempts, key=lambda a: (a["started"] is None, a["started"] or "", a.get("id", 0))):
        latest[key(a)] = a
    return latest


def _stopped_at(run: dict[str, Any], latest: dict[Any, dict[str, Any]]) -> str | None:
    """The step a stopped run stopped at; None for a run that is going on, complete or pending.

    A resumed run can keep the `stopped_at` of its previous stop while it runs again, and an
    interrupted one may have none recorded: then the step left interrupted (or running) says where.
    """
    if run["status"] in ("failed", "paused"):
        return run["stopped_at"]
    if run["status"] == "interrupted":
        cut = [a for a in latest.values() if a["status"] in ("interrupted", "running")]
        return max(cut, key=lambda a: (a["started"] or "", a["id"]))["step"] if cut else run["stopped_at"]
    return None


def _run(run: dict[str, Any], attempts: list[dict[str, Any]]) -> dict[str, Any]:
    latest = latest_attempts(attempts)
    return {
        "run": run["id"],
        "playbook": run["playbook"],
        "title": run["title"],
        "status": run["status"],
        "started": run["started"],
        "ended": run["ended"],
        "operator": run["operator"],
        "stopped_at": _stopped_at(run, latest),
        "message": run["message"],
        # the playbook's length when the runner recorded it, else the steps this run reached
        "steps_total": max(run.get("steps") or 0, len(latest)),
        "steps_done": sum(1 for a in latest.values() if a["status"] in DONE_STATUSES),
        "steps_pending": sum(1 for a in latest.values() if a["status"] == "pending"),
    }


def _attempt(row: dict[str, Any], playbook: str | None) -> dict[str, Any]:
    return {
        "run": row["run_id"],
        "playbook": playbook,
        "position": row["position"],
        "step": row["step"],
        "title": row["title"],
        "phase": row["phase"],
        "kind": row["kind"],
        "owner": row["owner"],
        "status": row["status"],
        "attempt": row["attempt"],
        "started": row["started"],
        "ended": row["ended"],
        "seconds": _seconds(row["started"], row["ended"]),
        "exit_code": row["exit_code"],
        "summary": row["summary"],
        "command": row["command"],
        "confirmed_by": row["confirmed_by"],
        "note": row["note"],
        "outputs": _json_list(row["outputs"]),
    }


def _phases(timeline: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per phase, in response order: its time span and the state of its steps' latest attempts.

    A step is the same step across runs of one playbook (a new run after a failed one supersedes
    it), so the latest attempt per (playbook, step) decides.
    """
    out = []
    for phase in PHASES:
        attempts = [a for a in timeline if a["phase"] == phase]
        if not attempts:
            continue
        latest = latest_attempts(attempts, key=lambda a: (a["playbook"], a["step"])).values()
        statuses = {a["status"] for a in latest}
        if statuses & {"failed", "interrupted"}:
            status = "failed"
        elif "pending" in statuses:
            status = "pending"
        elif "running" in statuses:
            status = "running"
        else:
            status = "done"
        started = [a["started"] for a in attempts if a["started"]]
        ended = [a["ended"] for a in attempts if a["ended"]]
        out.append({
            "phase": phase,
            "first_started": min(started) if started else None,
            "last_ended": max(ended) if ended else None,
            "steps": len(latest),
            "status": status,
        })
    return out


def _seconds(started: str | None, ended: str | None) -> int | None:
    """Whole seconds from start to end (the tables keep times to the second); None while open."""
    if not started or not ended:
        return None
    try:
        delta = datetime.fromisoformat(ended) - datetime.fromisoformat(started)
    except ValueError:
        return None
    return max(0, round(delta.total_seconds()))


def _json_list(text: str | None) -> list[str]:
    if not text:
        return []
    try:
        value = json.loads(text)
    except ValueError:
        return [text]
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def case_identifiers(case: Case) -> set[str]:
    """Every account, device and home id the case knows, to keep them out of widely shared text."""
    ids: set[str] = set()
    for d in case.db.query("select device_id, home_id, owner_account, shared_accounts from devices"):
        ids.update(filter(None, (d["device_id"], d["home_id"], d["owner_account"])))
        ids.update(str(a) for a in _json_list(d["shared_accounts"]) if a)
    for table, column in (("events", "account_id"), ("events", "device_id")):
        ids.update(r[column] for r in case.db.query(f"select distinct {column} from {table} where {column} is not null"))
    return ids


def headline(resp: dict[str, Any], limit: int = 2) -> list[str]:
    """One line per playbook (its latest run, at most `limit`) for the terminal summary."""
    latest: dict[str, dict[str, Any]] = {}
    for run in resp["playbook_runs"]:
        latest[run["playbook"]] = run
    ordered = sorted(latest.values(), key=lambda r: r["run"], reverse=True)
    lines = []
    for run in ordered[:limit]:
        where = f" at '{run['stopped_at']}'" if run["stopped_at"] else ""
        pending = f"; {run['steps_pending']} awaiting confirmation" if run["steps_pending"] else ""
        lines.append(f"{run['playbook']} run {run['run']} {run['status']}{where} "
                     f"({run['steps_done']} of {run['steps_total']} steps done{pending})")
    others = len(resp["playbook_runs"]) - len(lines)
    if others > 0 and lines:
        lines[-1] += f"; {others} earlier run{'s' if others != 1 else ''} in `camleak report`"
    return lines
