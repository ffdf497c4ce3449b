"""Times on the wire: µs since the epoch in, ISO 8601 (UTC, µs) out.

The index keeps integers (see ``storage.schema``); people and documents see
ISO 8601. A time a person sends must say its zone: "08:00" is eight hours
apart in Beijing and in UTC, and an evidence range must not depend on the
server's idea of local time.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def iso_utc(us: int) -> str:
    """``us`` as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``: exact to the microsecond (no float)."""
    return (EPOCH + timedelta(microseconds=us)).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_time(value: str | int, what: str = "time") -> int:
    """An ISO 8601 date-time with an offset (``Z``, ``+08:00``) or epoch milliseconds, to µs.

    ``ValueError`` naming ``what`` and the accepted forms for anything else,
    including a date-time without an offset.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value * 1000
    text = str(value).strip()
    if text.isdigit():
        return int(text) * 1000
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{what} {text!r} is not a time: send ISO 8601 with an offset (2026-11-27T08:00:00+08:00) "
            "or epoch milliseconds"
        ) from None
    if moment.tzinfo is None:
        raise ValueError(
            f"{what} {text!r} has no time zone: add an offset (2026-11-27T08:00:00+08:00 or ...Z) "
            "or send epoch milliseconds"
        )
    return (moment - EPOCH) // timedelta(microseconds=1)
