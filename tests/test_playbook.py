"""The playbook format: loading, validation errors (file, line, problem), variables, rendering."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from camleak import playbook as _playbook
from camleak.cli import app, command_catalogue
from camleak.playbook import PlaybookError, PlaybookUsageError, discover, parse_assignments, read_source, render_all

COMMANDS = command_catalogue()  # the CLI hands its catalogue to the playbook layer, as in `camleak playbook`


def parse_playbook(text: str, source: str) -> _playbook.Playbook:
    return _playbook.parse_playbook(text, source, commands=COMMANDS)


def load(name: str, dirs=()) -> _playbook.Playbook:
    return _playbook.load(name, dirs, commands=COMMANDS)


runner = CliRunner()
REPO_PLAYBOOKS = Path(__file__).resolve().parent.parent / "playbooks"
SHIPPED = ("cross-account-snapshot-leak", "thumbnail-mapping-mixup", "template")

GOOD = """\
format: camleak.playbook/1
name: tiny
title: A tiny playbook
description: For tests.
variables:
  case:
    description: The case file.
    default: c.db
  logs:
    description: Logs.
    default: [a.jsonl]
  field_map:
    description: Field map.
    type: mapping
    default: {account_id: user.id}
  since:
    description: Window start.
  until:
    description: Window end.
  store:
    description: Store query, needs the window.
    default: "loki+http://127.0.0.1:3100?query={app=\\"x\\"}&from=${since}&to=${until}"
steps:
  - id: open
    phase: detection
    title: Open the incident
    manual: Open it, $$5 budget.
    owner: on-call
  - id: ingest
    phase: evidence
    title: Ingest logs
    camleak: ingest logs
    options:
      case: ${case}
      field: ${field_map}
    arguments: ["${logs}"]
  - id: report
    phase: notification
    title: Report
    camleak: report
    options: {case: "${case}", format: md, output: "out/${case}.md", fail-on-exposure: false}
