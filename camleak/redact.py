"""Keep secrets out of what camleak prints and records: credentials and tokens in URLs.

Inputs may be given as URLs whose query or userinfo carries a signed token
(`?X-Amz-Signature=…`, `?token=…`, `https://user:secret@host/`). Error lines, problem messages
and run records say which input was meant without repeating the secret.
"""

from __future__ import annotations

import re

# One slash too: a URL that went through pathlib arrives as `https:/host/...`.
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*:/{1,2})[^/\s@]+@")
_SECRET_PARAM = re.compile(
    r"(?P<key>[?&;](?:[\w.-]*(?:token|key|sig|signature|secret|password|passwd|pwd|auth|credential|session|code)"
    r"[\w.-]*)=)[^&;#\s'\"]+",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """`text` with URL userinfo and secret-looking query values replaced by `***`."""
    if ":/" not in text and "=" not in text:
        return text
    text = _USERINFO.sub(r"\g<scheme>***@", text)
    return _SECRET_PARAM.sub(r"\g<key>***", text)
