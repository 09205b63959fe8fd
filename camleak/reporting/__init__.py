"""Render the `camleak.report/1` dict as Markdown, HTML or CSV notification lists.

Every format is drawn from the one dict `camleak.report.build_report` returns, so the figures
agree across formats; only the HTML page reads images (evidence thumbnails) from the archives.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from ..casefile import Case, write_private_text
from ..report import GROUP_TITLES, GROUPS, is_unknown_owner
from ..response import OUTCOME, case_identifiers
from .chart import timeline_svg
from .evidence import Thumbnail, evidence_frames, thumbnails

THUMBS_PER_EXPOSURE = 6
MAX_CONTACT_SHEETS = 400  # beyond this the page lists evidence keys only, so it stays openable

GROUP_ADVICE = {
    "owner_delivered": "Their camera's frames reached other accounts; nobody opened them. Tell them what, when and how many.",
    "owner_viewed": "Their camera's frames reached other accounts and were opened there. Highest risk: plain-language notice (GDPR Art. 34).",
    "recipient_only": "They were shown other homes' frames. Ask them to delete any copies; never name whose.",
    "both_roles": "Both: their frames leaked and they received others'. One letter covering both.",
}


def load_schema() -> dict[str, Any]:
    """The JSON Schema of `camleak.report/1`, shipped inside the package."""
    return json.loads(resources.files("camleak").joinpath("schema/report.schema.json").read_text())


def _env(autoescape: bool) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("camleak.reporting", "templates"),
        autoescape=autoescape,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["when"] = _when
    env.filters["pct"] = lambda part, whole: f"{100 * part / whole:.1f}%" if whole else "–"
    env.filters["plural"] = _plural
    env.filters["outcome"] = _outcome
    env.filters["mdcell"] = _md_cell
    return env


def _when(ts: str | None) -> str:
    """RFC 3339 UTC as people read it, to the second (the JSON keeps the milliseconds)."""
    if not ts:
        return "–"
    return ts[:19].replace("T", " ") + " UTC"


def _outcome(attempt: dict[str, Any]) -> str:
    """A step attempt's result as a person reads it: status, exit code of a failed command, retry."""
    text = OUTCOME.get(attempt["status"], attempt["status"])
    if attempt["status"] == "failed" and attempt["exit_code"] is not None:
        text += f" (exit {attempt['exit_code']})"
    if attempt["attempt"] and attempt["attempt"] > 1:
        text += f", attempt {attempt['attempt']}"
    return text


_MD_SPECIAL = str.maketrans({"\\": "\\\\", "|": "\\|", "&": "&amp;", "<": "&lt;", ">": "&gt;", "`": "\\`"})


def _md_cell(text: str | None) -> str:
    """Free text made safe for one Markdown table cell: one line, pipes escaped, no raw HTML."""
    if not text:
        return ""
    return " ".join(str(text).split()).translate(_MD_SPECIAL)


def _plural(count: int, noun: str) -> str:
    if count == 1:
        return f"{count} {noun}"
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return f"{count} {noun[:-1]}ies"
    if noun.endswith(("ch", "sh", "s", "x")):
        return f"{count} {noun}es"
    return f"{count} {noun}s"


def _context(report: dict[str, Any]) -> dict[str, Any]:
    return {"r": report, "s": report["summary"], "groups": GROUPS, "group_titles": GROUP_TITLES,
            "group_advice": GROUP_ADVICE}


def render_markdown(report: dict[str, Any], case: Case | None = None) -> str:
    """A postmortem-ready section: what happened, numbers, timeline, breakdowns, response, method and limits.

    Counts only: a postmortem circulates widely, so no account or device identifiers appear. The
    response timeline carries operators' free text (notes, titles); any account, device or home
    identifier of the report (and of `case`, when given) is blanked out of it.
    """
    env = _env(False)
    pattern = identifier_pattern(report_identifiers(report) | (case_identifiers(case) if case is not None else set()))
    env.filters["mdcell"] = lambda text: _md_cell(scrub_identifiers(text, pattern))
    return env.get_template("report.md.j2").render(**_context(report))


REDACTED_ID = "[id withheld]"


def report_identifiers(report: dict[str, Any]) -> set[str]:
    """Every account, device and home the report names."""
    ids: set[str] = set()
    for e in report["exposures"]:
        ids.update(filter(None, (e["recipient_account"], e["source_device"], e["source_home"], e["source_owner"])))
    for o in report["owners"]:
        ids.add(o["owner_account"])
        ids.update(o["devices"])
    ids.update(x["account"] for x in report["recipients"])
    return ids


def identifier_pattern(ids: set[str]) -> re.Pattern[str] | None:
    # Longest first, so an id that extends another is taken whole; very short ids would blank ordinary words.
    words = sorted((i for i in ids if i and len(i) >= 3), key=lambda i: (-len(i), i))
    if not words:
        return None
    return re.compile(r"(?<![\w-])(?:" + "|".join(map(re.escape, words)) + r")(?![\w-])")


def scrub_identifiers(text: str | None, pattern: re.Pattern[str] | None) -> str | None:
    if not text or pattern is None:
        return text
    return pattern.sub(REDACTED_ID, str(text))


