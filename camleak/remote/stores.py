"""What every log store shares: pages of raw records with a cursor to resume after each.

A store yields `Page`s; each page's `records` are dicts (a parsed document) or strings (a
line the store holds that is not a JSON object; counted as malformed like a bad file line).
`cursor` is JSON-serialisable and is stored with the page, so a rerun resumes after it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterator

import httpx

from ..errors import InputError
from ..timeutil import format_ts, parse_ts
from . import net
from .spec import SourceSpec


@dataclass
class Page:
    records: list[dict[str, Any] | str]
    cursor: dict[str, Any] | None  # None: the source is exhausted
    nbytes: int


class LogStore:
    """Base class: a spec, an HTTP client, a retry policy and a retry counter."""

    kind = "?"

    def __init__(self, spec: SourceSpec, http: httpx.Client, policy: net.RetryPolicy, counter: net.Counter):
        self.spec = spec
        self.http = http
        self.policy = policy
        self.counter = counter
        self.label = spec.label

    def param(self, name: str, default: str | None = None, required: bool = False) -> str | None:
        value = self.spec.params.get(name, default)
        if required and not value:
            raise InputError(f"{self.label}: the spec needs {name}=…")
        return value

    def time_range(self) -> tuple[int | None, int | None]:
        """`from` (inclusive) and `to` (exclusive) in epoch ms, either optional."""
        bounds = []
        for name in ("from", "to"):
            value = self.spec.params.get(name)
            try:
                bounds.append(parse_ts(value) if value else None)
            except ValueError as exc:
                raise InputError(f"{self.label}: {name}={value!r} is not a timestamp ({exc})") from None
        return bounds[0], bounds[1]

    def int_param(self, name: str, default: int, low: int = 1, high: int = 1_000_000) -> int:
        value = self.spec.params.get(name)
        if value is None:
            return default
        if not value.isdigit() or not low <= int(value) <= high:
            raise InputError(f"{self.label}: {name}={value!r} must be a whole number from {low} to {high}")
        return int(value)

    def json_call(self, method: str, url: str, *, retry: bool = True, **kwargs: Any) -> tuple[Any, int]:
        """One JSON request with retries; a body that does not parse (truncated, cut gzip) is retried.

        `retry=False` is for requests that are not idempotent (a scroll advances on the server
        even when its answer is lost): the caller decides how to recover."""

        def attempt() -> tuple[Any, int]:
            response = self.http.request(method, url, **kwargs)
            net.check_status(response, self.label)
            body = response.read()
            try:
                return json.loads(body), len(body)
            except ValueError:
                raise net.Retryable("response body is not complete JSON") from None

        if not retry:
            return attempt()
        return net.call(self.policy, self.counter, self.label, attempt)

    def pages(self, cursor: dict[str, Any] | None) -> Iterator[Page]:
        raise NotImplementedError

    def close(self) -> None:
        """Release server-side state (PIT, scroll); best effort."""


def rfc3339(ms: int) -> str:
    return format_ts(ms)
