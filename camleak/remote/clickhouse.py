"""ClickHouse: a SQL query over the HTTP interface, streamed as JSONEachRow.

    clickhouse+http://127.0.0.1:8123?database=camcloud&query=SELECT * FROM delivery_events ORDER BY ts, request_id, event

The query is POSTed with ` FORMAT JSONEachRow` appended (unless it names a format) and read
line by line; every `page_rows` rows are one page. A dropped stream is re-queried: with an
ORDER BY the rows already committed are skipped, without one they are read again and
deduplicated on their event key. User and password come from the spec's user part,
CLICKHOUSE_USER / CLICKHOUSE_PASSWORD, or netrc.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterator

from ..errors import InputError
from . import net
from .stores import LogStore, Page


# Server-side failures worth a retry: timeouts, too many queries, network trouble between replicas.
TRANSIENT_CODES = {159, 202, 209, 210, 425}


class ClickHouse(LogStore):
    kind = "clickhouse"

    def pages(self, cursor: dict[str, Any] | None) -> Iterator[Page]:
        query = (self.param("query", required=True) or "").strip().rstrip(";")
        if not re.search(r"\bFORMAT\s+\w+\s*$", query, re.IGNORECASE):
            query += " FORMAT JSONEachRow"
        elif not re.search(r"\bFORMAT\s+JSONEachRow\s*$", query, re.IGNORECASE):
            raise InputError(f"{self.label}: the query must use FORMAT JSONEachRow (or name no format)")
        ordered = re.search(r"\bORDER\s+BY\b", query, re.IGNORECASE) is not None
        page_rows = self.int_param("page_rows", 1000)
        done = int((cursor or {}).get("rows", 0))
        params = {k: v for k, v in self.spec.params.items() if k in ("database",)}
        self._done = done
        return net.resumable(self.policy, self.counter, self.label,
                             lambda: self._stream(query, params, self._done if ordered else 0, self._done, page_rows))

    def _stream(self, query: str, params: dict[str, str], skip: int, done: int, page_rows: int) -> Iterator[Page]:
        self._done = done
        url = self.spec.url.rstrip("/") + "/"
        with self.http.stream("POST", url, params=params, content=query.encode()) as response:
            if response.status_code >= 400:
                text = response.read()[:400].decode("utf-8", "replace").strip()
                code = re.match(r"Code: (\d+)", text)
                if code and int(code.group(1)) not in TRANSIENT_CODES:
                    raise InputError(f"{self.label}: ClickHouse refused the query ({text})")
            net.check_status(response, self.label)
            batch: list[dict[str, Any] | str] = []
            nbytes = 0
            seen = 0
            for line in response.iter_lines():
                if not line.strip():
                    continue
                seen += 1
                if seen <= skip:
                    continue
                nbytes += len(line) + 1
                try:
                    row = json.loads(line)
                except ValueError:
                    if line.startswith("Code:"):  # ClickHouse reports a failure mid-stream as text
                        raise InputError(f"{self.label}: {line.strip()[:300]}") from None
                    raise net.Retryable("a row is not complete JSON") from None
                batch.append(row)
                if len(batch) >= page_rows:
                    self._done += len(batch)
                    yield Page(batch, {"rows": self._done}, nbytes)
                    batch, nbytes = [], 0
            self._done += len(batch)
            yield Page(batch, None, nbytes)
