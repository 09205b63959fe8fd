"""The report's figures in every format, checked against the simulator's truth.

Expected figures are derived here from truth.json alone (who was served whose frame, when,
through which integration, whether it was opened), restricted to the leaked deliveries the
triage could prove: frames the case attributed to their true source, or honest log lines for
frames that proved nothing. That keeps the check independent of the report code while allowing
for what the pixels cannot tell (near-black or truncated frames), which the report itself
lists as unattributable.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import stat
from collections import Counter, defaultdict
from pathlib import Path

import jsonschema
import pytest
from PIL import Image, ImageFilter, ImageStat
from typer.testing import CliRunner

from htmlpage import Page  # tests/ helper module
from camleak import pipeline
from camleak.casefile import Case
from camleak.cli import app
from camleak.report import GROUPS, _classify_events, build_report
from camleak.reporting import load_schema
from camleak.simulate import SimParams, generate_incident

runner = CliRunner()


def _triage(inc, case_path: Path) -> Path:
    with Case(case_path) as case:
        pipeline.triage(case, pipeline.TriageInputs(devices=[inc.devices], logs=inc.logs, snapshots=inc.snapshots,
                                                    references=inc.references, field_map=inc.field_map),
                        pipeline.TriageSettings(workers=2))
    return case_path


@pytest.fixture(scope="module")
def tiny_case(tiny_incident, tmp_path_factory):
    return tiny_incident, _triage(tiny_incident, tmp_path_factory.mktemp("tiny") / "case.db")


@pytest.fixture(scope="module")
def hard_case(tmp_path_factory):
    """Hard frames, some honest log lines for frames that prove nothing, and unaffected accounts."""
    root = tmp_path_factory.mktemp("hard")
    inc = generate_incident(root / "inc", SimParams(seed=11, homes=20, hours=6, bug_rate=0.3, difficulty="hard"), workers=2)
    return inc, _triage(inc, root / "case.db")


@pytest.fixture(params=["tiny_case", "hard_case"])
def incident_case(request):
    return request.getfixturevalue(request.param)


def expected_figures(truth: dict, case_path: Path) -> dict:
    """The figures a correct report states, from the truth and the case's per-snapshot attributions."""
    with Case(case_path, create=False) as case:
        attributed = {r["snapshot"]: r["source_device"] for r in case.db.query("select snapshot, source_device from attributions")}
    devices = truth["devices"]
    home_of_account = {a: h for h, v in truth["homes"].items() for a in v["accounts"]}

    def may_see(account, device):
        return home_of_account.get(account) == devices[device]["home_id"]

    leaks = {k: v for k, v in truth["snapshots"].items() if not may_see(v["recipient"], v["source_device"])}
    proven = {k: v for k, v in leaks.items()
              if attributed.get(k) == v["source_device"] or (attributed.get(k) is None and v["honest_log"])}
    # No frame accuses a household that is not its source.
    wrong = [k for k, dev in attributed.items()
             if dev and k in truth["snapshots"] and dev != truth["snapshots"][k]["source_device"]
             and not may_see(truth["snapshots"][k]["recipient"], dev)]
    assert wrong == []

    owner = lambda v: devices[v["source_device"]]["owner_account"]  # noqa: E731
    owners, recipients = defaultdict(list), defaultdict(list)
    for v in proven.values():
        owners[owner(v)].append(v)
        recipients[v["recipient"]].append(v)
    both = set(owners) & set(recipients)
    groups = Counter()
    for o, items in owners.items():
        if o not in both:
            groups["owner_viewed" if any(v["viewed"] for v in items) else "owner_delivered"] += 1
    groups["both_roles"] = len(both)
    groups["recipient_only"] = len(set(recipients) - both)
    affected = set(owners) | set(recipients)
    exposed = {v["source_device"] for v in proven.values()}
    members = {a for d in exposed for a in devices[d]["shared_accounts"]} - affected
    everyone = set(home_of_account)
    times = sorted(v["ts"] for v in proven.values())
    missed_in_window = sum(1 for k, v in leaks.items() if k not in proven and times and times[0] <= v["ts"] <= times[-1])
    by_integration = Counter(v["integration"] for v in proven.values())
    views_by_integration = Counter(v["integration"] for v in proven.values() if v["viewed"])
    return {
        "all_leaks": len(leaks),
        "missed_in_window": missed_in_window,
        "deliveries": len(proven),
        "viewed": sum(v["viewed"] for v in proven.values()),
        "first": times[0][:19] if times else None,
        "last": times[-1][:19] if times else None,
        "per_hour": Counter(v["ts"][:13] for v in proven.values()),
        "groups": {g: groups.get(g, 0) for g in GROUPS},
        "household_members": len(members),
        "unaffected": len(everyone - affected - members),
        "accounts_total": len(everyone),
        "owners": {o: {"frames": len(items), "recipients": len({v["recipient"] for v in items}),
                       "viewed_frames": sum(v["viewed"] for v in items),
                       "devices": sorted({v["source_device"] for v in items})} for o, items in owners.items()},
        "recipients": {a: {"frames": len(items), "viewed_frames": sum(v["viewed"] for v in items),
                           "source_homes": len({devices[v["source_device"]]["home_id"] for v in items})}
                       for a, items in recipients.items()},
        "owners_viewed": sum(1 for items in owners.values() if any(v["viewed"] for v in items)),
        "recipients_viewed": sum(1 for items in recipients.values() if any(v["viewed"] for v in items)),
        "by_integration": {k: (by_integration[k], views_by_integration[k]) for k in by_integration},
        "confirmed": sum(1 for k, v in proven.items() if attributed.get(k) == v["source_device"]),
        "log_only": sum(1 for k, v in proven.items() if attributed.get(k) is None),
    }


