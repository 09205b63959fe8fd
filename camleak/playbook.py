"""Playbooks: the incident response as a YAML file camleak can run and a person can read.

A playbook names its variables (with defaults) and lists ordered steps; a step is either a
camleak command (options with `${variable}` substituted) or a manual checkpoint (an
instruction and who owns it). This module finds, loads, validates and renders playbooks;
`camleak.playbook_runner` runs them and records every step in the case file.

Validation is strict and early, because a typo found at step 7 of a 3 a.m. response costs more
than one found before step 1: the YAML is checked against `schema/playbook.schema.json`, then
every `${name}` must be a declared variable and every camleak command and option must exist.
Errors read `FILE, line N: where: problem`.
"""

from __future__ import annotations

import json
import os
import re
import string
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import jsonschema
import yaml

from .commands import Command
from .errors import CamleakError, InputError

PHASES = ("detection", "containment", "evidence", "analysis", "notification", "recovery", "verification")
RUNBOOK_SECTIONS = ("contain", "preserve_evidence", "analyse", "notify", "recover", "verify")
SUFFIXES = (".yaml", ".yml")
# Options whose values are files or folders the step writes (recorded as the step's outputs).
OUTPUT_OPTIONS = ("output", "out", "o")
FORBIDDEN_COMMANDS = {"playbook"}  # a playbook cannot run playbooks


class PlaybookError(InputError):
    """A playbook file cannot be used; the message names the file, the line and the problem."""


class PlaybookUsageError(CamleakError):
    """The command line does not fit the playbook (unknown or missing variables): exit 2."""

    exit_code = 2


# ---------------------------------------------------------------------------------------
# YAML with line numbers
class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps dates and yes/no as text: `since: 2020-01-02` is a timestamp string
    for camleak, and `no` is not False (YAML 1.1's implicit types surprise playbook authors)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers
            if tag not in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:bool")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))


def _line_index(node: yaml.Node, path: tuple = (), lines: dict | None = None, source: str = "") -> dict[tuple, int]:
    """Map each value's path in the document to its 1-based line; duplicate keys are errors."""
    lines = {} if lines is None else lines
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            line = key_node.start_mark.line + 1
            if key in seen:
                raise PlaybookError(f"{source}, line {line}: {_where(path) or 'top level'}: "
                                    f"key {key!r} appears twice (first on line {seen[key]})")
            seen[key] = line
            lines[path + (key, "<key>")] = line
            _line_index(value_node, path + (key,), lines, source)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_index(item, path + (i,), lines, source)
    return lines


def _where(path: Iterable) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line_of(lines: dict[tuple, int], path: tuple, key: str | None = None) -> int:
    if key is not None and path + (key, "<key>") in lines:
        return lines[path + (key, "<key>")]
    while path not in lines and path:
        path = path[:-1]
    return lines.get(path, 1)


# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Variable:
    name: str
    description: str
    type: str  # string | list | mapping
    default: Any  # None: required
    line: int


@dataclass(frozen=True)
class Step:
    id: str
    phase: str
    title: str
    kind: str  # camleak | manual
    line: int
    command: tuple[str, ...] = ()  # camleak subcommand words
    options: dict[str, Any] = field(default_factory=dict)
    arguments: tuple[Any, ...] = ()
    instruction: str | None = None
    owner: str | None = None
    on_pending: str = "stop"
    when: str | None = None
    why: str | None = None


@dataclass(frozen=True)
class Playbook:
    name: str
    title: str
    description: str
    runbook: dict[str, str]
    variables: dict[str, Variable]
    steps: tuple[Step, ...]
    source: str  # where it was loaded from (a path, or `builtin:NAME.yaml`)
    sha256: str

    def step(self, step_id: str) -> Step:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)


def _schema() -> dict:
    return json.loads(resources.files("camleak").joinpath("schema/playbook.schema.json").read_text())


