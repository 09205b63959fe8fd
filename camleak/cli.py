"""The `camleak` command line: a thin layer that parses, calls the library, and prints.

Exit codes: 0 success; 1 an input could not be used (the message names it); 2 usage error;
3 exposures found, only with --fail-on-exposure; 4 a playbook run paused at a manual checkpoint
that awaits confirmation; 70 anything unexpected (one line, the
traceback only with --debug); 130 interrupted.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import sys
import time
import traceback
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from . import __version__, pipeline
from .attribute import AttributionParams
from .casefile import Case, write_private_text
from .errors import CamleakError, InputError, environment_failure
from .logformats import FORMAT_NAMES
from .logparse import FieldMapError, parse_field_map
from .report import build_report, dumps, iter_snapshot_export
from .redact import redact
from .remote import DEFAULT_MAX_BYTES, is_remote
from .summary import render_score, render_summary

class ReportFormat(str, Enum):
    json = "json"
    md = "md"
    html = "html"
    csv = "csv"


class AccessScope(str, Enum):
    home = "home"
    device = "device"


class Difficulty(str, Enum):
    easy = "easy"
    normal = "normal"
    hard = "hard"


EXIT_EXPOSURE = 3
EXIT_PAUSED = 4
EXIT_UNEXPECTED = 70

app = typer.Typer(
    name="camleak",
    help="Find which accounts received which cameras' snapshots in a cross-account leak, from the pixels.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
ingest_app = typer.Typer(help="Bring one kind of input into a case file (each input is ingested once).", no_args_is_help=True)
export_app = typer.Typer(help="Export case data for other tools.", no_args_is_help=True)
inspect_app = typer.Typer(help="Look at inputs before triaging them: what camleak would read (read only, no case file).", no_args_is_help=True)
playbook_app = typer.Typer(help="Incident playbooks: list them, read one as a checklist, run one against a case.", no_args_is_help=True)
app.add_typer(ingest_app, name="ingest")
app.add_typer(export_app, name="export")
app.add_typer(playbook_app, name="playbook")
app.add_typer(inspect_app, name="inspect")

stdout = Console()
stderr = Console(stderr=True)


@functools.lru_cache(maxsize=1)
def command_catalogue():
    """This CLI's commands and options as data, for the playbook checks (which must not import the CLI)."""
    from .commands import from_click
    return from_click(typer.main.get_command(app))
_state: dict[str, Any] = {"debug": False, "wait": 0.0}

CaseOpt = Annotated[Path, typer.Option("--case", "-c", help="The incident's case file (SQLite); created if missing.")]
ExistingCaseOpt = Annotated[Path, typer.Option("--case", "-c", help="The incident's case file (SQLite).")]
WorkersOpt = Annotated[Optional[int], typer.Option("--workers", min=1, help="Processes for fingerprinting (default: all cores).")]
DaskOpt = Annotated[Optional[str], typer.Option("--dask", envvar="CAMLEAK_DASK", help="Fingerprint on this dask.distributed scheduler (tcp://host:port; needs camleak[dask]); workers read object-storage snapshots themselves.")]
ScopeOpt = Annotated[AccessScope, typer.Option("--access-scope", help="'home': an account may see every camera of a home it has access to; 'device': only the devices it owns or is shared on.")]
FailOpt = Annotated[bool, typer.Option("--fail-on-exposure", help="Exit with code 3 when exposures are found.")]
FieldOpt = Annotated[Optional[list[str]], typer.Option("--field", "-f", help="Map a canonical log field to a dotted path in the export, e.g. account_id=jsonPayload.agentUserId (repeatable); replaces the detected format's path for that field.")]


LogFormat = Enum("LogFormat", {name: name for name in FORMAT_NAMES}, type=str)  # type: ignore[misc]


LogFormatOpt = Annotated[LogFormat, typer.Option("--log-format", help=f"Export format of the log files: auto (detected per file from its first records) or one of {', '.join(FORMAT_NAMES[1:])} (see the README).")]


def _check_sha256(values: list[str] | None) -> list[str] | None:
    for item in values or []:
        name, sep, digest = item.rpartition("=")
        if not sep or not name or len(digest.strip()) != 64:
            raise typer.BadParameter(f"{item!r}: expected URL=HEX or FILENAME=HEX (64 hex digits)")
    return values


