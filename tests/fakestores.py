"""Loopback HTTP servers for the remote-source tests: a file server with Range support, and
Elasticsearch, Loki and Cloud Logging endpoints implementing the documented request and
response shapes (PIT + search_after, scroll, query_range streams, entries:list page tokens),
each with fault injection: a dropped connection mid-body, 429 with Retry-After, 503, a slow
response, a truncated gzip body.

Faults are queued per route (`server.faults["loki"] = ["drop", "429"]`); each request to the
route takes the next one. Only 127.0.0.1 is ever bound.
"""

from __future__ import annotations

import base64
import fnmatch
import gzip
import hashlib
import json
import re
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from camleak.timeutil import parse_ts


def _us(stamp: str) -> int:
    """Microseconds since the epoch: Cloud Logging compares timestamps exactly, not to the ms."""
    from datetime import datetime, timedelta, timezone

    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return (moment - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1)


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.files: dict[str, bytes] = {}
        self.sidecars: dict[str, str] = {}
        self.es_docs: list[tuple[str, dict]] = []  # (index, doc)
        self.es_time_field = "ts"
        self.es_has_pit = True
        self.loki_entries: list[tuple[int, str, dict]] = []  # (ns, line, labels)
        self.loki_max_limit = 5000
        self.gcl_entries: list[dict] = []
        self.gcl_empty_first_page = True
        self.gcl_expired_tokens: set[str] = set()
        self.faults: dict[str, list[str]] = defaultdict(list)
        self.fail_after: dict[str, int] = {}  # route -> requests served before it fails hard (HTTP 400)
        self.requests: dict[str, int] = defaultdict(int)
        self.inflight = 0
        self.meet: threading.Barrier | None = None
        self.max_inflight = 0  # most file requests served at once
        self.headers_seen: list[dict[str, str]] = []
        self.paths_seen: list[str] = []
        self.scrolls: dict[str, list] = {}
        self.pits: set[str] = set()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> "FakeServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (after a timeout, or by design) is not an error here."""
        import sys

        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)

    def next_fault(self, route: str) -> str | None:
        with self.lock:
            self.requests[route] += 1
            queue = self.faults[route]
            return queue.pop(0) if queue else None


