"""``UserStore``: users (argon2 password hashes), roles, region scopes and API keys.

Roles are fixed. Rights form a small partial order, not a line:

    viewer        watch live
    investigator  viewer's rights + play back, export, hold
    operator      viewer's rights + register cameras/regions, health, retention
    admin         everything, plus users and keys

A scope is a list of region codes, each covering its sub-regions; ``"*"`` is the
whole county. Admins always see everything.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import re
import secrets
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from config.times import now_us
from storage.db.schema import ApiKeyRow, RegionRow, UserRow

ROLES: tuple[str, ...] = ("viewer", "investigator", "operator", "admin")
ALL_REGIONS = "*"
MIN_PASSWORD_LENGTH = 8
API_KEY_PREFIX = "sek_"
# API keys expire: a forgotten key on a decommissioned machine must not work for ever.
API_KEY_DAYS = 90

_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")


class UserError(ValueError):
    """A user or key change that was refused; nothing was written."""


class UserNotFound(UserError):
    """The named user or key does not exist."""


class UserExists(UserError):
    """The name is taken."""


@dataclass(frozen=True)
class User:
    """A user as the rest of the code sees it: never carries the password hash."""

    name: str
    role: str
    scope: tuple[str, ...]
    disabled: bool
    created_us: int
    tokens_valid_after_us: int


@dataclass(frozen=True)
class ApiKey:
    """An API key's public facts. The key itself is shown once, at creation."""

    id: int
    name: str
    prefix: str
    role: str
    scope: tuple[str, ...]
    revoked: bool
    created_us: int
    created_by: str
    expires_us: int | None = None


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UserError(f"role {role!r} does not exist: use one of {', '.join(ROLES)}")
    return role


def _check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise UserError(f"user name {name!r}: use 1-64 letters, digits, '_', '.', '@' or '-'")
    return name


def _check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"the password is too short: use at least {MIN_PASSWORD_LENGTH} characters")
    return password


def _key_hash(key: str) -> str:
    # API keys are 32 random bytes, so a plain SHA-256 is enough: there is
    # nothing to brute-force, and verification stays one indexed lookup.
    return hashlib.sha256(key.encode()).hexdigest()


