"""The HTTP client every remote source uses: credentials, timeouts and retries.

Credentials come from the URL's user part, environment variables or a netrc file, and go
only into request headers; nothing here formats a URL that has not been through redact_url.
Retries (tenacity) cover connection errors, timeouts, truncated bodies, 429 (honouring
Retry-After) and 5xx, with exponential backoff and jitter.
"""

from __future__ import annotations

import email.utils
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

import httpx
import tenacity

from ..errors import InputError
from ..redact import is_secret_param
from .spec import redact_url

RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}

# httpx logs every request's full URL at INFO (and httpcore its traffic at DEBUG): a signed
# URL's signature would reach whatever log handler the host application configured.
for _name in ("httpx", "httpcore"):
    logging.getLogger(_name).setLevel(logging.WARNING)
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: `attempts` per request, waits growing from `backoff` up to `max_wait`."""

    attempts: int = 6
    backoff: float = 0.5
    max_wait: float = 30.0
    max_retry_after: float = 300.0  # a Retry-After longer than this is capped
    timeout: float = 60.0


class Retryable(Exception):
    """A failure worth another try; `retry_after` is the server's requested wait, if any."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class Counter:
    """Retries and waits of one source, shared by its requests (thread-safe)."""

    retries: int = 0
    waits: list[float] = field(default_factory=list)
    last_error: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def note(self, wait: float, error: str) -> None:
        with self._lock:
            self.retries += 1
            self.waits.append(wait)
            self.last_error = error


TRANSIENT = (httpx.TransportError, httpx.DecodingError, Retryable)


def is_transient(exc: BaseException) -> bool:
    """Worth another try: network trouble, a cut body, 429/5xx; not a malformed URL."""
    return isinstance(exc, TRANSIENT) and not isinstance(exc, (httpx.UnsupportedProtocol, httpx.InvalidURL))


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


def check_status(response: httpx.Response, label: str) -> None:
    """Raise Retryable for 429/5xx, InputError for other failures (message without secrets)."""
    if response.status_code < 400:
        return
    if response.status_code in RETRY_STATUS:
        raise Retryable(f"HTTP {response.status_code}", parse_retry_after(response.headers.get("retry-after")))
    try:
        body = response.read()[:300].decode("utf-8", "replace").strip()
    except httpx.HTTPError:
        body = ""
    raise InputError(f"{label}: HTTP {response.status_code}" + (f" ({body})" if body else ""))


def call(policy: RetryPolicy, counter: Counter, label: str, attempt: Callable[[], Any]) -> Any:
    """Run `attempt()` until it succeeds, retrying transient failures; InputError when exhausted."""
    backoff = tenacity.wait_random_exponential(multiplier=policy.backoff, max=policy.max_wait)

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        seconds = backoff(state)
        if isinstance(exc, Retryable) and exc.retry_after is not None:
            seconds = max(seconds, min(exc.retry_after, policy.max_retry_after))
        return seconds

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        counter.note(state.upcoming_sleep, describe(exc))

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(max(1, policy.attempts)),
        wait=wait,
        retry=tenacity.retry_if_exception(is_transient),
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        return retrying(attempt)
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        raise InputError(f"{label}: not a usable URL ({type(exc).__name__})") from None
    except TRANSIENT as exc:
        raise InputError(f"{label}: gave up after {policy.attempts} attempts ({describe(exc)})") from None


def describe(exc: BaseException | None) -> str:
    """A one-line reason that never includes a URL (httpx messages may carry one)."""
    if exc is None:
        return "unknown error"
    if isinstance(exc, Retryable):
        return str(exc)
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.ConnectError):
        return "connection failed"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "connection dropped mid-response"
    if isinstance(exc, httpx.DecodingError):
        return "response body could not be decoded"
    if isinstance(exc, httpx.TransportError):
        return f"network error ({type(exc).__name__})"
    return type(exc).__name__


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """The URL without its user part, and that user part as (user, password)."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, None
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return clean, (unquote(parts.username), unquote(parts.password or ""))


def auth_for(url: str, env: dict[str, str] | None = None) -> tuple[str, httpx.Auth | None, dict[str, str]]:
    """Where the credentials for `url` come from, in order: the URL's user part, a bearer token
    in CAMLEAK_BEARER_TOKEN, then netrc ($NETRC or ~/.netrc)."""
    env = os.environ if env is None else env
    clean, userinfo = split_credentials(url)
    headers: dict[str, str] = {}
    if userinfo is not None:
        return clean, httpx.BasicAuth(*userinfo), headers
    if any(is_secret_param(k) for k, _ in parse_qsl(urlsplit(url).query)):
        return clean, None, headers  # a signed URL carries its own authorisation; S3 refuses a second
    token = env.get("CAMLEAK_BEARER_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
        return clean, None, headers
    netrc_path = env.get("NETRC") or str(Path.home() / ".netrc")
    if Path(netrc_path).is_file():
        try:
            return clean, httpx.NetRCAuth(netrc_path), headers
        except Exception as exc:  # a malformed netrc: name the file, not its content
            raise InputError(f"{netrc_path}: unreadable netrc ({type(exc).__name__})") from None
    return clean, None, headers


def client(policy: RetryPolicy, auth: httpx.Auth | None = None, headers: dict[str, str] | None = None) -> httpx.Client:
    # trust_env=False: proxies from the environment are not ours to follow, and netrc is
    # handled above so its use is explicit.
    return httpx.Client(
        auth=auth, headers=headers or {}, timeout=httpx.Timeout(policy.timeout, connect=min(10.0, policy.timeout)),
        follow_redirects=True, trust_env=False,
    )


__all__ = ["Counter", "RetryPolicy", "Retryable", "auth_for", "call", "check_status", "client", "redact_url"]


def backoff_wait(policy: RetryPolicy, failures: int, exc: BaseException | None) -> float:
    """The wait before retry number `failures` of a streamed read (same rule as `call`)."""
    import random

    seconds = random.uniform(0, min(policy.max_wait, policy.backoff * 2 ** max(0, failures - 1)))
    if isinstance(exc, Retryable) and exc.retry_after is not None:
        seconds = max(seconds, min(exc.retry_after, policy.max_retry_after))
    return seconds


def resumable(policy: RetryPolicy, counter: Counter, label: str, start: Callable[[], Iterator[T]]) -> Iterator[T]:
    """Iterate `start()`; when it fails transiently mid-way, call `start()` again after a wait.

    For streams that cannot be retried request by request (a scroll, a streamed query): each
    `start()` resumes from whatever its caller has already consumed."""
    failures = 0
    while True:
        try:
            yield from start()
            return
        except Exception as exc:
            if not is_transient(exc):
                raise
            failures += 1
            if failures >= policy.attempts:
                raise InputError(f"{label}: gave up after {failures} attempts ({describe(exc)})") from None
            wait = backoff_wait(policy, failures, exc)
            counter.note(wait, describe(exc))
            time.sleep(wait)
