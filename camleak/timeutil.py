"""Timestamps from logs: RFC 3339 strings or epoch seconds / milliseconds, all to UTC.

A timestamp without an offset is taken as UTC, as log exports almost always are.
"""

from __future__ import annotations

from datetime import datetime, timezone

# Epoch values above this are milliseconds: 1e11 seconds is the year 5138, while 1e11 ms
# is March 1973, so real log times on either scale fall clearly on one side.
_MS_THRESHOLD = 100_000_000_000


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
    except ValueError as exc:
        raise ValueError(f"not a timestamp: {text!r}") from exc
    if moment.tzinfo is None:  # exports without an offset are UTC in practice; say so in docs
        moment = moment.replace(tzinfo=timezone.utc)
    return round(moment.timestamp() * 1000)


def _from_epoch(number: float) -> int:
    if number != number or number < 0:
        raise ValueError(f"not a timestamp: {number!r}")
    if number >= _MS_THRESHOLD:
        return round(number)
    return round(number * 1000)


def format_ts(ms: int) -> str:
    """RFC 3339 in UTC with a `Z`, milliseconds only when present."""
    moment = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    if ms % 1000:
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")
