"""MkDocs hook: the pages that must not drift from the code are generated at build time.

`<!-- camleak:command-reference -->` becomes every command, argument and option of the typer app
with its help text; `<!-- camleak:casefile-schema -->` becomes the tables of
`camleak.casefile.SCHEMA`; `<!-- camleak:report-schema -->` every key of the shipped
`camleak.report/1` JSON Schema. A page keeping its marker unreplaced is impossible: the markers are
replaced on every build, `mkdocs serve` included. `tests/test_docs.py` imports this file too.
"""

from __future__ import annotations

import enum
import re
import typing
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, Iterator

REFERENCE_MARKER = "<!-- camleak:command-reference -->"
CASEFILE_MARKER = "<!-- camleak:casefile-schema -->"
REPORT_MARKER = "<!-- camleak:report-schema -->"


# ---------------------------------------------------------------------------------------
# The command tree, duck-typed over typer's click-like objects
def command_tree() -> Any:
    import typer

    from camleak.cli import app
    return typer.main.get_command(app)


def walk(command: Any, path: tuple[str, ...] = ("camleak",)) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(path, command) for the root and every group and command below it, depth first, in order."""
    yield path, command
    for name, sub in (getattr(command, "commands", None) or {}).items():
        if not getattr(sub, "hidden", False):
            yield from walk(sub, path + (name,))


def visible_params(command: Any, kind: str) -> list[Any]:
    """A command's options or arguments as the CLI shows them (`--help` is added by the CLI itself)."""
    wanted = "TyperOption" if kind == "option" else "TyperArgument"
    return [p for p in command.params if type(p).__name__ == wanted and not getattr(p, "hidden", False)]


def _cell(text: Any) -> str:
    """Text for a Markdown table cell: one line, pipes and angle brackets escaped."""
    return " ".join(str(text).split()).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _para(text: str) -> str:
    return text.strip().replace("<", "&lt;").replace(">", "&gt;")


def _base_type(annotation: Any) -> tuple[Any, bool]:
    """The annotation without Optional, and whether it is a list (a repeatable option)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, UnionType):
        args = [a for a in typing.get_args(annotation) if a is not NoneType]
        return _base_type(args[0]) if len(args) == 1 else (annotation, False)
    if origin in (list, tuple, set):
        inner, _ = _base_type(typing.get_args(annotation)[0])
        return inner, True
    return annotation, False


def type_label(param: Any) -> str:
    if getattr(param, "is_flag", False) or getattr(param, "is_bool_flag", False):
        return "flag"
    descriptor = getattr(param, "type_descriptor", None)
    base, many = _base_type(getattr(descriptor, "annotation", str))
    if isinstance(base, type) and issubclass(base, enum.Enum):
        label = " \\| ".join(f"`{m.value}`" for m in base)
    else:
        label = {str: "text", int: "integer", float: "number", Path: "path", bool: "flag"}.get(base, getattr(base, "__name__", str(base)))
    lo, hi = getattr(param, "min", None), getattr(param, "max", None)
    if lo is not None or hi is not None:
        label += " (" + (f"{lo} ≤ x ≤ {hi}" if lo is not None and hi is not None else f"x ≥ {lo}" if lo is not None else f"x ≤ {hi}") + ")"
    if many or getattr(param, "multiple", False):
        label += ", repeatable"
    return label


def default_label(param: Any) -> str:
    show = getattr(param, "show_default", True)
    if isinstance(show, str):
        return show
    default = param.default
    if not show or default is None or default == [] or default == () or callable(default):
        return ""
    if default is False and getattr(param, "is_flag", False):
        return ""
    if isinstance(default, enum.Enum):
        default = default.value
    if isinstance(default, bool) and param.secondary_opts:
        return param.opts[0] if default else param.secondary_opts[0]
    return f"`{default}`"


def usage(path: tuple[str, ...], command: Any) -> str:
    words = [" ".join(path), "[OPTIONS]"]
    for arg in visible_params(command, "argument"):
        name = arg.name.upper() + ("..." if arg.nargs == -1 else "")
        words.append(name if arg.required else f"[{name}]")
    if getattr(command, "commands", None):
        words.append("COMMAND [ARGS]...")
    return " ".join(words)


def command_reference() -> str:
    """Markdown for every command of the CLI: usage, help, arguments, options."""
    out: list[str] = []
    for path, command in walk(command_tree()):
        out.append(f"## `{' '.join(path)}`\n")
        if command.help:
            out.append(_para(command.help) + "\n")
        out.append(f"```\n{usage(path, command)}\n```\n")
        subs = getattr(command, "commands", None) or {}
        if subs:
            out.append("| command | what it does |\n| --- | --- |")
            for name, sub in subs.items():
                if not getattr(sub, "hidden", False):
                    first = (sub.help or "").strip().split("\n\n")[0]
                    anchor = "-".join(path + (name,))
                    out.append(f"| [`{' '.join(path + (name,))}`](#{anchor}) | {_cell(first)} |")
            out.append("")
        args = visible_params(command, "argument")
        if args:
            out.append("| argument | type | required | description |\n| --- | --- | --- | --- |")
            for arg in args:
                name = arg.name.upper() + ("..." if arg.nargs == -1 else "")
                out.append(f"| `{name}` | {type_label(arg)} | {'yes' if arg.required else 'no'} | {_cell(getattr(arg, 'help', '') or '')} |")
            out.append("")
        options = visible_params(command, "option")
        out.append("| option | type | default | description |\n| --- | --- | --- | --- |")
        for opt in options:
            names = ", ".join(f"`{o}`" for o in list(opt.opts) + list(opt.secondary_opts))
            help_text = (getattr(opt, "help", "") or "") + (" **Required.**" if opt.required else "")
            out.append(f"| {names} | {type_label(opt)} | {default_label(opt)} | {_cell(help_text)} |")
        out.append("| `--help` | flag | | Show the command's help and exit. |\n")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------
# The case file's tables
def _column_notes() -> dict[tuple[str, str], str]:
    """(table, column) -> the comment beside the column in camleak/casefile.py's SCHEMA."""
    import camleak.casefile as casefile

    notes: dict[tuple[str, str], str] = {}
    table = None
    for line in Path(casefile.__file__).read_text().splitlines():
        if m := re.match(r'^    "(\w+)": \($', line):
            table = m.group(1)
        elif table and (m := re.match(r'^\s+"(\w+)": \w+,\s*#\s*(.+)$', line)):
            notes[(table, m.group(1))] = m.group(2).strip()
        elif line.startswith(("INDEXES", "def ", "class ")):
            break
    return notes


