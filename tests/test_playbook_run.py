"""Running playbooks end to end against simulated incidents: steps as real camleak child
processes, every attempt recorded in a real case file, pauses, failures and resumes."""

from __future__ import annotations

import csv
import json
import os
import socket
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from camleak.casefile import CaseLock
from camleak.cli import app
from camleak.simulate import SimParams, generate_incident

runner = CliRunner()


@pytest.fixture(scope="module")
def clean_incident(tmp_path_factory):
    """Post-fix traffic: the same kind of cloud with the bug gone (no leaked deliveries)."""
    return generate_incident(tmp_path_factory.mktemp("clean") / "inc", SimParams(seed=5, homes=6, hours=2, bug_rate=0.0), workers=1)


def inputs(inc, prefix: str = "") -> list[str]:
    """--set arguments naming a simulated incident's inputs (folders, as a responder would)."""
    sets = [f"{prefix}devices={inc.devices}", f"{prefix}logs={inc.root / 'logs'}", f"{prefix}snapshots={inc.root / 'snapshots'}"]
    if not prefix:
        sets.append(f"references={inc.root / 'references'}")
    return [arg for s in sets for arg in ("--set", s)]


def field_map_sets(inc) -> list[str]:
    return [arg for k, v in inc.field_map.items() for arg in ("--set", f"field_map={k}={v}")]


def play(*args: str, input: str | None = None):
    return runner.invoke(app, ["playbook", "run", *args], input=input)


def rows(case: Path, sql: str) -> list[dict]:
    db = sqlite3.connect(case)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute(sql)]
    finally:
        db.close()


def attempts(case: Path) -> list[dict]:
    return rows(case, "select * from playbook_steps order by id")


def latest(case: Path) -> dict[str, dict]:
    return {row["step"]: row for row in attempts(case)}  # rows by id: the last attempt wins


def runs(case: Path) -> list[dict]:
    return rows(case, "select * from playbook_runs order by id")