Sha256Opt = Annotated[Optional[list[str]], typer.Option("--sha256", callback=_check_sha256, help="Expected checksum of a remote file: URL=HEX or FILENAME=HEX (repeatable; a .sha256 sidecar is used when present).")]
MaxBytesOpt = Annotated[int, typer.Option("--max-bytes", min=1, help="Refuse a remote file larger than this many bytes.")]
ConcurrencyOpt = Annotated[int, typer.Option("--concurrency", min=1, max=32, help="Remote files downloaded at once.")]
RetriesOpt = Annotated[int, typer.Option("--retries", min=1, max=100, help="Attempts per remote request (connection errors, timeouts, 429, 5xx).")]
BackoffOpt = Annotated[float, typer.Option("--backoff", min=0.0, max=60.0, help="First retry wait in seconds; doubles with jitter, honours Retry-After.")]


def _version(value: bool) -> None:
    if value:
        stdout.print(f"camleak {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Print tracebacks for unexpected errors.")] = False,
    wait: Annotated[float, typer.Option("--wait", min=0, help="When another camleak process is using the case file, wait up to this many seconds for it instead of refusing at once.")] = 0.0,
) -> None:
    """camleak: triage a smart-camera cross-account snapshot leak."""
    _state["debug"] = debug
    _state["wait"] = wait
    _state["case"] = None
    os.umask(0o077)  # everything camleak writes may hold other people's images or account ids


