"""One-line source specs: what a user writes on the command line to name remote evidence.

    https://host/path/served-1.tar.gz?X-Amz-Signature=…#sha256=<hex>   a file over HTTP(S)
    es+http://host:9200/camcloud-*?from=…&to=…&time_field=@timestamp   Elasticsearch/OpenSearch
    loki+http://host:3100?query={app="bridge"}&from=…&to=…              Grafana Loki
    gcl+https://logging.googleapis.com?resource=projects/p&filter=…     Google Cloud Logging
    clickhouse+http://host:8123?query=SELECT … ORDER BY ts              ClickHouse

The scheme prefix names the store; the rest is the store's own base URL, with the query's
parameters in the URL's query string. `redact_url` is the only form ever recorded or printed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from ..errors import InputError
from ..redact import is_secret_param

LOG_STORES = {"es": "es", "elasticsearch": "es", "opensearch": "opensearch", "loki": "loki",
              "gcl": "gcl", "clickhouse": "clickhouse", "ch": "clickhouse"}
READABLE = "{}\"'/:,=*()<>!~|@$;[] "
_SPEC = re.compile(r"^(?P<store>[a-z]+)\+(?P<scheme>https?)://", re.IGNORECASE)


@dataclass(frozen=True)
class SourceSpec:
    """A parsed remote source: `kind` is 'http' for a file, else the log store's name."""

    kind: str
    url: str  # the real URL to contact (may hold credentials: never record or print it)
    params: dict[str, str] = field(default_factory=dict)  # log-store parameters
    sha256: str | None = None  # expected checksum of a file (from a #sha256= fragment)

    @property
    def label(self) -> str:
        """The form safe to record and print: credentials and signatures stripped."""
        prefix = "" if self.kind == "http" else f"{self.kind}+"
        if self.kind == "http":
            return redact_url(self.url)
        # Readable (a label for people and the pulls table), yet unambiguous: & # % + stay escaped.
        query = urlencode(sorted((k, v) for k, v in self.params.items() if not is_secret_param(k)),
                          safe=READABLE, quote_via=quote)
        base = redact_url(self.url)
        return prefix + base + (f"?{query}" if query else "")


def is_remote(source: object) -> bool:
    """True for http(s) URLs and log-store specs; local paths stay local."""
    text = str(source)
    return bool(re.match(r"^https?://", text, re.IGNORECASE) or _SPEC.match(text))


def parse_spec(text: str) -> SourceSpec:
    """Parse a URL or log-store spec; InputError (naming the redacted spec) when malformed."""
    text = text.strip()
    match = _SPEC.match(text)
    if match is None:
        if not re.match(r"^https?://", text, re.IGNORECASE):
            raise InputError(f"{text}: not a URL or log-store spec")
        parts = urlsplit(text)
        if not parts.hostname:
            raise InputError(f"{redact_url(text)}: URL has no host")
        checksum = None
        fragment = parts.fragment
        if fragment.startswith("sha256="):
            checksum = fragment[len("sha256="):].strip().lower()
            if not re.fullmatch(r"[0-9a-f]{64}", checksum):
                raise InputError(f"{redact_url(text)}: #sha256= needs 64 hex digits")
        url = urlunsplit((parts.scheme, parts.netloc, parts.path, parts.query, ""))
        return SourceSpec("http", url, {}, checksum)
    store = LOG_STORES.get(match["store"].lower())
    if store is None:
        raise InputError(f"{redact_url(text)}: unknown log store {match['store']!r} "
                         f"(one of: es, opensearch, loki, gcl, clickhouse)")
    rest = text[len(match["store"]) + 1:]
    parts = urlsplit(rest)
    if not parts.hostname:
        raise InputError(f"{redact_url(rest)}: spec has no host")
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    return SourceSpec(store, base, params)


def redact_url(url: str) -> str:
    """The URL without user, password, signature or token parameters (and no fragment)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not is_secret_param(k)]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query), ""))


def file_name(spec: SourceSpec) -> str:
    """The last path segment of a file URL: it keeps the extension format detection needs."""
    name = urlsplit(spec.url).path.rstrip("/").rsplit("/", 1)[-1]
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    return name or "download"
