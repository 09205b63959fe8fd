"""Behaviour tests: drive the CLI on simulated incidents and check answers against the truth."""

from __future__ import annotations

import json
import os
import stat
import sqlite3

import pytest
import typer
from typer.testing import CliRunner

from camleak import REPORT_SCHEMA, __version__
from camleak.casefile import Case
from camleak.cli import app
from camleak.score import score_case

runner = CliRunner()


def triage_args(inc, case):
    return inc.triage_args(case) + ["--workers", "2"]


def report_of(case):
    result = runner.invoke(app, ["report", "--case", str(case), "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    data.pop("generated_at")
    return data


def report_text(case):
    """The JSON report as bytes, with only the generation time blanked."""
    result = runner.invoke(app, ["report", "--case", str(case), "--format", "json"])
    assert result.exit_code == 0, result.output
    generated = json.loads(result.stdout)["generated_at"]
    return result.stdout.replace(f'"generated_at": "{generated}"', '"generated_at": "-"')


def table_counts(case):
    with sqlite3.connect(case) as conn:
        names = [r[0] for r in conn.execute("select name from sqlite_master where type='table' and name != 'runs'")]
        return {n: conn.execute(f"select count(*) from [{n}]").fetchone()[0] for n in names}


@pytest.fixture(scope="module")
def triaged(tiny_incident, tmp_path_factory):
    case = tmp_path_factory.mktemp("case") / "case.db"
    result = runner.invoke(app, triage_args(tiny_incident, case))
    assert result.exit_code == 0, result.output
    return case, result


def test_triage_finds_the_true_exposures(triaged, tiny_incident):
    case, result = triaged
    with Case(case) as c:
        score = score_case(c, tiny_incident.truth)
    pairs = score["exposure_pairs"]
    assert pairs["true"] > 0
    assert pairs["precision"] == 1.0, pairs["false_positive"]
    assert pairs["recall"] >= 0.9
    assert pairs["home_mixups_reported"] == 0
    assert score["snapshot_attribution"]["uninformative_attributed"] == 0
    assert score["snapshot_attribution"]["precision"] >= 0.99
    assert "received frames from" in result.stdout


def test_report_follows_the_contract(triaged, tiny_incident):
    case, _ = triaged
    report = report_of(case)
    assert report["schema"] == REPORT_SCHEMA
    s = report["summary"]
    assert s["exposure_pairs"] == len(report["exposures"]) > 0
    assert s["recipient_accounts"] == len(report["recipients"])
    assert s["owners_affected"] == len(report["owners"])
    assert s["viewed_events"] == sum(e["viewed_events"] for e in report["exposures"])
    truth = json.loads(tiny_incident.truth.read_text())
    for e in report["exposures"]:
        assert set(e) >= {"recipient_account", "source_device", "source_home", "source_owner", "events", "viewed_events",
                          "snapshots", "first_seen", "last_seen", "integrations", "evidence", "confidence"}
        assert e["evidence"] in ("content", "log") and 0 < e["confidence"] <= 1
        assert e["first_seen"] <= e["last_seen"]
        assert e["first_seen"] >= truth["bug_window"][0][:19]
    for o in report["owners"]:
        recipient = o["owner_account"] in {r["account"] for r in report["recipients"]}
        assert o["group"] == ("both_roles" if recipient else "owner_viewed" if o["viewed"] else "owner_delivered")
    reasons = {u["reason"] for u in report["unattributed"]}
    assert any(r.startswith("uninformative") for r in reasons)
    kinds = {w["kind"]: w for w in report["warnings"]}
    malformed = len(truth["malformed_lines"])
    assert kinds["malformed_log_line"]["count"] == malformed


def test_triage_twice_gives_the_same_report_and_rows(triaged, tiny_incident):
    case, _ = triaged
    before, counts = report_text(case), table_counts(case)
    result = runner.invoke(app, triage_args(tiny_incident, case))
    assert result.exit_code == 0, result.output
    assert report_text(case) == before
    assert table_counts(case) == counts
    with sqlite3.connect(case) as conn:
        runs = conn.execute("select command, status, counts from runs order by id").fetchall()
    assert [r[0] for r in runs].count("ingest") == 2 and all(r[1] == "ok" for r in runs)
    second_ingest = json.loads([r for r in runs if r[0] == "ingest"][1][2])
    assert second_ingest["logs"]["new_files"] == 0 and second_ingest["snapshots"]["items"] == 0


def test_stepwise_commands_reach_the_same_report(triaged, tiny_incident, tmp_path):
    case, _ = triaged
    step = tmp_path / "step.db"
    fields = [a for k, v in tiny_incident.field_map.items() for a in ("--field", f"{k}={v}")]
    for args in (["ingest", "devices", "--case", str(step), str(tiny_incident.devices)],
                 ["ingest", "logs", "--case", str(step), *fields, *map(str, tiny_incident.logs)],
                 ["ingest", "snapshots", "--case", str(step), *map(str, tiny_incident.snapshots)],
                 ["ingest", "references", "--case", str(step), *map(str, tiny_incident.references)],
                 ["fingerprint", "--case", str(step), "--workers", "1"],
                 ["cluster", "--case", str(step)],
                 ["attribute", "--case", str(step)]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
    a, b = report_of(case), report_of(step)
    assert a["exposures"] == b["exposures"] and a["summary"] == b["summary"]


def test_outputs_are_owner_only(triaged, tmp_path):
    case, _ = triaged
    old = os.umask(0o022)
    try:
        assert runner.invoke(app, ["report", "--case", str(case), "-o", str(tmp_path / "r.json")]).exit_code == 0
        assert runner.invoke(app, ["export", "snapshots", "--case", str(case), "-o", str(tmp_path / "s.jsonl")]).exit_code == 0
    finally:
        os.umask(old)
    for name in ("r.json", "s.jsonl"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    assert stat.S_IMODE(case.stat().st_mode) == 0o600


def test_export_snapshots(triaged, tiny_incident):
    case, _ = triaged
    result = runner.invoke(app, ["export", "snapshots", "--case", str(case)])
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    truth = json.loads(tiny_incident.truth.read_text())["snapshots"]
    assert len(lines) == len(truth)
    for row in lines:
        assert set(row) >= {"snapshot", "cluster", "source_device", "attribution", "confidence", "quality", "hashes"}
        if row["source_device"]:
            assert row["attribution"] in ("reference", "logs")
            assert truth[row["snapshot"]]["informative"]


def test_fail_on_exposure_exits_3(triaged):
    case, _ = triaged
    assert runner.invoke(app, ["summary", "--case", str(case), "--fail-on-exposure"]).exit_code == 3
    assert runner.invoke(app, ["report", "--case", str(case), "--fail-on-exposure"]).exit_code == 3
    assert runner.invoke(app, ["summary", "--case", str(case)]).exit_code == 0


def test_missing_input_exits_1_naming_it(tiny_incident, tmp_path):
    args = triage_args(tiny_incident, tmp_path / "c.db")
    args[args.index("--logs") + 1] = str(tmp_path / "missing.jsonl")
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert "missing.jsonl" in result.stderr and "not found" in result.stderr
    assert "Traceback" not in result.output


def test_usage_errors_exit_2(tmp_path):
    assert runner.invoke(app, ["triage", "--nope"]).exit_code == 2
    result = runner.invoke(app, ["ingest", "logs", "--case", str(tmp_path / "c.db"), "--field", "bogus=x", str(tmp_path)])
    assert result.exit_code == 2 and "bogus" in result.stderr
    assert runner.invoke(app, ["report", "--case", str(tmp_path / "c.db"), "--format", "pdf"]).exit_code == 2


def test_missing_case_exits_1(tmp_path):
    result = runner.invoke(app, ["report", "--case", str(tmp_path / "none.db")])
    assert result.exit_code == 1 and "none.db: no such case file" in result.stderr


def test_not_a_case_file_exits_1(tmp_path):
    (tmp_path / "junk.db").write_text("this is not sqlite" * 100)
    result = runner.invoke(app, ["summary", "--case", str(tmp_path / "junk.db")])
    assert result.exit_code == 1 and "junk.db" in result.stderr


def test_unexpected_errors_exit_70_with_one_line(monkeypatch, tmp_path, tiny_incident):
    from camleak import pipeline

    def boom(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(pipeline, "triage", boom)
    result = runner.invoke(app, triage_args(tiny_incident, tmp_path / "c.db"))
    assert result.exit_code == 70
    assert "disk on fire" in result.stderr and "Traceback" not in result.stderr
    result = runner.invoke(app, ["--debug", *triage_args(tiny_incident, tmp_path / "c.db")])
    assert result.exit_code == 70 and "Traceback" in result.stderr


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.stdout


def _commands(group, prefix=()):
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from _commands(command, prefix + (name,))
        else:
            yield prefix + (name,), command


def test_every_command_and_option_has_help():
    root = typer.main.get_command(app)
    missing = []
    for path, command in _commands(root):
        if not (command.help or "").strip():
            missing.append(" ".join(path))
        for param in command.params:
            if param.param_type_name == "option" and not (param.help or "").strip():
                missing.append(f"{' '.join(path)} {param.opts[0]}")
            if param.param_type_name == "argument" and not getattr(param, "help", None):
                missing.append(f"{' '.join(path)} {param.name}")
    assert missing == []


def test_every_command_is_in_the_readme():
    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md")).read()
    root = typer.main.get_command(app)
    absent = [" ".join(path) for path, _ in _commands(root) if f"camleak {path[0]}" not in readme]
    assert absent == []


def test_a_bad_input_keeps_what_was_already_ingested(tiny_incident, tmp_path):
    bad = tmp_path / "broken.tar.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00" + b"garbage" * 100)
    case = tmp_path / "c.db"
    args = triage_args(tiny_incident, case)
    args[args.index("--snapshots") + 1] = str(bad)
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "broken.tar.gz" in result.stderr
    with Case(case) as c:
        assert c.count("events") > 0 and c.count("devices") > 0
        assert c.count("inputs", "kind = 'snapshots' and status = 'complete'") == 0
        assert next(c.db.query("select status from runs order by id desc limit 1"))["status"] == "failed"
    # fixing the input and rerunning completes the case
    assert runner.invoke(app, triage_args(tiny_incident, case)).exit_code == 0


def test_another_sqlite_database_is_not_touched(tmp_path):
    other = tmp_path / "app.db"
    with sqlite3.connect(other) as conn:
        conn.execute("create table users (id integer)")
    result = runner.invoke(app, ["ingest", "devices", "--case", str(other), str(tmp_path)])
    assert result.exit_code == 1 and "not a camleak case file" in result.stderr
    with sqlite3.connect(other) as conn:
        assert [r[0] for r in conn.execute("select name from sqlite_master where type='table'")] == ["users"]
        assert conn.execute("pragma journal_mode").fetchone()[0] == "delete"