def handle_errors(func: Callable) -> Callable:
    """Map library errors onto the documented exit codes with a one-line message."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except CamleakError as exc:
            message = None if isinstance(exc, InputError) else environment_failure(exc, _state.get("case"))
            if message is not None:  # e.g. a case that cannot be opened because its disk is full
                stderr.print(f"[bold red]error:[/] {escape(redact(message))}", highlight=False, soft_wrap=True)
                raise typer.Exit(1) from None
            stderr.print(f"[bold red]error:[/] {escape(redact(str(exc)))}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except FieldMapError as exc:
            stderr.print(f"[bold red]usage error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            stderr.print("interrupted; rerun the same command to continue", highlight=False, soft_wrap=True)
            raise typer.Exit(130) from None
        except Exception as exc:  # the last line of defence: one line, exit 70
            message = environment_failure(exc, _state.get("case"))
            if message is not None:  # the machine, not a bug: exit 1 saying how to go on
                if _state["debug"]:
                    traceback.print_exc()
                stderr.print(f"[bold red]error:[/] {escape(redact(message))}", highlight=False, soft_wrap=True)
                raise typer.Exit(1) from None
            if _state["debug"]:
                traceback.print_exc()
            stderr.print(f"[bold red]unexpected error:[/] {type(exc).__name__}: {escape(redact(str(exc)))} (rerun with --debug for the traceback)", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_UNEXPECTED) from None

    return wrapper


class _Rate(ProgressColumn):
    """Items per second (frames/s while snapshots are read and fingerprinted)."""

    def render(self, task) -> Text:
        return Text(f"{task.speed:,.0f}/s" if task.speed else "", style="progress.data.speed")


@contextmanager
def _rich_progress(label: str, total: int | None = None):
    if not stderr.is_terminal:
        yield (lambda n: None, lambda n: None)
        return
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _Rate(), TimeElapsedColumn()]
    with Progress(*columns, console=stderr, transient=True) as progress:
        task = progress.add_task(label, total=total)
        yield (lambda n: progress.advance(task, n), lambda n: progress.update(task, total=n))


def _open_case(path: Path, create: bool = False) -> Case:
    _state["case"] = path  # named by an environment failure's message
    return Case(path, create=create, wait=_state.get("wait") or 0.0)


def _settings(workers: int | None, scope: AccessScope, dask: str | None = None) -> pipeline.TriageSettings:
    return pipeline.TriageSettings(attribution=AttributionParams(access_scope=scope.value), workers=workers,
                                   dask=(dask or "").strip() or None)


def _finish(case: Case, fail_on_exposure: bool, quiet: bool = False) -> None:
    report = build_report(case)
    if not quiet:
        _print_log_formats(case)
        render_summary(report, stdout, case_path=str(case.path))
    if fail_on_exposure and report["summary"]["exposure_pairs"]:
        raise typer.Exit(EXIT_EXPOSURE)


def _print_log_formats(case: Case) -> None:
    """Which export format each log file was read as (and with which field map)."""
    if "log_formats" not in case.db.table_names():
        return
    rows = list(case.db.query("select path, title, decided, given from log_formats order by input_id"))
    if len(rows) > 4:  # many parts: one line per format
        from collections import Counter
        counts = Counter(row["title"] for row in rows)
        stdout.print("[bold]Log formats:[/] " + "; ".join(f"{n} x {escape(t)}" for t, n in counts.most_common())
                     + " (camleak inspect logs shows each file's)", highlight=False, soft_wrap=True)
        return
    for row in rows:
        how = {"auto": "detected", "container": "detected", "given": "--log-format"}.get(row["decided"], row["decided"])
        given = json.loads(row["given"] or "{}")
        extra = f", with --field {', '.join(sorted(given))}" if given else ""
        stdout.print(f"[bold]Log format:[/] {escape(Path(row['path']).name)}: {escape(row['title'])} ({how}{extra})",
                     highlight=False, soft_wrap=True)


# ---------------------------------------------------------------------------------------
@app.command()
@handle_errors
def triage(
    case: CaseOpt,
    devices: Annotated[list[str], typer.Option("--devices", help="Device registry: CSV or JSON lines file, a folder of them, or an http(s) URL.")],
    logs: Annotated[list[str], typer.Option("--logs", help="Delivery log export (JSON lines, .gz, .zst, CSV), a folder of parts, an http(s) URL or a log-store spec (es+, opensearch+, loki+, gcl+, clickhouse+; repeatable).")],
    snapshots: Annotated[list[str], typer.Option("--snapshots", help="Snapshot archive (.tar, .tar.gz, .tgz, .tar.zst, .zip), folder or http(s) URL (repeatable).")],
    references: Annotated[Optional[list[str]], typer.Option("--references", help="Reference frames known to come from a device: <device_id>/image layout or manifest; a path or http(s) URL (repeatable).")] = None,
    field: FieldOpt = None,
    log_format: LogFormatOpt = LogFormat.auto,
    workers: WorkersOpt = None,
    dask: DaskOpt = None,
    access_scope: ScopeOpt = AccessScope.home,
    fail_on_exposure: FailOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing on success.")] = False,
    sha256: Sha256Opt = None,
    max_bytes: MaxBytesOpt = DEFAULT_MAX_BYTES,
    concurrency: ConcurrencyOpt = 4,
    retries: RetriesOpt = 6,
    backoff: BackoffOpt = 0.5,
) -> None:
    """Run every stage on the given inputs and print the summary. Remote inputs are pulled first."""
    settings = _settings(workers, access_scope, dask)
    field_map = parse_field_map(field)
    sources = {"devices": devices, "logs": logs, "snapshots": snapshots, "references": references or []}
    with _open_case(case, create=True) as c:
        if any(is_remote(s) for items in sources.values() for s in items):
            sources, pulled = _pull(c, sources, field_map, sha256, max_bytes, concurrency, retries, backoff, log_format.value)
            if not quiet and stderr.is_terminal:
                from .remote.pull import render_summaries
                render_summaries(pulled, stderr)
        inputs = pipeline.TriageInputs(field_map=field_map, log_format=log_format.value, **sources)
        pipeline.triage(c, inputs, settings, _rich_progress)
        _finish(c, fail_on_exposure, quiet)


@ingest_app.command("devices")
@handle_errors
def ingest_devices_cmd(case: CaseOpt, sources: Annotated[list[Path], typer.Argument(help="Registry files or folders.")]) -> None:
    """Ingest the device registry (device_id, home_id, owner_account, shared_accounts)."""
    from .ingest import ingest_devices
    with _open_case(case, create=True) as c, c.run("ingest devices", {"sources": sources}) as run:
        run.update(ingest_devices(c, sources).as_dict())
        stdout.print(json.dumps(run, sort_keys=True))


@ingest_app.command("logs")
@handle_errors
def ingest_logs_cmd(case: CaseOpt, sources: Annotated[list[str], typer.Argument(help="Log exports, folders of parts, or object-storage URLs (s3://bucket/prefix/).")], field: FieldOpt = None, log_format: LogFormatOpt = LogFormat.auto) -> None:
    """Ingest delivery-log exports; repeated events (same request_id and event) count once."""
    from .ingest import ingest_logs
    field_map = parse_field_map(field)
    with _open_case(case, create=True) as c, c.run("ingest logs", {"sources": sources, "field_map": field_map, "log_format": log_format.value}) as run:
        with _rich_progress("Reading delivery logs") as (advance, _):
            run.update(ingest_logs(c, sources, field_map, advance, log_format.value).as_dict())
        stdout.print(json.dumps(run, sort_keys=True))


@ingest_app.command("snapshots")
@handle_errors
def ingest_snapshots_cmd(case: CaseOpt, sources: Annotated[list[str], typer.Argument(help="Snapshot archives, folders, or object-storage prefixes (s3://bucket/prefix/).")]) -> None:
    """Ingest snapshot archives: each image under its snapshot key (file stem or manifest.jsonl)."""
    from .ingest import ingest_snapshots
    with _open_case(case, create=True) as c, c.run("ingest snapshots", {"sources": sources}) as run:
        with _rich_progress("Reading snapshot archives") as (advance, _):
            run.update(ingest_snapshots(c, sources, advance).as_dict())
        stdout.print(json.dumps(run, sort_keys=True))


@ingest_app.command("references")
@handle_errors
def ingest_references_cmd(case: CaseOpt, sources: Annotated[list[str], typer.Argument(help="Reference archives, folders, or object-storage prefixes (<device_id>/ below it).")]) -> None:
    """Ingest reference frames: images known to come from a device (<device_id>/image)."""
    from .ingest import ingest_references
    with _open_case(case, create=True) as c, c.run("ingest references", {"sources": sources}) as run:
        with _rich_progress("Reading reference frames") as (advance, _):
            run.update(ingest_references(c, sources, advance).as_dict())
        stdout.print(json.dumps(run, sort_keys=True))


def _pull(c: Case, sources: dict, field_map: dict, sha256: list[str] | None, max_bytes: int, concurrency: int,
          retries: int, backoff: float, log_format: str = "auto") -> tuple[dict, list]:
    """Pull the remote sources (recorded as a `pull` run, credentials stripped); returns the
    sources with files downloaded and log stores already in the case, and the summaries."""
    from .remote.net import RetryPolicy
    from .remote.pull import PullOptions, pull
    from .remote.spec import redact_url
    checksums = {}
    for item in sha256 or []:
        name, _, digest = item.rpartition("=")
        checksums[redact_url(name) if "://" in name else name] = digest.strip().lower()
    options = PullOptions(policy=RetryPolicy(attempts=retries, backoff=backoff), max_bytes=max_bytes,
                          checksums=checksums, concurrency=concurrency, field_map=field_map, log_format=log_format)
    labels = {role: [_label(str(s)) for s in items] for role, items in sources.items()}
    with c.run("pull", {"sources": labels, "field_map": field_map}) as run:
        local, pulled = pull(c, sources, options, show_progress=stderr.is_terminal)
        run["sources"] = [s.as_dict() for s in pulled]
    return local, pulled


@app.command("pull")
@handle_errors
def pull_cmd(
    case: CaseOpt,
    devices: Annotated[Optional[list[str]], typer.Option("--devices", help="Device registry: http(s) URL or local path (repeatable).")] = None,
    logs: Annotated[Optional[list[str]], typer.Option("--logs", help="Delivery logs: http(s) URL, log-store spec (es+, opensearch+, loki+, gcl+, clickhouse+) or local path (repeatable).")] = None,
    snapshots: Annotated[Optional[list[str]], typer.Option("--snapshots", help="Snapshot archive: http(s) URL or local path (repeatable).")] = None,
    references: Annotated[Optional[list[str]], typer.Option("--references", help="Reference archive: http(s) URL or local path (repeatable).")] = None,
    field: FieldOpt = None,
    log_format: LogFormatOpt = LogFormat.auto,
    sha256: Sha256Opt = None,
    max_bytes: MaxBytesOpt = DEFAULT_MAX_BYTES,
    concurrency: ConcurrencyOpt = 4,
    retries: RetriesOpt = 6,
    backoff: BackoffOpt = 0.5,
) -> None:
    """Fetch remote inputs into the case (files to its evidence folder, log stores as events) and ingest them; rerun to resume, a finished source adds nothing."""
    field_map = parse_field_map(field)
    sources = {"devices": devices or [], "logs": logs or [], "snapshots": snapshots or [], "references": references or []}
    if not any(sources.values()):
        stderr.print("[bold red]usage error:[/] give at least one of --devices, --logs, --snapshots, --references")
        raise typer.Exit(2)
    with _open_case(case, create=True) as c:
        local, pulled = _pull(c, sources, field_map, sha256, max_bytes, concurrency, retries, backoff, log_format.value)
        ingested = pipeline.run_ingest(c, pipeline.TriageInputs(field_map=field_map, log_format=log_format.value, **local), _rich_progress)
        if stderr.is_terminal:
            from .remote.pull import render_summaries
            render_summaries(pulled, stderr)
        stdout.print(json.dumps({"sources": [s.as_dict() for s in pulled], "ingest": ingested}, sort_keys=True),
                     highlight=False, soft_wrap=True)


def _label(source: str) -> str:
    from .remote.spec import is_remote, parse_spec
    return parse_spec(source).label if is_remote(source) else source


@app.command()
@handle_errors
def fingerprint(case: ExistingCaseOpt, workers: WorkersOpt = None, dask: DaskOpt = None) -> None:
    """Fingerprint every frame not yet fingerprinted with the current parameters."""
    with _open_case(case) as c:
        stdout.print(json.dumps(pipeline.run_fingerprint(c, _settings(workers, AccessScope.home, dask), _rich_progress), sort_keys=True))


@app.command()
@handle_errors
def cluster(case: ExistingCaseOpt) -> None:
    """Group fingerprinted frames by source camera (replaces earlier clusters)."""
    with _open_case(case) as c:
        stdout.print(json.dumps(pipeline.run_cluster(c), sort_keys=True))


@app.command()
@handle_errors
def attribute(case: ExistingCaseOpt, access_scope: ScopeOpt = AccessScope.home, fail_on_exposure: FailOpt = False) -> None:
    """Attribute clusters to devices and compute exposures (replaces earlier results), then summarise."""
    with _open_case(case) as c:
        pipeline.run_attribute(c, _settings(None, access_scope))
        _finish(c, fail_on_exposure)


@app.command()
@handle_errors
def summary(case: ExistingCaseOpt, fail_on_exposure: FailOpt = False) -> None:
    """Print the terminal summary of a triaged case."""
    with _open_case(case) as c:
        _finish(c, fail_on_exposure)


@app.command()
@handle_errors
def report(
    case: ExistingCaseOpt,
    format: Annotated[ReportFormat, typer.Option("--format", help="json (schema camleak.report/1), md (postmortem section), html (self-contained page for the privacy team) or csv (one mail-merge list per notification group; -o is a directory).")] = ReportFormat.json,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write to this file (owner-only) instead of stdout; for csv, the directory (0700) to write the lists into.")] = None,
    reveal_evidence: Annotated[bool, typer.Option("--reveal-evidence", help="html: embed the evidence thumbnails sharp instead of pixelated (the page says so).")] = False,
    fail_on_exposure: FailOpt = False,
) -> None:
    """Write the exposure report (json, md, html or csv)."""
    from . import reporting
    if format is ReportFormat.csv and output is None:
        stderr.print("[bold red]usage error:[/] --format csv writes one file per notification group: give the directory with -o", highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    with _open_case(case) as c:
        data = build_report(c)
        if format is ReportFormat.html:
            text = reporting.render_html(data, c, reveal_evidence=reveal_evidence)
        elif format is ReportFormat.md:
            text = reporting.render_markdown(data, c)
    if format is ReportFormat.json:
        text = dumps(data)
    if format is ReportFormat.csv:
        assert output is not None
        if output.exists() and not output.is_dir():
            raise InputError(f"{output}: exists and is not a directory (csv writes one file per notification group)")
        written = reporting.write_csv_lists(data, output)
        stderr.print(f"wrote {len(written)} lists to {output}/: " + ", ".join(p.name for p in written), highlight=False, soft_wrap=True)
    elif output:
        write_private_text(output, text)
    else:
        sys.stdout.write(text)
    if fail_on_exposure and data["summary"]["exposure_pairs"]:
        raise typer.Exit(EXIT_EXPOSURE)


@export_app.command("snapshots")
@handle_errors
def export_snapshots(
    case: ExistingCaseOpt,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write JSON lines to this file (owner-only) instead of stdout.")] = None,
) -> None:
    """Export one JSON line per snapshot: cluster, source device, attribution, confidence, quality, hashes."""
    with _open_case(case) as c:
        lines = [json.dumps(r, sort_keys=True) + "\n" for r in iter_snapshot_export(c)]
    if output:
        write_private_text(output, "".join(lines))
    else:
        sys.stdout.writelines(lines)


# ---------------------------------------------------------------------------------------
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object per input instead of the terminal view.")]


@inspect_app.command("logs")
@handle_errors
def inspect_logs_cmd(
    sources: Annotated[list[str], typer.Argument(help="Log files, folders, http(s) URLs or log-store specs, as --logs takes them.")],
    field: FieldOpt = None,
    log_format: LogFormatOpt = LogFormat.auto,
    as_json: JsonOpt = False,
) -> None:
    """Show each log file's detected format, the field map in effect, usable and unusable lines, and sample events; exit 1 when triage would refuse a file."""
    from .inspect import inspect_logs
    reports = inspect_logs(sources, parse_field_map(field), log_format.value)
    for r in reports:
        if as_json:
            sys.stdout.write(json.dumps(r.as_dict(), sort_keys=True, default=str) + "\n")
            continue
        stdout.print(f"[bold]{escape(redact(r.source))}[/]", highlight=False, soft_wrap=True)
        if r.format:
            stdout.print(f"  format: {escape(r.title or r.format)} ({r.format}, {r.decided})", highlight=False)
            stdout.print("  field map: " + (" ".join(f"--field {k}={escape(v)}" for k, v in r.field_map.items()) or "none"), highlight=False, soft_wrap=True)
            stdout.print(f"  lines: {r.usable} usable, {r.unusable} unusable", highlight=False)
            for reason, n in list(r.reasons.items())[:5]:
                stdout.print(f"    {n} x {escape(reason)}", highlight=False, soft_wrap=True)
            for event in r.samples:
                stdout.print("  sample: " + escape(json.dumps(event, sort_keys=True)), highlight=False, soft_wrap=True)
        if r.error:
            stdout.print(f"  [bold red]cannot be used:[/] {escape(redact(r.error))}", highlight=False, soft_wrap=True)
    if any(r.error for r in reports):
        raise typer.Exit(1)