def accounts(inc) -> set[str]:
    with open(inc.devices, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {r["owner_account"] for r in rows} | {a for r in rows for a in (r["shared_accounts"] or "").split(";") if a}


def private(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) & 0o077 == 0


# ---------------------------------------------------------------------------------------
# The shipped playbooks, end to end, non-interactive
def test_cross_account_playbook_runs_end_to_end_then_resumes_into_verification(tiny_incident, clean_incident, tmp_path):
    case, reports = tmp_path / "case.db", tmp_path / "reports"
    result = play("cross-account-snapshot-leak", "--set", f"case={case}", "--set", f"reports={reports}",
                  *inputs(tiny_incident), "--operator", "oncall-amy")
    # Every automated step up to the recovery checkpoint ran; the run waits for the fix there.
    assert result.exit_code == 4, result.output
    assert "paused at manual checkpoint 'fix-and-reenable'" in " ".join(result.output.split())
    state = latest(case)
    for step in ("pull-evidence", "fingerprint", "cluster", "attribute", "report-json", "report-markdown",
                 "report-html", "notification-lists"):
        assert state[step]["status"] == "ok", (step, state[step])
        assert state[step]["exit_code"] == 0
    for step in ("confirm-report", "disable-integration", "start-regulator-clock", "hold-evidence", "notify", "fix-and-reenable"):
        assert state[step]["status"] == "pending"
    assert "verify-post-fix" not in state  # after the stop: not reached
    assert [r["status"] for r in runs(case)] == ["paused"]

    report = json.loads((reports / "report.json").read_text())
    pairs = report["summary"]["exposure_pairs"]
    assert pairs > 0
    assert state["attribute"]["summary"].startswith("exposure pairs 0 → " + f"{pairs:,}")
    assert "events 0 → " in state["pull-evidence"]["summary"]
    lists = reports / "notification-lists"
    assert sorted(p.name for p in lists.iterdir()) == ["both_roles.csv", "owner_delivered.csv", "owner_viewed.csv", "recipient_only.csv"]
    assert state["notification-lists"]["summary"] == f"wrote {lists}/ (4 files)"
    for path in (case, reports / "report.json", reports / "postmortem.md", reports / "report.html", lists, reports):
        assert private(path), path
    # Summaries are for postmortems: counts and file names, never an account id.
    known = accounts(tiny_incident)
    for row in attempts(case):
        assert not any(a in (row["summary"] or "") for a in known), row["summary"]
    assert "recipient accounts" in state["attribute"]["summary"]

    # The fix is in: confirm it and give the post-fix traffic; verification runs, nothing is redone.
    result = play("cross-account-snapshot-leak", "--set", f"case={case}", "--confirm", "fix-and-reenable",
                  "--note", "cache flushed, OPS-42", "--operator", "oncall-amy",
                  "--set", f"verify_case={tmp_path / 'verify.db'}", *inputs(clean_incident, "verify_"))
    assert result.exit_code == 0, result.output
    state = latest(case)
    assert state["fix-and-reenable"]["status"] == "confirmed"
    assert state["fix-and-reenable"]["confirmed_by"] == "oncall-amy"
    assert state["fix-and-reenable"]["note"] == "cache flushed, OPS-42"
    assert state["verify-post-fix"]["status"] == "ok" and state["verify-post-fix"]["exit_code"] == 0
    assert "--fail-on-exposure" in state["verify-post-fix"]["command"]
    assert sum(1 for a in attempts(case) if a["step"] == "pull-evidence") == 1
    assert [r["status"] for r in runs(case)] == ["pending"]  # checkpoints nobody confirmed stay pending
    assert "manual checkpoints pending: confirm-report" in runs(case)[0]["message"]
    assert (tmp_path / "verify.db").exists()

    # The postmortem's response timeline: every phase from detection to verification, in order.
    from camleak.reporting import load_schema
    import jsonschema
    out = runner.invoke(app, ["report", "--case", str(case), "--format", "json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    jsonschema.validate(report, load_schema())
    response = report["response"]
    assert [p["phase"] for p in response["phases"]] == ["detection", "containment", "evidence", "analysis",
                                                         "notification", "recovery", "verification"]
    phase_status = {p["phase"]: p["status"] for p in response["phases"]}
    assert phase_status["analysis"] == "done" and phase_status["verification"] == "done"
    assert phase_status["containment"] == "pending"
    steps = [(t["step"], t["status"]) for t in response["timeline"]]
    assert steps.index(("pull-evidence", "ok")) < steps.index(("attribute", "ok")) < steps.index(("verify-post-fix", "ok"))
    assert ("fix-and-reenable", "pending") in steps and ("fix-and-reenable", "confirmed") in steps
    run = response["playbook_runs"][0]
    assert (run["status"], run["steps_total"], run["steps_done"], run["steps_pending"]) == ("pending", 15, 10, 5)
    md = runner.invoke(app, ["report", "--case", str(case), "--format", "md"]).stdout
    assert "Response timeline" in md and "cache flushed, OPS-42" in md
    assert not any(a in md for a in known)


def test_a_failed_verification_stops_the_run_and_says_why(tiny_incident, tmp_path):
    """Post-fix traffic that still leaks: `--fail-on-exposure` exits 3 and the run fails there."""
    case = tmp_path / "case.db"
    common = ["--set", f"case={case}", "--set", f"reports={tmp_path / 'r'}", *inputs(tiny_incident),
              "--confirm", "fix-and-reenable", "--set", f"verify_case={tmp_path / 'verify.db'}",
              *inputs(tiny_incident, "verify_")]
    result = play("cross-account-snapshot-leak", *common)
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert "step 'verify-post-fix' (Verify post-fix traffic serves no other home's stills) failed" in text
    state = latest(case)
    assert state["verify-post-fix"]["status"] == "failed"
    assert state["verify-post-fix"]["summary"].startswith("exit 3 (exposures found)")
    assert runs(case)[0]["status"] == "failed" and runs(case)[0]["stopped_at"] == "verify-post-fix"


def test_thumbnail_playbook_produces_delivered_versus_viewed_lists(tiny_incident, tmp_path):
    case, reports = tmp_path / "case.db", tmp_path / "reports"
    result = play("thumbnail-mapping-mixup", "--set", f"case={case}", "--set", f"reports={reports}",
                  *inputs(tiny_incident), *field_map_sets(tiny_incident), "--json")
    assert result.exit_code == 4, result.output
    outcome = json.loads(result.stdout)
    assert outcome["status"] == "paused" and outcome["stopped_at"] == "fix-and-purge"
    by_id = {s["step"]: s for s in outcome["steps"]}
    assert by_id["notify-viewed"]["status"] == "pending" and by_id["notify-viewed"]["owner"] == "privacy team"
    assert by_id["verify-post-fix"]["status"] == "not-started"

    report = json.loads((reports / "report.json").read_text())
    groups = report["notification_groups"]
    lists = reports / "notification-lists"
    for name in ("owner_delivered", "owner_viewed", "recipient_only", "both_roles"):
        with open(lists / f"{name}.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert len(rows) == groups[name], name
    assert report["delivered_vs_viewed"]["events"]["viewed"] > 0
    assert sum(groups[n] for n in ("owner_delivered", "owner_viewed", "recipient_only", "both_roles")) > 0
    assert "(`owner_viewed`)" in (reports / "postmortem.md").read_text()


def test_template_playbook_runs_to_its_pending_notice(tiny_incident, tmp_path):
    case, reports = tmp_path / "case.db", tmp_path / "reports"
    result = play("template", "--set", f"case={case}", "--set", f"reports={reports}",
                  "--set", f"devices={tiny_incident.devices}", "--set", f"logs={tiny_incident.root / 'logs'}",
                  "--set", f"snapshots={tiny_incident.root / 'snapshots'}", *field_map_sets(tiny_incident))
    assert result.exit_code == 0, result.output
    assert (reports / "postmortem.md").is_file() and (reports / "notification-lists" / "owner_viewed.csv").is_file()
    state = latest(case)
    assert state["triage"]["status"] == "ok" and state["notify"]["status"] == "pending"
    assert runs(case)[0]["status"] == "pending"


# ---------------------------------------------------------------------------------------
# Resume, pause, confirm, interact: a small playbook with fast steps
SMALL = """\
format: camleak.playbook/1
name: small
title: Small
description: Fast steps for runner tests.
variables:
  case: {description: Case file.}
  devices: {description: Registry., default: []}
  logs: {description: Logs., default: []}
  gate: {description: "Whether the gate blocks.", default: stop}
steps:
  - id: registry
    phase: evidence
    title: Ingest the registry
    camleak: ingest devices
    options: {case: "${case}"}
    arguments: ["${devices}"]
  - id: gate
    phase: containment
    title: Disable the integration
    manual: Disable it.
    owner: integration owner
    on_pending: stop
  - id: logs
    phase: evidence
    title: Ingest the logs
    camleak: ingest logs
    options: {case: "${case}"}
    arguments: ["${logs}"]
"""


@pytest.fixture()
def small(tmp_path):
    folder = tmp_path / "books"
    folder.mkdir()
    (folder / "small.yaml").write_text(SMALL)
    (folder / "open.yaml").write_text(SMALL.replace("name: small", "name: open").replace("on_pending: stop", "on_pending: continue"))
    return folder


def test_resume_after_a_failed_step_continues_from_it(small, tiny_incident, tmp_path):
    case = tmp_path / "case.db"
    base = ["open", "--dir", str(small), "--set", f"case={case}", "--set", f"devices={tiny_incident.devices}"]
    result = play(*base, "--set", f"logs={tmp_path / 'missing.jsonl'}")
    assert result.exit_code == 1, result.output
    assert "step 'logs' (Ingest the logs) failed" in " ".join(result.output.split())
    state = latest(case)
    assert state["registry"]["status"] == "ok" and state["gate"]["status"] == "pending"
    assert state["registry"]["summary"] == f"devices 0 → {tiny_incident.counts['devices']}"
    assert state["logs"]["status"] == "failed" and state["logs"]["exit_code"] == 1
    assert "missing.jsonl" in state["logs"]["summary"] and "exit 1 (an input could not be used)" in state["logs"]["summary"]

    # Fixed input: the run continues at the failed step; the registry is not ingested again.
    result = play(*base, "--set", f"logs={tiny_incident.root / 'logs'}")
    assert result.exit_code == 0, result.output
    rows = attempts(case)
    assert [(r["step"], r["attempt"], r["status"]) for r in rows] == [
        ("registry", 1, "ok"), ("gate", 1, "pending"), ("logs", 1, "failed"), ("logs", 2, "ok")]
    assert "events 0 → " in rows[-1]["summary"]
    assert len(runs(case)) == 1 and runs(case)[0]["status"] == "pending"
    assert json.loads(rows[-1]["case_runs"])  # the step's own `runs` rows are linked

    # Nothing left to do but the checkpoint: a rerun adds no attempt; --restart starts run 2.
    assert play(*base).exit_code == 0
    assert len(attempts(case)) == 4
    result = play(*base, "--restart", "--confirm", "gate")  # a new run takes only today's --set values
    assert result.exit_code == 1 and "Missing argument" in latest(case)["logs"]["summary"]
    result = play(*base, "--set", f"logs={tiny_incident.root / 'logs'}")
    assert result.exit_code == 0, result.output
    assert [r["status"] for r in runs(case)] == ["pending", "complete"]
    assert [(r["run_id"], r["step"], r["status"]) for r in attempts(case)[4:]] == [
        (2, "registry", "ok"), (2, "gate", "confirmed"), (2, "logs", "failed"), (2, "logs", "ok")]


def test_a_blocking_checkpoint_pauses_until_confirmed(small, tiny_incident, tmp_path):
    case = tmp_path / "case.db"
    base = ["small", "--dir", str(small), "--set", f"case={case}", "--set", f"devices={tiny_incident.devices}",
            "--set", f"logs={tiny_incident.root / 'logs'}"]
    result = play(*base)
    assert result.exit_code == 4, result.output
    assert "rerun with --confirm gate" in " ".join(result.output.split())
    assert "logs" not in latest(case)

    result = play(*base, "--confirm", "registry")
    assert result.exit_code == 2 and "not a manual checkpoint of small" in result.stderr

    # `show` of the case's run: its state, and the commands with the values it was started with.
    shown = runner.invoke(app, ["playbook", "show", "small", "--dir", str(small), "--set", f"case={case}", "--markdown"])
    assert shown.exit_code == 0, shown.output
    assert "Run 1: paused." in shown.stdout
    assert "1. [x] **evidence**: Ingest the registry" in shown.stdout
    assert "2. [ ] **pending** **containment**: Disable the integration — *integration owner*" in shown.stdout
    assert f"`camleak ingest logs --case {case} {tiny_incident.root / 'logs'}`" in shown.stdout

    result = play(*base, "--confirm", "gate", "--operator", "bo", "--note", "disabled at 03:12, OPS-7")
    assert result.exit_code == 0, result.output
    state = latest(case)
    assert (state["gate"]["status"], state["gate"]["confirmed_by"], state["gate"]["note"]) == ("confirmed", "bo", "disabled at 03:12, OPS-7")
    assert state["logs"]["status"] == "ok"
    assert [a["step"] for a in attempts(case)].count("registry") == 1
    assert runs(case)[0]["status"] == "complete"


@pytest.mark.parametrize("answer,code,gate,logs_ran", [
    ("y\nswitched off the bridge\n", 0, "confirmed", True),
    ("l\n", 0, "pending", True),
    ("s\n", 4, "pending", False),
    ("", 4, "pending", False),  # stdin closed: treated as a run with nobody to ask
])
def test_interactive_checkpoints_ask_a_person(small, tiny_incident, tmp_path, answer, code, gate, logs_ran):
    case = tmp_path / "case.db"
    result = play("small", "--dir", str(small), "--set", f"case={case}", "--set", f"devices={tiny_incident.devices}",
                  "--set", f"logs={tiny_incident.root / 'logs'}", "--interactive", "--operator", "cy", input=answer)
    assert result.exit_code == code, result.output
    assert "Manual checkpoint: Disable the integration" in result.stderr and "integration owner" in result.stderr
    state = latest(case)
    assert state["gate"]["status"] == gate
    assert ("logs" in state) == logs_ran
    if gate == "confirmed":
        assert state["gate"]["note"] == "switched off the bridge" and state["gate"]["confirmed_by"] == "cy"


def test_missing_variables_are_a_usage_error_before_anything_runs(small, tmp_path):
    result = play("small", "--dir", str(small))
    assert result.exit_code == 2 and "--set case=PATH" in result.stderr
    result = play("small", "--dir", str(small), "--set", "nope=1")
    assert result.exit_code == 2 and "has no variable 'nope'" in result.stderr
    result = play("cross-account-snapshot-leak", "--set", f"case={tmp_path / 'c.db'}")
    assert result.exit_code == 2 and "needs since, until" in result.stderr
    assert not (tmp_path / "c.db").exists()


def test_a_second_runner_on_the_same_case_is_refused(small, tmp_path):
    case = tmp_path / "case.db"
    lock = CaseLock(case, suffix="-playbook-lock", holder="another camleak playbook run")
    try:
        proc = subprocess.run([sys.executable, "-m", "camleak", "playbook", "run", "small", "--dir", str(small),
                               "--set", f"case={case}"], capture_output=True, text=True, timeout=120)
    finally:
        lock.release()
    assert proc.returncode == 1, proc.stderr
    assert "in use by another camleak playbook run" in proc.stderr


def test_a_run_killed_mid_step_is_marked_interrupted_and_resumed(small, tiny_incident, tmp_path):
    case = tmp_path / "case.db"
    base = ["open", "--dir", str(small), "--set", f"case={case}", "--set", f"devices={tiny_incident.devices}",
            "--set", f"logs={tiny_incident.root / 'logs'}"]
    assert play(*base).exit_code == 0
    db = sqlite3.connect(case)
    with db:  # what a SIGKILLed runner leaves behind: its last step and run still 'running'
        db.execute("update playbook_steps set status = 'running', ended = null where step = 'logs'")
        db.execute("update playbook_runs set status = 'running'")
    db.close()
    result = play(*base)
    assert result.exit_code == 0, result.output
    rows = [(r["step"], r["attempt"], r["status"]) for r in attempts(case) if r["step"] == "logs"]
    assert rows == [("logs", 1, "interrupted"), ("logs", 2, "ok")]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_secrets_in_variables_never_reach_the_case_file(small, tmp_path):
    case = tmp_path / "case.db"
    book = small / "pull.yaml"
    book.write_text(SMALL.replace("name: small", "name: pull").replace(
        "    camleak: ingest logs\n    options: {case: \"${case}\"}\n    arguments: [\"${logs}\"]",
        "    camleak: pull\n    options: {case: \"${case}\", logs: \"${logs}\", retries: 1}").replace(
        "on_pending: stop", "on_pending: continue"))
    secret_url = f"http://amy:hunter2pw@127.0.0.1:{closed_port()}/logs.jsonl?token=tok3n-value"
    result = play("pull", "--dir", str(small), "--set", f"case={case}", "--set", f"logs={secret_url}")
    assert result.exit_code == 1, result.output
    assert "hunter2pw" not in result.output and "tok3n-value" not in result.output
    for path in case.parent.iterdir():
        if path.is_file():
            data = path.read_bytes()
            assert b"hunter2pw" not in data and b"tok3n-value" not in data, path
    result = play("pull", "--dir", str(small), "--set", f"case={case}")
    assert result.exit_code == 2
    assert "started with secrets in logs" in " ".join(result.stderr.split())


def test_ctrl_c_mid_step_records_it_interrupted_and_a_rerun_finishes(tiny_incident, tmp_path):
    """Ctrl-C reaches the runner and its step (one process group); both stop, the attempt is
    recorded as interrupted, and the same command picks the run up at that step."""
    import signal
    import time

    case = tmp_path / "case.db"
    cmd = [sys.executable, "-m", "camleak", "playbook", "run", "template", "--set", f"case={case}",
           "--set", f"reports={tmp_path / 'r'}", "--set", f"devices={tiny_incident.devices}",
           "--set", f"logs={tiny_incident.root / 'logs'}", "--set", f"snapshots={tiny_incident.root / 'snapshots'}",
           *field_map_sets(tiny_incident)]
    def as_at_a_terminal() -> None:
        # Ctrl-C as a shell in the foreground delivers it: default disposition, not blocked. A
        # test runner's worker may hand its children SIGINT ignored or blocked (both inherited
        # across exec), and the run then never sees the Ctrl-C at all.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=as_at_a_terminal)
    # The runner announces the step's command on stderr before it starts it: wait for that line
    # (polling the case file alone can miss the whole step on a busy machine, while the triage
    # holds its write lock), then for the attempt to be recorded as running.
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.strip().startswith("$ camleak triage"):
            break
    assert proc.poll() is None, "".join(seen)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if any(r["step"] == "triage" and r["status"] == "running" for r in attempts(case)):
                break
        except sqlite3.Error:
            pass
        time.sleep(0.05)
    time.sleep(0.3)  # inside the triage
    assert proc.poll() is None, "the playbook ended before the Ctrl-C: " + "".join(seen)
    os.killpg(proc.pid, signal.SIGINT)
    _, rest = proc.communicate(timeout=120)
    err = "".join(seen) + rest
    assert proc.returncode == 130, err
    assert "interrupted; rerun the same command to continue" in err
    assert [(r["step"], r["status"]) for r in attempts(case) if r["step"] == "triage"] == [("triage", "interrupted")]
    assert runs(case)[0]["status"] == "interrupted" and runs(case)[0]["stopped_at"] == "triage"

    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert [(r["attempt"], r["status"]) for r in attempts(case) if r["step"] == "triage"] == [(1, "interrupted"), (2, "ok")]
    assert runs(case)[0]["status"] == "pending"


def test_a_failure_summary_withholds_the_case_ids(small, tiny_incident, tmp_path):
    """A failed step's summary quotes its last error line; ids the case knows are withheld."""
    case = tmp_path / "case.db"
    account = sorted(accounts(tiny_incident))[0]
    (tmp_path / account).write_text("a file where the lists' folder should be")
    book = small / "lists.yaml"
    book.write_text(SMALL.replace("name: small", "name: lists").replace("on_pending: stop", "on_pending: continue").replace(
        "    camleak: ingest logs\n    options: {case: \"${case}\"}\n    arguments: [\"${logs}\"]",
        "    camleak: report\n    options: {case: \"${case}\", format: csv, output: \"${logs}\"}").replace(
        "default: []}\n  gate", "default: \"\"}\n  gate"))
    result = play("lists", "--dir", str(small), "--set", f"case={case}", "--set", f"devices={tiny_incident.devices}",
                  "--set", f"logs={tmp_path / account}")
    assert result.exit_code == 1, result.output
    summary = latest(case)["logs"]["summary"]
    assert summary.startswith("exit 1 (an input could not be used)") and "exists and is not a directory" in summary
    assert account not in summary and "[id withheld]" in summary
