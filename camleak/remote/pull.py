"""Pull remote inputs into the case: files to the evidence folder, log stores page by page.

Files (registries, log exports, snapshot and reference archives) are downloaded, several at
once (bounded), and then ingested like local files. Log stores are read page by page; each
page's events are committed in one transaction together with the cursor that follows it (in
the `pulls` table), so an interrupted pull resumes after its last whole page, a failure never
leaves half a page, and a finished source is not contacted again.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import httpx

from .. import ingest, logparse
from ..casefile import Case, sha256_file, utcnow
from ..errors import InputError
from . import net
from .clickhouse import ClickHouse
from . import DEFAULT_MAX_BYTES
from .download import Downloaded, download, evidence_dir
from .es import Elasticsearch
from .gcl import CloudLogging
from .loki import Loki
from .spec import SourceSpec, is_remote, parse_spec
from .stores import LogStore

STORES: dict[str, type[LogStore]] = {"es": Elasticsearch, "opensearch": Elasticsearch, "loki": Loki,
                                     "gcl": CloudLogging, "clickhouse": ClickHouse}
ROLES = ("devices", "logs", "snapshots", "references")
EVENT_COLUMNS = ("event_key", "ts", "ts_ms", "account_id", "device_id", "snapshot", "event", "integration",
                 "request_id", "input_id", "line")


@dataclass
class PullOptions:
    policy: net.RetryPolicy = field(default_factory=net.RetryPolicy)
    max_bytes: int = DEFAULT_MAX_BYTES
    checksums: dict[str, str] = field(default_factory=dict)  # URL (redacted) or file name -> sha256
    use_sidecar: bool = True
    concurrency: int = 4
    field_map: dict[str, str] = field(default_factory=dict)
    log_format: str = "auto"  # the export profile whose field names a store's records carry


#: The export profile of each log store's records (as the store client yields them).
STORE_PROFILES = {"es": "elasticsearch", "opensearch": "elasticsearch", "gcl": "gcl", "loki": "logcli",
                  "clickhouse": "clickhouse"}


def _store_field_map(kind: str, records: list[Any], options: PullOptions) -> dict[str, str]:
    """The field map for a store's records: its profile's paths found on the first page, with
    the given --field maps winning."""
    from .. import logformats
    name = options.log_format if options.log_format != "auto" else STORE_PROFILES.get(kind)
    if name is None:
        return dict(options.field_map)
    found = logformats.resolve(logformats.BY_NAME[name], [r for r in records if isinstance(r, dict)])
    return {**found, **options.field_map}


@dataclass
class SourceSummary:
    role: str
    source: str
    kind: str
    status: str = "complete"
    pages: int = 0
    events: int = 0
    duplicates: int = 0
    skipped: int = 0
    bytes: int = 0
    retries: int = 0
    seconds: float = 0.0
    path: str | None = None
    sha256: str | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["seconds"] = round(self.seconds, 3)
        return {k: v for k, v in data.items() if v is not None}


def pull(case: Case, sources: dict[str, Sequence[str | Path]], options: PullOptions | None = None,
         show_progress: bool = False) -> tuple[dict[str, list[str | Path]], list[SourceSummary]]:
    """Fetch every remote source in `sources` (role -> list); returns the same mapping with each
    file URL replaced by its downloaded path and each log store removed (its events are in the
    case already), plus one summary per remote source. Raises InputError when a source failed,
    after the others have finished."""
    options = options or PullOptions()
    local: dict[str, list[str | Path]] = {role: [] for role in sources}
    files: list[tuple[str, int, SourceSpec]] = []
    stores: list[tuple[str, SourceSpec]] = []
    for role, items in sources.items():
        for item in items:
            if not is_remote(item):
                local[role].append(item)
                continue
            spec = parse_spec(str(item))
            if spec.kind == "http":
                files.append((role, len(local[role]), spec))
                local[role].append(spec.label)  # placeholder, replaced by the downloaded path
            elif role != "logs":
                raise InputError(f"{spec.label}: a log store can only feed --logs, not --{role}")
            else:
                stores.append((role, spec))
    summaries: list[SourceSummary] = []
    errors: list[str] = []
    stop = threading.Event()
    with _Display(show_progress) as display:
        futures = _start_downloads(case, files, options, display, stop)
        try:
            for role, spec in stores:
                try:
                    summaries.append(pull_store(case, spec, options, display))
                except InputError as exc:
                    errors.append(str(exc))
                    summaries.append(SourceSummary(role, spec.label, spec.kind, status="failed", error=str(exc)))
        except BaseException:
            stop.set()  # an interrupt: downloads stop too, keeping their .part for the rerun
            raise
        for (role, index, spec), future in futures:
            summary = _finish_download(case, role, spec, future)
            summaries.append(summary)
            if summary.status == "failed":
                errors.append(summary.error or spec.label)
            else:
                local[role][index] = summary.path  # type: ignore[assignment]
    if errors:
        raise InputError(errors[0] + (f" (and {len(errors) - 1} more failed sources)" if len(errors) > 1 else ""))
    return local, summaries


# ---------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------
def _start_downloads(case: Case, files: list[tuple[str, int, SourceSpec]], options: PullOptions,
                     display: "_Display", stop: threading.Event) -> list[tuple[tuple[str, int, SourceSpec], Future]]:
    if not files:
        return []
    folder = evidence_dir(case.path)
    pool = ThreadPoolExecutor(max_workers=max(1, options.concurrency), thread_name_prefix="camleak-pull")
    futures = []
    for role, index, spec in files:
        done = _pull_row(case, role, spec.label)
        if done and done["status"] == "complete" and done["path"] and Path(done["path"]).is_file() \
                and sha256_file(Path(done["path"])) == done["sha256"]:
            future: Future = Future()
            future.set_result(Downloaded(Path(done["path"]), done["sha256"], done["bytes"], 0, 0.0, 0))
        else:
            expected = options.checksums.get(spec.label) or options.checksums.get(Path(spec.label.split("?")[0]).name)
            future = pool.submit(_download_one, spec, folder, options, expected, display, stop)
        futures.append(((role, index, spec), future))
    pool.shutdown(wait=False)
    return futures


def _download_one(spec: SourceSpec, folder: Path, options: PullOptions, expected: str | None,
                  display: "_Display", stop: threading.Event) -> Downloaded:
    spec, http = _client_for(spec, options)
    task = display.add(_short(spec.label.split("?")[0].rsplit("/", 1)[-1]), "B")
    counter = net.Counter()

    def progress(n: int, total: int | None) -> None:
        if stop.is_set():
            raise InputError(f"{spec.label}: stopped; rerun to resume")
        display.advance(task, n, total)

    try:
        with http:
            return download(http, spec, folder, policy=options.policy, expected_sha256=expected,
                            use_sidecar=options.use_sidecar, max_bytes=options.max_bytes,
                            progress=progress, counter=counter)
    finally:
        display.done(task)


def _finish_download(case: Case, role: str, spec: SourceSpec, future: Future) -> SourceSummary:
    summary = SourceSummary(role, spec.label, "http")
    started = utcnow()
    try:
        result: Downloaded = future.result()
    except InputError as exc:
        summary.status, summary.error = "failed", str(exc)
        _save_pull(case, role, spec.label, "http", status="failed", error=str(exc), started=started)
        return summary
    summary.path, summary.sha256, summary.bytes = str(result.path), result.sha256, result.fetched
    summary.retries, summary.seconds = result.retries, result.seconds
    summary.status = "complete" if result.fetched else "up to date"
    previous = _pull_row(case, role, spec.label)
    if not (previous and previous["status"] == "complete" and previous["sha256"] == result.sha256):
        _save_pull(case, role, spec.label, "http", status="complete", path=str(result.path), sha256=result.sha256,
                   bytes=result.size, retries=result.retries, started=started, finished=utcnow(), error=None)
    return summary


# ---------------------------------------------------------------------------------------
# Log stores
# ---------------------------------------------------------------------------------------
def pull_store(case: Case, spec: SourceSpec, options: PullOptions, display: "_Display | None" = None) -> SourceSummary:
    """Pull one log store into the case as events, committing page by page with its cursor."""
    display = display or _Display(False)
    summary = SourceSummary("logs", spec.label, spec.kind)
    started = time.monotonic()
    row = _pull_row(case, "logs", spec.label)
    if row and row["status"] == "complete":
        summary.status = "up to date"
        return summary
    input_id = row["input_id"] if row and row["input_id"] and case.count("inputs", "id = ?", [row["input_id"]]) else None
    if input_id is None:
        identity = hashlib.sha256(("pull\0" + spec.label).encode()).hexdigest()
        input_id = case.record_input("logs", spec.label, identity, 0).id
    pull_id = _save_pull(case, "logs", spec.label, spec.kind, status="running", input_id=input_id,
                         started=row["started"] if row else utcnow(), error=None)
    cursor = json.loads(row["cursor"]) if row and row["cursor"] else None
    ordinal = row["records"] if row and row["records"] else 0
    usage = logparse.MapUsage()
    counter = net.Counter()
    spec_clean, http = _client_for(spec, options)
    store = STORES[spec.kind](spec_clean, http, options.policy, counter)
    store.label = spec.label
    task = display.add(_short(spec.label), "events")
    status = "failed"
    field_map: dict[str, str] | None = None
    try:
        for page in store.pages(cursor):
            if field_map is None and page.records:
                field_map = _store_field_map(spec.kind, page.records, options)
            rows, problems, ordinal = _canonicalise(page.records, spec.label, input_id, ordinal,
                                                    field_map or options.field_map, usage)
            inserted = _commit_page(case, pull_id, rows, problems, page.cursor, ordinal, page.nbytes,
                                    counter.retries - summary.retries)
            summary.pages += 1
            summary.events += inserted
            summary.duplicates += len(rows) - inserted
            summary.skipped += len(problems)
            summary.bytes += page.nbytes
            summary.retries = counter.retries
            display.advance(task, len(page.records), None)
        totals = _pull_row(case, "logs", spec.label) or {}
        items = case.count("events", "input_id = ?", [input_id])
        skipped = case.count("problems", "input_id = ? and kind = 'malformed_log_line'", [input_id])
        parsed = (totals.get("records") or 0) - skipped  # events read, duplicates included
        if summary.pages:
            try:
                warnings = ingest._check_field_map(spec.label, options.field_map, usage, parsed, skipped)  # type: ignore[arg-type]
            except InputError:
                # A mapped required field that matched nothing: like a bad file, the source is
                # dropped whole, so a corrected rerun starts clean.
                case.forget_input(input_id)
                case.db.execute("delete from pulls where id = ?", [pull_id])
                case.db.conn.commit()
                status = "dropped"
                raise
            for message in warnings:
                case.add_problem("ingest", "field_map_unmatched", message, input_id=input_id, path=spec.label)
        case.finish_input(input_id, items, skipped)
        case.db["inputs"].update(input_id, {"size": totals.get("bytes") or summary.bytes})
        status = "complete"
    except BaseException as exc:
        if status != "dropped":
            state = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            case.db.execute("update pulls set status = ?, error = ?, retries = retries + ? where id = ?",
                            [state, _safe_error(exc), counter.retries - summary.retries, pull_id])
            case.db.conn.commit()
        summary.retries = counter.retries
        raise
    finally:
        store.close()
        http.close()
        display.done(task)
    case.db["pulls"].update(pull_id, {"status": "complete", "finished": utcnow(), "error": None})
    summary.seconds = time.monotonic() - started
    return summary


def _canonicalise(records: list[Any], label: str, input_id: int, ordinal: int, field_map: dict[str, str],
                  usage: logparse.MapUsage) -> tuple[list[tuple], list[tuple], int]:
    rows, problems = [], []
    for record in records:
        ordinal += 1
        error = None
        if isinstance(record, dict):
            try:
                event = logparse.canonicalise(record, field_map, usage)
            except ValueError as exc:
                error = str(exc)
            else:
                event.update(input_id=input_id, line=ordinal)
                rows.append(tuple(event.get(c) for c in EVENT_COLUMNS))
                continue
            raw = json.dumps(record, sort_keys=True)
        else:
            raw = str(record)
            try:
                json.loads(raw)
                error = "not a JSON object"
            except ValueError as exc:
                error = f"not JSON ({exc.args[0].split(':')[0] if exc.args else exc})"
        problems.append((input_id, "ingest", label, ordinal, "malformed_log_line", f"{label}#{ordinal}: {error}",
                         raw[:500]))
    return rows, problems, ordinal


def _commit_page(case: Case, pull_id: int, rows: list[tuple], problems: list[tuple], cursor: dict | None,
                 ordinal: int, nbytes: int, retries: int) -> int:
    """One page, all or nothing: its events, its problems and the cursor after it."""
    conn = case.db.conn
    placeholders = ", ".join("?" for _ in EVENT_COLUMNS)
    with conn:
        before = conn.total_changes
        conn.executemany(f"insert or ignore into events ({', '.join(EVENT_COLUMNS)}) values ({placeholders})", rows)
        inserted = conn.total_changes - before
        conn.executemany("insert into problems (input_id, stage, path, line, kind, message, raw) "
                         "values (?, ?, ?, ?, ?, ?, ?)", problems)
        conn.execute("update pulls set cursor = ?, records = ?, pages = pages + 1, events = events + ?, "
                     "bytes = bytes + ?, retries = retries + ? where id = ?",
                     [json.dumps(cursor) if cursor is not None else None, ordinal, inserted, nbytes, retries, pull_id])
    return inserted


# ---------------------------------------------------------------------------------------
# Case bookkeeping, clients, display
# ---------------------------------------------------------------------------------------
def _pull_row(case: Case, role: str, source: str) -> dict[str, Any] | None:
    rows = list(case.db.query("select * from pulls where role = ? and source = ?", [role, source]))
    return rows[0] if rows else None


def _save_pull(case: Case, role: str, source: str, kind: str, **values: Any) -> int:
    existing = _pull_row(case, role, source)
    if existing:
        case.db["pulls"].update(existing["id"], values)
        return existing["id"]
    table = case.db["pulls"]
    table.insert({"role": role, "source": source, "kind": kind, "pages": 0, "events": 0, "bytes": 0,
                  "retries": 0, "records": 0, **values})
    return table.last_pk  # type: ignore[return-value]


def _short(label: str, width: int = 36) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


def _safe_error(exc: BaseException) -> str:
    if isinstance(exc, InputError):
        return str(exc)[:500]
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return net.describe(exc) if isinstance(exc, httpx.HTTPError) else type(exc).__name__


def _client_for(spec: SourceSpec, options: PullOptions) -> tuple[SourceSpec, httpx.Client]:
    """A client carrying the source's credentials; the returned spec has none left in its URL."""
    url, auth, headers = net.auth_for(spec.url)
    env = os.environ
    if spec.kind == "gcl" and (env.get("CAMLEAK_GCL_TOKEN") or env.get("GOOGLE_OAUTH_ACCESS_TOKEN")):
        headers["Authorization"] = f"Bearer {env.get('CAMLEAK_GCL_TOKEN') or env.get('GOOGLE_OAUTH_ACCESS_TOKEN')}"
    if spec.kind in ("es", "opensearch") and env.get("CAMLEAK_ES_API_KEY"):
        headers["Authorization"] = f"ApiKey {env['CAMLEAK_ES_API_KEY']}"
    if spec.kind == "loki" and env.get("CAMLEAK_LOKI_TENANT"):
        headers["X-Scope-OrgID"] = env["CAMLEAK_LOKI_TENANT"]
    if spec.kind == "clickhouse" and auth is None and env.get("CLICKHOUSE_USER"):
        auth = httpx.BasicAuth(env["CLICKHOUSE_USER"], env.get("CLICKHOUSE_PASSWORD", ""))
    return replace(spec, url=url), net.client(options.policy, auth, headers)


