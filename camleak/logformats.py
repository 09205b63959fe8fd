"""Known log export formats as small declarative profiles, and picking one per file.

Responders hand camleak whatever their log store exported. Each profile says where a store's
export keeps its records (one per line, or inside a response document), how one exported item
becomes delivery records, and where in a record the canonical fields live: the store's own
fields first (`timestamp` of a Cloud Logging LogEntry), then the application's payload, looked
up under the profile's payload roots (`jsonPayload`, `protoPayload`, `labels`) by the usual
names applications give the canonical fields (`agentUserId` for `account_id`).

`auto` reads a file's first records, keeps the profiles whose signature they carry, resolves
each one's field map on them and picks the one that makes most records usable (ties go to the
more specific profile). The field map it settles on is concrete dotted paths, recorded in the
case and shown by `camleak inspect logs`; an explicit `--field` replaces that field's path.
A file whose records mostly lack a required field is refused with what it does have and a
ready `--field` suggestion.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import json
import re
import zlib
from collections import Counter
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Iterable, Iterator, Mapping

import ijson

from . import logparse
from .errors import InputError
from .logparse import CANONICAL_FIELDS, REQUIRED_FIELDS, RawRecord, lookup

#: Records read before deciding a file's format.
SAMPLE = 200
#: Below this share of usable records in the sample, the file is refused.
USABLE_SHARE = 0.5

#: Names applications commonly give each canonical field (matched exactly, then case- and
#: separator-insensitively). The canonical name comes first.
ALIASES: dict[str, tuple[str, ...]] = {
    "ts": ("ts", "timestamp", "@timestamp", "time", "eventTime", "event_time", "datetime", "date", "ts_ms"),
    "account_id": ("account_id", "accountId", "agentUserId", "agent_user_id", "recipient_account", "recipientAccount",
                   "recipient", "user_id", "userId", "user.id", "account", "customer_id", "customerId"),
    "device_id": ("device_id", "deviceId", "device.id", "camera_id", "cameraId", "device", "camera"),
    "snapshot": ("snapshot", "snapshot_key", "snapshotKey", "snapshot_id", "snapshotId", "image_key", "imageKey",
                 "object_key", "objectKey"),
    "event": ("event", "event_type", "eventType", "event.action", "event_name", "eventName", "action", "type"),
    "integration": ("integration", "integrationName", "integration_name", "client", "platform", "app"),
    "request_id": ("request_id", "requestId", "request.id", "http.request.id", "correlation_id", "correlationId",
                   "x_request_id", "trace_id", "traceId"),
}


@dataclass(frozen=True)
class Profile:
    """One export format: how to recognise it, where its records are, where its fields are."""

    name: str
    title: str
    #: Where the shape is documented (shown by `camleak inspect logs`).
    reference: str
    #: Groups of dotted paths: a record carries the format when each group has one path present.
    signature: tuple[tuple[str, ...], ...] = ()
    #: How one exported item becomes records (a key of UNWRAP).
    unwrap: str = "record"
    #: Arrays holding the items in a whole-document export (a response saved to a file).
    containers: tuple[str, ...] = ()
    #: The store's own paths for canonical fields, tried before the payload.
    fixed: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: Where the application's own fields are looked for, in order ("" is the record itself).
    roots: tuple[str, ...] = ("",)
    #: Whether the payload is matched by ALIASES (False: canonical names only).
    aliases: bool = True
    #: Flat rows only: no value is an object.
    flat: bool = False


PROFILES: tuple[Profile, ...] = (
    Profile(
        "elasticsearch", "Elasticsearch / OpenSearch (_search response or hits as NDJSON)",
        "Search API response: hits.hits[] of {_index, _id, _score, _source}; each hit's _source is the document",
        signature=(("_source", "@timestamp"),), unwrap="es_hit", containers=("hits.hits", "responses.item.hits.hits"),
        fixed={"ts": ("@timestamp",)}, roots=("",),
    ),
    Profile(
        "loki", "Grafana Loki query_range response",
        "GET /loki/api/v1/query_range: data.result[] of streams {stream: labels, values: [[unix ns, line]]}; "
        "each line is parsed as JSON, labels under `labels`, Loki's time fills `ts` when the line has none",
        signature=(("stream",), ("values",)), unwrap="loki_stream", containers=("data.result",),
        roots=("", "labels"),
    ),
    Profile(
        "logcli", "Grafana Loki logcli --output=jsonl",
        "logcli query --output=jsonl: one {timestamp (RFC 3339), line, labels} per line; the line is parsed as JSON",
        signature=(("line",), ("timestamp",)), unwrap="logcli", roots=("", "labels"),
    ),
    Profile(
        "cloudwatch", "AWS CloudWatch Logs (JSON message)",
        "FilterLogEvents/GetLogEvents events[] or a subscription's logEvents[] of {timestamp (ms), message}; "
        "an S3 export's lines `<RFC 3339 time> <message>`; the message is parsed as JSON",
        signature=(("message",), ("timestamp",)), unwrap="cloudwatch", containers=("events", "logEvents"),
        roots=("",),
    ),
    Profile(
        "gcl", "Google Cloud Logging LogEntry",
        "LogEntry: timestamp, receiveTimestamp, logName, insertId, severity, labels, resource, and one of "
        "jsonPayload, protoPayload, textPayload (NDJSON from a sink, gcloud logging read --format=json, entries:list)",
        signature=(("logName", "insertId", "jsonPayload", "protoPayload", "textPayload"), ("timestamp", "receiveTimestamp")),
        containers=("entries",), fixed={"ts": ("timestamp", "receiveTimestamp")},
        roots=("jsonPayload", "protoPayload", "labels", ""),
    ),
    Profile(
        "canonical", "camleak canonical lines",
        "one event per line or CSV row: ts, account_id, device_id, snapshot, event, integration, request_id",
        signature=(("ts",), ("account_id",), ("event",)), aliases=False,
    ),
    Profile(
        "clickhouse", "ClickHouse JSONEachRow (or any flat rows)",
        "FORMAT JSONEachRow: one flat object per line, column names as keys (64-bit integers quoted, DateTime as "
        "'YYYY-MM-DD hh:mm:ss'); FORMAT JSON: the rows under data[]",
        containers=("data",), flat=True,
    ),
)
BY_NAME: dict[str, Profile] = {p.name: p for p in PROFILES}
#: What a file of no known shape is read as: the usual names, at the top level only.
GENERIC = Profile("generic", "JSON of no known export format", "", flat=False)
FORMAT_NAMES: tuple[str, ...] = ("auto", *BY_NAME)


# ---------------------------------------------------------------------------------------
# Unwrapping: one exported item -> the records it stands for
# ---------------------------------------------------------------------------------------
class Unusable(ValueError):
    """An item that yields no record (the message says why)."""


def _json_line(line: Any) -> dict[str, Any]:
    if isinstance(line, dict):
        return dict(line)
    if not isinstance(line, str):
        raise Unusable("log line is not text")
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        raise Unusable("log line is not JSON") from None
    if not isinstance(record, dict):
        raise Unusable("log line is not a JSON object")
    return record


def _unwrap_record(item: Any) -> list[dict[str, Any]]:
    if not isinstance(item, dict):
        raise Unusable("not a JSON object")
    return [item]


def _unwrap_es_hit(item: Any) -> list[dict[str, Any]]:
    if isinstance(item, dict) and isinstance(item.get("_source"), dict):
        return [item["_source"]]
    return _unwrap_record(item)  # a bare _source document


def _unwrap_loki_stream(item: Any) -> list[dict[str, Any]]:
    if not isinstance(item, dict) or not isinstance(item.get("values"), list):
        raise Unusable("not a Loki stream")
    labels = item.get("stream") if isinstance(item.get("stream"), dict) else {}
    out = []
    for value in item["values"]:
        if not isinstance(value, list) or len(value) < 2:
            raise Unusable("Loki value is not [timestamp, line]")
        record = _json_line(value[1])
        record.setdefault("labels", labels)
        try:
            record.setdefault("ts", int(value[0]) // 1_000_000)
        except (TypeError, ValueError):
            raise Unusable("Loki timestamp is not unix nanoseconds") from None
        out.append(record)
    return out


def _unwrap_logcli(item: Any) -> list[dict[str, Any]]:
    if not isinstance(item, dict) or "line" not in item:
        raise Unusable("not a logcli entry")
    record = _json_line(item["line"])
    record.setdefault("labels", item.get("labels") or {})
    if item.get("timestamp") is not None:
        record.setdefault("ts", item["timestamp"])
    return [record]


def _unwrap_cloudwatch(item: Any) -> list[dict[str, Any]]:
    if not isinstance(item, dict) or "message" not in item:
        raise Unusable("not a CloudWatch log event")
    record = _json_line(item["message"])
    if item.get("timestamp") is not None:
        record.setdefault("ts", item["timestamp"])
    return [record]


UNWRAP: dict[str, Callable[[Any], list[dict[str, Any]]]] = {
    "record": _unwrap_record,
    "es_hit": _unwrap_es_hit,
    "loki_stream": _unwrap_loki_stream,
    "logcli": _unwrap_logcli,
    "cloudwatch": _unwrap_cloudwatch,
}

# An S3 export of CloudWatch Logs: `2026-11-20T10:00:00.000Z {"json": "message"}` per line.
_CLOUDWATCH_S3_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT[0-9:.]+(?:Z|[+-]\d\d:?\d\d)) (\{.*)$")


def _line_item(raw: RawRecord) -> RawRecord:
    """A text line of a CloudWatch S3 export becomes a CloudWatch event; others stay as read."""
    if raw.record is None and raw.text:
        match = _CLOUDWATCH_S3_LINE.match(raw.text)
        if match:
            return RawRecord(raw.line, record={"timestamp": match.group(1), "message": match.group(2)}, text=raw.text)
    return raw


# ---------------------------------------------------------------------------------------
# Reading a file's items
# ---------------------------------------------------------------------------------------
Opener = Callable[[], AbstractContextManager[IO[bytes]]]

_WRAPPER_KEYS = ("hits", "data", "events", "logEvents", "entries", "responses")


@dataclass
class Items:
    """The items of one file, and the profile its container already implies (if any)."""

    items: Iterator[RawRecord]
    container: str | None = None  # e.g. "hits.hits"
    implied: str | None = None  # a profile name


def _implied(container: str) -> str | None:
    for profile in PROFILES:
        if container in profile.containers:
            return profile.name
    return None


def _document_container(opener: Opener) -> str | None:
    """The array of records in a whole-document export, found from its first events: a
    store's known array, else the first array in the document (whose items are then judged
    like any records), else None."""
    known = {c for p in PROFILES for c in p.containers}
    first: str | None = None
    with opener() as stream:
        try:
            for prefix, event, _ in itertools.islice(ijson.parse(stream, multiple_values=True), 100_000):
                if event == "start_array":
                    if prefix == "" or prefix in known:
                        return prefix
                    if first is None and ".item" not in prefix:
                        first = prefix
        except (ijson.JSONError, ijson.IncompleteJSONError, OSError, EOFError, ValueError):
            pass
    return first


def _document_items(opener: Opener, container: str) -> Iterator[RawRecord]:
    prefix = f"{container}.item" if container else "item"
    with opener() as stream:
        number = 0
        try:
            for number, item in enumerate(ijson.items(stream, prefix, multiple_values=True, use_float=True), 1):
                yield RawRecord(number, record=item)
        except (ijson.JSONError, ijson.IncompleteJSONError, ValueError) as exc:
            yield RawRecord(number + 1, error=f"JSON document broken after record {number} ({exc})"[:300])


def _first_text(opener: Opener) -> bytes:
    try:
        with opener() as stream:
            head = stream.peek(1 << 16)[: 1 << 16] if hasattr(stream, "peek") else stream.read(1 << 16)
    except (OSError, EOFError, zlib.error):
        return b""  # read as lines, where the damage is reported
    return head.lstrip(b"\xef\xbb\xbf \t\r\n")


def read_items(opener: Opener, kind: str) -> Items:
    """The items of a log file: lines (JSON or CSV), or the records of a response document.

    A file is a document when it starts with `[`, or with an object that is not one line of
    JSON (pretty-printed), or when its first line is a store's response (a `hits.hits`,
    `data.result`, `events` … array): then it is streamed with ijson, never held whole.
    """
    if kind == "csv":
        def rows() -> Iterator[RawRecord]:
            with opener() as stream:
                yield from logparse.iter_csv_records(stream)
        return Items(rows())
    head = _first_text(opener)
    document = False
    if head.startswith((b"{", b"[")):
        first = head.split(b"\n", 1)[0]
        try:
            obj = json.loads(first)
        except (ValueError, RecursionError):
            # pretty-printed, or one line longer than the head: a document if it has a known
            # array; else a bad first line of NDJSON
            document = b"\n" not in head or head.startswith(b"[") or _pretty(head)
        else:
            if isinstance(obj, dict):
                document = any(_is_wrapper(obj, key) for key in _WRAPPER_KEYS)
            else:
                document = isinstance(obj, list) and bool(obj) and isinstance(obj[0], dict)
    if document:
        container = _document_container(opener)
        if container is not None:
            return Items(_document_items(opener, container), container, _implied(container))

    def lines() -> Iterator[RawRecord]:
        with opener() as stream:
            for raw in logparse.iter_json_records(stream):
                yield _line_item(raw)
    return Items(lines())


def _is_wrapper(obj: dict[str, Any], key: str) -> bool:
    value = obj.get(key)
    if key == "hits":
        return isinstance(value, dict) and isinstance(value.get("hits"), list)
    if key == "data":
        return (isinstance(value, dict) and isinstance(value.get("result"), list)) or (
            isinstance(value, list) and "meta" in obj)
    if key == "events":
        return isinstance(value, list) and any(k in obj for k in ("nextForwardToken", "nextToken", "searchedLogStreams",
                                                                   "nextBackwardToken"))
    if key == "responses":
        return isinstance(value, list) and bool(value) and isinstance(value[0], dict) and "hits" in value[0]
    return isinstance(value, list) and key in ("logEvents", "entries")


def _pretty(head: bytes) -> bool:
    """A document laid over several lines: its first line is an opening brace, or a key."""
    first, _, rest = head.partition(b"\n")
    return first.strip() == b"{" or rest.lstrip().startswith(b'"')


# ---------------------------------------------------------------------------------------
# Detection and field resolution
# ---------------------------------------------------------------------------------------
def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


_ALIAS_NORM = {name: {_norm(a) for a in aliases} for name, aliases in ALIASES.items()}


def matches(profile: Profile, item: Any) -> bool:
    """Whether one exported item carries the profile's signature."""
    if not isinstance(item, dict):
        return False
    if profile.flat:
        return bool(item) and not any(isinstance(v, dict) for v in item.values())
    return all(any(lookup(item, path) is not logparse._MISSING for path in group) for group in profile.signature)


