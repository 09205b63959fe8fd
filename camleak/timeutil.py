"""Timestamps from logs: RFC 3339 strings or epoch seconds / milliseconds, all to UTC.

A timestamp without an offset is taken as UTC, as log exports almost always are.
"""

from __future__ import annotations

import email.utils
import math
from datetime import datetime, timedelta, timezone

# Epoch values above this are milliseconds: 1e11 seconds is the year 5138, while 1e11 ms
# is March 1973, so real log times on either scale fall clearly on one side. The same gap
# separates milliseconds from microseconds (1e14) and microseconds from nanoseconds (1e17).
_MS_THRESHOLD = 100_000_000_000
_US_THRESHOLD = 100_000_000_000_000
_NS_THRESHOLD = 100_000_000_000_000_000
# Times outside these years are damage, not log times; they must not reach date arithmetic.
_MIN_MS = 0  # 1970
_MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
# Other shapes seen in exports: Apache/nginx access logs.
_STRPTIME_FORMATS = ("%d/%b/%Y:%H:%M:%S %z",)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def parse_ts(value: object) -> int:
    """Milliseconds since the epoch (UTC) for a log timestamp; ValueError when unreadable."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"not a timestamp: {value!r}")
    if isinstance(value, (int, float)):
        return _from_epoch(float(value))
    text = str(value).strip()
    if not text:
        raise ValueError("empty timestamp")
    try:
        return _from_epoch(float(text))
    except ValueError:
        pass
    iso = text.replace(" ", "T", 1) if "T" not in text and " " in text else text
    if iso.endswith(("Z", "z")):
        iso = iso[:-1] + "+00:00"
    # Python's fromisoformat takes at most 6 fractional digits; logs often carry 9.
    if "." in iso:
        head, _, rest = iso.partition(".")
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        iso = f"{head}.{digits[:6].ljust(6, '0')}{rest}" if digits else head + rest
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        moment = _other_formats(text)
    if moment.tzinfo is None:  # exports without an offset are UTC in practice; say so in docs
        moment = moment.replace(tzinfo=timezone.utc)
    try:
        delta = moment - _EPOCH  # exact integer arithmetic: floats drop a millisecond in later centuries
    except (OverflowError, OSError) as exc:
        raise ValueError(f"timestamp out of range: {text[:80]!r}") from exc
    ms = delta.days * 86_400_000 + delta.seconds * 1000 + (delta.microseconds + 500) // 1000
    return _in_range(ms, text)


def _other_formats(text: str) -> datetime:
    for fmt in _STRPTIME_FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            pass
    try:
        return email.utils.parsedate_to_datetime(text)  # RFC 2822: "Thu, 20 Nov 2025 12:00:00 GMT"
    except (TypeError, ValueError, IndexError, OverflowError):
        raise ValueError(f"not a timestamp: {text[:80]!r}") from None


def _from_epoch(number: float) -> int:
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"not a timestamp: {number!r}")
    if number >= _NS_THRESHOLD:
        ms = number / 1_000_000
    elif number >= _US_THRESHOLD:
        ms = number / 1000
    elif number >= _MS_THRESHOLD:
        ms = number
    else:
        ms = number * 1000
    return _in_range(round(ms), number)


def _in_range(ms: int, original: object) -> int:
    if not _MIN_MS <= ms <= _MAX_MS:
        raise ValueError(f"timestamp out of range (before 1970 or after 9999): {str(original)[:80]!r}")
    return ms


def format_ts(ms: int) -> str:
    """RFC 3339 in UTC with a `Z`, milliseconds only when present."""
    moment = _EPOCH + timedelta(milliseconds=ms)
    if ms % 1000:
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")
