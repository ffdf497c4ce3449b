"""REGISTER from devices: digest, expiry, unregister, re-register, changed addresses, floods.

The password for a device is its own (``sharpeyes gb device add ID --password``), else
``gb_password``; with neither, the device is unknown and refused with 403. A REGISTER
without credentials gets a 401 challenge (realm = ``gb_domain``, ``qop="auth"``; devices
that ignore qop are accepted too). A wrong password gets 403 and an audit row, and the
device's status says why, unless it is online on a valid registration (a stray or forged
REGISTER must not take a working device offline). ``Expires: 0`` unregisters.

Every source address has a token bucket (``RegisterRateLimit``), and every host a looser
one: a flood of REGISTERs from one address is answered 503 with Retry-After after the
burst, without a database write or an audit row per message (a refused device's status is
written at most every few seconds), so other devices are unaffected.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

from config.gb28181 import is_gb_code
from ingest.gb28181.sip import Incoming, Peer, SipResponse
from ingest.gb28181.sip.digest import DigestChallenger
from ingest.gb28181.sip.message import NameAddr

log = logging.getLogger(__name__)

MIN_EXPIRES = 60
MAX_EXPIRES = 86_400
DEFAULT_EXPIRES = 3600

Audit = Callable[[str, str, str, str, str], None]  # (action, outcome, device id, client ip, detail)


class _Buckets:
    """Token buckets by key: ``burst`` at once, then ``rate`` per second; bounded in size."""

    MAX_KEYS = 10_000

    def __init__(self, burst: float, rate: float) -> None:
        self.burst, self.rate = burst, rate
        self._buckets: dict[object, tuple[float, float]] = {}

    def take(self, key: object, now: float) -> bool:
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if len(self._buckets) >= self.MAX_KEYS and key not in self._buckets:
            # Forget the keys that were quiet longest; a full bucket is the same as no entry.
            for old, _ in sorted(self._buckets.items(), key=lambda kv: kv[1][1])[: self.MAX_KEYS // 10]:
                self._buckets.pop(old, None)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1.0, now)
        return True


class RegisterRateLimit:
    """REGISTERs allowed per source address (host:port: one device) and, more loosely, per
    host (a whole village behind one NAT address shares it)."""

    def __init__(self, burst: int = 10, rate: float = 1.0, host_burst: int = 1000, host_rate: float = 100.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._per_source = _Buckets(burst, rate)
        self._per_host = _Buckets(host_burst, host_rate)
        self._clock = clock
        self.limited = 0

    def allow(self, peer: Peer) -> bool:
        now = self._clock()
        ok = self._per_source.take((peer.host, peer.port), now) and self._per_host.take(peer.host, now)
        if not ok:
            self.limited += 1
        return ok


@dataclass
class Registration:
    """What a successful REGISTER told us."""

    device_id: str
    peer: Peer
    contact: str
    expires: int  # seconds; 0 = unregister


class RegisterDecision:
    """The outcome of ``Registrar.decide``: the response, and a registration when it succeeded."""

    def __init__(self, response: SipResponse, registration: Registration | None = None, *,
                 refused: str = "", device_id: str = "") -> None:
        self.response, self.registration, self.refused, self.device_id = response, registration, refused, device_id


class Registrar:
    def __init__(self, realm: str, password_of: Callable[[str], str | None], *,
                 rate_limit: RegisterRateLimit | None = None, audit: Audit | None = None) -> None:
        self.challenger = DigestChallenger(realm)
        self._password_of = password_of
        self.rate_limit = rate_limit or RegisterRateLimit()
        self._audit = audit

    def _audit_row(self, outcome: str, device_id: str, host: str, detail: str) -> None:
        if self._audit is None:
            return
        try:
            self._audit("gb_register", outcome, device_id, host, detail)
        except Exception:  # noqa: BLE001 - a failing audit write must not stop registration handling
            log.exception("device %s: audit row could not be written", device_id)

    def decide(self, inc: Incoming) -> RegisterDecision:
        req, peer = inc.request, inc.peer
        device_id = req.from_.user or req.to.user
        if not self.rate_limit.allow(peer):
            resp = inc.response(503, "Service Unavailable (REGISTER rate limit)", headers=[("Retry-After", "10")])
            return RegisterDecision(resp, refused=f"REGISTER flood from {peer.host}:{peer.port}: rate-limited "
                                    "(503 with Retry-After)", device_id=device_id if is_gb_code(device_id) else "")
        if not is_gb_code(device_id):
            return RegisterDecision(inc.response(400, "Bad Request (From user is not a 20-digit device id)"),
                                    refused=f"REGISTER from {peer} with device id {device_id[:40]!r}")
        password = self._password_of(device_id)
        authorization = req.get("Authorization")
        if password is None:
            detail = "unknown device: add it with 'sharpeyes gb device add ID --password' or set gb_password"
            if authorization is None:
                # Challenge first: an unknown id should not learn it is unknown from the first packet.
                return RegisterDecision(self._challenge(inc), device_id=device_id)
            self._audit_row("denied", device_id, peer.host, detail)
            return RegisterDecision(inc.response(403, "Forbidden (unknown device)"), refused=detail,
                                    device_id=device_id)
        if authorization is None:
            return RegisterDecision(self._challenge(inc), device_id=device_id)
        check = self.challenger.check(authorization, method="REGISTER", password=password, bound=peer.host)
        if check.stale:
            return RegisterDecision(self._challenge(inc, stale=True), device_id=device_id)
        if not check.ok:
            self._audit_row("denied", device_id, peer.host, check.reason)
            return RegisterDecision(inc.response(403, "Forbidden"), refused=check.reason, device_id=device_id)
        if check.username != device_id:
            detail = f"digest username {check.username} is not the device id {device_id}"
            self._audit_row("denied", device_id, peer.host, detail)
            return RegisterDecision(inc.response(403, "Forbidden"), refused=detail, device_id=device_id)
        expires = _expires(inc)
        if 0 < expires < MIN_EXPIRES:
            return RegisterDecision(inc.response(423, headers=[("Min-Expires", str(MIN_EXPIRES))]),
                                    refused=f"Expires {expires} is below {MIN_EXPIRES} s", device_id=device_id)
        expires = min(expires, MAX_EXPIRES)
        contact = NameAddr.parse(req.get("Contact") or "").uri
        self._audit_row("ok", device_id, peer.host, "unregistered" if expires == 0 else f"registered from {peer}")
        headers = [("Expires", str(expires))]
        if req.get("Contact"):
            headers.append(("Contact", f"{req.get('Contact')};expires={expires}" if "expires=" not in
                            (req.get("Contact") or "") else req.get("Contact") or ""))
        return RegisterDecision(inc.response(200, headers=headers), Registration(device_id, peer, contact, expires),
                                device_id=device_id)

    def _challenge(self, inc: Incoming, *, stale: bool = False) -> SipResponse:
        challenge = self.challenger.challenge(stale=stale, bound=inc.peer.host)
        return inc.response(401, headers=[("WWW-Authenticate", challenge)])


def _expires(inc: Incoming) -> int:
    contact = NameAddr.parse(inc.request.get("Contact") or "")
    raw = contact.params.get("expires") or (inc.request.get("Expires") or "").strip()
    if inc.request.get("Contact") == "*":
        return 0
    return int(raw) if raw.isdigit() else DEFAULT_EXPIRES
