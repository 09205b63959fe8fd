"""Google Cloud Logging: `entries:list` with a filter, paged with `pageToken`.

    gcl+https://logging.googleapis.com?resource=projects/camcloud-prod
       &filter=logName="projects/camcloud-prod/logs/assistant-bridge"
       &from=2026-11-20T00:00:00Z&to=2026-11-21T00:00:00Z

Entries come oldest first (`orderBy: timestamp asc`), `pageSize` up to 1000; a page may be
empty while the service is still searching, with a `nextPageToken` to carry on. The
payload stays nested (`jsonPayload.agentUserId`): map it with --field. The bearer token is
read from CAMLEAK_GCL_TOKEN (or GOOGLE_OAUTH_ACCESS_TOKEN), never from the spec. A resumed
pull whose page token has expired starts again at the last committed timestamp, skipping the
entries (by insertId) it already took there.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Iterator

from ..errors import InputError
from .stores import LogStore, Page, rfc3339


class CloudLogging(LogStore):
    kind = "gcl"

    def pages(self, cursor: dict[str, Any] | None) -> Iterator[Page]:
        resources = [r for r in (self.param("resource") or "").split(",") if r]
        if not resources:
            raise InputError(f"{self.label}: the spec needs resource=projects/<id> (comma-separated for several)")
        cursor = cursor or {}
        token = cursor.get("pageToken")
        # The edge: the newest timestamp committed and the entries taken at it, so a pull whose
        # page token has expired can start again from there without reading anything twice.
        edge, seen = cursor.get("after"), set(cursor.get("seen", []))
        url = self.spec.url.rstrip("/") + "/v2/entries:list"
        page_size = self.int_param("page_size", 1000, high=1000)
        skip_at, skip = edge, set(seen)
        query_from = cursor.get("query_from")  # a page token only holds for the filter that made it
        if not token:
            query_from = edge
        restarted = False
        while True:
            body: dict[str, Any] = {"resourceNames": resources, "filter": self._filter(query_from),
                                    "orderBy": "timestamp asc", "pageSize": page_size}
            if token:
                body["pageToken"] = token
            try:
                data, nbytes = self.json_call("POST", url, json=body)
            except InputError as exc:
                if token and not restarted and "HTTP 400" in str(exc):  # an expired page token
                    token, skip_at, skip, restarted, query_from = None, edge, set(seen), True, edge
                    continue
                raise
            entries = []
            for entry in data.get("entries", []):
                stamp, key = entry.get("timestamp"), _entry_key(entry)
                if stamp is not None and stamp == skip_at and key in skip:
                    continue
                entries.append(entry)
                if stamp is not None and stamp == edge:
                    seen.add(key)
                elif stamp is not None:
                    edge, seen = stamp, {key}
            token = data.get("nextPageToken") or None
            yield Page(entries, {"pageToken": token, "query_from": query_from, "after": edge, "seen": sorted(seen)}
                       if token else None, nbytes)
            if not token:
                return

    def _filter(self, after: str | None) -> str:
        clauses = []
        if self.param("filter"):
            clauses.append(f"({self.param('filter')})")
        start, end = self.time_range()
        if after is not None:
            clauses.append(f'timestamp>="{after}"')
        elif start is not None:
            clauses.append(f'timestamp>="{rfc3339(start)}"')
        if end is not None:
            clauses.append(f'timestamp<"{rfc3339(end)}"')
        return " AND ".join(clauses)


def _entry_key(entry: dict[str, Any]) -> str:
    """insertId identifies an entry within its log; the whole entry when it has none."""
    if entry.get("insertId"):
        return f"{entry.get('logName', '')}|{entry['insertId']}"
    return hashlib.sha1(json.dumps(entry, sort_keys=True).encode()).hexdigest()
