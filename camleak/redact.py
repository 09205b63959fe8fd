"""Keep secrets out of what camleak prints and records: credentials and tokens in URLs.

Inputs may be given as URLs whose query or userinfo carries a signed token
(`?X-Amz-Signature=…`, `?token=…`, `https://user:secret@host/`). Error lines, problem messages
and run records say which input was meant without repeating the secret.
"""

from __future__ import annotations

import re

# Query parameters that carry credentials or signatures (S3/GCS/Azure signed URLs, API keys), by
# exact name and by the words such names are made of.
SECRET_PARAMS = frozenset({
    "x-amz-signature", "x-amz-credential", "x-amz-security-token", "x-goog-signature",
    "x-goog-credential", "signature", "sig", "awsaccesskeyid", "googleaccessid", "policy",
    "token", "access_token", "id_token", "api_key", "apikey", "key", "password", "pass",
    "passwd", "secret", "auth", "authorization", "x-ms-signature", "code", "session",
})
_SECRET_WORD = re.compile(r"token|key|sig|signature|secret|password|passwd|pwd|auth|credential|session|code", re.IGNORECASE)

# One slash too: a URL that went through pathlib arrives as `https:/host/...`.
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*:/{1,2})[^/\s@]+@")
_QUERY_PARAM = re.compile(r"(?P<key>[?&;](?P<name>[\w.-]+)=)[^&;#\s'\"]+")


def is_secret_param(name: str) -> bool:
    """Whether a URL query parameter of this name may carry a credential or signature."""
    return name.lower() in SECRET_PARAMS or bool(_SECRET_WORD.search(name))


def redact(text: str) -> str:
    """`text` with URL userinfo and secret-looking query values replaced by `***`."""
    if ":/" not in text and "=" not in text:
        return text
    text = _USERINFO.sub(r"\g<scheme>***@", text)
    return _QUERY_PARAM.sub(lambda m: m["key"] + "***" if is_secret_param(m["name"]) else m[0], text)
