"""The one rule for time: how the API and the CLI take, give and keep it.

In: ISO 8601 *with an offset* (``2027-01-15T16:00:00+08:00``, ``...Z``) or epoch
**milliseconds** (``1800000000000``), on every route and every command. The API refuses
a time without a zone: which zone the caller meant is exactly the ambiguity evidence
must not have. The CLI may read a zoneless time in the display zone, and says so in
its ``--help`` (``parse_time(..., naive_zone=...)``).
Out: UTC, as ISO 8601 with ``Z`` and as epoch milliseconds, with the display zone's
offset given separately. Internally: integer microseconds since the epoch (``now_us``).
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["TimeError", "display_offset", "format_local", "gb_local_time", "iso_utc", "now_us",
           "parse_gb_local_time", "parse_time", "time_fields"]

WHAT_TO_SEND = ("send ISO 8601 with an offset (2025-06-15T16:00:00+08:00 or 2025-06-15T08:00:00Z) "
                "or epoch milliseconds (1749974400000)")

# Times the index can hold and a person can mean: 1970-01-01 up to (not including) year 10000.
MAX_US = 253_402_300_800_000_000

_SPACED_OFFSET = re.compile(r"^(\d{4}-\d\d-\d\dT[\d:.]+) (\d\d:?\d\d)$")
# ASCII digits only (str.isdigit() also takes "²" and other Unicode digits), and no more
# of them than a millisecond time before year 10000 needs.
_EPOCH_MS = re.compile(r"[0-9]{1,15}")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class TimeError(ValueError):
    """A time that cannot be taken; the message says what to send instead."""


def now_us() -> int:
    """The wall clock, in microseconds since the epoch (UTC)."""
    return time.time_ns() // 1000


def parse_time(value: str, name: str = "time", *, naive_zone: str | None = None) -> int:
    """``value`` as microseconds since the epoch; ``TimeError`` naming ``name`` otherwise.

    ``naive_zone`` (an IANA name) is the zone of a time given without one; None (the
    API's rule) refuses such a time.
    """
    text = value.strip()
    if not text:
        raise TimeError(f"{name} is empty: {WHAT_TO_SEND}")
    if _EPOCH_MS.fullmatch(text):
        return _checked(int(text) * 1000, name, value)
    if text.isdigit() or text.lstrip("-").isdigit():
        raise TimeError(f"{name}={value!r} is not a time: {WHAT_TO_SEND}")
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
        if naive_zone is None:
            raise TimeError(f"{name}={value!r} has no time zone: {WHAT_TO_SEND}")
        parsed = parsed.replace(tzinfo=_zone(naive_zone))
    try:
        delta = parsed - _EPOCH
    except OverflowError:  # year 1 with a positive offset lands before datetime.min
        raise TimeError(f"{name}={value!r} is out of range: times run from 1970 to 9999") from None
    return _checked((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds, name, value)


def _checked(t_us: int, name: str, value: str) -> int:
    if not 0 <= t_us < MAX_US:
        raise TimeError(f"{name}={value!r} is out of range: times run from 1970 to 9999")
    return t_us


def _zone(zone: str) -> ZoneInfo:
    try:
        return ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise TimeError(f"display time zone {zone!r} is unknown; set display_timezone to an IANA name "
                        "such as Asia/Shanghai") from None


def iso_utc(t_us: int, timespec: str = "milliseconds") -> str:
    """``2027-01-15T08:00:00.000Z`` (UTC; millisecond precision unless ``timespec`` says otherwise)."""
    dt = datetime.fromtimestamp(t_us // 1_000_000, tz=timezone.utc).replace(microsecond=t_us % 1_000_000)
    return dt.isoformat(timespec=timespec).replace("+00:00", "Z")


def format_local(t_us: int, zone: str, timespec: str = "milliseconds") -> str:
    """``t_us`` in ``zone`` as ISO 8601 with its offset, e.g. ``2027-01-15T16:00:00.000+08:00``."""
    dt = datetime.fromtimestamp(t_us // 1_000_000, tz=_zone(zone)).replace(microsecond=t_us % 1_000_000)
    return dt.isoformat(timespec=timespec)


def display_offset(zone: str, t_us: int) -> str:
    """The UTC offset of ``zone`` at ``t_us``, as ``+08:00``."""
    dt = datetime.fromtimestamp(t_us / 1_000_000, tz=_zone(zone))
    return dt.isoformat()[-6:] if dt.utcoffset() else "+00:00"


def time_fields(t_us: int) -> dict[str, object]:
    """A time as answers carry it: ISO UTC and epoch ms."""
    return {"utc": iso_utc(t_us), "ms": t_us // 1000}


def gb_local_time(t_us: int, zone: str) -> str:
    """GB/T 28181's time form: local time in ``zone`` with no offset, ``2027-01-15T16:00:00.000``
    (the SIP Date header that devices set their clocks from, RecordInfo times)."""
    return format_local(t_us, zone)[:-6]


def parse_gb_local_time(value: str, zone: str) -> int:
    """A GB/T 28181 time (local, no offset: read in ``zone``) as microseconds since the epoch."""
    return parse_time(value, "GB/T 28181 time", naive_zone=zone)
