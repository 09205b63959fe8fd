"""The HTML report in a real headless browser: it renders its chart, tables and evidence, and
fetches nothing from the network.

Uses Debian's chromium (installed by .ci/run) driven through Playwright's own driver; the
browser is never downloaded (`playwright install` is not used).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from camleak import pipeline
from camleak.casefile import Case
from camleak.cli import app

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (CI installs it: apt-get install chromium)")

runner = CliRunner()


@pytest.fixture(scope="module")
def rendered(tiny_incident, tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    with Case(root / "case.db") as case:
        pipeline.triage(case, pipeline.TriageInputs(devices=[tiny_incident.devices], logs=tiny_incident.logs,
                                                    snapshots=tiny_incident.snapshots, references=tiny_incident.references,
                                                    field_map=tiny_incident.field_map), pipeline.TriageSettings(workers=2))
    for fmt, out in (("html", root / "report.html"), ("json", root / "report.json")):
        result = runner.invoke(app, ["report", "--case", str(root / "case.db"), "--format", fmt, "-o", str(out)])
        assert result.exit_code == 0, result.output
    return root / "report.html", json.loads((root / "report.json").read_text())


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        # No network for the browser itself: every host resolves nowhere and no proxy is used.
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--no-sandbox", "--disable-gpu", "--host-resolver-rules=MAP * ~NOTFOUND",
                                    "--no-proxy-server", "--disable-background-networking"])
        yield b
        b.close()


def _open(browser, url: str):
    page = browser.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(url, wait_until="load")
    return page, requests


def test_report_renders_in_chromium_without_network(browser, rendered):
    html, report = rendered
    page, requests = _open(browser, html.as_uri())
    assert requests == [html.as_uri()]  # the page itself, nothing else
    assert page.title().startswith("camleak exposure report")

    chart = page.locator("svg#timeline-chart")
    assert chart.count() == 1
    box = chart.bounding_box()
    assert box and box["width"] > 300 and box["height"] > 100
    bars = page.locator("svg#timeline-chart g.bar")
    assert bars.count() == len(report["timeline_detail"]["rows"])
    assert page.locator("svg#timeline-chart g.bar rect").count() >= sum(1 for r in report["timeline_detail"]["rows"] if r["deliveries"])

    groups = report["notification_groups"]
    for group in ("owner_delivered", "owner_viewed", "recipient_only", "both_roles", "unaffected"):
        cells = page.locator(f"#groups-table tr[data-group='{group}'] td").all_inner_texts()
        assert cells[1] == str(groups[group])
    assert page.locator("#owners-table tbody tr").count() == len(report["owners"])
    assert page.locator("#recipients-table tbody tr").count() == len(report["recipients"])
    assert page.locator("table.breakdown").count() == 2
    assert page.locator("article.exposure").count() == len(report["exposures"])

    # Evidence thumbnails decoded and laid out (data URIs, so no request was needed).
    widths = page.eval_on_selector_all("img", "els => els.map(e => e.complete ? e.naturalWidth : -1)")
    assert widths and all(w > 0 for w in widths)
    assert page.locator("#evidence-mode").get_attribute("data-mode") == "pixelated"
    page.close()


def test_the_request_listener_does_see_network_requests(browser, tmp_path):
    """Control: a page that does fetch something is caught, so the check above can fail."""
    leaky = tmp_path / "leaky.html"
    leaky.write_text('<!DOCTYPE html><html><body><img src="http://127.0.0.1:9/pixel.png"></body></html>')
    page, requests = _open(browser, leaky.as_uri())
    assert "http://127.0.0.1:9/pixel.png" in requests
    page.close()
