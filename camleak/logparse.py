"""Parse delivery-log lines (JSON lines or CSV) into canonical events.

Real exports name and nest fields their own way; a field map turns dotted paths such as
`jsonPayload.agentUserId` into camleak's canonical names. A mapped path is used where a line
has it, otherwise the canonical name itself, so one map serves a mix of exports.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from typing import IO, Any, Iterator

from .timeutil import format_ts, parse_ts

CANONICAL_FIELDS = (
    "ts",
    "account_id",
    "device_id",
    "snapshot",
    "event",
    "integration",
    "request_id",
)
REQUIRED_FIELDS = ("ts", "account_id", "event")


class FieldMapError(ValueError):
    """A --field option that cannot be understood."""


def parse_field_map(items: list[str] | None) -> dict[str, str]:
    """`["account_id=jsonPayload.agentUserId"]` -> `{"account_id": "jsonPayload.agentUserId"}`."""
    mapping: dict[str, str] = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        name, path = name.strip(), path.strip()
        if not sep or not name or not path:
            raise FieldMapError(f"--field {item!r}: expected NAME=dotted.path")
        if name not in CANONICAL_FIELDS:
            raise FieldMapError(
                f"--field {item!r}: unknown field {name!r} (one of: {', '.join(CANONICAL_FIELDS)})"
            )
        mapping[name] = path
    return mapping


_MISSING = object()


def lookup(record: dict[str, Any], path: str) -> Any:
    """Value at a dotted path; a key that itself contains dots is tried first."""
    if path in record:
        return record[path]
    node: Any = record
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


@dataclass
class ParsedLine:
    line: int
    event: dict[str, Any] | None = None
    error: str | None = None
    raw: str | None = None
    record: dict[str, Any] | None = None  # the record that failed, for explaining a refused file


@dataclass
class MapUsage:
    """Which mapped paths matched at least one line of a file (to catch a mistyped --field)."""

    hits: dict[str, int] = field(default_factory=dict)
    canonical_hits: dict[str, int] = field(default_factory=dict)


def canonicalise(record: dict[str, Any], field_map: dict[str, str], usage: MapUsage) -> dict:
    """Pick the canonical fields out of one raw record; raises ValueError on bad content."""
    out: dict[str, Any] = {}
    for name in CANONICAL_FIELDS:
        value = _MISSING
        mapped = field_map.get(name)
        if mapped is not None:
            value = lookup(record, mapped)
            if value is not _MISSING:
                usage.hits[name] = usage.hits.get(name, 0) + 1
        if value is _MISSING:
            value = record.get(name, _MISSING)
            if value is not _MISSING:
                usage.canonical_hits[name] = usage.canonical_hits.get(name, 0) + 1
        if value is _MISSING or value is None or value == "":
            out[name] = None
            continue
        if isinstance(value, (dict, list)):
            raise ValueError(f"field {name!r} holds a {type(value).__name__}, not a value")
        if isinstance(value, bool):
            raise ValueError(f"field {name!r} holds a boolean, not a value")
        out[name] = value
    missing = [name for name in REQUIRED_FIELDS if out[name] is None]
    if missing:
        raise ValueError(f"missing field(s): {', '.join(missing)}")
    ts_ms = parse_ts(out["ts"])
    for name in CANONICAL_FIELDS:
        if name != "ts" and out[name] is not None:
            out[name] = str(out[name])
    out["ts_ms"] = ts_ms
    out["ts"] = format_ts(ts_ms)
    out["event_key"] = event_key(out)
    return out


def event_key(event: dict[str, Any]) -> str:
    """Identity of an event across overlapping exports: request_id + event when present."""
    if event.get("request_id"):
        return f"{event['request_id']}|{event['event']}"
    basis = "|".join(
        str(event.get(name) or "") for name in ("ts", "account_id", "device_id", "snapshot", "event")
    )
    return "h:" + hashlib.sha1(basis.encode()).hexdigest()[:20]


def detect_format(name: str, head: bytes) -> str | None:
    lowered = name.lower()
    if lowered.endswith((".jsonl", ".ndjson", ".json", ".log")):
        return "jsonl"
    if lowered.endswith(".csv"):
        return "csv"
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith((b"{", b"[")) or _TIME_PREFIXED.match(stripped):
        return "jsonl"  # JSON lines, a JSON document, or `<time> <JSON>` lines (a CloudWatch S3 export)
    return None


_TIME_PREFIXED = re.compile(rb"\d{4}-\d\d-\d\dT[0-9:.]+(Z|[+-]\d\d:?\d\d)? \{")


# A line may carry a large payload (an embedded thumbnail, a stack trace), but a "line" past
# this size is a file without line breaks or a hostile one: it is counted, never held whole.
MAX_LINE_BYTES = 16 << 20


def read_lines(stream: IO[bytes], limit: int = MAX_LINE_BYTES) -> Iterator[tuple[int, bytes | None]]:
    """(line number, bytes) for each line; None for a line longer than `limit`, read past in
    pieces so memory stays bounded. A UTF-16 file (by its BOM) is read as UTF-8."""
    head = stream.peek(4)[:4] if hasattr(stream, "peek") else b""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        stream = _utf16_as_utf8(stream)
    number = 0
    while True:
        line = stream.readline(limit + 1)
        if not line:
            return
        number += 1
        if len(line) > limit and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):
                line = stream.readline(1 << 20)
            yield number, None
            continue
        yield number, line


def _utf16_as_utf8(stream: IO[bytes]) -> IO[bytes]:
    text = io.TextIOWrapper(stream, encoding="utf-16", errors="surrogateescape", newline="")

    class _Lines(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readline(self, size: int = -1) -> bytes:  # type: ignore[override]
            return text.readline(size if size is None or size < 0 else max(1, size // 2)).encode(
                "utf-8", "surrogateescape")

    return _Lines()  # type: ignore[return-value]


@dataclass
class RawRecord:
    """One record as read, before any field map: the parsed object, or why there is none."""

    line: int
    record: Any = None
    error: str | None = None
    raw: str | None = None
    text: str | None = None  # the line as read: a preview on error, or a text prefix to parse

    def preview(self) -> str | None:
        return self.raw if self.raw is not None else (_preview(self.text) if self.text is not None else None)


def iter_json_records(stream: IO[bytes]) -> Iterator[RawRecord]:
    """Each JSON line as a RawRecord: its object, or the reason it is not usable."""
    for number, raw in read_lines(stream):
        if raw is None:
            yield RawRecord(number, error=f"line longer than {MAX_LINE_BYTES >> 20} MiB, skipped")
            continue
        if number == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8) :]
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield RawRecord(number, error=f"not UTF-8 ({exc.reason})", raw=_preview(raw))
            continue
        try:
            record = json.loads(text)
        except ValueError as exc:
            yield RawRecord(number, error=f"not JSON ({getattr(exc, 'msg', None) or exc})", raw=_preview(raw),
                            text=text.rstrip("\r\n"))
            continue
        except RecursionError:
            yield RawRecord(number, error="not usable JSON (nested too deeply)", raw=_preview(raw))
            continue
        if not isinstance(record, (dict, list)):
            yield RawRecord(number, error="not a JSON object", raw=_preview(raw))
            continue
        yield RawRecord(number, record=record, text=text)


def iter_csv_records(stream: IO[bytes]) -> Iterator[RawRecord]:
    """Each CSV row as a RawRecord holding a dict keyed by the header."""
    head = stream.peek(4)[:4] if hasattr(stream, "peek") else b""
    encoding = "utf-16" if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) else "utf-8-sig"
    text = io.TextIOWrapper(stream, encoding=encoding, errors="surrogateescape", newline="")
    reader = csv.reader(text)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        yield RawRecord(1, error=f"bad CSV header ({exc})")
        return
    header = [name.strip() for name in header]
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield RawRecord(reader.line_num, error=f"bad CSV ({exc})")
            continue
        number = reader.line_num
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            yield RawRecord(number, error=f"{len(row)} columns where the header has {len(header)}",
                            raw=_preview(",".join(row)))
            continue
        if not is_utf8(row):
            yield RawRecord(number, error="not UTF-8", raw=_preview(",".join(row).encode("utf-8", "surrogateescape")))
            continue
        yield RawRecord(number, record=dict(zip(header, row)), text=",".join(row))


def canonical_lines(records: Iterator[RawRecord], field_map: dict[str, str], usage: MapUsage) -> Iterator[ParsedLine]:
    """RawRecords of flat objects -> ParsedLines through one field map (no format detection)."""
    for item in records:
        if item.record is None:
            yield ParsedLine(item.line, error=item.error, raw=item.preview())
        elif not isinstance(item.record, dict):
            yield ParsedLine(item.line, error="not a JSON object", raw=item.preview())
        else:
            try:
                yield ParsedLine(item.line, event=canonicalise(item.record, field_map, usage))
            except ValueError as exc:
                yield ParsedLine(item.line, error=str(exc), raw=item.preview())


def iter_jsonl(stream: IO[bytes], field_map: dict[str, str], usage: MapUsage) -> Iterator[ParsedLine]:
    return canonical_lines(iter_json_records(stream), field_map, usage)


def iter_csv(stream: IO[bytes], field_map: dict[str, str], usage: MapUsage) -> Iterator[ParsedLine]:
    return canonical_lines(iter_csv_records(stream), field_map, usage)


def is_utf8(cells: list[str]) -> bool:
    """False when the row holds bytes that were not UTF-8 (kept as surrogate escapes)."""
    try:
        "".join(cells).encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _preview(raw: bytes | str, limit: int = 300) -> str:
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    elif not is_utf8([raw]):
        raw = raw.encode("utf-8", "surrogateescape").decode("utf-8", errors="replace")
    raw = raw.rstrip("\r\n")
    return raw if len(raw) <= limit else raw[:limit] + "…"