def render_html(report: dict[str, Any], case: Case | None = None, *, reveal_evidence: bool = False,
                max_sheets: int = MAX_CONTACT_SHEETS) -> str:
    """One self-contained page (inline CSS and SVG, images as data URIs, a CSP that forbids fetching).

    Contact sheets go to the first `max_sheets` exposures, those with views first.
    """
    sheets: dict[tuple[str, str], list[dict[str, Any]]] = {}
    with_sheet = sorted(report["exposures"], key=lambda e: (-e["viewed_events"], e["recipient_account"], e["source_device"]))[:max_sheets]
    if case is not None:
        frame_of, refs = evidence_frames(case, with_sheet, THUMBS_PER_EXPOSURE)
        ref_for: dict[tuple[str, str], str] = {}
        for e in with_sheet:
            for d in e["evidence_detail"]:
                if d["reference_matches"] and (str(d["cluster"]), e["source_device"]) in refs:
                    ref_for[(e["recipient_account"], e["source_device"])] = refs[(str(d["cluster"]), e["source_device"])]
                    break
        thumbs = thumbnails(case, [*frame_of.values(), *ref_for.values()], reveal=reveal_evidence)
        missing = Thumbnail(None, "no image ingested for this snapshot")
        for e in with_sheet:
            key = (e["recipient_account"], e["source_device"])
            cells = [{"kind": "snapshot", "detail": d, "thumb": thumbs.get(frame_of.get(d["snapshot"], ""), missing)}
                     for d in e["evidence_detail"][:THUMBS_PER_EXPOSURE]]
            if key in ref_for:
                cells.append({"kind": "reference", "detail": None, "thumb": thumbs[ref_for[key]]})
            sheets[key] = cells
    return _env(True).get_template("report.html.j2").render(
        **_context(report), chart=timeline_svg(report["timeline_detail"]["rows"], report["timeline_detail"]["bucket_minutes"]), sheets=sheets,
        reveal=reveal_evidence, sheet_count=len(sheets), case_path=str(case.path) if case is not None else None)


CSV_COLUMNS = {
    "owner": ["account", "group", "devices", "homes", "frames_exposed", "recipient_accounts", "frames_viewed_by_others",
              "first_exposed", "last_exposed", "integrations", "evidence"],
    "recipient": ["account", "group", "source_homes", "frames_received", "frames_viewed", "first_received",
                  "last_received", "integrations", "evidence"],
}
CSV_COLUMNS["both"] = CSV_COLUMNS["owner"] + [c for c in CSV_COLUMNS["recipient"] if c not in ("account", "group", "integrations", "evidence")]


def csv_lists(report: dict[str, Any]) -> dict[str, str]:
    """File name -> CSV text: one mail-merge list per notification group, header even when empty.

    An owner's row counts recipients but never names them; a recipient's row counts homes but never names them.
    """
    owners = {o["owner_account"]: o for o in report["owners"] if not is_unknown_owner(o["owner_account"])}
    recipients = {r["account"]: r for r in report["recipients"]}

    def owner_cols(o: dict[str, Any]) -> dict[str, Any]:
        return {"account": o["owner_account"], "group": o["group"], "devices": ";".join(o["devices"]), "homes": o["homes"],
                "frames_exposed": o["frames"], "recipient_accounts": o["recipients"], "frames_viewed_by_others": o["viewed_frames"],
                "first_exposed": o["first_seen"], "last_exposed": o["last_seen"], "integrations": ";".join(o["integrations"]),
                "evidence": o["evidence"]}

    def recipient_cols(r: dict[str, Any]) -> dict[str, Any]:
        return {"account": r["account"], "group": r["group"], "source_homes": r["source_homes"], "frames_received": r["frames"],
                "frames_viewed": r["viewed_frames"], "first_received": r["first_seen"], "last_received": r["last_seen"],
                "integrations": ";".join(r["integrations"]), "evidence": r["evidence"]}

    rows: dict[str, list[dict[str, Any]]] = {g: [] for g in GROUPS}
    for name, o in owners.items():
        if o["group"] != "both_roles":
            rows[o["group"]].append(owner_cols(o))
    for name, r in recipients.items():
        if r["group"] == "recipient_only":
            rows["recipient_only"].append(recipient_cols(r))
        else:
            o = owners[name]
            merged = {**recipient_cols(r), **owner_cols(o)}
            merged["integrations"] = ";".join(sorted(set(o["integrations"]) | set(r["integrations"])))
            merged["evidence"] = "content" if "content" in (o["evidence"], r["evidence"]) else "log"
            rows["both_roles"].append(merged)
    out = {}
    for group in GROUPS:
        columns = CSV_COLUMNS["both" if group == "both_roles" else "recipient" if group == "recipient_only" else "owner"]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(sorted(rows[group], key=lambda row: row["account"]))
        out[f"{group}.csv"] = buffer.getvalue()
    return out


def write_csv_lists(report: dict[str, Any], directory: Path) -> list[Path]:
    """Write the per-group CSV files into `directory` (created 0700; files 0600)."""
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"{directory}: exists and is not a directory")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    written = []
    for name, text in csv_lists(report).items():
        path = directory / name
        write_private_text(path, text)
        written.append(path)
    return written