@inspect_app.command("snapshots")
@handle_errors
def inspect_snapshots_cmd(
    sources: Annotated[list[str], typer.Argument(help="Snapshot archives, folders or http(s) URLs, as --snapshots takes them.")],
    as_json: JsonOpt = False,
) -> None:
    """Show each snapshot archive's image formats, sizes, truncated and undecodable frames, and sample keys."""
    from .inspect import inspect_snapshots
    reports = inspect_snapshots(sources)
    for r in reports:
        if as_json:
            sys.stdout.write(json.dumps(r.as_dict(), sort_keys=True) + "\n")
            continue
        stdout.print(f"[bold]{escape(redact(r.source))}[/]", highlight=False, soft_wrap=True)
        stdout.print(f"  {r.images} images in {r.members} members, {r.bytes} bytes", highlight=False)
        stdout.print("  formats: " + (", ".join(f"{k} {v}" for k, v in r.formats.items()) or "none"), highlight=False)
        stdout.print("  sizes: " + (", ".join(f"{k} {v}" for k, v in r.sizes.items()) or "none"), highlight=False)
        stdout.print(f"  truncated: {r.truncated}, undecodable: {r.undecodable}", highlight=False)
        if r.skipped:
            stdout.print("  skipped: " + ", ".join(f"{k} {v}" for k, v in r.skipped.items()), highlight=False)
        stdout.print("  sample keys: " + escape(", ".join(r.sample_keys) or "none"), highlight=False, soft_wrap=True)
        if r.error:
            stdout.print(f"  [bold red]cannot be used:[/] {escape(redact(r.error))}", highlight=False, soft_wrap=True)
    if any(r.error for r in reports):
        raise typer.Exit(1)


