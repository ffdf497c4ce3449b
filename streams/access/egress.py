"""Where a caller may make the server connect: the guard for ``POST /api/probe``.

A probe opens a connection from the server to a URL the caller gives, so without a rule an
operator could scan the server's own network: tell open from closed ports on 127.0.0.1,
reach link-local services (cloud metadata at 169.254.169.254), or poke the server's own
service ports. ``check_probe_target`` refuses, for every address the host resolves to:

- loopback, link-local, unspecified and multicast addresses;
- the server's own HTTP and RTSP ports on any of its own addresses;

unless the address is inside a range an admin allowed (setting ``probe_allow_ranges``).
``ProbeLimiter`` bounds how often one user may probe (a scan is many probes).
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections import deque
from typing import Callable
from urllib.parse import urlsplit

from config.settings import Settings


class EgressRefused(ValueError):
    """The probe target is not allowed; the message says why and what to do."""


def _port(bind: str) -> int | None:
    try:
        return int(bind.rpartition(":")[2])
    except ValueError:
        return None


def _own_addresses() -> set[str]:
    addresses = {"0.0.0.0", "::"}
    try:
        addresses |= set(socket.gethostbyname_ex(socket.gethostname())[2])
    except OSError:
        pass
    return addresses


def check_probe_target(url: str, settings: Settings) -> None:
    """Raise ``EgressRefused`` unless the server may connect to ``url`` for a probe."""
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        raise EgressRefused("the URL has no host: use rtsp://HOST[:PORT]/PATH")
    try:
        port = parts.port or (322 if parts.scheme == "rtsps" else 554)
    except ValueError:
        raise EgressRefused("the URL's port is not a number in 1..65535") from None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise EgressRefused(f"host {host!r} does not resolve: check the address") from None
    allowed = [ipaddress.ip_network(r, strict=False) for r in settings.probe_allow_ranges]
    own_ports = {p for p in (_port(settings.http_bind), _port(settings.rtsp_bind)) if p is not None}
    own = _own_addresses()
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if any(address in net for net in allowed):
            continue
        if address.is_loopback or address.is_link_local or address.is_unspecified or address.is_multicast:
            raise EgressRefused(
                f"{host} is {address}, a loopback/link-local address: probes may not reach the server's own "
                "network; an admin can allow a range with the setting probe_allow_ranges")
        if port in own_ports and str(address) in own:
            raise EgressRefused(f"{host}:{port} is this server's own service port: probes may not reach it")


class ProbeLimiter:
    """At most ``per_minute`` probes per user in any 60 s (a port scan needs many)."""

    def __init__(self, per_minute: int = 10, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, user: str) -> float | None:
        """None and counted when the user may probe now; else the seconds to wait."""
        now = self._clock()
        with self._lock:
            q = self._seen.setdefault(user, deque())
            while q and q[0] <= now - 60:
                q.popleft()
            if len(q) >= self.per_minute:
                return q[0] + 60 - now
            q.append(now)
            return None
