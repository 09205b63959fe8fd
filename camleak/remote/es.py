"""Elasticsearch / OpenSearch: a time-range query on an index pattern, paged with a point in
time and `search_after` (sorted on the time field, `_shard_doc` as tie-breaker), or with the
scroll API where the cluster has no point in time (before ES 7.10 / OpenSearch 2.4).

    es+http://127.0.0.1:9200/camcloud-logs-*?from=2026-11-20T00:00:00Z&to=2026-11-21T00:00:00Z
       &time_field=@timestamp&query=integration:alexa&size=1000

OpenSearch pages by time alone (each query starts at the last page's newest time and skips
the documents already taken there), since its point in time has no `_shard_doc`.
A resumed pull (or a restarted scroll) opens a new point in time and starts at the last time
it committed, skipping the documents (`_index`/`_id`) it already took at that time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator
from urllib.parse import urlsplit, urlunsplit

from ..errors import InputError
from . import net
from .stores import LogStore, Page


class Elasticsearch(LogStore):
    kind = "es"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        parts = urlsplit(self.spec.url)
        prefix, _, self.index = parts.path.rstrip("/").rpartition("/")
        if not self.index:
            raise InputError(f"{self.label}: the spec needs an index pattern in its path (…:9200/logs-*)")
        self.base = urlunsplit((parts.scheme, parts.netloc, prefix, "", ""))
        self.time_field = self.param("time_field", "@timestamp")
        self.size = self.int_param("size", 1000, high=10_000)
        self.keep_alive = self.param("keep_alive", "5m")
        self.pit_id: str | None = None
        self.scroll_id: str | None = None
        self.opensearch = self.spec.kind == "opensearch"

    def _query(self, after_ms: int | None) -> dict[str, Any]:
        start, end = self.time_range()
        if after_ms is not None:
            start = after_ms if start is None else max(start, after_ms)
        bounds: dict[str, Any] = {"format": "epoch_millis"}
        if start is not None:
            bounds["gte"] = start
        if end is not None:
            bounds["lt"] = end
        filters: list[dict[str, Any]] = [{"range": {self.time_field: bounds}}]
        if self.param("query"):
            filters.append({"query_string": {"query": self.param("query")}})
        return {"bool": {"filter": filters}}

    def _open_pit(self) -> str | None:
        """A new point in time, or None when the cluster has no PIT API (then: scroll)."""
        if self.opensearch:
            url = f"{self.base}/{self.index}/_search/point_in_time"
        else:
            url = f"{self.base}/{self.index}/_pit"
        try:
            data, _ = self.json_call("POST", url, params={"keep_alive": self.keep_alive})
        except InputError as exc:
            if any(f"HTTP {code}" in str(exc) for code in (400, 404, 405)):
                return None
            raise
        return data.get("pit_id") or data.get("id")

    def pages(self, cursor: dict[str, Any] | None) -> Iterator[Page]:
        # Where the last committed page ended: its newest time and the documents taken at it.
        self._edge = _Edge((cursor or {}).get("after_ms"), set((cursor or {}).get("seen", [])))
        self.pit_id = self._open_pit()
        if self.pit_id is None:
            yield from self._scroll()
        elif self.opensearch:
            yield from self._pages_by_time()
        else:
            yield from self._pages_search_after()

    def _page(self, hits: list[dict], skip: "_Edge", nbytes: int, last_page: bool) -> Page:
        """The page's documents minus those taken before at the starting edge; moves the edge."""
        fresh = []
        for hit in hits:
            ms, key = _ms((hit.get("sort") or [None])[0]), f"{hit.get('_index')}/{hit.get('_id')}"
            if not (ms == skip.ms and key in skip.seen):
                fresh.append(hit.get("_source", {}))
            if ms == self._edge.ms:
                self._edge.seen.add(key)
            elif self._edge.ms is None or ms > self._edge.ms:
                self._edge = _Edge(ms, {key})
        cursor = None if last_page else {"after_ms": self._edge.ms, "seen": sorted(self._edge.seen)}
        return Page(fresh, cursor, nbytes)

    def _pages_search_after(self) -> Iterator[Page]:
        """Point in time + search_after, sorted on time then `_shard_doc` (Elasticsearch 7.12+)."""
        skip = _Edge(self._edge.ms, set(self._edge.seen))
        search_after = None
        reopened = False
        while True:
            body: dict[str, Any] = {
                "size": self.size,
                "query": self._query(skip.ms),
                "sort": [{self.time_field: {"order": "asc", "format": "epoch_millis"}}, {"_shard_doc": "asc"}],
                "pit": {"id": self.pit_id, "keep_alive": self.keep_alive},
                "track_total_hits": False,
            }
            if search_after is not None:
                body["search_after"] = search_after
            try:
                data, nbytes = self.json_call("POST", f"{self.base}/_search", json=body)
            except InputError as exc:
                if reopened or "HTTP 404" not in str(exc):
                    raise
                # The point in time expired (a long pause, a node restart): open a new one and
                # carry on from the edge; `_shard_doc` values do not carry across PITs.
                self.pit_id, reopened = self._open_pit(), True
                skip, search_after = _Edge(self._edge.ms, set(self._edge.seen)), None
                continue
            reopened = False
            self.pit_id = data.get("pit_id") or self.pit_id  # always use the latest id
            hits = data.get("hits", {}).get("hits", [])
            if hits:
                search_after = hits[-1].get("sort")
                if not search_after:
                    raise InputError(f"{self.label}: search response has no sort values to page on")
            done = len(hits) < self.size
            yield self._page(hits, skip, nbytes, done)
            if done:
                return

    def _pages_by_time(self) -> Iterator[Page]:
        """Point in time without a `_shard_doc` tie-breaker (OpenSearch): each query starts at the
        last page's newest time, skipping the documents already taken at that time."""
        while True:
            skip = _Edge(self._edge.ms, set(self._edge.seen))
            body = {"size": self.size, "query": self._query(skip.ms),
                    "sort": [{self.time_field: {"order": "asc", "format": "epoch_millis"}}],
                    "pit": {"id": self.pit_id, "keep_alive": self.keep_alive}}
            data, nbytes = self.json_call("POST", f"{self.base}/_search", json=body)
            self.pit_id = data.get("pit_id") or self.pit_id
            hits = data.get("hits", {}).get("hits", [])
            done = len(hits) < self.size
            page = self._page(hits, skip, nbytes, done)
            if not done and not page.records and self._edge.ms == skip.ms:
                raise InputError(f"{self.label}: more than size={self.size} documents share one timestamp; raise size")
            yield page
            if done:
                return

    def _scroll(self) -> Iterator[Page]:
        """Scroll pages. A scroll advances on the server even when its answer is lost, so a
        failed scroll request is not repeated: the scroll restarts at the last page's edge."""
        return net.resumable(self.policy, self.counter, self.label, self._scroll_from_edge)

    def _scroll_from_edge(self) -> Iterator[Page]:
        skip = _Edge(self._edge.ms, set(self._edge.seen))
        body = {"size": self.size, "query": self._query(skip.ms),
                "sort": [{self.time_field: {"order": "asc", "format": "epoch_millis"}}, "_doc"]}
        data, nbytes = self.json_call("POST", f"{self.base}/{self.index}/_search",
                                      params={"scroll": self.keep_alive}, json=body)
        while True:
            self.scroll_id = data.get("_scroll_id") or self.scroll_id
            hits = data.get("hits", {}).get("hits", [])
            yield self._page(hits, skip, nbytes, not hits)
            if not hits:
                return
            data, nbytes = self.json_call("POST", f"{self.base}/_search/scroll", retry=False,
                                          json={"scroll": self.keep_alive, "scroll_id": self.scroll_id})

    def close(self) -> None:
        try:
            if self.pit_id:
                if self.opensearch:
                    self.http.request("DELETE", f"{self.base}/_search/point_in_time", json={"pit_id": [self.pit_id]})
                else:
                    self.http.request("DELETE", f"{self.base}/_pit", json={"id": self.pit_id})
            if self.scroll_id:
                self.http.request("DELETE", f"{self.base}/_search/scroll", json={"scroll_id": [self.scroll_id]})
        except Exception:  # releasing server state is a courtesy; it expires by itself
            pass


def _ms(value: Any) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        raise InputError(f"time sort value {value!r} is not epoch milliseconds") from None


@dataclass
class _Edge:
    ms: int | None
    seen: set[str]
