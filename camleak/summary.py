"""The terminal summary: what a newcomer or an on-call engineer should grasp at a glance."""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .response import headline as response_lines

TOP_EXPOSURES = 10
TOP_REVIEW = 5


def _when(ts: str | None) -> str:
    return ts.replace("T", " ").replace("Z", " UTC") if ts else "-"


def render_summary(report: dict[str, Any], console: Console, *, case_path: str | None = None) -> None:
    s = report["summary"]
    info = report["case"]
    console.print(
        Text.assemble(
            ("Case: ", "bold"),
            f"{info['devices']} devices, {info['events']} log events, {info['snapshots']} snapshots, "
            f"{info['reference_frames']} reference frames, {info['clusters']} frame clusters",
        )
    )
    if s["exposure_pairs"] == 0:
        console.print(Panel(Text("No cross-account exposure found: every attributed frame went to an account "
                                 "allowed to see its camera.", style="bold green"), title="Result"))
    else:
        headline = Text.assemble(
            (_n(s["recipient_accounts"], "account"), "bold red"), " received frames from ",
            (_n(s["devices_exposed"], "camera"), "bold red"), " of ",
            (_n(s["owners_affected"], "other owner"), "bold red"), f" ({_n(s['exposure_pairs'], 'account x camera pair')}).\n",
            f"{_n(s['snapshots'], 'leaked snapshot')} in {_n(s['events'], 'event')}; ",
            (f"{s['viewed_events']} viewed", "bold"), " by the recipient.\n",
            f"First leaked delivery {_when(s['first_seen'])}, last {_when(s['last_seen'])}.\n",
            f"Evidence: {s['content_evidence_pairs']} pairs proven by the images themselves, "
            f"{s['log_evidence_pairs']} by the log alone; expected false pairs "
            f"{s.get('expected_false_pairs', 0):.2f} (estimated from this incident's own frames).",
        )
        console.print(Panel(headline, title="Result: cross-account exposure", border_style="red"))
        table = Table(title=f"Top exposures (of {s['exposure_pairs']}; all in `camleak report`)", title_justify="left")
        table.add_column("camera / home")
        table.add_column("recipient")
        table.add_column("frames", justify="right")
        table.add_column("viewed", justify="right")
        table.add_column("evidence")
        table.add_column("conf", justify="right")
        ranked = sorted(report["exposures"], key=lambda e: (-e["viewed_events"], -e["snapshots"], e["recipient_account"], e["source_device"]))
        for e in ranked[:TOP_EXPOSURES]:
            table.add_row(f"{e['source_device']} / {e['source_home'] or '?'}", e["recipient_account"],
                          str(e["snapshots"]), str(e["viewed_events"]), _evidence(e), f"{e['confidence']:.2f}")
        console.print(table)
    for line in response_lines(report.get("response") or {"playbook_runs": []}):
        console.print(Text.assemble(("Response: ", "bold"), line), highlight=False)
    notes = _notes(report)
    if notes:
        console.print(Panel(Group(*notes), title="Review, unattributed and warnings", border_style="yellow"))
    if case_path:
        console.print(Text.assemble(("Next: ", "bold"), f"camleak report --case {case_path} --format html -o report.html"))
        console.print(Text.assemble(("      ", ""), "also --format md (postmortem), csv -o DIR (mail-merge lists), json"))
        if not (report.get("response") or {}).get("playbook_runs"):
            console.print(Text.assemble(("      ", ""), "the whole response, scripted and recorded: camleak playbook list"))


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _evidence(exposure: dict[str, Any]) -> str:
    if exposure["evidence"] == "log":
        return "log only"
    return {"reference": "image+ref", "logs": "image+logs"}.get(exposure["attribution"] or "", "image")


def _notes(report: dict[str, Any]) -> list[Text]:
    notes: list[Text] = []
    review = sorted(report.get("review", []), key=lambda r: (-r["snapshots"], r["candidates"]))
    for r in review[:TOP_REVIEW]:
        notes.append(Text(f"{_n(r['snapshots'], 'snapshot')} ({_n(r['events'], 'event')}, {_n(r['accounts'], 'account')}) "
                          f"held for review between {' / '.join(r['candidates'])}: {r['reason']}", style="magenta"))
    if len(review) > TOP_REVIEW:
        rest = review[TOP_REVIEW:]
        notes.append(Text(f"… and {sum(r['snapshots'] for r in rest)} more snapshots in {_n(len(rest), 'more review group')} "
                          "(all in `camleak report`)", style="magenta"))
    for u in report["unattributed"]:
        notes.append(Text(f"{_n(u['snapshots'], 'snapshot')} ({_n(u['events'], 'event')}) not attributed: {u['reason']}"))
    for w in report["warnings"]:
        first = f" — e.g. {w['examples'][0]}" if w["examples"] else ""
        notes.append(Text(f"{w['count']} x {w['kind'].replace('_', ' ')}{first}", style="yellow"))
    return notes


def render_score(score: dict[str, Any], console: Console) -> None:
    pairs, snaps = score["exposure_pairs"], score["snapshot_attribution"]
    table = Table(title="Score against the simulator's ground truth", title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    table.add_row("exposure pairs: precision", fmt(pairs["precision"]))
    table.add_row("exposure pairs: recall", fmt(pairs["recall"]))
    table.add_row("exposure pairs: recall (informative frames)", fmt(pairs["recall_informative"]))
    table.add_row("exposure pairs: reported / true", f"{pairs['reported']} / {pairs['true']}")
    table.add_row("home mix-ups reported as exposures", str(pairs["home_mixups_reported"]))
    table.add_row("snapshot attribution: accuracy (informative)", fmt(snaps["accuracy_informative"]))
    table.add_row("snapshot attribution: precision", fmt(snaps["precision"]))
    table.add_row("uninformative frames attributed", str(snaps["uninformative_attributed"]))
    console.print(table)