def _describe_schema_error(error: jsonschema.ValidationError) -> tuple[tuple, str, str | None]:
    """(path, problem, offending key) in words a playbook author understands."""
    path = tuple(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(k for k in error.instance if k not in allowed)
        if extra:
            hint = f" (allowed: {', '.join(sorted(allowed))})" if allowed else ""
            return path, f"unknown key {extra[0]!r}{hint}", extra[0]
    if error.validator == "required":
        return path, error.message.replace("is a required property", "is missing (required)"), None
    if error.validator == "enum":
        return path, f"{error.instance!r} is not one of: {', '.join(map(str, error.validator_value))}", None
    if error.validator == "const":
        return path, f"must be {error.validator_value!r}, not {error.instance!r}", None
    if error.validator == "pattern":
        return path, f"{error.instance!r} must be a lowercase slug (letters, digits, dashes)", None
    if error.validator == "propertyNames":
        return path, f"{error.message}", None
    if error.validator == "oneOf":
        return path, f"{error.instance!r}: must be text, a number, true/false, a list of those or a mapping of those", None
    return path, error.message, None


def parse_playbook(text: str, source: str, *, commands: Command) -> Playbook:
    """Parse and validate one playbook's text; `source` names it in errors, `commands` is the
    catalogue its steps are checked against (the CLI passes its own: this layer never imports it)."""
    import hashlib

    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                raise PlaybookError(f"{source}, line 1: the file is empty")
            lines = _line_index(node, source=source)
            data = loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise PlaybookError(f"{source}, line {line}: not valid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise PlaybookError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise PlaybookError(f"{source}, line 1: a playbook is a mapping (name:, title:, variables:, steps:, ...)")

    validator = jsonschema.Draft202012Validator(_schema())
    errors = list(validator.iter_errors(data))
    if errors:
        # the error nearest the top of the file, as an author reads it
        chosen = min(errors, key=lambda e: (_line_of(lines, tuple(e.absolute_path)), len(e.absolute_path)))
        path, problem, key = _describe_schema_error(chosen)
        if chosen.validator == "required" and path:  # point at the mapping's own key line
            path, key = path[:-1], path[-1]
        line = _line_of(lines, path, key)
        path = path + (key,) if key is not None and chosen.validator == "required" else path
        raise PlaybookError(f"{source}, line {line}: {_where(path) or 'top level'}: {problem}")

    variables = {}
    for name, spec in data["variables"].items():
        default = spec.get("default")
        declared = spec.get("type")
        inferred = "list" if isinstance(default, list) else "mapping" if isinstance(default, dict) else "string"
        if declared and default is not None and declared != inferred:
            raise PlaybookError(f"{source}, line {_line_of(lines, ('variables', name, 'default'))}: "
                                f"variables.{name}: the default is a {inferred}, but type says {declared}")
        vtype = declared or inferred
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            default = str(default)
        variables[name] = Variable(name, spec["description"].strip(), vtype, default, _line_of(lines, ("variables", name)))

    steps = []
    seen: dict[str, int] = {}
    for i, spec in enumerate(data["steps"]):
        where = ("steps", i)
        line = _line_of(lines, where)
        label = f"{source}, line {line}: steps[{i}] ({spec['id']})"
        if spec["id"] in seen:
            raise PlaybookError(f"{label}: step id {spec['id']!r} is already used by the step on line {seen[spec['id']]}")
        seen[spec["id"]] = line
        has_cmd, has_manual = "camleak" in spec, "manual" in spec
        if has_cmd == has_manual:
            raise PlaybookError(f"{label}: a step is either a camleak command (camleak:) or a manual checkpoint "
                                f"(manual:), {'not both' if has_cmd else 'give one'}")
        if has_cmd:
            for key in ("owner", "on_pending"):
                if key in spec:
                    raise PlaybookError(f"{source}, line {_line_of(lines, where, key)}: steps[{i}] ({spec['id']}): "
                                        f"{key}: only manual checkpoints have {key}")
            command = tuple(str(spec["camleak"]).split())
            _check_command(command, spec.get("options", {}), lines, where, source, spec["id"], commands)
            steps.append(Step(spec["id"], spec["phase"], spec["title"], "camleak", line, command=command,
                              options=dict(spec.get("options", {})), arguments=tuple(spec.get("arguments", [])),
                              when=spec.get("when"), why=spec.get("why")))
        else:
            for key in ("options", "arguments"):
                if key in spec:
                    raise PlaybookError(f"{source}, line {_line_of(lines, where, key)}: steps[{i}] ({spec['id']}): "
                                        f"{key}: only camleak steps take {key}")
            steps.append(Step(spec["id"], spec["phase"], spec["title"], "manual", line,
                              instruction=spec["manual"].strip(), owner=spec.get("owner"),
                              on_pending=spec.get("on_pending", "stop"), when=spec.get("when"), why=spec.get("why")))

    _check_references(data, variables, lines, source)
    runbook = {k: v.strip() for k, v in (data.get("runbook") or {}).items()}
    return Playbook(data["name"], data["title"].strip(), data["description"].strip(), runbook, variables,
                    tuple(steps), source, hashlib.sha256(text.encode()).hexdigest())


def _template_names(value: Any) -> Iterable[tuple[str, str | None]]:
    """(text, problem) for each `${...}` use inside a value: names, or why a template is malformed."""
    if isinstance(value, str):
        template = string.Template(value)
        if not template.is_valid():
            yield value, "malformed ${...} (write $$ for a literal $)"
            return
        for name in template.get_identifiers():
            yield name, None
    elif isinstance(value, list):
        for item in value:
            yield from _template_names(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _template_names(item)


def _check_references(data: dict, variables: dict[str, Variable], lines: dict, source: str) -> None:
    def check(value: Any, path: tuple) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                check(v, path + (k,))
            return
        if isinstance(value, list):
            for i, v in enumerate(value):
                check(v, path + (i,))
            return
        for name, problem in _template_names(value):
            if problem:
                raise PlaybookError(f"{source}, line {_line_of(lines, path)}: {_where(path)}: {problem}: {name!r}")
            if name not in variables:
                known = ", ".join(sorted(variables))
                raise PlaybookError(f"{source}, line {_line_of(lines, path)}: {_where(path)}: ${{{name}}} is not a "
                                    f"declared variable (declared: {known})")

    for name, spec in data["variables"].items():
        if "default" in spec:
            check(spec["default"], ("variables", name, "default"))
    for i, spec in enumerate(data["steps"]):
        for key in ("title", "options", "arguments", "manual", "when", "owner"):
            if key in spec:
                check(spec[key], ("steps", i, key))


def _check_command(command: tuple[str, ...], options: dict, lines: dict, where: tuple, source: str, step_id: str,
                   catalogue: Command) -> None:
    """The command and its options must exist in this camleak, so a typo fails before step 1."""
    label = f"steps[{where[1]}] ({step_id})"
    group = catalogue
    words = []
    for word in command:
        words.append(word)
        if word in FORBIDDEN_COMMANDS:
            raise PlaybookError(f"{source}, line {_line_of(lines, where, 'camleak')}: {label}: camleak: "
                                f"a playbook cannot run `camleak {' '.join(words)}`")
        subcommands = group.subcommands
        if not subcommands or word not in subcommands:
            known = ", ".join(sorted(subcommands)) if subcommands else "none"
            raise PlaybookError(f"{source}, line {_line_of(lines, where, 'camleak')}: {label}: camleak: no command "
                                f"`camleak {' '.join(words)}` (known here: {known})")
        group = subcommands[word]
    if group.is_group:
        raise PlaybookError(f"{source}, line {_line_of(lines, where, 'camleak')}: {label}: camleak: "
                            f"`camleak {' '.join(words)}` needs a subcommand ({', '.join(sorted(group.subcommands))})")
    accepted = group.options
    for name in options:
        if _option_flag(name) not in accepted:
            names = sorted(o[2:] for o in accepted if o.startswith("--") and o != "--help")
            raise PlaybookError(f"{source}, line {_line_of(lines, where + ('options',), name)}: {label}: options: "
                                f"`camleak {' '.join(words)}` has no option --{name} (it has: {', '.join(names)})")


def _option_flag(name: str) -> str:
    return ("-" if len(name) == 1 else "--") + name.replace("_", "-")


# ---------------------------------------------------------------------------------------
# Finding playbooks
@dataclass(frozen=True)
class Found:
    name: str
    source: str  # a path, or builtin:<file>
    origin: str  # a folder, or "built-in"


def search_dirs(extra: Iterable[Path] = ()) -> list[Path]:
    """Where playbooks are looked for, first match wins: --dir, $CAMLEAK_PLAYBOOKS, ./playbooks."""
    dirs = [Path(d) for d in extra]
    dirs += [Path(p) for p in os.environ.get("CAMLEAK_PLAYBOOKS", "").split(os.pathsep) if p]
    dirs.append(Path("playbooks"))
    return dirs


def _builtin_files() -> list[Any]:
    try:
        root = resources.files("camleak.builtin_playbooks")
    except ModuleNotFoundError:
        return []
    return sorted((f for f in root.iterdir() if f.name.endswith(SUFFIXES)), key=lambda f: f.name)


def discover(extra_dirs: Iterable[Path] = ()) -> list[Found]:
    """Every playbook file on the search path and the built-in ones; earlier ones shadow later."""
    found: dict[str, Found] = {}
    for folder in search_dirs(extra_dirs):
        if folder.is_dir():
            for path in sorted(folder.iterdir()):
                if path.suffix in SUFFIXES and path.is_file():
                    found.setdefault(path.stem, Found(path.stem, str(path), str(folder)))
    for f in _builtin_files():
        stem = f.name.rsplit(".", 1)[0]
        found.setdefault(stem, Found(stem, f"builtin:{f.name}", "built-in"))
    return sorted(found.values(), key=lambda f: f.name)


def read_source(source: str) -> str:
    if source.startswith("builtin:"):
        return resources.files("camleak.builtin_playbooks").joinpath(source[len("builtin:"):]).read_text()
    try:
        return Path(source).read_text()
    except UnicodeDecodeError:
        raise PlaybookError(f"{source}: not a text file") from None
    except OSError as exc:
        raise PlaybookError(f"{source}: cannot read the playbook ({exc.strerror})") from None


def load(name_or_path: str, extra_dirs: Iterable[Path] = (), *, commands: Command) -> Playbook:
    """Load a playbook by name (search path, then built-in) or by path to a .yaml file."""
    if name_or_path.endswith(SUFFIXES) or os.sep in name_or_path:
        path = Path(name_or_path)
        if not path.is_file():
            raise PlaybookError(f"{name_or_path}: no such playbook file")
        return parse_playbook(read_source(str(path)), str(path), commands=commands)
    for found in discover(extra_dirs):
        if found.name == name_or_path:
            playbook = parse_playbook(read_source(found.source), found.source, commands=commands)
            if playbook.name != found.name:
                raise PlaybookError(f"{found.source}, line 1: name: {playbook.name!r} differs from the file name "
                                    f"{found.name!r}; make them the same so `camleak playbook run {found.name}` is unambiguous")
            return playbook
    known = ", ".join(f.name for f in discover(extra_dirs)) or "none"
    raise PlaybookUsageError(f"no playbook named {name_or_path!r} (known: {known}); see `camleak playbook list`")


# ---------------------------------------------------------------------------------------
# Variables and rendering
def parse_assignments(playbook: Playbook, assignments: Iterable[str]) -> dict[str, Any]:
    """`--set name=value` items as values: a list variable collects repeated sets (the first
    replaces the default; `name=` alone empties it); a mapping variable takes `name=key=value`."""
    values: dict[str, Any] = {}
    for item in assignments:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise PlaybookUsageError(f"--set {item!r}: expected NAME=VALUE")
        var = playbook.variables.get(name)
        if var is None:
            raise PlaybookUsageError(f"--set {item!r}: playbook {playbook.name} has no variable {name!r} "
                                     f"(it has: {', '.join(sorted(playbook.variables))})")
        if var.type == "list":
            bucket = values.setdefault(name, [])
            if value:
                bucket.append(value)
        elif var.type == "mapping":
            bucket = values.setdefault(name, {})
            if value:
                key, ksep, mapped = value.partition("=")
                if not ksep or not key.strip():
                    raise PlaybookUsageError(f"--set {item!r}: {name} is a mapping; write {name}=KEY=VALUE")
                bucket[key.strip()] = mapped.strip()
        else:
            values[name] = value
    return values


class Resolver:
    """Variable values: `--set` first, then defaults, with `${...}` in defaults resolved lazily,
    so a default nobody uses never needs its own variables set."""

    def __init__(self, playbook: Playbook, assigned: dict[str, Any], placeholders: bool = False):
        self.playbook = playbook
        self.placeholders = placeholders  # a missing variable renders as <name> (for `show`)
        self.assigned = assigned
        self.cache: dict[str, Any] = {}
        self.missing: set[str] = set()
        self._stack: list[str] = []

    def value(self, name: str) -> Any:
        if name in self.cache:
            return self.cache[name]
        if name in self.assigned:
            value = self.assigned[name]
        else:
            default = self.playbook.variables[name].default
            if default is None:
                self.missing.add(name)
                return f"<{name}>" if self.placeholders else ""
            if name in self._stack:
                cycle = " -> ".join(self._stack[self._stack.index(name):] + [name])
                raise PlaybookError(f"{self.playbook.source}, line {self.playbook.variables[name].line}: "
                                    f"variables: defaults refer to each other in a circle: {cycle}")
            self._stack.append(name)
            try:
                value = self.render(default, f"variables.{name}.default")
            finally:
                self._stack.pop()
        self.cache[name] = value
        return value

    def render(self, value: Any, where: str) -> Any:
        """Substitute variables; a value that is exactly `${name}` keeps the variable's type."""
        if isinstance(value, bool) or value is None:
            return value
        if isinstance(value, (int, float)):
            return str(value)
        if isinstance(value, list):
            out: list = []
            for item in value:
                rendered = self.render(item, where)
                out.extend(rendered if isinstance(rendered, list) else [rendered])
            return out
        if isinstance(value, dict):
            return {k: self.render(v, where) for k, v in value.items()}
        whole = re.fullmatch(r"\$\{([a-z_][a-z0-9_]*)\}|\$([a-z_][a-z0-9_]*)", value)
        if whole:
            return self.value(whole[1] or whole[2])

        class Lookup(dict):
            def __missing__(inner, key: str) -> str:
                resolved = self.value(key)
                if isinstance(resolved, (list, dict)):
                    raise PlaybookError(f"{self.playbook.source}: {where}: ${{{key}}} is a "
                                        f"{'list' if isinstance(resolved, list) else 'mapping'} and cannot be part of "
                                        f"longer text; use it alone as the whole value")
                return "" if resolved is None else str(resolved)

        return string.Template(value).substitute(Lookup())


@dataclass(frozen=True)
class RenderedStep:
    step: Step
    argv: tuple[str, ...]  # for camleak steps: the arguments after `camleak`
    instruction: str | None
    title: str
    owner: str | None
    enabled: bool  # False when `when:` rendered empty
    outputs: tuple[str, ...]  # files or folders the step writes

    @property
    def command_line(self) -> str:
        import shlex
        return "camleak " + " ".join(shlex.quote(a) for a in self.argv) if self.argv else ""


def _truthy(value: Any) -> bool:
    if isinstance(value, (list, dict)):
        return bool(value)
    if isinstance(value, bool):
        return value
    return bool(value) and str(value).strip().lower() not in ("false", "no", "0", "off", "none")


def render_step(resolver: Resolver, step: Step) -> RenderedStep:
    where = f"steps.{step.id}"
    title = str(resolver.render(step.title, f"{where}.title"))
    enabled = _truthy(resolver.render(step.when, f"{where}.when")) if step.when is not None else True
    if step.kind == "manual":
        owner = resolver.render(step.owner, f"{where}.owner") if step.owner else None
        return RenderedStep(step, (), str(resolver.render(step.instruction, f"{where}.manual")), title, owner, enabled, ())
    argv: list[str] = list(step.command)
    outputs: list[str] = []
    for name, raw in step.options.items():
        flag = _option_flag(name)
        value = resolver.render(raw, f"{where}.options.{name}")
        if value is True:
            argv.append(flag)
        elif value is False or value is None or value == "" or value == [] or value == {}:
            continue
        elif isinstance(value, list):
            for item in value:
                if item not in (None, ""):
                    argv += [flag, str(item)]
        elif isinstance(value, dict):
            for key, item in value.items():
                argv += [flag, f"{key}={item}"]
        else:
            argv += [flag, str(value)]
            if name in OUTPUT_OPTIONS:
                outputs.append(str(value))
    for raw in step.arguments:
        value = resolver.render(raw, f"{where}.arguments")
        argv += [str(v) for v in (value if isinstance(value, list) else [value]) if v not in (None, "")]
    return RenderedStep(step, tuple(argv), None, title, None, enabled, tuple(outputs))


def render_all(playbook: Playbook, assigned: dict[str, Any], strict: bool = True) -> tuple[list[RenderedStep], Resolver]:
    """Render every step up front, so missing variables are reported together before step 1.
    `strict=False` (for reading) renders a missing variable as <name> instead of failing."""
    resolver = Resolver(playbook, assigned, placeholders=not strict)
    rendered = [render_step(resolver, step) for step in playbook.steps]
    resolver.value("case")
    if resolver.missing and strict:
        names = sorted(resolver.missing)
        raise PlaybookUsageError(
            f"playbook {playbook.name} needs {', '.join(names)}: "
            + " ".join(f"--set {n}=..." for n in names)
            + " (see `camleak playbook show " + playbook.name + "`)")
    return rendered, resolver
