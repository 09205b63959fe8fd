"""The response timeline in every report format, from playbook rows recorded in a real case file.

The case is a real triage of the tiny simulated incident (so the rest of the report is real);
the playbook tables are filled directly, as `camleak playbook run` records them: two runs of one
playbook (a failed step resumed, a manual checkpoint left pending then confirmed) and an
interrupted run of another.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
from markdown_it import MarkdownIt
from typer.testing import CliRunner

from htmlpage import Page  # tests/ helper module
from camleak import pipeline
from camleak.casefile import Case
from camleak.cli import app
from camleak.reporting import load_schema
from camleak.response import case_identifiers

runner = CliRunner()

OUTPUT_MARKER = "zz-output-tail-7f3e"  # only ever in a step's captured output
HOSTILE_NOTE = "paged by <script>alert(1)</script> | second | cell & more\nnext line"
PLAYBOOK = "cross-account-snapshot-leak"
OTHER = "thumbnail-mapping-mixup"
TRIAGE_CMD = "camleak triage --case /cases/inc-42.db --logs 'https://logs.internal/x?sig=***' --snapshots served.tar.gz"
CSV_CMD = "camleak report --case /cases/inc-42.db --format csv -o notify/"


@pytest.fixture(scope="module")
def triaged(tiny_incident, tmp_path_factory):
    path = tmp_path_factory.mktemp("response") / "case.db"
    inc = tiny_incident
    with Case(path) as case:
        pipeline.triage(case, pipeline.TriageInputs(devices=[inc.devices], logs=inc.logs, snapshots=inc.snapshots,
                                                    references=inc.references, field_map=inc.field_map),
                        pipeline.TriageSettings(workers=2))
    return path


def _step(id, run_id, position, step, phase, kind, status, started, ended, attempt=1, **extra):
    row = {"id": id, "run_id": run_id, "position": position, "step": step, "title": extra.pop("title", step.replace("-", " ").capitalize()),
           "phase": phase, "kind": kind, "owner": None, "command": None, "instruction": None, "attempt": attempt,
           "status": status, "started": started, "ended": ended, "exit_code": None, "summary": None, "output": None,
           "outputs": "[]", "confirmed_by": None, "note": None, "case_runs": "[]"}
    row.update(extra)
    return row


@pytest.fixture(scope="module")
def with_runs(triaged, tmp_path_factory):
    """A copy of the triaged case with three playbook runs; returns (path, ids named in notes)."""
    path = tmp_path_factory.mktemp("runs") / "case.db"
    with Case(triaged, create=False) as case:
        case.db.execute("vacuum into ?", [str(path)])
    with Case(path, create=False) as case:
        recipient = next(case.db.query("select recipient_account from exposures order by 1 limit 1"))["recipient_account"]
        exposed = {r["a"] for r in case.db.query("select recipient_account a from exposures union select source_owner from exposures")}
        bystander = sorted(case_identifiers(case) - exposed - {d["device_id"] for d in case.db.query("select device_id from devices")}
                           - {d["home_id"] for d in case.db.query("select home_id from devices")})[0]
        runs = [
            {"id": 1, "playbook": PLAYBOOK, "title": "Cross-account snapshot leak", "source": "playbooks/x.yaml", "sha256": "0" * 64,
             "variables": "{}", "operator": "alice", "started": "2026-11-20T11:00:00Z", "ended": "2026-11-20T11:05:00Z",
             "status": "failed", "stopped_at": "triage", "message": "step triage failed (exit 1); resume with --resume"},
            {"id": 2, "playbook": PLAYBOOK, "title": "Cross-account snapshot leak", "source": "playbooks/x.yaml", "sha256": "0" * 64,
             "variables": "{}", "operator": "bob", "started": "2026-11-20T12:00:00Z", "ended": "2026-11-20T12:20:00Z",
             "status": "paused", "stopped_at": "notify-regulator", "message": None},
            {"id": 3, "playbook": OTHER, "title": "Thumbnail mapping mix-up", "source": "builtin:t.yaml", "sha256": "1" * 64,
             "variables": "{}", "operator": "carol", "started": "2026-11-20T13:00:00Z", "ended": None,
             "status": "interrupted", "stopped_at": None, "message": None},  # killed: where it stopped is the step left interrupted
        ]
        steps = [
            # ids deliberately not in time order; 22 and 23 start in the same second (id breaks the tie)
            _step(23, 2, 4, "report-csv", "notification", "camleak", "ok", "2026-11-20T12:03:10Z", "2026-11-20T12:03:14Z",
                  command=CSV_CMD, exit_code=0, summary="4 lists: 6 + 5 + 14 + 20 accounts", outputs='["notify/"]'),
            _step(11, 1, 1, "detect", "detection", "manual", "confirmed", "2026-11-20T11:00:00Z", "2026-11-20T11:00:30Z",
                  owner="on-call", instruction="Confirm the alert", confirmed_by="alice", note=HOSTILE_NOTE),
            _step(13, 1, 3, "triage", "analysis", "camleak", "failed", "2026-11-20T11:01:00Z", "2026-11-20T11:05:00Z",
                  command=TRIAGE_CMD, exit_code=1, summary="an input could not be used",
                  output=f"error: {recipient} ... {OUTPUT_MARKER}"),
            _step(12, 1, 2, "disable-integration", "containment", "manual", "pending", "2026-11-20T11:00:40Z", "2026-11-20T11:00:40Z",
                  owner="integrations-team", instruction="Disable the integration"),
            _step(21, 2, 3, "triage", "analysis", "camleak", "ok", "2026-11-20T12:00:00Z", "2026-11-20T12:03:00Z", attempt=2,
                  command=TRIAGE_CMD, exit_code=0, summary="41 exposure pairs, 30 recipient accounts", output=OUTPUT_MARKER),
            _step(22, 2, 2, "disable-integration", "containment", "manual", "confirmed", "2026-11-20T12:03:10Z", "2026-11-20T12:03:10Z",
                  attempt=2, owner="integrations-team", confirmed_by="bob",
                  note=f"also disabled for {recipient} and {bystander}"),
            _step(24, 2, 5, "notify-regulator", "notification", "manual", "pending", "2026-11-20T12:03:20Z", None,
                  owner="privacy-lead", instruction="Start the 72-hour regulator clock"),
            _step(31, 3, 1, "restore-integration", "recovery", "camleak", "interrupted", "2026-11-20T13:00:05Z", None,
                  command="camleak summary --case /cases/inc-42.db"),
        ]
        with case.db.conn:
            case.db["playbook_runs"].insert_all(runs)
            case.db["playbook_steps"].insert_all(steps)
    return path, {"recipient": recipient, "bystander": bystander}


def _report(path: Path, fmt: str) -> str:
    result = runner.invoke(app, ["report", "--case", str(path), "--format", fmt])
    assert result.exit_code == 0, result.output
    return result.stdout


# -- JSON -----------------------------------------------------------------------------------
def test_json_response_validates_and_states_the_runs(with_runs):
    path, _ = with_runs
    text = _report(path, "json")
    r = json.loads(text)
    schema = load_schema()
    jsonschema.validate(r, schema, cls=jsonschema.Draft202012Validator)
    resp = r["response"]
    assert OUTPUT_MARKER not in text  # a step's captured output never reaches the report

    assert [(x["run"], x["status"], x["stopped_at"], x["steps_total"], x["steps_done"], x["steps_pending"])
            for x in resp["playbook_runs"]] == [
        (1, "failed", "triage", 3, 1, 1),  # detect confirmed; disable pending; triage failed
        (2, "paused", "notify-regulator", 4, 3, 1),  # triage ok, disable confirmed, csv ok; regulator pending
        (3, "interrupted", "restore-integration", 1, 0, 0),
    ]
    assert [(a["run"], a["step"], a["attempt"], a["status"]) for a in resp["timeline"]] == [
        (1, "detect", 1, "confirmed"),
        (1, "disable-integration", 1, "pending"),
        (1, "triage", 1, "failed"),
        (2, "triage", 2, "ok"),
        (2, "disable-integration", 2, "confirmed"),
        (2, "report-csv", 1, "ok"),
        (2, "notify-regulator", 1, "pending"),
        (3, "restore-integration", 1, "interrupted"),
    ]
    by_step = {(a["run"], a["step"]): a for a in resp["timeline"]}
    failed = by_step[(1, "triage")]
    assert (failed["seconds"], failed["exit_code"], failed["command"], failed["playbook"]) == (240, 1, TRIAGE_CMD, PLAYBOOK)
    assert by_step[(2, "report-csv")]["outputs"] == ["notify/"]
    assert by_step[(2, "notify-regulator")]["seconds"] is None
    assert by_step[(1, "detect")]["note"] == HOSTILE_NOTE  # the JSON keeps the operator's words as written
    assert all("output" not in a for a in resp["timeline"])

    assert [(p["phase"], p["status"], p["steps"]) for p in resp["phases"]] == [
        ("detection", "done", 1),
        ("containment", "done", 1),  # pending in run 1, confirmed later: the latest attempt decides
        ("analysis", "done", 1),  # failed in run 1, ok on resume
        ("notification", "pending", 2),
        ("recovery", "failed", 1),  # interrupted
    ]
    notification = resp["phases"][3]
    assert (notification["first_started"], notification["last_ended"]) == ("2026-11-20T12:03:10Z", "2026-11-20T12:03:14Z")


def test_schema_is_strict_about_the_response(with_runs):
    path, _ = with_runs
    schema = load_schema()
    r = json.loads(_report(path, "json"))
    for damage in (lambda x: x["response"]["timeline"][0].update(output="tail"),
                   lambda x: x["response"]["timeline"][0].update(phase="lunch"),
                   lambda x: x["response"]["playbook_runs"][0].update(status="done"),
                   lambda x: x["response"]["phases"][0].update(status="ok"),
                   lambda x: x.pop("response")):
        broken = json.loads(json.dumps(r))
        damage(broken)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema, cls=jsonschema.Draft202012Validator)


def test_a_phase_with_a_running_step_and_nothing_failed_reads_running(with_runs, tmp_path):
    from camleak.report import build_report
    path, _ = with_runs
    copy = tmp_path / "case.db"
    with Case(path, create=False) as case:
        case.db.execute("vacuum into ?", [str(copy)])
    with Case(copy, create=False) as case:
        with case.db.conn:
            case.db.execute("update playbook_steps set status = 'running', ended = null where id = 31")
            case.db.execute("update playbook_steps set status = 'confirmed', confirmed_by = 'dora' where id = 24")
            # the runner's status for a run whose automated steps are done but a checkpoint is not
            case.db.execute("update playbook_runs set status = 'pending', stopped_at = null where id = 2")
            # a resumed run keeps its previous stop in the record while it runs again
            case.db.execute("update playbook_runs set status = 'running', ended = null where id = 1")
        r = json.loads(json.dumps(build_report(case)))
    jsonschema.validate(r, load_schema(), cls=jsonschema.Draft202012Validator)
    resp = r["response"]
    assert {p["phase"]: p["status"] for p in resp["phases"]} == {
        "detection": "done", "containment": "done", "analysis": "done", "notification": "done", "recovery": "running"}
    assert [(x["run"], x["status"], x["stopped_at"]) for x in resp["playbook_runs"]] == [
        (1, "running", None), (2, "pending", None), (3, "interrupted", "restore-integration")]
    result = runner.invoke(app, ["summary", "--case", str(copy)])
    assert result.exit_code == 0, result.output
    assert f"Response: {PLAYBOOK} run 2 pending (4 of 4 steps done)" in " ".join(result.stdout.split())


# -- Markdown -------------------------------------------------------------------------------
def _md_tables(md: str) -> Page:
    """The Markdown as a GFM renderer with raw HTML allowed sees it."""
    page = Page()
    page.feed(MarkdownIt("commonmark", {"html": True}).enable("table").render(md))
    return page


def test_markdown_response_tables_parse_and_hold_no_ids_or_commands(with_runs):
    path, named = with_runs
    md = _report(path, "md")
    assert "### Response timeline" in md
    page = _md_tables(md)
    tables = {rows[0][0]: rows for rows in page.tables.values()}
    phases = tables["phase"]
    assert phases[0] == ["phase", "from", "to", "steps", "status"]
    assert [row[0] for row in phases[1:]] == ["detection", "containment", "analysis", "notification", "recovery"]
    assert [row[4] for row in phases[1:]] == ["done", "done", "done", "pending", "failed"]
    steps = tables["time (UTC)"]
    assert all(len(row) == 7 for row in steps)  # a `|` in a note does not add a cell
    assert len(steps) == 1 + 8
    rows = {(row[2], row[0]): row for row in steps[1:]}
    detect = rows[("Detect", "2026-11-20 11:00:00 UTC")]
    assert detect[6] == " ".join(HOSTILE_NOTE.split())  # the note reads as written, on one line
    assert detect[4] == "on-call / alice"
    assert rows[("Triage", "2026-11-20 11:01:00 UTC")][3] == "FAILED (exit 1)"
    assert rows[("Triage", "2026-11-20 12:00:00 UTC")][3] == "ok, attempt 2"
    assert rows[("Notify regulator", "2026-11-20 12:03:20 UTC")][3].startswith("pending")
    assert "<script" not in page.tags and "script" not in page.tags  # no raw HTML got through

    # No identifiers: neither the exposed account nor a bystander named in a note, nor any other.
    with Case(path, create=False) as case:
        ids = case_identifiers(case)
    assert named["recipient"] in ids and named["bystander"] in ids
    assert not [i for i in ids if re.search(rf"(?<![\w-]){re.escape(i)}(?![\w-])", md)]
    assert "also disabled for [id withheld] and [id withheld]" in md
    # No commands, no captured output.
    assert "--case" not in md and "camleak triage" not in md and OUTPUT_MARKER not in md


def test_markdown_and_html_have_no_response_section_without_runs(triaged):
    r = json.loads(_report(triaged, "json"))
    assert r["response"] == {"playbook_runs": [], "timeline": [], "phases": []}
    jsonschema.validate(r, load_schema(), cls=jsonschema.Draft202012Validator)
    assert "Response timeline" not in _report(triaged, "md")
    assert 'id="response"' not in _report(triaged, "html")
    result = runner.invoke(app, ["summary", "--case", str(triaged)])
    assert result.exit_code == 0 and "Response:" not in result.stdout


# -- HTML -----------------------------------------------------------------------------------
def test_html_shows_the_timeline_and_escapes_notes(with_runs, tmp_path):
    path, named = with_runs
    out = tmp_path / "r.html"
    result = runner.invoke(app, ["report", "--case", str(path), "--format", "html", "-o", str(out)])
    assert result.exit_code == 0, result.output
    html = out.read_text()
    page = Page()
    page.feed(html)
    assert "script" not in page.tags
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "default-src 'none'" in html and OUTPUT_MARKER not in html
    runs = page.tables["response-runs"]
    assert [row[0] for row in runs[1:]] == ["1", "2", "3"]
    assert runs[2][2] == "paused at notify-regulator" and runs[2][6] == "3 / 4 (1 pending)"
    phases = {row[0]: row[4] for row in page.tables["response-phases"][1:]}
    assert phases == {"detection": "done", "containment": "done", "analysis": "done", "notification": "pending", "recovery": "failed"}
    steps = page.tables["response-steps"]
    assert len(steps) == 1 + 8 and all(len(row) == 8 for row in steps)
    detect = steps[1]
    assert detect[7] == " ".join(HOSTILE_NOTE.split())
    assert detect[1] == "30 s" and detect[4] == "confirmed"
    failed = steps[3]
    assert TRIAGE_CMD in failed[3] and failed[4] == "FAILED (exit 1)" and failed[1] == "240 s"
    assert "wrote notify/" in steps[6][6]


# -- terminal summary -----------------------------------------------------------------------
def test_summary_names_each_playbooks_latest_run(with_runs):
    path, _ = with_runs
    result = runner.invoke(app, ["summary", "--case", str(path)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert (f"Response: {OTHER} run 3 interrupted at 'restore-integration' (0 of 1 steps done)") in text
    assert (f"Response: {PLAYBOOK} run 2 paused at 'notify-regulator' (3 of 4 steps done; "
            "1 awaiting confirmation); 1 earlier run in `camleak report`") in text
    assert OUTPUT_MARKER not in text


# -- HTML in a real browser -----------------------------------------------------------------
def test_response_section_in_chromium_shows_notes_as_text(with_runs, tmp_path):
    """Chromium renders the section, shows the hostile note as text, and fetches nothing."""
    import shutil
    chromium = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if chromium is None:
        pytest.skip("chromium is not installed (CI installs it: apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    path = tmp_path / "case.db"
    with Case(with_runs[0], create=False) as case:
        case.db.execute("vacuum into ?", [str(path)])
    with Case(path, create=False) as case, case.db.conn:
        # an <img> with an off-host source would be a request if it were markup, not text
        case.db.execute("update playbook_steps set note = ? where id = 23", ['<img src="http://127.0.0.1:9/x.png"> | done'])
    out = tmp_path / "r.html"
    result = runner.invoke(app, ["report", "--case", str(path), "--format", "html", "-o", str(out)])
    assert result.exit_code == 0, result.output
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--host-resolver-rules=MAP * ~NOTFOUND",
                                          "--no-proxy-server", "--disable-background-networking"])
        try:
            page = browser.new_page()
            requests: list[str] = []
            dialogs: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(out.as_uri(), wait_until="load")
            assert requests == [out.as_uri()] and dialogs == []
            steps = page.locator("#response-steps tbody tr")
            assert steps.count() == 8 and page.locator("#response-steps").is_visible()
            notes = page.locator("#response-steps tbody tr td.note").all_inner_texts()
            assert " ".join(notes[0].split()) == " ".join(HOSTILE_NOTE.split())
            assert notes[5] == '<img src="http://127.0.0.1:9/x.png"> | done'
            assert page.locator("#response-steps img, #response-steps script").count() == 0
            assert page.locator("#response-phases tr[data-phase='recovery'] td").all_inner_texts()[4] == "failed"
        finally:
            browser.close()


def test_schema_enums_are_the_ones_the_code_uses():
    from camleak import response
    props = load_schema()["properties"]["response"]["properties"]
    run = props["playbook_runs"]["items"]["properties"]
    step = props["timeline"]["items"]["properties"]
    phase = props["phases"]["items"]["properties"]
    assert run["status"]["enum"] == list(response.RUN_STATUSES)
    assert step["status"]["enum"] == list(response.STEP_STATUSES) and set(response.OUTCOME) == set(response.STEP_STATUSES)
    assert step["kind"]["enum"] == list(response.STEP_KINDS)
    assert step["phase"]["enum"] == phase["phase"]["enum"] == list(response.PHASES)
    assert phase["status"]["enum"] == list(response.PHASE_STATUSES)