def _present(record: dict[str, Any], path: str) -> bool:
    value = lookup(record, path)
    return value is not logparse._MISSING and value is not None and value != "" and not isinstance(value, (dict, list))


def candidates(profile: Profile, name: str) -> list[str]:
    """Dotted paths tried for one canonical field, most trusted first."""
    paths = list(profile.fixed.get(name, ()))
    names = ALIASES[name] if profile.aliases else (name,)
    for root in profile.roots:
        paths.extend(f"{root}.{alias}" if root else alias for alias in names)
    return list(dict.fromkeys(paths))


def resolve(profile: Profile, records: list[dict[str, Any]]) -> dict[str, str]:
    """The concrete field map a profile settles on for these records: per field, the candidate
    path present in most records (the first such in the profile's order)."""
    mapping: dict[str, str] = {}
    for name in CANONICAL_FIELDS:
        best, best_count = None, 0
        for path in candidates(profile, name):
            count = sum(1 for r in records if _present(r, path))
            if count > best_count:
                best, best_count = path, count
        if best is not None:
            mapping[name] = best
    return mapping


@dataclass
class Detection:
    """What a file was read as: the profile, the field map in effect, and how it was decided."""

    profile: Profile
    field_map: dict[str, str]
    decided: str  # "auto", "given", or "container"
    sampled: int = 0
    usable: int = 0
    given: dict[str, str] = field(default_factory=dict)  # the --field maps that replaced a path

    def as_dict(self) -> dict[str, Any]:
        return {"format": self.profile.name, "title": self.profile.title, "decided": self.decided,
                "field_map": self.field_map, "given": self.given, "sampled": self.sampled, "usable": self.usable}


