"""How playbooks look to a person: the checklist of `camleak playbook show`, the prompts and
progress lines of `camleak playbook run`, and its closing table. Kept apart from the runner so
the runner stays a library that scripts (and tests) drive without a terminal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.prompt import Prompt
from rich.table import Table

from .playbook import RUNBOOK_SECTIONS, Playbook, RenderedStep, Resolver
from .playbook_runner import RunResult

MARKS = {"ok": "[green]✔[/]", "confirmed": "[green]✔[/]", "skipped": "[dim]–[/]", "pending": "[yellow]…[/]",
         "failed": "[red]✘[/]", "interrupted": "[red]✘[/]", "running": "[yellow]▶[/]", "not-started": "[dim]○[/]"}
MD_MARKS = {"ok": "[x]", "confirmed": "[x]", "skipped": "[x] ~~skipped~~", "pending": "[ ] **pending**",
            "failed": "[ ] **FAILED**", "interrupted": "[ ] **interrupted**", "running": "[ ] running",
            "not-started": "[ ]"}
SECTION_TITLES = {"contain": "Contain", "preserve_evidence": "Preserve evidence", "analyse": "Analyse",
                  "notify": "Notify", "recover": "Recover", "verify": "Verify"}


def _value_text(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(map(str, value)) if value else "(none)"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) if value else "(none)"
    return str(value) if value not in (None, "") else "(empty)"


def _status(rs: RenderedStep, attempts: dict[str, dict]) -> str:
    row = attempts.get(rs.step.id)
    return row["status"] if row else "not-started"


def render_checklist(console: Console, pb: Playbook, rendered: list[RenderedStep], resolver: Resolver,
                     case_path: Path, run: dict | None, attempts: dict[str, dict]) -> None:
    console.print(f"[bold]{escape(pb.title)}[/]  [dim]({pb.name}, {escape(pb.source)})[/]", highlight=False)
    console.print(escape(pb.description), highlight=False)
    console.print()
    table = Table(title="Variables (set with --set NAME=VALUE)", title_justify="left", box=None, pad_edge=False)
    for column in ("name", "value", "meaning"):
        table.add_column(column, overflow="fold")
    for name, var in pb.variables.items():
        if var.default is None and name not in resolver.assigned:
            shown = "[red](not set: required)[/]" if name in resolver.missing else "[dim](not set: not needed with these values)[/]"
        else:
            shown = escape(_value_text(resolver.value(name)))
        table.add_row(name, shown, escape(var.description))
    console.print(table)
    if pb.runbook:
        console.print()
        console.print("[bold]Runbook[/]")
        for key in RUNBOOK_SECTIONS:
            if key in pb.runbook:
                console.print(f"[bold]{SECTION_TITLES[key]}.[/] {escape(pb.runbook[key])}", highlight=False)
    console.print()
    state = ""
    if run is not None:
        state = f" — run {run['id']} on {escape(str(case_path))}: " + escape(run.get("message") or run["status"])
    console.print(f"[bold]Checklist[/]{state}", highlight=False)
    phase = None
    for i, rs in enumerate(rendered, 1):
        if rs.step.phase != phase:
            phase = rs.step.phase
            console.print(f"\n[bold cyan]{phase.upper()}[/]")
        status = _status(rs, attempts)
        who = f" [dim](manual — {escape(rs.owner)})[/]" if rs.step.kind == "manual" and rs.owner else (
            " [dim](manual)[/]" if rs.step.kind == "manual" else "")
        when = f" [dim](only when {escape(rs.step.when or '')} is set)[/]" if rs.step.when else ""
        console.print(f" {MARKS[status]} {i:>2}. {escape(rs.title)}{who}{when}  [dim]\\[{rs.step.id}][/]", highlight=False)
        body = rs.instruction if rs.step.kind == "manual" else f"$ {rs.command_line}"
        for line in body.splitlines():
            console.print(f"        {escape(line)}", highlight=False, soft_wrap=True)
        row = attempts.get(rs.step.id)
        if row and row.get("summary"):
            console.print(f"        [dim]→ {escape(row['summary'])}[/]", highlight=False, soft_wrap=True)


def render_markdown_checklist(pb: Playbook, rendered: list[RenderedStep], resolver: Resolver, run: dict | None,
                              attempts: dict[str, dict]) -> str:
    out = [f"# {pb.title}", "", pb.description, ""]
    if pb.runbook:
        out += ["## Runbook", ""]
        out += [f"- **{SECTION_TITLES[k]}.** {pb.runbook[k]}" for k in RUNBOOK_SECTIONS if k in pb.runbook]
        out.append("")
    out += ["## Checklist", ""]
    if run is not None:
        out += [f"Run {run['id']}: {run['status']}. {run.get('message') or ''}".rstrip(), ""]
    for i, rs in enumerate(rendered, 1):
        status = _status(rs, attempts)
        owner = f" — *{rs.owner}*" if rs.owner else ""
        out.append(f"{i}. {MD_MARKS[status]} **{rs.step.phase}**: {rs.title}{owner}")
        body = rs.instruction if rs.step.kind == "manual" else f"`{rs.command_line}`"
        out += [f"   {line}" if line else "" for line in body.splitlines()]
    return "\n".join(out) + "\n"


def announce(console: Console, kind: str, text: str) -> None:
    head, _, rest = text.partition("\n")
    style = {"start": "[bold]▶[/]", "done": "[green]✔[/]", "failed": "[bold red]✘[/]", "pending": "[yellow]…[/]",
             "skipped": "[dim]–[/]", "note": "[cyan]note:[/]"}[kind]
    console.print(f"{style} {escape(head)}", highlight=False, soft_wrap=True)
    if rest:
        console.print(f"  [dim]{escape(rest)}[/]", highlight=False, soft_wrap=True)


def ask_checkpoint(console: Console, rs: RenderedStep) -> tuple[str, str | None]:
    subtitle = f"owner: {rs.owner}" if rs.owner else None
    console.print(Panel(escape(rs.instruction or ""), title=f"Manual checkpoint: {escape(rs.title)}",
                        subtitle=escape(subtitle) if subtitle else None, title_align="left"))
    try:
        answer = Prompt.ask("Is it done? [bold]y[/] yes / [bold]l[/] later (recorded pending, go on) / [bold]s[/] stop here",
                            choices=["y", "l", "s"], default="y", console=console)
        if answer == "y":
            note = Prompt.ask("Note for the record (what was done, ticket; Enter for none)", default="", console=console,
                              show_default=False)
            return "done", note or None
    except EOFError:  # nobody left to answer (stdin closed): as in a non-interactive run
        console.print()
        return ("later" if rs.step.on_pending == "continue" else "stop"), None
    return ("later" if answer == "l" else "stop"), None


def render_result(console: Console, pb: Playbook, result: RunResult) -> None:
    console.print()
    verb = "continued" if result.resumed else "started"
    table = Table(title=f"{pb.name}: run {result.run_id} ({verb}) — {result.status}", title_justify="left",
                  box=None, pad_edge=False)
    for column in ("", "step", "phase", "outcome"):
        table.add_column(column, overflow="fold")
    for s in result.steps:
        table.add_row(MARKS.get(s.status, s.status), escape(s.title), s.phase, escape(s.summary or s.status))
    console.print(table)
    colour = {"complete": "green", "pending": "yellow", "paused": "yellow"}.get(result.status, "red")
    console.print(f"[{colour}]{escape(result.message)}[/]", highlight=False, soft_wrap=True)
