"""The command catalogue: which camleak commands exist and which options each takes, as data.

The CLI builds it from its typer app (`camleak.cli.command_catalogue`) and hands it to playbook
validation, so a playbook step naming a command or option this camleak lacks fails before step 1,
while the playbook layer never imports the CLI: the CLI stays the top layer that nothing imports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class Command:
    """One command (or group): its option spellings and, for a group, its subcommands."""

    name: str
    options: frozenset[str] = frozenset()  # every spelling: --case, -o, --interactive, --no-interactive
    subcommands: Mapping[str, "Command"] = field(default_factory=dict)

    @property
    def is_group(self) -> bool:
        return bool(self.subcommands)


def from_click(command: Any, name: str | None = None) -> Command:
    """The catalogue of a click command tree (typer's `typer.main.get_command(app)`), duck-typed."""
    options = frozenset(opt for p in getattr(command, "params", ())
                        if getattr(p, "param_type_name", "") == "option"
                        for opt in list(p.opts) + list(p.secondary_opts))
    subs = {sub: from_click(cmd, sub) for sub, cmd in sorted((getattr(command, "commands", None) or {}).items())}
    return Command(name or command.name or "camleak", options, subs)
