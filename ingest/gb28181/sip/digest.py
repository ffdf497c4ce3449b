"""MD5 digest authentication (RFC 2617 / RFC 3261 22), server side and client side.

Server side: ``DigestChallenger`` issues nonces (HMAC-signed with a time stamp and the
client's host, so no per-nonce state is kept, a stale nonce is recognised, and a nonce
answered from another host is refused) and checks an Authorization
header against a password, with ``qop=auth`` or without ``qop`` (many GB/T 28181 devices
ignore qop). Client side: ``authorization_for`` answers a WWW-Authenticate/Proxy-Authenticate
challenge, again with or without qop.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from dataclasses import dataclass
from typing import Callable

from ingest.gb28181.sip.message import split_commas


def md5_hex(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()  # noqa: S324 - MD5 is what SIP digest is


def parse_digest(value: str) -> dict[str, str]:
    """``Digest a="b", c=d`` -> {'a': 'b', 'c': 'd'}; {} when it is not a Digest header."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        return {}
    out: dict[str, str] = {}
    for item in split_commas(rest):
        key, _, val = item.partition("=")
        val = val.strip()
        if len(val) >= 2 and val[0] == val[-1] == '"':
            val = val[1:-1]
        out[key.strip().lower()] = val
    return out


def digest_response(*, username: str, realm: str, password: str, method: str, uri: str, nonce: str,
                    qop: str = "", nc: str = "", cnonce: str = "") -> str:
    """The ``response`` value of RFC 2617 (algorithm MD5; qop absent or ``auth``)."""
    ha1 = md5_hex(f"{username}:{realm}:{password}")
    ha2 = md5_hex(f"{method}:{uri}")
    if qop:
        return md5_hex(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return md5_hex(f"{ha1}:{nonce}:{ha2}")


@dataclass(frozen=True)
class DigestCheck:
    """The outcome of checking credentials: ``ok``, or ``stale`` (a new nonce will do), or
    neither with ``reason`` saying what was wrong."""

    ok: bool
    username: str = ""
    stale: bool = False
    reason: str = ""


class DigestChallenger:
    """Stateless nonces: ``timestamp.hmac(timestamp)``, valid for ``nonce_ttl`` seconds."""

    def __init__(self, realm: str, *, qop: bool = True, nonce_ttl: float = 300.0, secret: bytes | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.realm = realm
        self.qop = qop
        self.nonce_ttl = nonce_ttl
        self._secret = secret or os.urandom(32)
        self._clock = clock

    def _sign(self, stamp: str, bound: str) -> str:
        return hmac.new(self._secret, f"{stamp}|{bound}".encode(), hashlib.sha256).hexdigest()[:24]

    def nonce(self, bound: str = "") -> str:
        """A nonce; ``bound`` (the client's host) makes it valid only when answered from there."""
        stamp = f"{int(self._clock() * 1000):x}"
        return f"{stamp}{self._sign(stamp, bound)}"

    def challenge(self, *, stale: bool = False, bound: str = "") -> str:
        """A WWW-Authenticate value."""
        parts = [f'realm="{self.realm}"', f'nonce="{self.nonce(bound)}"', 'algorithm=MD5']
        if self.qop:
            parts.append('qop="auth"')
        if stale:
            parts.append("stale=true")
        return "Digest " + ", ".join(parts)

    def _nonce_state(self, nonce: str, bound: str) -> str:
        """'ok', 'stale' or 'forged'."""
        stamp, sig = nonce[:-24], nonce[-24:]
        if not stamp or not all(c in "0123456789abcdef" for c in stamp) or len(stamp) > 16:
            return "forged"
        if not hmac.compare_digest(self._sign(stamp, bound), sig):
            return "forged"
        age = self._clock() - int(stamp, 16) / 1000
        return "ok" if -5 <= age <= self.nonce_ttl else "stale"

    def check(self, authorization: str | None, *, method: str, password: str | None, bound: str = "") -> DigestCheck:
        """Check an Authorization header for ``method``. ``password`` None: the user is unknown.
        ``bound``: the host the nonce was issued to (a nonce replayed from elsewhere is forged)."""
        if not authorization:
            return DigestCheck(False, reason="no credentials")
        fields = parse_digest(authorization)
        if not fields:
            return DigestCheck(False, reason="credentials are not Digest")
        username = fields.get("username", "")
        missing = [k for k in ("username", "realm", "nonce", "uri", "response") if not fields.get(k)]
        if missing:
            return DigestCheck(False, username, reason=f"digest lacks {', '.join(missing)}")
        if fields.get("algorithm", "MD5").upper() != "MD5":
            return DigestCheck(False, username, reason=f"digest algorithm {fields['algorithm']} is not supported")
        if fields["realm"] != self.realm:
            return DigestCheck(False, username, reason=f"realm {fields['realm']!r} is not ours ({self.realm!r})")
        state = self._nonce_state(fields["nonce"], bound)
        if state == "forged":
            return DigestCheck(False, username, reason="nonce was not issued by us (to this address)")
        if password is None:
            return DigestCheck(False, username, reason=f"unknown device {username}")
        qop = fields.get("qop", "").lower()
        if qop not in ("", "auth"):
            return DigestCheck(False, username, reason=f"qop {qop} is not supported")
        want = digest_response(username=username, realm=self.realm, password=password, method=method,
                               uri=fields["uri"], nonce=fields["nonce"], qop=qop, nc=fields.get("nc", ""),
                               cnonce=fields.get("cnonce", ""))
        if not hmac.compare_digest(want, fields["response"].lower()):
            return DigestCheck(False, username, reason="wrong password (digest response does not match)")
        if state == "stale":
            return DigestCheck(False, username, stale=True, reason="nonce expired")
        return DigestCheck(True, username)


def authorization_for(challenge: str, *, username: str, password: str, method: str, uri: str,
                      nc: int = 1, cnonce: str | None = None) -> str:
    """An Authorization value that answers ``challenge`` (a WWW-Authenticate value)."""
    fields = parse_digest(challenge)
    realm, nonce = fields.get("realm", ""), fields.get("nonce", "")
    qops = [q.strip().lower() for q in fields.get("qop", "").split(",") if q.strip()]
    qop = "auth" if "auth" in qops else ""
    nc_text = f"{nc:08x}"
    cnonce = cnonce or os.urandom(8).hex()
    response = digest_response(username=username, realm=realm, password=password, method=method, uri=uri,
                               nonce=nonce, qop=qop, nc=nc_text, cnonce=cnonce)
    parts = [f'username="{username}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"',
             f'response="{response}"', "algorithm=MD5"]
    if fields.get("opaque"):
        parts.append(f'opaque="{fields["opaque"]}"')
    if qop:
        parts += [f"qop={qop}", f"nc={nc_text}", f'cnonce="{cnonce}"']
    return "Digest " + ", ".join(parts)
