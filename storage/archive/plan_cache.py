"""``PlanCache``: recent clip plans, so a player's many range requests for one clip plan it once."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any, Callable

from storage.archive.clips import ClipPlan


class PlanCache:
    """Recent clip plans. A player reading one clip by byte ranges (HLS VOD, seeking in
    a ``<video>``) sends many requests for the same clip; each would otherwise re-stat
    the segments and re-read the first GOP. Entries live ``ttl_s`` seconds."""

    def __init__(self, size: int = 64, ttl_s: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.size, self.ttl_s, self.clock = size, ttl_s, clock
        self._plans: OrderedDict[tuple[Any, ...], tuple[float, ClipPlan]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...], make: Callable[[], ClipPlan]) -> ClipPlan:
        now = self.clock()
        with self._lock:
            hit = self._plans.get(key)
            if hit is not None and now - hit[0] < self.ttl_s:
                self._plans.move_to_end(key)
                return hit[1]
        plan = make()
        with self._lock:
            self._plans[key] = (now, plan)
            while len(self._plans) > self.size:
                self._plans.popitem(last=False)
        return plan
