"""Running a playbook against a case: camleak steps as child processes, manual checkpoints
confirmed by a person, and every attempt recorded in the case file.

The record is what makes a run resumable (the next run of the same playbook on the same case
continues from the first step that is not done) and reportable (`camleak report` turns it into
the response timeline). Steps run as `python -m camleak ...` child processes so each is exactly
the command a person could have typed, takes the case lock itself, and cannot take the runner
down with it; the runner holds its own lock (`<case>-playbook-lock`) for the whole run, so two
runners never interleave steps on one case.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .casefile import Case, CaseLock, utcnow
from .playbook import Playbook, PlaybookUsageError, RenderedStep, render_all
from .redact import redact
from .reporting import identifier_pattern, scrub_identifiers
from .response import case_identifiers

OUTPUT_TAIL_LINES = 60


@dataclass
class RunOptions:
    operator: str
    interactive: bool = False
    confirm: frozenset[str] = frozenset()  # manual checkpoints confirmed on the command line
    note: str | None = None  # recorded with checkpoints confirmed on the command line
    restart: bool = False  # start a new run instead of continuing the latest one
    debug: bool = False
    wait: float = 0.0
    # ask(step) -> ("done" | "later" | "stop", note): how a person answers a checkpoint
    ask: Callable[[RenderedStep], tuple[str, str | None]] | None = None
    echo: Callable[[str], None] = lambda line: None  # each line of a step's output
    announce: Callable[[str, str], None] = lambda kind, text: None  # (start|done|failed|pending|note, text)


@dataclass
class StepState:
    step: str
    title: str
    phase: str
    kind: str
    status: str  # not-started | running | ok | failed | interrupted | pending | confirmed | skipped
    attempt: int = 0
    summary: str | None = None
    owner: str | None = None
    command: str | None = None


@dataclass
class RunResult:
    run_id: int
    status: str  # complete | pending | paused | failed | interrupted
    resumed: bool
    stopped_at: str | None
    message: str
    steps: list[StepState] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"run": self.run_id, "status": self.status, "resumed": self.resumed, "stopped_at": self.stopped_at,
                "message": self.message, "steps": [vars(s) for s in self.steps]}


def _case_counts(case: Case) -> dict[str, int]:
    counts = {"devices": case.count("devices"), "events": case.count("events"), "frames": case.count("frames"),
              "fingerprinted": case.count("fingerprints"), "clusters": case.count("clusters"),
              "exposure pairs": case.count("exposures")}
    counts["recipient accounts"] = case.db.execute(
        "select count(distinct recipient_account) from exposures").fetchone()[0]
    return counts


def _summary(before: dict[str, int], after: dict[str, int], outputs: list[str], exit_code: int, tail: deque) -> str:
    """One line from counts and file names only: it appears in postmortems, so no account ids."""
    parts = [f"{name} {before.get(name, 0):,} → {value:,}" for name, value in after.items()
             if value != before.get(name, 0)]
    parts += [f"wrote {o}" for o in outputs]
    if exit_code:
        # the last line that says something (rich draws error boxes around typer's usage errors)
        cleaned = (line.strip().strip("│╭╮╰╯─┃━ ") for line in reversed(tail))
        last = next((line for line in cleaned if any(c.isalnum() for c in line)), "")
        meaning = {1: "an input could not be used", 2: "usage error", 3: "exposures found",
                   70: "unexpected error", 130: "interrupted"}.get(exit_code, "failed")
        parts.insert(0, f"exit {exit_code} ({meaning})" + (f": {redact(last)[:300]}" if last else ""))
    return "; ".join(parts) or "no change to the case"


def _describe_output(path: str) -> str | None:
    p = Path(path)
    if p.is_dir():
        return f"{path}/ ({sum(1 for c in p.iterdir() if c.is_file())} files)"
    return path if p.exists() else None


class PlaybookRun:
    """One invocation of `camleak playbook run`: continues or starts a run and drives its steps."""

    def __init__(self, playbook: Playbook, assigned: dict[str, Any], options: RunOptions):
        self.playbook = playbook
        self.options = options
        self.assigned = assigned
        _, resolver = render_all(playbook, assigned, strict=False)
        if "case" in resolver.missing:
            raise PlaybookUsageError(f"playbook {playbook.name} needs the case file: --set case=PATH")
        self.case_path = Path(str(resolver.value("case")))
        self.rendered: list[RenderedStep] = []
        self.resolver = resolver

    # -- the case file, opened briefly so steps can take it -------------------------------
    def _case(self) -> Case:
        return Case(self.case_path, create=True, wait=max(self.options.wait, 30.0))

    def _insert_attempt(self, run_id: int, position: int, rs: RenderedStep, status: str, **extra: Any) -> int:
        with self._case() as case:
            attempt = case.db.execute("select coalesce(max(attempt), 0) + 1 from playbook_steps where run_id = ? and step = ?",
                                      [run_id, rs.step.id]).fetchone()[0]
            row = {"run_id": run_id, "position": position, "step": rs.step.id, "title": rs.title,
                   "phase": rs.step.phase, "kind": rs.step.kind, "owner": rs.owner,
                   "command": redact(rs.command_line) if rs.argv else None,
                   "instruction": redact(rs.instruction) if rs.instruction else None,
                   "attempt": attempt, "status": status, "started": utcnow()}
            row.update(extra)
            table = case.db["playbook_steps"]
            table.insert(row)
            return table.last_pk  # type: ignore[return-value]

    def _update(self, table: str, pk: int, values: dict[str, Any]) -> None:
        with self._case() as case:
            case.db[table].update(pk, values)

    # -- run selection --------------------------------------------------------------------
    def _variables_record(self) -> str:
        """What the run was started with: `set` (to continue it with), the resolved `values`, and
        which variables held secrets, which `redact` removes and a continued run must be given again."""
        redacted = sorted(k for k, v in self.assigned.items() if redact(json.dumps(v)) != json.dumps(v))
        return redact(json.dumps({"set": self.assigned, "values": self.resolver.cache, "redacted": redacted},
                                 sort_keys=True))

    def _latest_run(self) -> dict[str, Any] | None:
        """This playbook's latest run on the case (None for a new case); runs and steps a killed
        runner left 'running' are marked interrupted first: we hold the playbook lock now."""
        if not self.case_path.exists():
            return None
        with self._case() as case:
            with case.db.conn:
                case.db.execute("update playbook_steps set status = 'interrupted', ended = coalesce(ended, ?), "
                                "summary = coalesce(summary, 'the playbook run ended without finishing this step (killed?)') "
                                "where status = 'running'", [utcnow()])
                case.db.execute("update playbook_runs set status = 'interrupted', ended = coalesce(ended, ?) "
                                "where status = 'running'", [utcnow()])
            return next(iter(case.db.query("select * from playbook_runs where playbook = ? order by id desc limit 1",
                                           [self.playbook.name])), None)

    def _start_or_continue(self, latest: dict[str, Any] | None) -> tuple[int, bool]:
        with self._case() as case:
            runs = case.db["playbook_runs"]
            if latest is None:
                runs.insert({
                    "playbook": self.playbook.name, "title": self.playbook.title, "source": self.playbook.source,
                    "sha256": self.playbook.sha256, "variables": self._variables_record(),
                    "operator": self.options.operator, "started": utcnow(), "status": "running",
                    "steps": len(self.playbook.steps)})
                return runs.last_pk, False  # type: ignore[return-value]
            run_id = latest["id"]
            if latest["sha256"] != self.playbook.sha256:
                self.options.announce("note", f"the playbook changed since run {run_id} started; steps are matched by id")
            runs.update(run_id, {"status": "running", "ended": None, "stopped_at": None, "message": None,
                                 "source": self.playbook.source, "steps": len(self.playbook.steps),
                                 "sha256": self.playbook.sha256, "variables": self._variables_record()})
            return run_id, True

    def _merge_recorded(self, latest: dict[str, Any]) -> None:
        """A continued run keeps the variables it was started with, unless set again now."""
        recorded = _recorded_variables(latest)
        earlier = recorded.get("set", {})
        lost = sorted(k for k in recorded.get("redacted", []) if k not in self.assigned and k in self.playbook.variables)
        if lost:
            raise PlaybookUsageError(
                f"run {latest['id']} of {self.playbook.name} was started with secrets in {', '.join(lost)}, which the "
                f"case file does not keep; set {'it' if len(lost) == 1 else 'them'} again: "
                + " ".join(f"--set {n}=..." for n in lost))
        changed = sorted(k for k in self.assigned if k in earlier and earlier[k] != self.assigned[k])
        if changed:
            self.options.announce("note", f"continuing run {latest['id']} with {', '.join(changed)} changed; "
                                          "steps already done are not rerun (--restart reruns everything)")
        self.assigned = recorded_assignments(self.playbook, latest, self.assigned)

    def _latest_attempts(self, run_id: int) -> dict[str, dict[str, Any]]:
        with self._case() as case:
            rows = case.db.query("select * from playbook_steps where run_id = ? order by attempt", [run_id])
            return {row["step"]: row for row in rows}

    # -- the run --------------------------------------------------------------------------
    def execute(self) -> RunResult:
        self.case_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock = CaseLock(self.case_path, wait=self.options.wait, suffix="-playbook-lock",
                        holder="another camleak playbook run")
        try:
            return self._execute()
        finally:
            lock.release()

    def _execute(self) -> RunResult:
        latest = self._latest_run()
        if self.options.restart:
            latest = None
        if latest is not None:
            self._merge_recorded(latest)
        # every variable a step needs must be known before step 1 runs (or the record is touched)
        self.rendered, self.resolver = render_all(self.playbook, self.assigned)
        run_id, resumed = self._start_or_continue(latest)
        attempts = self._latest_attempts(run_id)
        status, stopped_at, message = "complete", None, ""
        current: str | None = None
        try:
            for position, rs in enumerate(self.rendered, 1):
                current = rs.step.id
                prev = attempts.get(rs.step.id)
                prev_status = prev["status"] if prev else None
                if prev_status in ("ok", "confirmed"):
                    continue
                if not rs.enabled:
                    if prev_status != "skipped":
                        self._insert_attempt(run_id, position, rs, "skipped", ended=utcnow(),
                                             summary=f"skipped: `when: {rs.step.when}` is empty")
                    self.options.announce("skipped", f"{rs.step.id}: {rs.title} (when: {rs.step.when} is empty)")
                    continue
                if rs.step.kind == "manual":
                    outcome = self._checkpoint(run_id, position, rs, prev_status)
                    if outcome == "stop":
                        status, stopped_at = "paused", rs.step.id
                        message = (f"paused at manual checkpoint '{rs.step.id}' ({rs.title}); when it is done, "
                                   f"rerun with --confirm {rs.step.id}")
                        break
                    continue
                if not self._command(run_id, position, rs):
                    status, stopped_at = "failed", rs.step.id
                    message = (f"step '{rs.step.id}' ({rs.title}) failed; fix the cause and rerun the same "
                               "command to continue from it")
                    break
        except KeyboardInterrupt:
            self._update("playbook_runs", run_id, {"status": "interrupted", "ended": utcnow(), "stopped_at": current,
                                                   "message": "interrupted; rerun the same command to continue"})
            raise
        states = self._states(run_id)
        if status == "complete" and any(s.status == "pending" for s in states):
            status = "pending"
            pending = [s.step for s in states if s.status == "pending"]
            message = (f"every automated step is done; manual checkpoints pending: {', '.join(pending)} "
                       f"(confirm with --confirm ID)")
        elif status == "complete":
            message = "every step is done"
        self._update("playbook_runs", run_id, {"status": status, "ended": utcnow(), "stopped_at": stopped_at,
                                               "message": message})
        return RunResult(run_id, status, resumed, stopped_at, message, states)

    def _states(self, run_id: int) -> list[StepState]:
        latest = self._latest_attempts(run_id)
        states = []
        for rs in self.rendered:
            row = latest.get(rs.step.id)
            states.append(StepState(rs.step.id, rs.title, rs.step.phase, rs.step.kind,
                                    row["status"] if row else "not-started", row["attempt"] if row else 0,
                                    row["summary"] if row else None, rs.owner, rs.command_line or None))
        return states

    def _checkpoint(self, run_id: int, position: int, rs: RenderedStep, prev_status: str | None) -> str:
        """Returns "done", "later" (pending, the run goes on) or "stop"."""
        opts = self.options
        if rs.step.id in opts.confirm:
            answer, note = "done", opts.note
        elif opts.interactive and opts.ask is not None:
            answer, note = opts.ask(rs)
        else:
            answer, note = "later", None
        if answer == "done":
            self._insert_attempt(run_id, position, rs, "confirmed", ended=utcnow(), confirmed_by=opts.operator,
                                 note=note, summary=f"confirmed by {opts.operator}")
            opts.announce("done", f"{rs.step.id}: {rs.title} (confirmed by {opts.operator})")
            return "done"
        if prev_status != "pending":
            self._insert_attempt(run_id, position, rs, "pending", ended=utcnow(), note=note,
                                 summary=f"awaiting {rs.owner or 'confirmation'}")
        if answer == "stop" or (not opts.interactive and rs.step.on_pending == "stop"):
            opts.announce("pending", f"{rs.step.id}: {rs.title} (awaiting {rs.owner or 'confirmation'}; the playbook "
                                     "stops here until it is confirmed)")
            return "stop"
        opts.announce("pending", f"{rs.step.id}: {rs.title} (awaiting {rs.owner or 'confirmation'}; going on)")
        return "later"

    def _command(self, run_id: int, position: int, rs: RenderedStep) -> bool:
        with self._case() as case:
            before = _case_counts(case)
            last_run = case.db.execute("select coalesce(max(id), 0) from runs").fetchone()[0]
        attempt_id = self._insert_attempt(run_id, position, rs, "running")
        self.options.announce("start", f"{rs.step.id}: {rs.title}\n$ {redact(rs.command_line)}")
        argv = [sys.executable, "-m", "camleak", "--wait", str(max(self.options.wait, 30.0))]
        argv += (["--debug"] if self.options.debug else []) + list(rs.argv)
        tail: deque[str] = deque(maxlen=OUTPUT_TAIL_LINES)
        started = time.monotonic()
        env = dict(os.environ, COLUMNS=os.environ.get("COLUMNS", "100"), PYTHONUNBUFFERED="1")
        try:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    text=True, errors="replace", env=env)
        except OSError as exc:
            self._update("playbook_steps", attempt_id, {"status": "failed", "ended": utcnow(),
                                                        "summary": f"could not start: {exc}"})
            return False
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                line = line.rstrip("\n")
                tail.append(line)
                self.options.echo(redact(line))
            code = proc.wait()
        except KeyboardInterrupt:
            try:
                code = proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
            self._finish_command(attempt_id, "interrupted", code, before, last_run, rs, tail, started)
            raise
        ok = code == 0
        summary = self._finish_command(attempt_id, "ok" if ok else "failed", code, before, last_run, rs, tail, started)
        self.options.announce("done" if ok else "failed", f"{rs.step.id}: {summary}")
        return ok

    def _finish_command(self, attempt_id: int, status: str, code: int, before: dict[str, int], last_run: int,
                        rs: RenderedStep, tail: deque, started: float) -> str:
        outputs = [d for d in (_describe_output(o) for o in rs.outputs) if d] if status == "ok" else []
        with self._case() as case:
            after = _case_counts(case)
            case_runs = [r[0] for r in case.db.execute("select id from runs where id > ? order by id", [last_run])]
            summary = _summary(before, after, outputs, code, tail)
            if code:  # an error line may quote a log value: keep the case's ids out of the summary
                summary = scrub_identifiers(summary, identifier_pattern(case_identifiers(case))) or summary
            case.db["playbook_steps"].update(attempt_id, {
                "status": status, "ended": utcnow(), "exit_code": code, "summary": summary,
                "output": redact("\n".join(tail)), "outputs": json.dumps(outputs), "case_runs": json.dumps(case_runs)})
        return summary


def _recorded_variables(run: dict[str, Any]) -> dict[str, Any]:
    try:
        recorded = json.loads(run["variables"] or "{}")
    except ValueError:
        return {}
    return recorded if isinstance(recorded, dict) and isinstance(recorded.get("set", {}), dict) else {}


def recorded_assignments(playbook: Playbook, run: dict[str, Any] | None, assigned: dict[str, Any]) -> dict[str, Any]:
    """The `--set` values a run was started with (secrets excepted), overridden by `assigned`:
    what a continued run, and `show` of it, use."""
    if run is None:
        return dict(assigned)
    recorded = _recorded_variables(run)
    merged = {k: v for k, v in recorded.get("set", {}).items()
              if k in playbook.variables and k not in recorded.get("redacted", [])}
    merged.update(assigned)
    return merged


def run_playbook(playbook: Playbook, assigned: dict[str, Any], options: RunOptions) -> RunResult:
    """Start or continue `playbook` on the case its `case` variable names; see PlaybookRun."""
    return PlaybookRun(playbook, assigned, options).execute()


def run_states(playbook: Playbook, assigned: dict[str, Any]) -> tuple[Path, dict[str, Any] | None, dict[str, dict]]:
    """The case path, its latest run of `playbook` and that run's latest attempt per step, for
    `camleak playbook show` (read-only; no case file is created)."""
    _, resolver = render_all(playbook, assigned, strict=False)
    case_path = Path(str(resolver.value("case")))
    if "case" in resolver.missing or not case_path.exists():
        return case_path, None, {}
    with Case(case_path, create=False) as case:
        run = next(iter(case.db.query("select * from playbook_runs where playbook = ? order by id desc limit 1",
                                      [playbook.name])), None)
        if run is None:
            return case_path, None, {}
        rows = case.db.query("select * from playbook_steps where run_id = ? order by attempt", [run["id"]])
        return case_path, run, {row["step"]: row for row in rows}