"""


def parse(text: str) -> object:
    return parse_playbook(textwrap.dedent(text), "pb.yaml")


def test_every_shipped_playbook_is_valid_and_found_by_name():
    found = {f.name: f for f in discover()}
    for name in SHIPPED:
        assert name in found, f"{name} not discovered"
        pb = load(name)
        assert pb.name == name
        assert (REPO_PLAYBOOKS / f"{name}.yaml").read_text() == read_source(found[name].source)
        assert "case" in pb.variables
        phases = {s.phase for s in pb.steps}
        assert "notification" in phases and "detection" in phases
        assert any(s.kind == "manual" and s.owner for s in pb.steps)


def test_the_schema_phases_are_the_formats_phases():
    from camleak.playbook import PHASES, _schema
    assert _schema()["$defs"]["step"]["properties"]["phase"]["enum"] == list(PHASES)


@pytest.mark.parametrize("name", SHIPPED[:2])
def test_incident_playbooks_carry_the_six_runbook_sections(name):
    pb = load(name)
    assert set(pb.runbook) == {"contain", "preserve_evidence", "analyse", "notify", "recover", "verify"}
    assert all(len(text) > 80 for text in pb.runbook.values())
    assert {"containment", "evidence", "analysis", "notification", "recovery", "verification"} <= {s.phase for s in pb.steps}


# ---------------------------------------------------------------------------------------
# Malformed playbooks: each error names the file, the line and the problem.
BAD = [
    ("yaml-syntax", GOOD.replace("  - id: report\n", "  - id: report\n   bad: [\n"), 38, "not valid YAML"),
    ("unknown-step-key", GOOD.replace("    owner: on-call\n", "    owner: on-call\n    ownr: x\n"), 29, "unknown key 'ownr'"),
    ("bad-phase", GOOD.replace("phase: evidence", "phase: evidense"), 30, "'evidense' is not one of"),
    ("duplicate-step-id", GOOD.replace("  - id: report", "  - id: ingest"), 37, "already used by the step on line 29"),
    ("duplicate-key", GOOD.replace("    title: Report\n", "    title: Report\n    title: Again\n"), 40, "key 'title' appears twice"),
    ("undeclared-variable", GOOD.replace("case: ${case}\n      field", "case: ${cse}\n      field"), 34, "${cse} is not a declared variable"),
    ("unknown-command", GOOD.replace("camleak: ingest logs", "camleak: ingest log"), 32, "no command `camleak ingest log`"),
    ("unknown-option", GOOD.replace("      field: ${field_map}", "      fields: ${field_map}"), 35, "has no option --fields"),
    ("both-kinds", GOOD.replace("    owner: on-call\n", "    owner: on-call\n    camleak: summary\n"), 24, "not both"),
    ("no-case", GOOD.replace("  case:\n    description: The case file.\n    default: c.db\n", ""), 5, "'case' is missing"),
    ("runs-playbooks", GOOD.replace("camleak: report", "camleak: playbook run"), 40, "cannot run `camleak playbook`"),
    ("bad-format", GOOD.replace("camleak.playbook/1", "camleak.playbook/9"), 1, "must be 'camleak.playbook/1'"),
    ("owner-on-command", GOOD.replace("    camleak: report\n", "    camleak: report\n    owner: me\n"), 41, "only manual checkpoints have owner"),
    ("type-mismatch", GOOD.replace("type: mapping", "type: list"), 15, "the default is a mapping, but type says list"),
    ("bad-template", GOOD.replace("Open it, $$5 budget.", "Open it, ${5} budget."), 27, "malformed ${...}"),
    ("not-a-mapping", "- just\n- a list\n", 1, "a playbook is a mapping"),
]


@pytest.mark.parametrize("label,text,line,problem", BAD, ids=[b[0] for b in BAD])
def test_a_malformed_playbook_names_file_line_and_problem(label, text, line, problem):
    with pytest.raises(PlaybookError) as err:
        parse_playbook(text, "pb.yaml")
    message = str(err.value)
    assert message.startswith(f"pb.yaml, line {line}:"), message
    assert problem in message, message


def test_the_cli_reports_a_malformed_playbook_with_exit_1(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(GOOD.replace("phase: evidence", "phase: evidense"))
    for command in (["playbook", "show", str(path)], ["playbook", "run", str(path)]):
        result = runner.invoke(app, command)
        assert result.exit_code == 1, result.output
        assert f"{path}, line 30: steps[1].phase: 'evidense' is not one of" in " ".join(result.output.split())
    assert not (tmp_path / "c.db").exists()


def test_list_shows_a_broken_playbook_without_failing(tmp_path):
    (tmp_path / "broken.yaml").write_text("format: [\n")
    (tmp_path / "tiny.yaml").write_text(GOOD)
    result = runner.invoke(app, ["playbook", "list", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "tiny" in text and "A tiny playbook" in text and "cannot be used" in text
    for name in SHIPPED:
        assert name in text


def test_a_playbook_named_after_another_file_is_refused(tmp_path):
    (tmp_path / "other.yaml").write_text(GOOD)
    with pytest.raises(PlaybookError, match="differs from the file name 'other'"):
        load("other", [tmp_path])
    with pytest.raises(PlaybookUsageError, match="no playbook named 'nope'"):
        load("nope", [tmp_path])


# ---------------------------------------------------------------------------------------
# Variables and rendering
def rendered_argv(pb, sets: list[str]) -> dict[str, tuple[str, ...]]:
    steps, _ = render_all(pb, parse_assignments(pb, sets))
    return {r.step.id: r.argv for r in steps}


def test_rendering_substitutes_lists_mappings_and_flags():
    pb = parse(GOOD)
    argv = rendered_argv(pb, [])
    assert argv["ingest"] == ("ingest", "logs", "--case", "c.db", "--field", "account_id=user.id", "a.jsonl")
    assert argv["report"] == ("report", "--case", "c.db", "--format", "md", "--output", "out/c.db.md")
    argv = rendered_argv(pb, ["logs=x.jsonl", "logs=y.jsonl", "field_map=", "field_map=ts=time", "case=k.db"])
    assert argv["ingest"] == ("ingest", "logs", "--case", "k.db", "--field", "ts=time", "x.jsonl", "y.jsonl")
    steps, _ = render_all(pb, {})
    assert steps[0].instruction == "Open it, $5 budget."


def test_a_default_nobody_uses_needs_no_variables_but_a_used_one_does():
    pb = parse(GOOD.replace('arguments: ["${logs}"]', 'arguments: ["${store}"]'))
    with pytest.raises(PlaybookUsageError) as err:
        render_all(pb, {})
    assert "needs since, until" in str(err.value) and "--set since=..." in str(err.value)
    argv = rendered_argv(pb, ["since=2020-01-01T00:00:00Z", "until=2020-01-03"])
    assert argv["ingest"][-1] == 'loki+http://127.0.0.1:3100?query={app="x"}&from=2020-01-01T00:00:00Z&to=2020-01-03'
    assert rendered_argv(parse(GOOD), [])["ingest"][-1] == "a.jsonl"  # since/until unset: fine, unused


def test_set_errors_are_usage_errors():
    pb = parse(GOOD)
    with pytest.raises(PlaybookUsageError, match="has no variable 'nope'"):
        parse_assignments(pb, ["nope=1"])
    with pytest.raises(PlaybookUsageError, match="expected NAME=VALUE"):
        parse_assignments(pb, ["case"])
    with pytest.raises(PlaybookUsageError, match="write field_map=KEY=VALUE"):
        parse_assignments(pb, ["field_map=user.id"])


def test_a_list_inside_longer_text_and_circular_defaults_are_errors():
    pb = parse(GOOD.replace('output: "out/${case}.md"', 'output: "out/${logs}.md"'))
    with pytest.raises(PlaybookError, match=r"\$\{logs\} is a list and cannot be part of longer text"):
        render_all(pb, {})
    circular = GOOD.replace("    default: c.db", "    default: ${store}").replace("&to=${until}", "&to=${case}")
    with pytest.raises(PlaybookError, match="in a circle: case -> store -> case"):
        render_all(parse(circular), {"since": "x"})


def test_yaml_dates_and_yes_no_stay_text():
    pb = parse(GOOD.replace("    description: Window start.\n", "    description: Window start.\n    default: 2020-01-02\n")
               .replace("    default: [a.jsonl]", "    default: [no, on]"))
    assert pb.variables["since"].default == "2020-01-02"
    assert pb.variables["logs"].default == ["no", "on"]


def test_show_prints_the_checklist_with_values_and_markdown(tmp_path):
    (tmp_path / "tiny.yaml").write_text(GOOD)
    result = runner.invoke(app, ["playbook", "show", "tiny", "--dir", str(tmp_path), "--set", "case=z.db"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "$ camleak ingest logs --case z.db --field account_id=user.id a.jsonl" in text
    assert "Open it, $5 budget." in text and "on-call" in text
    assert "(not set: not needed" in text and "(not set: required)" not in text
    result = runner.invoke(app, ["playbook", "show", "cross-account-snapshot-leak", "--markdown"])
    assert result.exit_code == 0, result.output
    assert "- **Contain.**" in result.output
    assert "1. [ ] **detection**: Confirm the report and open the incident — *on-call engineer*" in result.output
    assert "from=<since>&to=<until>" in result.output
