"""RTSP authentication as cameras do it: Basic (RFC 7617) and Digest (RFC 2617, MD5, with or without qop).

A camera answers 401 with one or more ``WWW-Authenticate`` headers; Digest is preferred
when offered (the password never crosses the wire). The challenge is kept and reused
for every later request, with the nonce count going up when ``qop=auth``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re

_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


class AuthError(Exception):
    """The camera asks for a scheme we cannot answer, or for credentials we do not have."""


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Digest realm="x", nonce="y"`` -> ("digest", {"realm": "x", "nonce": "y"})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3)) for m in _PARAM.finditer(rest)}
    return scheme.lower(), params


class Authenticator:
    """Answers challenges for one camera's credentials."""

    def __init__(self, user: str, password: str) -> None:
        self.user = user
        self.password = password
        self.scheme: str | None = None
        self._params: dict[str, str] = {}
        self._nc = 0

    def challenge(self, headers: list[str]) -> None:
        """Take the ``WWW-Authenticate`` headers of a 401; raise :class:`AuthError` if none fits."""
        parsed = [parse_challenge(h) for h in headers]
        for scheme, params in parsed:
            algorithm = params.get("algorithm", "MD5").upper()
            if scheme == "digest" and algorithm in ("MD5", "MD5-SESS") and "nonce" in params:
                if self.scheme == "digest" and params.get("stale", "").lower() != "true" \
                        and params.get("nonce") == self._params.get("nonce"):
                    raise AuthError("the camera refused the digest answer for this user and password")
                self.scheme, self._params, self._nc = "digest", params, 0
                return
        for scheme, _params in parsed:
            if scheme == "basic":
                if self.scheme == "basic":
                    raise AuthError("the camera refused basic credentials for this user and password")
                self.scheme = "basic"
                return
        raise AuthError(f"the camera asks for an authentication scheme we do not speak: {headers!r}")

    def header(self, method: str, uri: str) -> str | None:
        """The ``Authorization`` header for a request, or None before any challenge."""
        if self.scheme == "basic":
            token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode("ascii")
            return f"Basic {token}"
        if self.scheme != "digest":
            return None
        p = self._params
        realm, nonce = p.get("realm", ""), p["nonce"]
        ha1 = _md5(f"{self.user}:{realm}:{self.password}")
        qop_offered = [q.strip() for q in p.get("qop", "").split(",") if q.strip()]
        cnonce = os.urandom(8).hex()
        if p.get("algorithm", "").upper() == "MD5-SESS":
            ha1 = _md5(f"{ha1}:{nonce}:{cnonce}")
        ha2 = _md5(f"{method}:{uri}")
        fields = [f'username="{self.user}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"']
        if "auth" in qop_offered:
            self._nc += 1
            nc = f"{self._nc:08x}"
            response = _md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
            fields += [f'response="{response}"', "qop=auth", f"nc={nc}", f'cnonce="{cnonce}"']
        else:
            fields.append(f'response="{_md5(f"{ha1}:{nonce}:{ha2}")}"')
        if "opaque" in p:
            fields.append(f'opaque="{p["opaque"]}"')
        if "algorithm" in p:
            fields.append(f"algorithm={p['algorithm']}")
        return "Digest " + ", ".join(fields)


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()  # noqa: S324 - RFC 2617 is MD5