# ---------------------------------------------------------------------------------------
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", "-s", help="Set a playbook variable: NAME=VALUE (repeat for a list variable; NAME=KEY=VALUE for a mapping such as field_map).")]
DirOpt = Annotated[Optional[list[Path]], typer.Option("--dir", help="Also look for playbooks in this folder (before $CAMLEAK_PLAYBOOKS, ./playbooks and the built-in ones; repeatable).")]


@playbook_app.command("list")
@handle_errors
def playbook_list(dirs: DirOpt = None) -> None:
    """List the playbooks camleak can run: from --dir, $CAMLEAK_PLAYBOOKS, ./playbooks and the built-in ones."""
    from rich.table import Table
    from .playbook import PlaybookError, discover, parse_playbook, read_source
    table = Table(box=None, pad_edge=False)
    table.add_column("name", no_wrap=True)
    for column in ("title", "steps", "from"):
        table.add_column(column)
    broken = 0
    for found in discover(dirs or []):
        try:
            pb = parse_playbook(read_source(found.source), found.source, commands=command_catalogue())
            manual = sum(1 for st in pb.steps if st.kind == "manual")
            table.add_row(found.name, escape(pb.title), f"{len(pb.steps) - manual} commands, {manual} checkpoints", escape(found.origin))
        except PlaybookError as exc:
            broken += 1
            table.add_row(found.name, f"[red]cannot be used:[/] {escape(str(exc))}", "", escape(found.origin))
    stdout.print(table)
    if broken:
        stderr.print(f"{broken} playbook(s) cannot be used; `camleak playbook show NAME` prints the problem", highlight=False)