def report_json(case_path: Path) -> dict:
    result = runner.invoke(app, ["report", "--case", str(case_path), "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# -- JSON -----------------------------------------------------------------------------------
def test_json_figures_match_the_truth(incident_case):
    inc, case_path = incident_case
    truth = json.loads(inc.truth.read_text())
    want = expected_figures(truth, case_path)
    assert want["deliveries"] >= 0.75 * want["all_leaks"] > 0  # the check covers most of the leak
    r = report_json(case_path)

    assert r["time_window"]["first_delivery"][:19] == want["first"]
    assert r["time_window"]["last_delivery"][:19] == want["last"]
    assert r["delivered_vs_viewed"]["events"] == {"delivered": want["deliveries"], "viewed": want["viewed"]}
    assert r["delivered_vs_viewed"]["snapshots"] == {"delivered": want["deliveries"], "viewed": want["viewed"]}
    assert r["delivered_vs_viewed"]["owners"] == {"exposed": len(want["owners"]), "viewed": want["owners_viewed"]}
    assert r["delivered_vs_viewed"]["recipients"] == {"received": len(want["recipients"]), "viewed": want["recipients_viewed"]}
    assert {row["start"][:13]: row["deliveries"] for row in r["timeline"]["rows"] if row["deliveries"]} == dict(want["per_hour"])
    assert sum(row["views"] for row in r["timeline"]["rows"]) == want["viewed"]
    hours = [row["start"] for row in r["timeline"]["rows"]]
    assert hours == sorted(hours) and len(hours) == len(set(hours))  # every hour once, gaps included

    groups = r["notification_groups"]
    assert {g: groups[g] for g in GROUPS} == want["groups"]
    assert groups["household_members"] == want["household_members"]
    assert groups["unaffected"] == want["unaffected"]
    assert groups["accounts_total"] == want["accounts_total"] == sum(groups[g] for g in GROUPS) + groups["household_members"] + groups["unaffected"]

    assert {o["owner_account"]: {"frames": o["frames"], "recipients": o["recipients"], "viewed_frames": o["viewed_frames"],
                                 "devices": o["devices"]} for o in r["owners"]} == want["owners"]
    assert {x["account"]: {"frames": x["frames"], "viewed_frames": x["viewed_frames"], "source_homes": x["source_homes"]}
            for x in r["recipients"]} == want["recipients"]
    assert {b["key"]: (b["deliveries"], b["views"]) for b in r["breakdowns"]["by_integration"]} == want["by_integration"]
    assert {b["key"]: (b["deliveries"], b["views"]) for b in r["breakdowns"]["by_event"]} == {
        "snapshot_served": (want["deliveries"], 0), **({"snapshot_viewed": (0, want["viewed"])} if want["viewed"] else {})}
    assert r["certainty"]["confirmed"]["deliveries"] == want["confirmed"]
    assert r["certainty"]["log_only"]["deliveries"] == want["log_only"]
    # What the pixels could not prove is stated, not dropped: every missed leak is an unattributable delivery.
    assert r["certainty"]["unattributable"]["deliveries"] >= want["all_leaks"] - want["deliveries"]
    assert r["certainty"]["unattributable"]["in_leak_window"] >= want["missed_in_window"]


def test_hard_incident_exercises_every_group_and_log_only_evidence(hard_case):
    inc, case_path = hard_case
    r = report_json(case_path)
    assert all(r["notification_groups"][g] > 0 for g in GROUPS)
    assert r["notification_groups"]["unaffected"] > 0
    assert r["certainty"]["log_only"]["deliveries"] > 0 and r["certainty"]["unattributable"]["deliveries"] > 0
    reasons = {u["reason"] for u in r["certainty"]["unattributable"]["reasons"]}
    assert any(reason.startswith("uninformative") for reason in reasons)


def test_json_validates_against_the_shipped_schema(incident_case):
    _, case_path = incident_case
    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(report_json(case_path), schema, cls=jsonschema.Draft202012Validator)
    broken = report_json(case_path)
    broken["owners"][0]["recipient_accounts"] = ["acct-x"]  # an owner's row must never name recipients
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema, cls=jsonschema.Draft202012Validator)


def test_empty_case_report_validates_and_renders(tmp_path):
    from camleak.reporting import csv_lists, render_html, render_markdown
    with Case(tmp_path / "empty.db") as case:
        r = json.loads(json.dumps(build_report(case)))
        html = render_html(r, case)
    jsonschema.validate(r, load_schema(), cls=jsonschema.Draft202012Validator)
    assert r["time_window"]["first_delivery"] is None and r["timeline"]["rows"] == []
    assert "No cross-account exposure was found" in render_markdown(r)
    assert "No leaked deliveries" in html
    assert all(text.count("\n") == 1 for text in csv_lists(r).values())  # header only


def test_leaked_events_add_up_to_the_exposures_table(incident_case):
    """The report's per-event view and the attribute stage's per-pair totals agree."""
    _, case_path = incident_case
    with Case(case_path, create=False) as case:
        leaked, _ = _classify_events(case)
        rows = {(e["recipient_account"], e["source_device"]): e for e in case.db.query("select * from exposures")}
    events, views, evidence = Counter(), Counter(), defaultdict(set)
    for e in leaked:
        events[(e.account, e.source_device)] += 1
        views[(e.account, e.source_device)] += e.viewed
        evidence[(e.account, e.source_device)].add(e.evidence)
    assert set(events) == set(rows)
    for pair, row in rows.items():
        assert (events[pair], views[pair]) == (row["events"], row["viewed_events"])
        assert row["evidence"] == ("content" if "content" in evidence[pair] else "log")


# -- Markdown -------------------------------------------------------------------------------
def test_markdown_states_the_truth_figures_and_no_identities(incident_case, tmp_path):
    inc, case_path = incident_case
    truth = json.loads(inc.truth.read_text())
    want = expected_figures(truth, case_path)
    out = tmp_path / "postmortem.md"
    result = runner.invoke(app, ["report", "--case", str(case_path), "--format", "md", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    md = out.read_text()
    cell = lambda label: re.search(r"^\| " + re.escape(label) + r" \| ([^|]+) \|", md, re.M).group(1).strip()  # noqa: E731
    assert cell("leaked deliveries (events)") == str(want["deliveries"])
    assert cell("of which viewed (view events)") == str(want["viewed"])
    assert cell("first leaked delivery") == want["first"].replace("T", " ") + " UTC"
    assert cell("last leaked delivery") == want["last"].replace("T", " ") + " UTC"
    assert cell("owners exposed / whose frames were viewed") == f"{len(want['owners'])} / {want['owners_viewed']}"
    assert cell("recipient accounts / who viewed") == f"{len(want['recipients'])} / {want['recipients_viewed']}"
    for group, count in want["groups"].items():
        assert re.search(rf"\(`{group}`\) \| {count} \|", md), group
    assert re.search(rf"^\| Unaffected \| {want['unaffected']} \|", md, re.M)
    hourly = {m.group(1)[:13].replace(" ", "T"): int(m.group(2))
              for m in re.finditer(r"^\| (\d{4}-\d\d-\d\d \d\d):00 UTC \| (\d+) \|", md, re.M)}
    assert {k: v for k, v in hourly.items() if v} == dict(want["per_hour"])
    for heading in ("### What happened", "### Timeline", "### Breakdowns", "### Method and its limits"):
        assert heading in md
    # A postmortem circulates widely: no account or device identifiers.
    assert not re.search(r"acct-[0-9a-f]{6}|cam-\d{4}", md)


# -- CSV ------------------------------------------------------------------------------------
def test_csv_lists_per_group_match_the_truth(incident_case, tmp_path):
    inc, case_path = incident_case
    truth = json.loads(inc.truth.read_text())
    want = expected_figures(truth, case_path)
    out = tmp_path / "lists"
    result = runner.invoke(app, ["report", "--case", str(case_path), "--format", "csv", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{g}.csv" for g in GROUPS)
    recipients = set(want["recipients"])
    for group in GROUPS:
        path = out / f"{group}.csv"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        rows = list(csv.DictReader(path.open()))
        assert len(rows) == want["groups"][group], group
        assert all(row["group"] == group for row in rows)
        for row in rows:
            if group != "recipient_only":
                o = want["owners"][row["account"]]
                assert (int(row["frames_exposed"]), int(row["recipient_accounts"]), int(row["frames_viewed_by_others"])) == (
                    o["frames"], o["recipients"], o["viewed_frames"])
                assert row["devices"].split(";") == o["devices"]
                # an owner's row never names who received the frames
                assert not (set(" ".join(row.values()).replace(";", " ").split()) & (recipients - {row["account"]}))
            if group in ("recipient_only", "both_roles"):
                x = want["recipients"][row["account"]]
                assert (int(row["frames_received"]), int(row["frames_viewed"]), int(row["source_homes"])) == (
                    x["frames"], x["viewed_frames"], x["source_homes"])
            if group == "owner_viewed":
                assert int(row["frames_viewed_by_others"]) > 0
            if group == "owner_delivered":
                assert int(row["frames_viewed_by_others"]) == 0


def test_csv_needs_a_directory(tiny_case, tmp_path):
    _, case_path = tiny_case
    result = runner.invoke(app, ["report", "--case", str(case_path), "--format", "csv"])
    assert result.exit_code == 2 and "-o" in result.stderr
    (tmp_path / "file").write_text("x")
    result = runner.invoke(app, ["report", "--case", str(case_path), "--format", "csv", "-o", str(tmp_path / "file")])
    assert result.exit_code == 1 and "not a directory" in result.stderr


# -- HTML -----------------------------------------------------------------------------------
def _render_html(case_path: Path, out: Path, *extra: str) -> Page:
    result = runner.invoke(app, ["report", "--case", str(case_path), "--format", "html", "-o", str(out), *extra])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    page = Page()
    page.feed(out.read_text())
    return page


def test_html_figures_match_the_truth_and_the_page_is_self_contained(incident_case, tmp_path):
    inc, case_path = incident_case
    truth = json.loads(inc.truth.read_text())
    want = expected_figures(truth, case_path)
    page = _render_html(case_path, tmp_path / "r.html")
    for group, count in want["groups"].items():
        assert page.group_rows[group][1] == str(count)
    assert page.group_rows["unaffected"][1] == str(want["unaffected"])
    dv = {row[0]: row[1:] for row in page.tables["delivered-viewed-table"][1:]}
    assert dv["events"] == [str(want["deliveries"]), str(want["viewed"])]
    owners = {row[0]: row for row in page.tables["owners-table"][1:]}
    assert set(owners) == set(want["owners"])
    assert {a: int(row[2]) for a, row in owners.items()} == {a: o["frames"] for a, o in want["owners"].items()}
    assert page.svg_rects >= len(want["per_hour"])  # a bar per hour with leaks
    # Self-contained: every image is embedded, nothing points at the network.
    assert page.images and all(src.startswith("data:image/") for src in page.images)
    assert all(u.startswith(("data:", "#")) for u in page.urls)
    text = (tmp_path / "r.html").read_text()
    assert "default-src 'none'" in text and 'data-mode="pixelated"' in text


def _sharpness(data_uri: str) -> float:
    image = Image.open(io.BytesIO(base64.b64decode(data_uri.split(",", 1)[1]))).convert("L")
    return ImageStat.Stat(image.filter(ImageFilter.FIND_EDGES)).mean[0]


def test_evidence_is_pixelated_unless_revealed_and_the_page_says_so(tiny_case, tmp_path):
    _, case_path = tiny_case
    hidden = _render_html(case_path, tmp_path / "hidden.html")
    shown = _render_html(case_path, tmp_path / "shown.html", "--reveal-evidence")
    assert len(hidden.images) == len(shown.images) > 0
    assert "EVIDENCE SHOWN SHARP" in (tmp_path / "shown.html").read_text()
    assert "EVIDENCE SHOWN SHARP" not in (tmp_path / "hidden.html").read_text()
    pairs = list(zip(hidden.images, shown.images))
    # The sharp pixels never reach the default page: far less edge detail in every thumbnail.
    assert sum(_sharpness(h) < 0.6 * _sharpness(s) for h, s in pairs) >= 0.9 * len(pairs)


def test_html_survives_a_moved_archive(tiny_case, tmp_path):
    _, case_path = tiny_case
    moved = tmp_path / "case.db"
    with Case(case_path, create=False) as case:
        case.db.execute("vacuum into ?", [str(moved)])
    with Case(moved, create=False) as case, case.db.conn:
        case.db.execute("update inputs set path = path || '.gone' where kind in ('snapshots', 'references')")
    page = _render_html(moved, tmp_path / "r.html")
    assert page.images == [] and "archive no longer at its ingested path" in (tmp_path / "r.html").read_text()


def test_contact_sheets_are_capped_and_the_rest_list_their_keys(tiny_case):
    from camleak.reporting import render_html
    _, case_path = tiny_case
    with Case(case_path, create=False) as case:
        r = build_report(case)
        html = render_html(r, case, max_sheets=2)
    page = Page()
    page.feed(html)
    assert len(r["exposures"]) > 2
    assert 2 <= len(page.images) <= 2 * 7  # two sheets of at most six frames and a reference
    assert f"Contact sheets for 2 of {len(r['exposures'])} exposures" in html
    assert html.count('class="evidence-keys"') == len(r["exposures"]) - 2


def test_timeline_chart_is_well_formed_svg_with_a_bar_per_bucket():
    import xml.etree.ElementTree as ET
    from camleak.reporting.chart import _nice_max, timeline_svg
    rows = [{"start": f"2026-11-20T{h:02d}:00:00Z", "deliveries": d, "confirmed": d - lo, "log_only": lo, "views": v}
            for h, (d, lo, v) in enumerate([(3, 1, 0), (0, 0, 0), (17, 2, 5)])]
    svg = ET.fromstring(timeline_svg(rows))
    ns = "{http://www.w3.org/2000/svg}"
    bars = [g for g in svg.iter(ns + "g") if g.get("class") == "bar"]
    assert len(bars) == 3
    assert [len(list(g.iter(ns + "rect"))) for g in bars] == [2, 0, 3]  # confirmed + log-only (+ views)
    assert _nice_max(17) == (20, 5) and _nice_max(0)[0] >= 1 and _nice_max(123456)[0] >= 123456
    assert ET.fromstring(timeline_svg([])).get("id") == "timeline-chart"


def test_an_exposed_device_missing_from_the_registry_is_counted_but_never_mailed(tiny_case, tmp_path):
    from camleak.reporting import csv_lists
    _, case_path = tiny_case
    copy = tmp_path / "case.db"
    with Case(case_path, create=False) as case:
        case.db.execute("vacuum into ?", [str(copy)])
    with Case(copy, create=False) as case:
        device = next(case.db.query("select source_device from exposures order by source_device limit 1"))["source_device"]
        with case.db.conn:
            case.db.execute("delete from devices where device_id = ?", [device])
        pipeline.run_attribute(case)
        r = json.loads(json.dumps(build_report(case)))
    jsonschema.validate(r, load_schema(), cls=jsonschema.Draft202012Validator)
    unknown = [o for o in r["owners"] if device in o["devices"]]
    assert len(unknown) == 1 and unknown[0]["owner_account"].startswith("(unknown owner")
    assert {"kind": "exposed_device_not_in_registry", "count": 1, "examples": [device]} in r["warnings"]
    groups = r["notification_groups"]
    assert groups["accounts_total"] == sum(groups[g] for g in GROUPS) + groups["household_members"] + groups["unaffected"]
    assert "(unknown owner" not in "".join(csv_lists(r).values())


def test_every_format_is_reproducible(tiny_case):
    from camleak.reporting import csv_lists, render_html, render_markdown
    _, case_path = tiny_case
    with Case(case_path, create=False) as case:
        first, second = build_report(case, generated_at="-"), build_report(case, generated_at="-")
        assert render_html(first, case) == render_html(second, case)
    assert render_markdown(first) == render_markdown(second)
    assert csv_lists(first) == csv_lists(second)
