"""Remote evidence: HTTP(S) files and log stores, pulled into the case with provenance.

`spec` parses the one-line source specs users write; `net` holds the HTTP client, its
credentials and its retry policy; `download` streams files (resumable, checksummed);
`es`, `loki`, `gcl` and `clickhouse` page through log stores; `pull` ties them to the case.
"""

from .spec import SourceSpec, is_remote, parse_spec, redact_url

DEFAULT_MAX_BYTES = 64 << 30  # a remote file larger than this needs --max-bytes

__all__ = ["DEFAULT_MAX_BYTES", "SourceSpec", "is_remote", "parse_spec", "redact_url"]
