"""Google Cloud Logging: `entries:list` with a filter, paged with `pageToken`.

    gcl+https://logging.googleapis.com?resource=projects/camcloud-prod
       &filter=logName="projects/camcloud-prod/logs/assistant-bridge"
       &from=2026-11-20T00:00:00Z&to=2026-11-21T00:00:00Z

Entries come oldest first (`orderBy: timestamp asc`), `pageSize` up to 1000; a page may be
empty while the service is still searching, with a `nextPageToken` to carry on. The
payload stays nested (`jsonPayload.agentUserId`): map it with --field. The bearer token is
read from CAMLEAK_GCL_TOKEN (or GOOGLE_OAUTH_ACCESS_TOKEN), never from the spec.
"""

from __future__ import annotations

from typing import Any, Iterator

from ..errors import InputError
from .stores import LogStore, Page, rfc3339


class CloudLogging(LogStore):
    kind = "gcl"

    def pages(self, cursor: dict[str, Any] | None) -> Iterator[Page]:
        resources = [r for r in (self.param("resource") or "").split(",") if r]
        if not resources:
            raise InputError(f"{self.label}: the spec needs resource=projects/<id> (comma-separated for several)")
        clauses = []
        if self.param("filter"):
            clauses.append(f"({self.param('filter')})")
        start, end = self.time_range()
        if start is not None:
            clauses.append(f'timestamp>="{rfc3339(start)}"')
        if end is not None:
            clauses.append(f'timestamp<"{rfc3339(end)}"')
        body: dict[str, Any] = {"resourceNames": resources, "filter": " AND ".join(clauses),
                                "orderBy": "timestamp asc", "pageSize": self.int_param("page_size", 1000, high=1000)}
        token = (cursor or {}).get("pageToken")
        url = self.spec.url.rstrip("/") + "/v2/entries:list"
        while True:
            request = dict(body, pageToken=token) if token else body
            data, nbytes = self.json_call("POST", url, json=request)
            token = data.get("nextPageToken") or None
            yield Page(list(data.get("entries", [])), {"pageToken": token} if token else None, nbytes)
            if not token:
                return