def _records_of(profile: Profile, items: list[RawRecord]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    unwrap = UNWRAP[profile.unwrap]
    for item in items:
        if item.record is None:
            continue
        try:
            out.extend(unwrap(item.record))
        except Unusable:
            continue
    return out


def _has(record: dict[str, Any], field_map: dict[str, str], name: str) -> bool:
    """Whether the map (or the canonical name) finds a value for `name` in the record."""
    path = field_map.get(name)
    return (path is not None and _present(record, path)) or _present(record, name)


def _usable(records: list[dict[str, Any]], field_map: dict[str, str]) -> int:
    """Records in which the map finds every required field (bad values are another matter:
    they stay counted skips)."""
    return sum(1 for r in records if all(_has(r, field_map, name) for name in REQUIRED_FIELDS))


def _compose(resolved: dict[str, str], given: dict[str, str]) -> dict[str, str]:
    return {**resolved, **given}


def detect(sample: list[RawRecord], log_format: str = "auto", given: dict[str, str] | None = None,
           implied: str | None = None, unwrapped: bool = False) -> tuple[Detection, list[dict[str, Any]]]:
    """Pick the profile for a file from its first items; returns it with the sample's records.
    `unwrapped`: the items are records already (a log store's, as its client yields them)."""
    given = dict(given or {})
    objects = [item for item in sample if item.record is not None]
    if log_format != "auto":
        profile = BY_NAME[log_format]
        decided = "given"
        choices = [profile]
    elif implied:
        profile = BY_NAME[implied]
        decided = "container"
        choices = [profile]
    else:
        decided = "auto"
        choices = [p for p in PROFILES if objects and
                   sum(matches(p, item.record) for item in objects) * 2 >= len(objects)] or [GENERIC]
    if unwrapped:
        choices = [dataclasses.replace(p, unwrap="record") for p in choices]
    best: tuple[int, int] | None = None
    chosen: tuple[Profile, dict[str, str], list[dict[str, Any]], int] | None = None
    for rank, profile in enumerate(choices):
        records = _records_of(profile, objects)
        mapping = _compose(resolve(profile, records), given)
        usable = _usable(records, mapping)
        score = (usable, -rank)
        if best is None or score > best:
            best, chosen = score, (profile, mapping, records, usable)
    assert chosen is not None
    profile, mapping, records, usable = chosen
    return Detection(profile, mapping, decided, sampled=len(records), usable=usable, given=given), records


# ---------------------------------------------------------------------------------------
# Explaining a file that cannot be used
# ---------------------------------------------------------------------------------------
def leaf_paths(record: Any, prefix: str = "", depth: int = 0) -> Iterator[str]:
    """Dotted paths of a record's scalar values (lists and deep nesting left out)."""
    if not isinstance(record, dict) or depth > 6:
        return
    for key, value in record.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            yield from leaf_paths(value, path, depth + 1)
        elif not isinstance(value, list):
            yield path


def suggest(records: list[dict[str, Any]], missing: Iterable[str], tried: Mapping[str, str] | None = None) -> dict[str, str]:
    """For each missing field, the path whose last name is (or closely resembles) one of its
    usual names, where the records make one likely (never the path already tried)."""
    counts = Counter(p for r in records[:SAMPLE] for p in set(leaf_paths(r)))
    out: dict[str, str] = {}
    for name in missing:
        best: tuple[float, int, str] | None = None
        for path, count in counts.items():
            if path == name or path == (tried or {}).get(name):
                continue
            leaf = _norm(path.rsplit(".", 1)[-1])
            whole = _norm(path)
            if leaf in _ALIAS_NORM[name] or whole in _ALIAS_NORM[name]:
                score = 1.0
            else:
                score = max(difflib.SequenceMatcher(None, leaf, alias).ratio() for alias in _ALIAS_NORM[name])
                if score < 0.8:
                    continue
            key = (score, count, path)
            if best is None or key[:2] > best[:2]:
                best = key
        if best is not None and best[2] not in out.values():
            out[name] = best[2]
    return out


def unusable_message(label: str, detection: Detection, records: list[dict[str, Any]], objects: int) -> str:
    """One message: the file, what it lacks, what it has, and the --field options to try."""
    keys = Counter(p for r in records[:SAMPLE] for p in set(leaf_paths(r)))
    shown = ", ".join(p for p, _ in keys.most_common(12)) or "none"
    for name, path in detection.given.items():
        # a --field that finds nothing, where the canonical name does not fill in: a typo
        if name in REQUIRED_FIELDS and records and not any(_has(r, {name: path}, name) for r in records):
            hint = suggest(records, [name])
            tail = f"; try --field {name}={hint[name]}" if hint else ""
            return f"{label}: --field {name}={path} matched no line, and no line has {name!r} itself; their keys: {shown}{tail}"
    missing: Counter[str] = Counter(
        name for r in records for name in REQUIRED_FIELDS if not _has(r, detection.field_map, name))
    lacking = [name for name in REQUIRED_FIELDS if missing[name]] or [n for n in REQUIRED_FIELDS if n not in detection.field_map]
    total = len(records) or objects
    hint = suggest(records, lacking, detection.field_map)
    parts = [f"{label}: {total - detection.usable} of the first {total} records cannot be used "
             f"({'read as ' if detection.profile is not GENERIC else ''}{detection.profile.title}): missing {', '.join(lacking) or 'usable values'}; "
             f"their keys: {shown}"]
    if hint:
        parts.append("try " + " ".join(f"--field {n}={p}" for n, p in hint.items()))
    else:
        parts.append("map the fields with --field NAME=dotted.path (camleak inspect logs shows a file's keys)")
    return "; ".join(parts)


# ---------------------------------------------------------------------------------------
# The whole file
# ---------------------------------------------------------------------------------------
@dataclass
class Reading:
    """A log file opened through its profile: the decision, then its lines as ParsedLines."""

    detection: Detection
    lines: Iterator[logparse.ParsedLine]
    usage: logparse.MapUsage
    sample: list[dict[str, Any]]  # the first records, as the profile unwrapped them

    def refusal(self, label: str, failed: list[dict[str, Any]] | None = None, lines: int = 0, missing: int = 0) -> str:
        """Why the file is refused: from its first records, or from `failed` (records that
        lacked a field) when the trouble starts later in the file."""
        if failed:
            later = Detection(self.detection.profile, self.detection.field_map, self.detection.decided,
                              sampled=len(failed), usable=0, given=self.detection.given)
            text = unusable_message(label, later, failed, len(failed))
            return text.replace(f"{len(failed)} of the first {len(failed)} records cannot be used",
                                f"{missing} of its {lines} lines cannot be used", 1)
        return unusable_message(label, self.detection, self.sample, len(self.sample))


def open_log(opener: Opener, label: str, kind: str, log_format: str = "auto",
             given: dict[str, str] | None = None, strict: bool = True) -> Reading:
    """Read a log file through the profile that fits it. With `strict`, a file whose first
    records mostly cannot be used is refused (InputError) before anything is ingested."""
    if log_format not in BY_NAME and log_format != "auto":
        raise ValueError(f"unknown log format {log_format!r}")
    items = read_items(opener, kind)
    stream = iter(items.items)
    head: list[RawRecord] = []
    failure: BaseException | None = None
    try:
        for item in stream:
            head.append(item)
            if len(head) >= SAMPLE:
                break
    except (OSError, EOFError, zlib.error) as exc:  # a stream cut short: raised again where it stopped
        failure = exc
    objects = sum(1 for item in head if item.record is not None)
    detection, records = detect(head, log_format, given, items.implied)
    if strict and objects and detection.usable < USABLE_SHARE * max(len(records), 1):
        raise InputError(unusable_message(label, detection, records, objects))
    usage = logparse.MapUsage()

    def rest() -> Iterator[RawRecord]:
        yield from head
        if failure is not None:
            raise failure
        yield from stream
    return Reading(detection, _events(detection, rest(), usage), usage, records)


def _events(detection: Detection, items: Iterator[RawRecord], usage: logparse.MapUsage) -> Iterator[logparse.ParsedLine]:
    unwrap = UNWRAP[detection.profile.unwrap]
    field_map = detection.field_map
    for item in items:
        if item.record is None:
            yield logparse.ParsedLine(item.line, error=item.error, raw=item.preview())
            continue
        try:
            records = unwrap(item.record)
        except Unusable as exc:
            yield logparse.ParsedLine(item.line, error=str(exc), raw=item.preview() or _dump(item.record))
            continue
        for record in records:
            try:
                yield logparse.ParsedLine(item.line, event=logparse.canonicalise(record, field_map, usage))
            except ValueError as exc:
                yield logparse.ParsedLine(item.line, error=str(exc), raw=item.preview() or _dump(record), record=record)


def _dump(record: Any) -> str:
    try:
        text = json.dumps(record, sort_keys=True, default=str)
    except (TypeError, ValueError, RecursionError):
        text = repr(record)
    return text if len(text) <= 300 else text[:300] + "…"