class Handler(BaseHTTPRequestHandler):
    server: FakeServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    # -- plumbing ---------------------------------------------------------------------
    def parse_request(self) -> bool:
        self._raw = None  # one handler serves every request of a kept-alive connection
        return super().parse_request()

    def _body(self) -> bytes:
        """The request body, read once (a second call must not wait for bytes never sent)."""
        if getattr(self, "_raw", None) is None:
            length = int(self.headers.get("content-length") or 0)
            self._raw = self.rfile.read(length) if length else b""
        return self._raw

    def _json_body(self) -> Any:
        raw = self._body()
        return json.loads(raw) if raw else {}

    def _send(self, status: int, body: bytes, content_type: str = "application/json",
              headers: dict[str, str] | None = None, fault: str | None = None) -> None:
        if fault == "gzip-trunc":
            packed = gzip.compress(body)
            body = packed[: max(10, len(packed) * 3 // 5)]
            headers = dict(headers or {}, **{"Content-Encoding": "gzip"})
        elif "gzip" in (self.headers.get("accept-encoding") or "") and content_type == "application/json":
            body = gzip.compress(body)
            headers = dict(headers or {}, **{"Content-Encoding": "gzip"})
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if fault == "drop":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def _fault(self, route: str) -> str | None:
        """Serve a fault that replaces the response; return one that shapes it (drop, gzip)."""
        self.server.headers_seen.append({k.lower(): v for k, v in self.headers.items()})
        self.server.paths_seen.append(self.path)
        fault = self.server.next_fault(route)
        limit = self.server.fail_after.get(route)
        if limit is not None and self.server.requests[route] > limit:
            self._body()
            self._send(400, json.dumps({"error": "injected hard failure"}).encode())
            return "handled"
        if fault == "429":
            self._body()
            self._send(429, b'{"error": "slow down"}', headers={"Retry-After": "1"})
            return "handled"
        if fault == "503":
            self._body()
            self._send(503, b'{"error": "unavailable"}')
            return "handled"
        if fault and fault.startswith("slow"):
            time.sleep(float(fault.partition(":")[2] or 0.3))
            return None
        return fault

    # -- routes -----------------------------------------------------------------------
    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path.startswith("/files/"):
            return self._file(path[len("/files/"):])
        if path == "/loki/api/v1/query_range":
            return self._loki()
        self._send(404, b'{"error": "no route"}')

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if path == "/v2/entries:list":
            return self._gcl()
        if path.endswith("/_pit") or path.endswith("/_search/point_in_time"):
            return self._es_open_pit(path)
        if path == "/_search/scroll":
            return self._es_scroll_next()
        if path == "/_search":
            return self._es_search()
        if path.endswith("/_search"):
            return self._es_scroll_start(path)
        self._send(404, b'{"error": "no route"}')

    def do_DELETE(self) -> None:
        self._body()
        self._send(200, b'{"succeeded": true}')

    # -- files ------------------------------------------------------------------------
    def _file(self, name: str) -> None:
        if name.endswith(".sha256") and name[: -len(".sha256")] in self.server.sidecars:
            digest = self.server.sidecars[name[: -len(".sha256")]]
            return self._send(200, f"{digest}  {name[:-7]}\n".encode(), "text/plain")
        data = self.server.files.get(name)
        if data is None:
            return self._send(404, b"not found", "text/plain")
        with self.server.lock:
            self.server.inflight += 1
            self.server.max_inflight = max(self.server.max_inflight, self.server.inflight)
        if self.server.meet is not None:  # the first `meet.parties` file requests wait for each other
            try:
                self.server.meet.wait(timeout=20)
            except threading.BrokenBarrierError:
                pass
        try:
            self._file_body(name, data)
        finally:
            with self.server.lock:
                self.server.inflight -= 1

    def _file_body(self, name: str, data: bytes) -> None:
        fault = self._fault("files:" + name)
        if fault == "handled":
            return
        etag = '"' + hashlib.sha1(data).hexdigest() + '"'
        start = 0
        match = re.match(r"bytes=(\d+)-$", self.headers.get("range") or "")
        if_range = self.headers.get("if-range")
        if match and (if_range is None or if_range == etag):
            start = int(match.group(1))
            if start >= len(data):
                return self._send(416, b"", "application/octet-stream",
                                  {"Content-Range": f"bytes */{len(data)}"})
            return self._send(206, data[start:], "application/octet-stream",
                              {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}", "ETag": etag,
                               "Accept-Ranges": "bytes"}, fault)
        self._send(200, data, "application/octet-stream", {"ETag": etag, "Accept-Ranges": "bytes"}, fault)

    # -- Elasticsearch ----------------------------------------------------------------
    def _es_open_pit(self, path: str) -> None:
        index = path.strip("/").split("/")[0]
        fault = self._fault("es")
        if fault == "handled":
            return
        if not self.server.es_has_pit:
            return self._send(400, json.dumps({"error": {"type": "illegal_argument_exception",
                                                         "reason": "request [/_pit] contains unrecognized parameter"}}).encode())
        pit = base64.b64encode(f"pit:{index}:{time.monotonic_ns()}".encode()).decode()
        self.server.pits.add(pit)
        key = "pit_id" if path.endswith("point_in_time") else "id"
        self._send(200, json.dumps({key: pit}).encode(), fault=fault)

    def _es_matching(self, index_pattern: str, query: dict) -> list[tuple[int, int, dict]]:
        """(time ms, doc seq, doc) of docs matching the index pattern and the range filter."""
        field = self.server.es_time_field
        bounds = {}
        for clause in query.get("bool", {}).get("filter", []):
            if "range" in clause:
                bounds = clause["range"][field]
                assert bounds.get("format") == "epoch_millis"
        out = []
        for seq, (index, doc) in enumerate(self.server.es_docs):
            if not fnmatch.fnmatch(index, index_pattern):
                continue
            ms = parse_ts(doc[field])
            if "gte" in bounds and ms < bounds["gte"] or "lt" in bounds and ms >= bounds["lt"]:
                continue
            out.append((ms, seq, doc))
        out.sort(key=lambda t: (t[0], t[1]))
        return out

    def _es_hits(self, rows: list[tuple[int, int, dict]], index_pattern: str) -> list[dict]:
        return [{"_index": index_pattern, "_id": str(seq), "_score": None, "_source": doc, "sort": [ms, seq]}
                for ms, seq, doc in rows]

    def _es_search(self) -> None:
        body = self._json_body()
        fault = self._fault("es")
        if fault == "handled":
            return
        pit = body.get("pit", {}).get("id")
        if fault == "expire-pit":
            self.server.pits.discard(pit)
        if pit not in self.server.pits:
            return self._send(404, b'{"error": {"type": "search_context_missing_exception"}}')
        index = base64.b64decode(pit).decode().split(":")[1]
        sort = body["sort"]
        assert list(sort[0]) == [self.server.es_time_field], sort
        assert len(sort) == 1 or list(sort[1]) == ["_shard_doc"], sort
        rows = self._es_matching(index, body["query"])
        after = body.get("search_after")
        if after is not None:
            rows = [r for r in rows if (r[0], r[1]) > (after[0], after[1])]
        rows = rows[: body["size"]]
        data = {"pit_id": pit, "took": 1, "timed_out": False,
                "hits": {"hits": self._es_hits(rows, index)}}
        self._send(200, json.dumps(data).encode(), fault=fault)

    def _es_scroll_start(self, path: str) -> None:
        index = path.strip("/").split("/")[0]
        body = self._json_body()
        fault = self._fault("es")
        if fault == "handled":
            return
        assert "scroll" in parse_qs(urlsplit(self.path).query)
        rows = self._es_matching(index, body["query"])
        scroll_id = f"scroll-{len(self.server.scrolls)}"
        size = body["size"]
        self.server.scrolls[scroll_id] = [rows[i:i + size] for i in range(0, len(rows), size)] + [[]]
        page = self.server.scrolls[scroll_id].pop(0)
        self._send(200, json.dumps({"_scroll_id": scroll_id, "hits": {"hits": self._es_hits(page, index)}}).encode(),
                   fault=fault)

    def _es_scroll_next(self) -> None:
        body = self._json_body()
        fault = self._fault("es")
        if fault == "handled":
            return
        pages = self.server.scrolls[body["scroll_id"]]
        page = pages.pop(0) if pages else []
        self._send(200, json.dumps({"_scroll_id": body["scroll_id"], "hits": {"hits": self._es_hits(page, "x")}}).encode(),
                   fault=fault)

    # -- Loki -------------------------------------------------------------------------
    def _loki(self) -> None:
        fault = self._fault("loki")
        if fault == "handled":
            return
        q = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
        assert q["direction"] == "forward"
        selector = dict(re.findall(r'(\w+)="([^"]*)"', q["query"]))
        start, end, limit = int(q["start"]), int(q["end"]), int(q["limit"])
        if limit > self.server.loki_max_limit:
            return self._send(400, b"max entries limit per query exceeded", "text/plain")
        rows = sorted((e for e in self.server.loki_entries
                       if start <= e[0] < end and all(e[2].get(k) == v for k, v in selector.items())),
                      key=lambda e: (e[0], e[1]))[:limit]
        streams: dict[str, dict] = {}
        for ns, line, labels in rows:
            key = json.dumps(labels, sort_keys=True)
            streams.setdefault(key, {"stream": labels, "values": []})["values"].append([str(ns), line])
        data = {"status": "success", "data": {"resultType": "streams", "result": list(streams.values()),
                                              "stats": {"summary": {"totalEntriesReturned": len(rows)}}}}
        self._send(200, json.dumps(data).encode(), fault=fault)

    # -- Cloud Logging ----------------------------------------------------------------
    def _gcl(self) -> None:
        body = self._json_body()
        fault = self._fault("gcl")
        if fault == "handled":
            return
        assert body["resourceNames"] and body["orderBy"] == "timestamp asc"
        filt = body.get("filter", "")
        low = re.search(r'timestamp>="([^"]+)"', filt)
        high = re.search(r'timestamp<"([^"]+)"', filt)
        log_name = re.search(r'logName="([^"]+)"', filt)
        rows = [e for e in self.server.gcl_entries
                if (not low or _us(e["timestamp"]) >= _us(low.group(1)))
                and (not high or _us(e["timestamp"]) < _us(high.group(1)))
                and (not log_name or e.get("logName") == log_name.group(1))]
        rows.sort(key=lambda e: _us(e["timestamp"]))
        token = body.get("pageToken")
        if token is not None and token in self.server.gcl_expired_tokens:
            return self._send(400, json.dumps({"error": {"code": 400, "status": "INVALID_ARGUMENT",
                                                         "message": "page token expired"}}).encode())
        query = hashlib.sha1(filt.encode()).hexdigest()[:8]  # a token belongs to its query

        def make_token(offset: int) -> str:
            return base64.b64encode(f"{query}:{offset}".encode()).decode()

        if token is None and self.server.gcl_empty_first_page:
            # The service may answer an empty page while it keeps searching.
            return self._send(200, json.dumps({"nextPageToken": make_token(0)}).encode(), fault=fault)
        if token and base64.b64decode(token).decode().split(":")[0] != query:
            return self._send(400, json.dumps({"error": {"code": 400, "status": "INVALID_ARGUMENT",
                                                         "message": "page token does not match the request"}}).encode())
        offset = int(base64.b64decode(token).decode().split(":")[1]) if token else 0
        size = min(int(body.get("pageSize", 50)), 1000)
        page = rows[offset: offset + size]
        data: dict[str, Any] = {"entries": page} if page else {}
        if offset + size < len(rows):
            data["nextPageToken"] = make_token(offset + size)
        self._send(200, json.dumps(data).encode(), fault=fault)


# ---------------------------------------------------------------------------------------
# Loading a simulated incident's logs into the stores, as a real pipeline would have
# ---------------------------------------------------------------------------------------
FROM, TO = "2026-11-19T00:00:00Z", "2026-11-23T00:00:00Z"


def _lines(path) -> list[str]:
    import zstandard

    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    elif raw[:4] == b"\x28\xb5\x2f\xfd":
        raw = zstandard.ZstdDecompressor().decompressobj().decompress(raw)
    return [line for line in raw.decode("utf-8", "replace").split("\n") if line.strip()]


def _with_neighbour_times(items: list[tuple[str, str | None]]) -> list[tuple[str, str]]:
    """A line the store could not parse still has the time it arrived: its neighbour's."""
    known = [t for _, t in items if t]
    out, last = [], known[0] if known else "2026-11-20T00:00:00Z"
    for text, ts in items:
        last = ts or last
        out.append((text, last))
    return out


def _json_ts(line: str, key: str) -> str | None:
    try:
        record = json.loads(line)
        return str(record[key]) if isinstance(record, dict) and key in record else None
    except ValueError:
        return None


def load_loki(server: FakeServer, path, labels: dict[str, str]) -> int:
    """Every line of a JSON-lines export, malformed ones included, as Loki holds them."""
    items = _with_neighbour_times([(line, _json_ts(line, "ts")) for line in _lines(path)])
    for line, ts in items:
        server.loki_entries.append((parse_ts(ts) * 1_000_000, line, labels))
    return len(items)


def load_gcl(server: FakeServer, path) -> int:
    """Cloud Logging entries; a line that is not JSON is kept as a textPayload entry."""
    items = _with_neighbour_times([(line, _json_ts(line, "timestamp")) for line in _lines(path)])
    for line, ts in items:
        try:
            entry = json.loads(line)
        except ValueError:
            entry = {"timestamp": ts, "logName": "projects/camcloud-prod/logs/assistant-bridge",
                     "textPayload": line}
        entry.setdefault("insertId", hashlib.sha1(line.encode()).hexdigest()[:12])
        server.gcl_entries.append(entry)
    return len(items)


def load_es(server: FakeServer, path, index: str) -> int:
    """CSV rows as documents; a row with the wrong column count is kept as {"message": raw}."""
    import csv
    import io

    lines = _lines(path)
    header = next(csv.reader([lines[0]]))
    items = []
    for line in lines[1:]:
        row = next(csv.reader(io.StringIO(line)))
        doc = dict(zip(header, row)) if len(row) == len(header) else {"message": line}
        items.append((doc, doc.get("ts")))
    texts = _with_neighbour_times([(json.dumps(d), ts) for d, ts in items])
    for (doc, _), (_, ts) in zip(items, texts):
        doc.setdefault("ts", ts)
        server.es_docs.append((index, doc))
    return len(items)
