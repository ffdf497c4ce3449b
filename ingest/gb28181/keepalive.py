"""Keepalive intervals and when a device counts as offline.

GB/T 28181 devices send a ``Keepalive`` Notify every *interval* seconds (60 by default; the
platform is not told the interval). We learn it from the device: the interval is the
largest of the last few gaps between keepalives, so one early or doubled heartbeat does
not shrink it and cause a false "offline". A device is offline after ``MISSED`` intervals
without a keepalive; before two keepalives have been seen the default interval applies.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

DEFAULT_INTERVAL = 60.0
MIN_INTERVAL = 1.0
MAX_INTERVAL = 3600.0
MISSED = 3
_WINDOW = 4


@dataclass
class KeepaliveTracker:
    default_interval: float = DEFAULT_INTERVAL
    last: float | None = None
    _gaps: deque[float] = field(default_factory=lambda: deque(maxlen=_WINDOW))

    def beat(self, now: float) -> None:
        if self.last is not None:
            gap = now - self.last
            if gap >= MIN_INTERVAL / 2:  # a retransmitted or doubled keepalive is not an interval
                self._gaps.append(min(max(gap, MIN_INTERVAL), MAX_INTERVAL))
        self.last = now

    @property
    def interval(self) -> float:
        return max(self._gaps) if self._gaps else self.default_interval

    @property
    def learned(self) -> bool:
        return bool(self._gaps)

    def overdue(self, now: float, since: float) -> str | None:
        """Why the device is offline at ``now`` (``since``: when it registered), or None."""
        ref = self.last if self.last is not None else since
        silent = now - ref
        if silent > MISSED * self.interval:
            what = "no keepalive" if self.last is not None else "no keepalive since registering"
            return (f"{what} for {silent:.0f} s ({MISSED} missed intervals of {self.interval:.0f} s)")
        return None