class _Display:
    """Progress on a terminal (bytes or events, with rate); nothing otherwise."""

    def __init__(self, enabled: bool):
        self.progress = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), _Amount(), _Rate(),
                                     TimeElapsedColumn(), console=Console(stderr=True), transient=True)

    def __enter__(self) -> "_Display":
        if self.progress:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress:
            self.progress.stop()

    def add(self, label: str, unit: str) -> Any:
        return self.progress.add_task(label, total=None, unit=unit) if self.progress else None

    def advance(self, task: Any, n: int, total: int | None) -> None:
        if self.progress is not None:
            self.progress.update(task, advance=n, **({"total": total} if total else {}))

    def done(self, task: Any) -> None:
        if self.progress is not None:
            self.progress.remove_task(task)


def _columns():
    from rich import filesize
    from rich.progress import ProgressColumn
    from rich.text import Text

    def amount(value: float, unit: str) -> str:
        return filesize.decimal(int(value)) if unit == "B" else f"{value:,.0f} {unit}"

    class Amount(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text(amount(task.completed, task.fields.get("unit", "")))

    class Rate(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text("" if speed is None else amount(speed, task.fields.get("unit", "")) + "/s")

    return Amount, Rate


def _Amount():  # noqa: N802 - column factories, imported lazily with rich
    return _columns()[0]()


def _Rate():  # noqa: N802
    return _columns()[1]()


def render_summaries(summaries: list[SourceSummary], console: Any) -> None:
    """The per-source summary table: pages, events, bytes, retries, time."""
    from rich.table import Table
    table = Table(title="Pulled sources", title_justify="left")
    for name in ("source", "status", "pages", "events", "bytes", "retries", "time"):
        table.add_column(name, justify="left" if name in ("source", "status") else "right")
    for s in summaries:
        table.add_row(f"{s.role}: {s.source}", s.status, str(s.pages) if s.kind != "http" else "-",
                      str(s.events) if s.kind != "http" else "-", f"{s.bytes:,}", str(s.retries), f"{s.seconds:.1f}s")
    console.print(table)
