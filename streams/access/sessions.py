"""``SignInSessions``: one row per sign-in, so tokens can be signed out and stolen refresh tokens caught.

An access or refresh token names its session. A session ends when its user signs out, when
its refresh token is used twice (the second use is a copy: the thief and the owner both lose
the session, and the owner signs in again), and with the user's ``tokens_valid_after_us``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Callable

from sqlalchemy import Engine, update
from sqlalchemy.orm import sessionmaker

from storage.db.schema import SignInSessionRow
from config.times import now_us


class RefreshReuse(Exception):
    """An old refresh token was presented again; the session is now revoked."""


@dataclass(frozen=True)
class SignInSession:
    id: str
    user: str
    refresh_nonce: str
    revoked: bool


class SignInSessions:
    """Starts, rotates and revokes sign-in sessions in the index database (shared by every API node)."""

    def __init__(self, engine: Engine, clock: Callable[[], int] = now_us) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._clock = clock

    def start(self, user: str) -> SignInSession:
        row = SignInSessionRow(id=secrets.token_hex(16), user=user[:64], created_us=self._clock(),
                               refresh_nonce=secrets.token_hex(16), revoked_us=None, revoked_why="")
        with self._sessions() as s, s.begin():
            s.add(row)
        return SignInSession(row.id, row.user, row.refresh_nonce, False)

    def active(self, session_id: str) -> bool:
        with self._sessions() as s:
            row = s.get(SignInSessionRow, session_id)
            return row is not None and row.revoked_us is None

    def rotate(self, session_id: str, nonce: str) -> str:
        """The next refresh nonce, when ``nonce`` is the current one; ``RefreshReuse`` (and revoked) if not."""
        new = secrets.token_hex(16)
        with self._sessions() as s, s.begin():
            done = s.execute(
                update(SignInSessionRow)
                .where(SignInSessionRow.id == session_id, SignInSessionRow.refresh_nonce == nonce,
                       SignInSessionRow.revoked_us.is_(None))
                .values(refresh_nonce=new)
            ).rowcount  # type: ignore[attr-defined]
        if done != 1:
            self.revoke(session_id, "refresh token reused")
            raise RefreshReuse(session_id)
        return new

    def revoke(self, session_id: str, why: str) -> bool:
        """End one session; True when it was active."""
        with self._sessions() as s, s.begin():
            done = s.execute(
                update(SignInSessionRow)
                .where(SignInSessionRow.id == session_id, SignInSessionRow.revoked_us.is_(None))
                .values(revoked_us=self._clock(), revoked_why=why[:64])
            ).rowcount  # type: ignore[attr-defined]
        return bool(done)
