"""Times as the API and the CLI take and give them.

In: ISO 8601 *with an offset* (``2027-01-15T16:00:00+08:00``, ``...Z``) or epoch
milliseconds (``1800000000000``). A time without a zone is refused: which zone the
caller meant is exactly the ambiguity evidence must not have.
Out: UTC, as ISO 8601 with ``Z`` and as epoch milliseconds, with the display zone's
offset given separately. Internally: integer microseconds since the epoch.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["TimeError", "display_offset", "gb_local_time", "iso_utc", "parse_gb_local_time", "parse_time",
           "time_fields"]

WHAT_TO_SEND = ("send ISO 8601 with an offset (2025-06-15T16:00:00+08:00 or 2025-06-15T08:00:00Z) "
                "or epoch milliseconds (1749974400000)")


_SPACED_OFFSET = re.compile(r"^(\d{4}-\d\d-\d\dT[\d:.]+) (\d\d:?\d\d)$")


class TimeError(ValueError):
    """A time the API cannot take; the message says what to send instead."""


def parse_time(value: str, name: str = "time") -> int:
    """``value`` as microseconds since the epoch; ``TimeError`` naming ``name`` otherwise."""
    text = value.strip()
    if not text:
        raise TimeError(f"{name} is empty: {WHAT_TO_SEND}")
    if text.lstrip("-").isdigit():
        return int(text) * 1000
    # An unencoded "+" in a URL query arrives as a space: "...T16:00:00 08:00".
    # A space before a trailing HH:MM can only be that, so read it as the "+" it was.
    m = _SPACED_OFFSET.match(text)
    if m:
        text = f"{m.group(1)}+{m.group(2)}"
    try:
        parsed = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise TimeError(f"{name}={value!r} is not a time: {WHAT_TO_SEND}") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise TimeError(f"{name}={value!r} has no time zone: {WHAT_TO_SEND}")
    delta = parsed - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def iso_utc(t_us: int) -> str:
    """``2027-01-15T08:00:00.000Z`` (millisecond precision, UTC)."""
    dt = datetime.fromtimestamp(t_us // 1_000_000, tz=timezone.utc).replace(microsecond=t_us % 1_000_000)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def display_offset(zone: str, t_us: int) -> str:
    """The UTC offset of ``zone`` at ``t_us``, as ``+08:00``."""
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise TimeError(f"display time zone {zone!r} is unknown; set display_timezone to an IANA name such as Asia/Shanghai") from None
    dt = datetime.fromtimestamp(t_us / 1_000_000, tz=tz)
    return dt.isoformat()[-6:] if dt.utcoffset() else "+00:00"


def time_fields(t_us: int) -> dict[str, object]:
    """A time as answers carry it: ISO UTC and epoch ms."""
    return {"utc": iso_utc(t_us), "ms": t_us // 1000}


def gb_local_time(t_us: int, zone: str) -> str:
    """GB/T 28181's time form: local time in ``zone`` with no offset, ``2027-01-15T16:00:00.000``
    (the SIP Date header that devices set their clocks from, RecordInfo times)."""
    dt = datetime.fromtimestamp(t_us / 1_000_000, tz=_zone(zone))
    return dt.replace(tzinfo=None).isoformat(timespec="milliseconds")


def parse_gb_local_time(value: str, zone: str) -> int:
    """A GB/T 28181 time (local, no offset, in ``zone``) as microseconds since the epoch."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise TimeError(f"GB/T 28181 time {value!r} is not YYYY-MM-DDTHH:MM:SS") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_zone(zone))
    delta = parsed - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _zone(zone: str) -> ZoneInfo:
    try:
        return ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise TimeError(f"display time zone {zone!r} is unknown; set display_timezone to an IANA name such as "
                        "Asia/Shanghai") from None
