"""Failed sign-in limits: per client address, and a per-account backoff that never locks the owner out.

- Per address: more than ``per_ip`` failures within ``window_s`` refuse that address (429)
  until the oldest failure leaves the window (password spraying from one source).
- Per account: after ``free_failures`` failures, each further attempt waits an exponentially
  growing delay (1 s, 2 s, 4 s ... at most ``max_backoff_s``) from the last failure. That
  slows guessing to about one try per ``max_backoff_s``, from any number of addresses,
  without locking anyone out for longer than that.
- An address the account signed in from successfully within ``known_s`` skips the account
  backoff: a stranger failing from elsewhere cannot keep the owner out at all.

The client address is only trustworthy when ``forwarded_allow_ips`` names the proxy and no
one else (``config.settings``). In-memory: correct for one process; with several API nodes
each counts on its own, so the effective limits are ``nodes x`` these.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable


class SignInLimiter:
    """Decides whether a sign-in attempt may be tried now."""

    # Beyond this many tracked keys, expired entries are swept so a flood of random
    # names cannot grow memory without bound.
    max_keys = 100_000

    def __init__(
        self,
        *,
        per_ip: int = 20,
        window_s: float = 300.0,
        free_failures: int = 5,
        max_backoff_s: float = 60.0,
        known_s: float = 30 * 86400.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.per_ip = per_ip
        self.window_s = window_s
        self.free_failures = free_failures
        self.max_backoff_s = max_backoff_s
        self.known_s = known_s
        self._clock = clock
        self._ip_failures: dict[str, deque[float]] = {}
        self._user_failures: dict[str, tuple[int, float]] = {}  # count, time of the last failure
        self._known: dict[tuple[str, str], float] = {}  # (user, ip) -> last good sign-in
        self._lock = threading.Lock()

    def _recent(self, ip: str, now: float) -> deque[float]:
        q = self._ip_failures.get(ip)
        if q is None:
            return deque()
        while q and q[0] <= now - self.window_s:
            q.popleft()
        if not q:
            del self._ip_failures[ip]
        return q

    def _backoff(self, count: int) -> float:
        over = count - self.free_failures
        return 0.0 if over < 0 else min(self.max_backoff_s, 2.0 ** over)

    def retry_after(self, user: str, ip: str) -> float | None:
        """Seconds to wait before this attempt may be tried; None when it may be tried now."""
        now = self._clock()
        waits = []
        with self._lock:
            q = self._recent(ip, now)
            if len(q) >= self.per_ip:
                waits.append(q[len(q) - self.per_ip] + self.window_s - now)
            known = self._known.get((user, ip))
            if known is None or now - known > self.known_s:
                count, last = self._user_failures.get(user, (0, 0.0))
                wait = last + self._backoff(count) - now if count >= self.free_failures else 0.0
                if wait > 0:
                    waits.append(wait)
        return max(waits) if waits else None

    def failure(self, user: str, ip: str) -> None:
        now = self._clock()
        with self._lock:
            if len(self._ip_failures) + len(self._user_failures) > self.max_keys:
                for key in list(self._ip_failures):
                    self._recent(key, now)
                for name, (_, last) in list(self._user_failures.items()):
                    if now - last > self.max_backoff_s + self.window_s:
                        del self._user_failures[name]
            self._ip_failures.setdefault(ip, deque()).append(now)
            count, _ = self._user_failures.get(user, (0, 0.0))
            self._user_failures[user] = (count + 1, now)

    def success(self, user: str, ip: str = "") -> None:
        """A good sign-in clears the account's backoff and remembers the address (not the address's
        failures: one good account must not reset a password-spraying source)."""
        with self._lock:
            self._user_failures.pop(user, None)
            if ip:
                if len(self._known) > self.max_keys:
                    self._known.clear()
                self._known[(user, ip)] = self._clock()
