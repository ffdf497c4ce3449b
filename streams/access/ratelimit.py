"""Failed sign-in limits, per user name and per client IP.

In-memory sliding windows: correct for one process. With several API nodes
behind a load balancer each node counts on its own, so the effective limit is
``nodes x limit``; pin sign-in to one node (or lower the limits) if that matters.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable


class SignInLimiter:
    """Refuse sign-in attempts for a key that failed too often within ``window_s``."""

    def __init__(
        self,
        *,
        per_user: int = 5,
        per_ip: int = 20,
        window_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.per_user = per_user
        self.per_ip = per_ip
        self.window_s = window_s
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._failures.get(key)
        if q is None:
            return deque()
        while q and q[0] <= now - self.window_s:
            q.popleft()
        if not q:
            del self._failures[key]
        return q

    def retry_after(self, user: str, ip: str) -> float | None:
        """Seconds to wait when this user or IP is over its limit; None when it may try."""
        now = self._clock()
        waits = []
        with self._lock:
            for key, limit in ((f"u:{user}", self.per_user), (f"ip:{ip}", self.per_ip)):
                q = self._recent(key, now)
                if len(q) >= limit:
                    # Free again when the oldest failure that counts leaves the window.
                    waits.append(q[len(q) - limit] + self.window_s - now)
        return max(waits) if waits else None

    # Beyond this many tracked names and addresses, expired entries are swept
    # so a flood of random user names cannot grow memory without bound.
    max_keys = 100_000

    def failure(self, user: str, ip: str) -> None:
        now = self._clock()
        with self._lock:
            if len(self._failures) > self.max_keys:
                for key in list(self._failures):
                    self._recent(key, now)
            for key in (f"u:{user}", f"ip:{ip}"):
                self._failures.setdefault(key, deque()).append(now)

    def success(self, user: str) -> None:
        """A good sign-in clears the user's count (not the IP's: one good account must not
        reset a password-spraying source)."""
        with self._lock:
            self._failures.pop(f"u:{user}", None)
