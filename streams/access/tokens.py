"""Signed bearer tokens: access, refresh and per-camera stream tokens.

A token is ``base64url(json payload) "." base64url(HMAC-SHA256)``. Nothing is
stored here: any API node with the same secret key (see ``storage.index.credentials``)
checks it. Revocation works through two rows: a token issued before the user's
``tokens_valid_after_us`` (bumped by passwd, disable and a scope change) is refused,
and access and refresh tokens name their sign-in session (``session``), which
sign-out and refresh-token reuse revoke (``streams.access.sessions``). Role and
scope are always read from the user row, never from the token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Callable, Literal

from config.times import now_us

TokenKind = Literal["access", "refresh", "stream"]

# Short: an access token that leaks (a proxy log, a shared machine) is good for minutes.
# The console renews it with the refresh token, which is single-use (rotated).
ACCESS_TTL_S = 15 * 60
REFRESH_TTL_S = 7 * 24 * 3600
# Stream tokens travel in URLs (HLS, RTSP) and end up in player and proxy logs:
# keep them short; a player asks for a new one when it reconnects.
STREAM_TTL_S = 15 * 60


class TokenError(ValueError):
    """A token that is malformed, forged, expired or of the wrong kind."""


@dataclass(frozen=True)
class TokenClaims:
    kind: TokenKind
    subject: str
    issued_us: int
    expires_us: int
    camera_id: str | None = None
    nonce: str = ""
    session: str | None = None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    """Issues and checks tokens with one HMAC key and an injectable clock (µs)."""

    def __init__(
        self,
        key: bytes,
        *,
        clock: Callable[[], int] = now_us,
        access_ttl_s: int = ACCESS_TTL_S,
        refresh_ttl_s: int = REFRESH_TTL_S,
        stream_ttl_s: int = STREAM_TTL_S,
    ):
        if len(key) < 32:
            raise ValueError("the token signing key must have at least 32 bytes")
        self._key = key
        self._clock = clock
        self.ttl_s: dict[str, int] = {"access": access_ttl_s, "refresh": refresh_ttl_s, "stream": stream_ttl_s}

    def issue(self, kind: TokenKind, subject: str, camera_id: str | None = None, *,
              session: str | None = None, nonce: str | None = None) -> tuple[str, TokenClaims]:
        """A new token of ``kind`` for ``subject`` (a user name); stream tokens name one camera.

        ``session`` names the sign-in session the token belongs to (revoked by sign-out);
        ``nonce`` is the refresh token's single-use id (a random one otherwise)."""
        if (kind == "stream") != (camera_id is not None):
            raise ValueError("stream tokens, and only they, are bound to a camera")
        now = self._clock()
        claims = TokenClaims(kind, subject, now, now + self.ttl_s[kind] * 1_000_000, camera_id,
                             nonce or secrets.token_hex(8), session)
        payload: dict[str, object] = {"k": kind, "s": subject, "i": now, "e": claims.expires_us, "n": claims.nonce}
        if camera_id is not None:
            payload["c"] = camera_id
        if session is not None:
            payload["f"] = session
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        return f"{body}.{self._sign(body)}", claims

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())

    def verify(self, token: str, kind: TokenKind) -> TokenClaims:
        """The claims of a valid, unexpired token of ``kind``; else ``TokenError``."""
        if len(token) > 4096 or not token.isascii():
            # compare_digest refuses non-ASCII str: say so here instead of failing with a 500.
            raise TokenError("malformed token (tokens are short ASCII strings)")
        body, sep, sig = token.partition(".")
        if not sep or not body or not sig:
            raise TokenError("malformed token")
        if not hmac.compare_digest(sig, self._sign(body)):
            raise TokenError("bad token signature")
        try:
            p = json.loads(_unb64(body))
            claims = TokenClaims(p["k"], p["s"], int(p["i"]), int(p["e"]), p.get("c"), p.get("n", ""), p.get("f"))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise TokenError("malformed token") from exc
        if claims.kind != kind:
            raise TokenError(f"a {claims.kind} token cannot be used here")
        if self._clock() >= claims.expires_us:
            raise TokenError("the token has expired: sign in again or refresh it")
        return claims
