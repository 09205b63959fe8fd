"""Grafana Loki: `query_range` with a LogQL selector, paged forward through time.

    loki+http://127.0.0.1:3100?query={app="camcloud",export="app-events"}&from=2026-11-20T00:00:00Z
       &to=2026-11-21T00:00:00Z&limit=1000

Loki answers at most `limit` entries per query (capped server-side by
max_entries_limit_per_query, 5000 by default), oldest first with direction=forward. The next
page starts at the last page's newest timestamp (start is inclusive); entries already taken
at that nanosecond are skipped. Each line is parsed as JSON; the stream's labels are kept
under `labels` and Loki's timestamp fills `ts` when the line has none.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any, Iterator

from ..errors import InputError
from ..timeutil import format_ts
from .stores import LogStore, Page


class Loki(LogStore):
    kind = "loki"

    def pages(self, cursor: dict[str, Any] | None) -> Iterator[Page]:
        query = self.param("query", required=True)
        limit = self.int_param("limit", 1000, high=100_000)
        start_ms, end_ms = self.time_range()
        if start_ms is None:
            # Loki's own default is the last hour: too easy to miss an incident by.
            raise InputError(f"{self.label}: the spec needs from=… (and usually to=…)")
        end_ns = (end_ms if end_ms is not None else int(time.time() * 1000)) * 1_000_000
        start_ns = int((cursor or {}).get("start_ns") or (start_ms or 0) * 1_000_000)
        seen = set((cursor or {}).get("seen", []))
        url = self.spec.url.rstrip("/") + "/loki/api/v1/query_range"
        while True:
            params = {"query": query, "start": str(start_ns), "end": str(end_ns), "limit": str(limit),
                      "direction": "forward"}
            data, nbytes = self.json_call("GET", url, params=params)
            if data.get("status") != "success":
                raise InputError(f"{self.label}: Loki answered status {data.get('status')!r}")
            result = data.get("data", {})
            if result.get("resultType") != "streams":
                raise InputError(f"{self.label}: a log query must return streams, not {result.get('resultType')!r} "
                                 "(use a log selector, not a metric query)")
            entries = []
            for stream in result.get("result", []):
                labels = stream.get("stream", {})
                for ts_ns, line in stream.get("values", []):
                    entries.append((int(ts_ns), line, labels))
            entries.sort(key=lambda e: (e[0], e[1]))
            full = len(entries) >= limit
            fresh = [e for e in entries if not (e[0] == start_ns and _entry_id(e) in seen)]
            records = [_record(ts_ns, line, labels) for ts_ns, line, labels in fresh]
            if not full:
                yield Page(records, None, nbytes)
                return
            last_ns = entries[-1][0]
            at_last = {_entry_id(e) for e in entries if e[0] == last_ns}
            if last_ns == start_ns:
                at_last |= seen
                if not fresh:
                    raise InputError(f"{self.label}: more than limit={limit} lines share one timestamp; raise limit")
            start_ns, seen = last_ns, at_last
            yield Page(records, {"start_ns": start_ns, "seen": sorted(seen)}, nbytes)


def _entry_id(entry: tuple[int, str, dict]) -> str:
    ts_ns, line, labels = entry
    basis = json.dumps([ts_ns, line, labels], sort_keys=True)
    return hashlib.sha1(basis.encode()).hexdigest()[:16]


def _record(ts_ns: int, line: str, labels: dict[str, str]) -> dict[str, Any] | str:
    try:
        record = json.loads(line)
    except ValueError:
        return line
    if not isinstance(record, dict):
        return line
    record.setdefault("labels", labels)
    record.setdefault("ts", format_ts(ts_ns // 1_000_000))
    return record