@playbook_app.command("show")
@handle_errors
def playbook_show(
    name: Annotated[str, typer.Argument(help="Playbook name (see `camleak playbook list`) or path to a .yaml file.")],
    set_: SetOpt = None,
    dirs: DirOpt = None,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print a Markdown checklist (for the incident document) instead of the terminal view.")] = False,
) -> None:
    """Print a playbook as a checklist, with variables substituted and, when its case file exists, each step's state."""
    from .playbook import load, parse_assignments, render_all
    from .playbook_runner import recorded_assignments, run_states
    from .playbook_view import render_checklist, render_markdown_checklist
    pb = load(name, dirs or [], commands=command_catalogue())
    assigned = parse_assignments(pb, set_ or [])
    case_path, run, attempts = run_states(pb, assigned)
    # a run in progress shows the commands it runs: the values it was started with
    rendered, resolver = render_all(pb, recorded_assignments(pb, run, assigned), strict=False)
    if markdown:
        sys.stdout.write(render_markdown_checklist(pb, rendered, resolver, run, attempts))
    else:
        render_checklist(stdout, pb, rendered, resolver, case_path, run, attempts)


@playbook_app.command("run")
@handle_errors
def playbook_run(
    name: Annotated[str, typer.Argument(help="Playbook name (see `camleak playbook list`) or path to a .yaml file.")],
    set_: SetOpt = None,
    dirs: DirOpt = None,
    confirm: Annotated[Optional[list[str]], typer.Option("--confirm", help="Record this manual checkpoint (step id) as done by --operator when the run reaches it (repeatable).")] = None,
    note: Annotated[Optional[str], typer.Option("--note", help="A note recorded with the checkpoints confirmed by --confirm.")] = None,
    operator: Annotated[Optional[str], typer.Option("--operator", help="Who is running the playbook, recorded with each confirmation (default: the login name).")] = None,
    interactive: Annotated[Optional[bool], typer.Option("--interactive/--no-interactive", help="Ask at manual checkpoints (default: when stdin is a terminal). Without asking, a checkpoint is recorded pending and the run goes on only where the playbook says on_pending: continue.")] = None,
    restart: Annotated[bool, typer.Option("--restart", help="Start a new run instead of continuing this playbook's latest run on the case.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run's outcome as JSON on stdout (step output still goes to stderr).")] = False,
) -> None:
    """Run a playbook's steps in order against its case; rerun the same command to continue from a failed or pending step."""
    import getpass
    from .playbook import load, parse_assignments
    from .playbook_runner import RunOptions, run_playbook
    from .playbook_view import announce, ask_checkpoint, render_result
    pb = load(name, dirs or [], commands=command_catalogue())
    assigned = parse_assignments(pb, set_ or [])
    unknown = sorted(set(confirm or []) - {st.id for st in pb.steps if st.kind == "manual"})
    if unknown:
        checkpoints = ", ".join(st.id for st in pb.steps if st.kind == "manual")
        stderr.print(f"[bold red]usage error:[/] --confirm {', '.join(unknown)}: not a manual checkpoint of {pb.name} (its checkpoints: {checkpoints})", highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    try:
        login = getpass.getuser()
    except (KeyError, OSError):
        login = "unknown"
    options = RunOptions(
        operator=operator or login,
        interactive=sys.stdin.isatty() if interactive is None else interactive,
        confirm=frozenset(confirm or []), note=note, restart=restart, debug=_state["debug"], wait=_state["wait"],
        ask=lambda rs: ask_checkpoint(stderr, rs),
        echo=lambda line: stderr.print(f"  [dim]│[/] {escape(line)}", highlight=False, soft_wrap=True),
        announce=lambda kind, text: announce(stderr, kind, text),
    )
    result = run_playbook(pb, assigned, options)
    if as_json:
        stdout.print_json(json.dumps(result.as_dict()))
    else:
        render_result(stdout, pb, result)
    if result.status == "failed":
        raise typer.Exit(1)
    if result.status == "paused":
        raise typer.Exit(EXIT_PAUSED)


# ---------------------------------------------------------------------------------------
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed: the same seed gives the same incident.")]
HomesOpt = Annotated[int, typer.Option("--homes", min=2, help="Number of homes.")]
HoursOpt = Annotated[int, typer.Option("--hours", min=1, help="Length of the simulated period in hours.")]
BugOpt = Annotated[float, typer.Option("--bug-rate", min=0.0, max=1.0, help="Share of requests in the bug window served another home's snapshot.")]
DifficultyOpt = Annotated[Difficulty, typer.Option("--difficulty", help="easy, normal or hard: how hostile the frames are.")]
LookalikeOpt = Annotated[float, typer.Option("--lookalike", min=0.0, max=1.0, help="Share of cameras whose room copies an earlier camera's in another home (identical flats, hotel rooms): slightly zoomed or shifted, another tint, one object changed.")]


def _sim_params(seed: int, homes: int, hours: int, bug_rate: float, difficulty: Difficulty, references: bool,
                lookalike: float = 0.0):
    from .simulate import SimParams
    return SimParams(seed=seed, homes=homes, hours=hours, bug_rate=bug_rate, difficulty=difficulty.value, references=references,
                     lookalike=lookalike)


@app.command()
@handle_errors
def simulate(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the incident into (must be empty or absent).")],
    seed: SeedOpt = 7, homes: HomesOpt = 40, hours: HoursOpt = 24, bug_rate: BugOpt = 0.3, difficulty: DifficultyOpt = Difficulty.normal,
    references: Annotated[bool, typer.Option(help="Write reference frames for some devices.")] = True,
    lookalike: LookalikeOpt = 0.0,
    workers: WorkersOpt = None,
) -> None:
    """Generate a simulated incident (inputs plus truth.json) without triaging it."""
    from .simulate import generate_incident
    if out.exists() and any(out.iterdir()):
        raise InputError(f"{out}: folder is not empty")
    incident = generate_incident(out, _sim_params(seed, homes, hours, bug_rate, difficulty, references, lookalike), workers=workers)
    stdout.print(json.dumps({"root": str(incident.root), **incident.counts}, sort_keys=True))


@app.command()
@handle_errors
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the generated incident and its case file.")] = Path("camleak-demo"),
    seed: SeedOpt = 7, homes: HomesOpt = 40, hours: HoursOpt = 24, bug_rate: BugOpt = 0.3, difficulty: DifficultyOpt = Difficulty.normal,
    references: Annotated[bool, typer.Option(help="Give the triage reference frames for some devices.")] = True,
    lookalike: LookalikeOpt = 0.0,
    score: Annotated[bool, typer.Option("--score", help="Compare the result with the simulator's ground truth.")] = False,
    workers: WorkersOpt = None,
    fail_on_exposure: FailOpt = False,
) -> None:
    """Simulate a cross-account snapshot leak, triage it end to end, and print the summary."""
    from .score import score_case
    from .simulate import generate_incident
    marker = out / "truth.json"
    if out.exists() and any(out.iterdir()):
        if not marker.exists():
            raise InputError(f"{out}: folder exists and is not a camleak demo; choose another --out")
        shutil.rmtree(out)
    params = _sim_params(seed, homes, hours, bug_rate, difficulty, references, lookalike)
    started = time.monotonic()
    with stderr.status("Simulating the incident…") if stderr.is_terminal else _nothing():
        incident = generate_incident(out, params, workers=workers)
    stdout.print(
        f"Simulated incident in {out}/: {incident.counts.get('homes', homes)} homes, "
        f"{incident.counts.get('snapshots', '?')} served snapshots, {incident.counts.get('events', '?')} log events "
        f"({time.monotonic() - started:.1f}s).",
        highlight=False,
    )
    inputs = pipeline.TriageInputs(devices=[incident.devices], logs=incident.logs, snapshots=incident.snapshots,
                                   references=incident.references)  # the log formats are detected
    case_path = out / "case.db"
    with _open_case(case_path, create=True) as c:
        pipeline.triage(c, inputs, _settings(workers, AccessScope.home), _rich_progress)
        stdout.print(f"Triaged in {time.monotonic() - started:.1f}s in all.\n", highlight=False, soft_wrap=True)
        report_data = build_report(c)
        render_summary(report_data, stdout, case_path=str(case_path))
        if score:
            render_score(score_case(c, incident.truth), stdout)
    if fail_on_exposure and report_data["summary"]["exposure_pairs"]:
        raise typer.Exit(EXIT_EXPOSURE)


@app.command("score")
@handle_errors
def score_cmd(
    case: ExistingCaseOpt,
    truth: Annotated[Path, typer.Option("--truth", help="truth.json written by `camleak simulate`.")],
) -> None:
    """Score a triaged case against a simulated incident's ground truth (JSON)."""
    from .score import score_case
    if not truth.is_file():
        raise InputError(f"{truth}: truth file not found")
    with _open_case(case) as c:
        stdout.print_json(json.dumps(score_case(c, truth)))


@contextmanager
def _nothing():
    yield


def main() -> None:
    app(prog_name="camleak")


if __name__ == "__main__":
    main()
