"""Query parameters every router reads the same way: times and time ranges (``config.times``)."""

from __future__ import annotations

from fastapi import HTTPException

from config.times import TimeError, iso_utc, parse_time


def time_param(value: str, name: str) -> int:
    """``value`` (ISO 8601 with an offset, or epoch ms) in µs; 422 saying what to send."""
    try:
        return parse_time(value, name)
    except TimeError as exc:
        raise HTTPException(422, str(exc)) from None


def time_range(
    start: str, end: str, max_seconds: float | None = None, too_long: str = "ask for less"
) -> tuple[int, int]:
    """``(start_us, end_us)`` from query strings, start before end and at most ``max_seconds``
    apart; 422 saying what to send (``too_long`` says what to do about a long range)."""
    s, e = time_param(start, "start"), time_param(end, "end")
    if s >= e:
        raise HTTPException(422, f"start ({iso_utc(s)}) must be before end ({iso_utc(e)})")
    if max_seconds is not None and e - s > max_seconds * 1_000_000:
        raise HTTPException(422, f"the range is {(e - s) / 1e6:.0f} s; at most {max_seconds:.0f} s here: {too_long}")
    return s, e