class UserStore:
    """Users and API keys in the index database. Each call uses its own session."""

    def __init__(
        self,
        engine: Engine,
        *,
        hasher: PasswordHasher | None = None,
        clock: Callable[[], int] = now_us,
    ):
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._hasher = hasher or PasswordHasher()
        self._clock = clock
        self.clock = clock
        # Verified against when the user is unknown, so a wrong name costs the
        # same time as a wrong password and names cannot be probed by timing. Made on
        # the first sign-in (of anyone), not here: argon2 takes 64 MiB for a moment, and
        # every process builds a UserStore, ingest workers that never sign anyone in too.
        self._dummy_hash: str | None = None

    # -- scopes ---------------------------------------------------------------

    def _check_scope(self, session, scope: Iterable[str]) -> tuple[str, ...]:  # type: ignore[no-untyped-def]
        codes = tuple(dict.fromkeys(scope))
        if not codes:
            raise UserError("the region scope is empty: give at least one region code, or '*' for all")
        if ALL_REGIONS in codes:
            return (ALL_REGIONS,)
        known = set(session.scalars(select(RegionRow.code).where(RegionRow.code.in_(codes))))
        missing = [c for c in codes if c not in known]
        if missing:
            raise UserError(f"region {', '.join(missing)} does not exist; add it with 'region add' first")
        return codes

    # -- users ----------------------------------------------------------------

    def add(self, name: str, password: str, role: str, scope: Sequence[str] = (ALL_REGIONS,)) -> User:
        """Create a user. Raises ``UserError`` when the name is taken or a field is bad."""
        _check_name(name)
        check_role(role)
        _check_password(password)
        with self._sessions() as s, s.begin():
            codes = self._check_scope(s, scope)
            if s.scalar(select(UserRow.id).where(UserRow.name == name)) is not None:
                raise UserExists(f"user {name} already exists; use 'user passwd' to change the password")
            row = UserRow(
                name=name,
                password_hash=self._hasher.hash(password),
                role=role,
                scope=json.dumps(list(codes)),
                disabled=False,
                created_us=self._clock(),
                tokens_valid_after_us=0,
            )
            s.add(row)
            try:
                s.flush()
            except IntegrityError as exc:  # a concurrent add of the same name
                raise UserExists(f"user {name} already exists") from exc
            return _user(row)

    def _row(self, session, name: str) -> UserRow:  # type: ignore[no-untyped-def]
        row = session.scalar(select(UserRow).where(UserRow.name == name))
        if row is None:
            raise UserNotFound(f"user {name} does not exist; see 'user list'")
        return row

    def passwd(self, name: str, password: str) -> None:
        """Set a new password. Tokens issued before now stop working."""
        _check_password(password)
        with self._sessions() as s, s.begin():
            row = self._row(s, name)
            row.password_hash = self._hasher.hash(password)
            row.tokens_valid_after_us = self._clock()

    def disable(self, name: str) -> None:
        """Disable a user: sign-in is refused and every token stops working at once."""
        with self._sessions() as s, s.begin():
            row = self._row(s, name)
            row.disabled = True
            row.tokens_valid_after_us = self._clock()
            # A key is only as trusted as the admin who made it.
            s.execute(update(ApiKeyRow).where(ApiKeyRow.created_by == name, ApiKeyRow.revoked.is_(False))
                      .values(revoked=True))

    def enable(self, name: str) -> None:
        with self._sessions() as s, s.begin():
            self._row(s, name).disabled = False

    def set_role(self, name: str, role: str, scope: Sequence[str] | None = None) -> User:
        """Change a user's role (and scope, when given); takes effect on the next request.

        Tokens issued before the change stop working, so live sessions opened under the old
        rights end (``streams.access.live_sessions``) and the user signs in again."""
        check_role(role)
        with self._sessions() as s, s.begin():
            row = self._row(s, name)
            before = (row.role, row.scope)
            row.role = role
            if scope is not None:
                row.scope = json.dumps(list(self._check_scope(s, scope)))
            if (row.role, row.scope) != before:
                row.tokens_valid_after_us = self._clock()
            return _user(row)

    def get(self, name: str) -> User | None:
        with self._sessions() as s:
            row = s.scalar(select(UserRow).where(UserRow.name == name))
            return None if row is None else _user(row)

    def list(self) -> list[User]:
        with self._sessions() as s:
            return [_user(r) for r in s.scalars(select(UserRow).order_by(UserRow.name))]

    def verify_password(self, name: str, password: str) -> User | None:
        """The user when ``password`` is right and the user is enabled; else None.

        Unknown users cost one argon2 verification like known ones. A hash made
        with older parameters is upgraded on a successful sign-in.
        """
        if self._dummy_hash is None:
            self._dummy_hash = self._hasher.hash(secrets.token_hex(16))
        with self._sessions() as s, s.begin():
            row = s.scalar(select(UserRow).where(UserRow.name == name))
            stored = row.password_hash if row is not None else self._dummy_hash
            try:
                self._hasher.verify(stored, password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return None
            if row is None or row.disabled:
                return None
            if self._hasher.check_needs_rehash(row.password_hash):
                row.password_hash = self._hasher.hash(password)
            return _user(row)

    # -- API keys -------------------------------------------------------------

    def create_api_key(
        self, name: str, role: str, scope: Sequence[str] = (ALL_REGIONS,), created_by: str = "",
        expires_days: int = API_KEY_DAYS,
    ) -> tuple[str, ApiKey]:
        """Create a key; returns ``(key, facts)``. The key is not stored and cannot be shown again.

        It expires after ``expires_days`` (1 to 730), and is revoked when ``created_by`` is disabled."""
        _check_name(name)
        check_role(role)
        if not 1 <= expires_days <= 730:
            raise UserError(f"expires_days={expires_days}: give 1 to 730 days; make a new key when it runs out")
        key = API_KEY_PREFIX + secrets.token_urlsafe(32)
        with self._sessions() as s, s.begin():
            codes = self._check_scope(s, scope)
            row = ApiKeyRow(
                name=name,
                key_hash=_key_hash(key),
                prefix=key[: len(API_KEY_PREFIX) + 6],
                role=role,
                scope=json.dumps(list(codes)),
                revoked=False,
                created_us=self._clock(),
                created_by=created_by,
                expires_us=self._clock() + expires_days * 86_400_000_000,
            )
            s.add(row)
            s.flush()
            return key, _api_key(row)

    def revoke_api_key(self, key_id: int) -> ApiKey:
        """Revoke a key; it is refused from the next request on."""
        with self._sessions() as s, s.begin():
            row = s.get(ApiKeyRow, key_id)
            if row is None:
                raise UserNotFound(f"API key {key_id} does not exist; see GET /api/keys")
            row.revoked = True
            return _api_key(row)

    def api_keys(self) -> "builtins.list[ApiKey]":
        with self._sessions() as s:
            return [_api_key(r) for r in s.scalars(select(ApiKeyRow).order_by(ApiKeyRow.id))]

    def verify_api_key(self, key: str) -> ApiKey | None:
        """The key's facts when it exists, is not revoked or expired, and its creator is enabled; else None."""
        if not key.startswith(API_KEY_PREFIX) or not key.isascii():
            return None
        with self._sessions() as s:
            row = s.scalar(select(ApiKeyRow).where(ApiKeyRow.key_hash == _key_hash(key)))
            if row is None or row.revoked:
                return None
            if row.expires_us is not None and row.expires_us <= self._clock():
                return None
            if row.created_by:
                creator = s.scalar(select(UserRow).where(UserRow.name == row.created_by))
                if creator is not None and creator.disabled:
                    return None
            return _api_key(row)


def ensure_first_admin(
    users: UserStore,
    password_env: str = "SHARPEYES_ADMIN_PASSWORD",
    *,
    environ: Mapping[str, str] | None = None,
    name: str = "admin",
) -> str | None:
    """Make the first admin when there is none, for ``run`` and ``demo``.

    The password comes from the environment variable ``password_env``; when it
    is unset, one is generated and returned so the caller prints it once (it is
    stored only as a hash). Returns None when an admin exists or the password
    came from the environment.
    """
    env = os.environ if environ is None else environ
    if any(u.role == "admin" for u in users.list()):
        return None
    given = env.get(password_env)
    password = given or secrets.token_urlsafe(15)
    if users.get(name) is not None:
        raise UserError(
            f"there is no admin, but the name {name!r} is taken by a non-admin user; "
            f"create an admin with 'sharpeyes user add NAME --role admin'"
        )
    users.add(name, password, "admin", (ALL_REGIONS,))
    return None if given else password


def _scope(raw: str) -> tuple[str, ...]:
    return tuple(json.loads(raw or "[]"))


def _user(row: UserRow) -> User:
    return User(
        name=row.name,
        role=row.role,
        scope=_scope(row.scope),
        disabled=bool(row.disabled),
        created_us=row.created_us,
        tokens_valid_after_us=row.tokens_valid_after_us or 0,
    )


def _api_key(row: ApiKeyRow) -> ApiKey:
    return ApiKey(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        role=row.role,
        scope=_scope(row.scope),
        revoked=bool(row.revoked),
        created_us=row.created_us,
        created_by=row.created_by,
        expires_us=row.expires_us,
    )