def casefile_tables() -> str:
    from sqlite_utils.db import COLUMN_TYPE_MAPPING

    from camleak.casefile import SCHEMA

    notes = _column_notes()
    out = []
    for table, (columns, pk) in SCHEMA.items():
        keys = (pk,) if isinstance(pk, str) else tuple(pk)
        out.append(f"### `{table}`\n\nKey: {', '.join(f'`{k}`' for k in keys)}.\n")
        out.append("| column | type | note |\n| --- | --- | --- |")
        for column, kind in columns.items():
            note = notes.get((table, column)) or (notes.get(("fingerprints", column), "") if table == "staged_fingerprints" else "")
            out.append(f"| `{column}` | {COLUMN_TYPE_MAPPING.get(kind, 'TEXT')} | {_cell(note)} |")
        out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------
# The report's keys, from the JSON Schema shipped in the package
def report_key_paths() -> list[tuple[str, str, bool, str]]:
    """(path, type, required, description) for every key of camleak.report/1, depth first."""
    from camleak.reporting import load_schema

    rows: list[tuple[str, str, bool, str]] = []

    def walk(node: dict, path: str) -> None:
        required = set(node.get("required", ()))
        for key, sub in node.get("properties", {}).items():
            here = f"{path}.{key}" if path else key
            kind = sub.get("type", "")
            kind = " or ".join(kind) if isinstance(kind, list) else kind
            if "const" in sub:
                kind = f"always `{sub['const']}`"
            elif "enum" in sub:
                kind = " | ".join(f"`{v}`" for v in sub["enum"])
            rows.append((here, kind, key in required, sub.get("description", "")))
            walk(sub, here)
            if isinstance(sub.get("items"), dict):
                walk(sub["items"], here + "[]")

    walk(load_schema(), "")
    return rows


def report_keys() -> str:
    out = ["| key | type | required | description |", "| --- | --- | --- | --- |"]
    for path, kind, required, description in report_key_paths():
        out.append(f"| `{path}` | {_cell(kind)} | {'yes' if required else ''} | {_cell(description)} |")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------
# MkDocs entry point
def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if REFERENCE_MARKER in markdown:
        markdown = markdown.replace(REFERENCE_MARKER, command_reference())
    if CASEFILE_MARKER in markdown:
        markdown = markdown.replace(CASEFILE_MARKER, casefile_tables())
    if REPORT_MARKER in markdown:
        markdown = markdown.replace(REPORT_MARKER, report_keys())
    return markdown
