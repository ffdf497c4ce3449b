"""The access routes: sign-in, refresh, sign-out, the caller, stream tokens, users, API keys, audit query.

The rules they declare and the audit helper they call live in ``streams.access.guard``;
``install_auth`` attaches the ``AuthState`` and mounts this router.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from typing import Any, AsyncIterator

from fastapi import APIRouter, FastAPI, HTTPException, Query
from pydantic import BaseModel, Field
from starlette.requests import HTTPConnection

from streams.access.anchor import AuditAnchor
from streams.access.audit import ACTIONS
from streams.access.guard import (
    AuthState,
    Principal,
    _state,
    _unauthorized,
    _user_principal,
    allow,
    audit,
    client_ip,
    live_sessions,
    public,
)
from streams.access.sessions import RefreshReuse
from streams.access.tokens import TokenError
from streams.access.users import ALL_REGIONS, API_KEY_DAYS, ApiKey, User, UserError, UserExists, UserNotFound
from streams.api.params import time_param
from streams.context import AppContext

__all__ = ["install_auth", "router"]

log = logging.getLogger(__name__)

router = APIRouter()


class SignIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class Refresh(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=4096)


class TokenPair(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
    refresh_token: str
    refresh_expires_in: int


class NewUser(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)
    role: str
    regions: list[str] = Field(default_factory=lambda: [ALL_REGIONS], max_length=256)


class NewPassword(BaseModel):
    password: str = Field(min_length=1, max_length=1024)


class NewKey(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    role: str
    regions: list[str] = Field(default_factory=lambda: [ALL_REGIONS], max_length=256)
    expires_days: int = Field(API_KEY_DAYS, ge=1, le=730, description="the key stops working after this many days")


def _pair(state: AuthState, name: str, session: str, refresh_nonce: str) -> TokenPair:
    access, _ = state.tokens.issue("access", name, session=session)
    refresh, _ = state.tokens.issue("refresh", name, session=session, nonce=refresh_nonce)
    return TokenPair(
        access_token=access,
        expires_in=state.tokens.ttl_s["access"],
        refresh_token=refresh,
        refresh_expires_in=state.tokens.ttl_s["refresh"],
    )


def _ended(views: int) -> str:
    return f" live_views_ended={views}" if views else ""


def _user_error(exc: UserError) -> HTTPException:
    code = 404 if isinstance(exc, UserNotFound) else 409 if isinstance(exc, UserExists) else 400
    return HTTPException(code, detail=str(exc))


def _user_dict(user: User) -> dict[str, Any]:
    return {
        "name": user.name,
        "role": user.role,
        "regions": list(user.scope),
        "disabled": user.disabled,
        "created_us": user.created_us,
    }


def _key_dict(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "role": key.role,
        "regions": list(key.scope),
        "revoked": key.revoked,
        "created_us": key.created_us,
        "created_by": key.created_by,
        "expires_us": key.expires_us,
    }


@router.post("/api/auth/token", dependencies=[public()])
def sign_in(body: SignIn, conn: HTTPConnection) -> TokenPair:
    """Username and password in, a 15-minute access token and a single-use refresh token out."""
    state = _state(conn)
    ip = client_ip(conn)
    wait = state.limiter.retry_after(body.username, ip)
    if wait is not None:
        audit(conn, "sign_in_failed", outcome="rate_limited", user=body.username, role="-")
        raise HTTPException(
            429,
            detail="too many failed sign-ins for this user or address: wait and try again",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    user = state.users.verify_password(body.username, body.password)
    if user is None:
        state.limiter.failure(body.username, ip)
        audit(conn, "sign_in_failed", outcome="failed", user=body.username, role="-")
        # One answer for unknown user, wrong password and disabled user: names cannot be probed.
        raise _unauthorized("wrong user name or password")
    state.limiter.success(body.username, ip)
    assert state.sessions is not None
    session = state.sessions.start(user.name)
    audit(conn, "sign_in", user=user.name, role=user.role)
    return _pair(state, user.name, session.id, session.refresh_nonce)


@router.post("/api/auth/refresh", dependencies=[public()])
def refresh(body: Refresh, conn: HTTPConnection) -> TokenPair:
    """A refresh token in, a new access and refresh token out. Each refresh token works once:
    a second use means it was copied, and ends the sign-in for both holders."""
    state = _state(conn)
    assert state.sessions is not None
    try:
        claims = state.tokens.verify(body.refresh_token, "refresh")
    except TokenError as exc:
        raise _unauthorized(f"{exc}; sign in again with POST /api/auth/token") from None
    if claims.session is None:
        raise _unauthorized("this refresh token predates sign-in sessions: sign in again with POST /api/auth/token")
    principal = _user_principal(state, claims, "token")
    conn.state.principal = principal
    try:
        nonce = state.sessions.rotate(claims.session, claims.nonce)
    except RefreshReuse:
        audit(conn, "token_refresh", outcome="denied",
              detail=f"session={claims.session[:8]} refresh token reused: revoked")
        raise _unauthorized("this refresh token was already used: the sign-in is ended; sign in again") from None
    audit(conn, "token_refresh", detail=f"session={claims.session[:8]}")
    return _pair(state, principal.name, claims.session, nonce)


@router.post("/api/auth/signout")
async def sign_out(conn: HTTPConnection, principal: Principal = allow("user", camera_param=None)) -> dict[str, str]:
    """End this sign-in: its access, refresh and stream tokens stop working, and its live views end."""
    state = _state(conn)
    assert state.sessions is not None
    if principal.session is None:
        raise HTTPException(400, detail="an API key has no sign-in to end: an admin revokes it (DELETE /api/keys/{id})")
    await asyncio.to_thread(state.sessions.revoke, principal.session, "signed out")
    live = live_sessions(conn)
    for view in live.views(principal.name):
        if view.session == principal.session:
            await live.end(view, "signed out")
    await asyncio.to_thread(audit, conn, "sign_out", detail=f"session={principal.session[:8]}")
    return {"status": "signed out"}


@router.get("/api/me")
def me(principal: Principal = allow("user", camera_param=None)) -> dict[str, Any]:
    """Who the caller is: name, role, region scope."""
    return {"name": principal.name, "role": principal.role, "regions": list(principal.scope), "via": principal.via}


@router.post("/api/cameras/{id}/stream-token")
def stream_token(id: str, conn: HTTPConnection, principal: Principal = allow("viewer")) -> dict[str, Any]:
    """A short-lived token for ``?token=`` on this camera's HLS/RTSP URLs only."""
    if principal.via != "token":
        # API keys have no user row to revoke stream tokens through.
        raise HTTPException(403, detail="stream tokens are for signed-in users; machine clients send their key "
                                        "as a Bearer header")
    token, _ = _state(conn).tokens.issue("stream", principal.name, camera_id=id, session=principal.session)
    return {"token": token, "camera_id": id, "expires_in": _state(conn).tokens.ttl_s["stream"]}


@router.get("/api/users", dependencies=[allow("admin", camera_param=None)])
def list_users(conn: HTTPConnection) -> list[dict[str, Any]]:
    return [_user_dict(u) for u in _state(conn).users.list()]


@router.post("/api/users", status_code=201, dependencies=[allow("admin", camera_param=None)])
def add_user(body: NewUser, conn: HTTPConnection) -> dict[str, Any]:
    try:
        user = _state(conn).users.add(body.name, body.password, body.role, body.regions)
    except UserError as exc:
        raise _user_error(exc) from None
    audit(conn, "user_add", detail=f"target={user.name} role={user.role} regions={','.join(user.scope)}")
    return _user_dict(user)


@router.post("/api/users/{name}/passwd", dependencies=[allow("admin", camera_param=None)])
async def set_password(name: str, body: NewPassword, conn: HTTPConnection) -> dict[str, str]:
    try:
        await asyncio.to_thread(_state(conn).users.passwd, name, body.password)
    except UserError as exc:
        raise _user_error(exc) from None
    ended = await live_sessions(conn).end_user(name, "password changed")
    await asyncio.to_thread(audit, conn, "user_passwd", detail=f"target={name}" + _ended(ended))
    return {"status": "ok"}


class RoleChange(BaseModel):
    role: str
    regions: list[str] | None = Field(None, max_length=256)


@router.patch("/api/users/{name}", dependencies=[allow("admin", camera_param=None)])
async def set_role(name: str, body: RoleChange, conn: HTTPConnection) -> dict[str, Any]:
    """Change a user's role or region scope. Their tokens and live views end: they sign in again."""
    try:
        user = await asyncio.to_thread(_state(conn).users.set_role, name, body.role, body.regions)
    except UserError as exc:
        raise _user_error(exc) from None
    ended = await live_sessions(conn).end_user(name, "role or scope changed")
    await asyncio.to_thread(audit, conn, "user_role", detail=f"target={name} role={user.role} "
                            f"regions={','.join(user.scope)}" + _ended(ended))
    return _user_dict(user)


@router.post("/api/users/{name}/disable")
async def disable_user(name: str, conn: HTTPConnection,
                       principal: Principal = allow("admin", camera_param=None)) -> dict[str, str]:
    if name == principal.name:
        raise HTTPException(400, detail="you cannot disable yourself: ask another admin")
    try:
        await asyncio.to_thread(_state(conn).users.disable, name)
    except UserError as exc:
        raise _user_error(exc) from None
    ended = await live_sessions(conn).end_user(name, "user disabled")
    await asyncio.to_thread(audit, conn, "user_disable", detail=f"target={name}" + _ended(ended))
    return {"status": "ok"}


@router.post("/api/users/{name}/enable", dependencies=[allow("admin", camera_param=None)])
def enable_user(name: str, conn: HTTPConnection) -> dict[str, str]:
    try:
        _state(conn).users.enable(name)
    except UserError as exc:
        raise _user_error(exc) from None
    audit(conn, "user_enable", detail=f"target={name}")
    return {"status": "ok"}


@router.get("/api/keys", dependencies=[allow("admin", camera_param=None)])
def list_keys(conn: HTTPConnection) -> list[dict[str, Any]]:
    return [_key_dict(k) for k in _state(conn).users.api_keys()]


@router.post("/api/keys", status_code=201)
def create_key(body: NewKey, conn: HTTPConnection,
               principal: Principal = allow("admin", camera_param=None)) -> dict[str, Any]:
    """A new API key. The ``key`` field is shown only in this answer: store it now."""
    try:
        key, facts = _state(conn).users.create_api_key(body.name, body.role, body.regions, created_by=principal.name,
                                                       expires_days=body.expires_days)
    except UserError as exc:
        raise _user_error(exc) from None
    audit(conn, "key_create", detail=f"key={facts.id} name={facts.name} role={facts.role}")
    return {**_key_dict(facts), "key": key}


@router.delete("/api/keys/{key_id}", dependencies=[allow("admin", camera_param=None)])
def revoke_key(key_id: int, conn: HTTPConnection) -> dict[str, Any]:
    try:
        facts = _state(conn).users.revoke_api_key(key_id)
    except UserError as exc:
        raise _user_error(exc) from None
    audit(conn, "key_revoke", detail=f"key={facts.id} name={facts.name}")
    return _key_dict(facts)


@router.get("/api/audit", dependencies=[allow("admin", camera_param=None)])
def query_audit(
    conn: HTTPConnection,
    user: str | None = None,
    action: str | None = Query(None, description=f"one of {', '.join(ACTIONS)}"),
    camera_id: str | None = None,
    outcome: str | None = None,
    since: str | None = Query(None, description="from this time (ISO 8601 with an offset, or epoch ms), inclusive"),
    until: str | None = Query(None, description="to this time, exclusive"),
    before_id: int | None = Query(None, description="page back: the smallest id of the previous page"),
    limit: int = Query(100, ge=1, le=1000),
) -> list[dict[str, Any]]:
    """Audit rows, newest first. Read only: no route edits or deletes them."""
    rows = _state(conn).audit.query(
        user=user,
        action=action,
        camera_id=camera_id,
        outcome=outcome,
        since_us=None if since is None else time_param(since, "since"),
        until_us=None if until is None else time_param(until, "until"),
        before_id=before_id,
        limit=limit,
    )
    return [r.__dict__ for r in rows]


def _checkpoint_dict(anchor: AuditAnchor) -> dict[str, Any]:
    cp = anchor.checkpoint(force=True)
    return {} if cp is None else {k: v for k, v in cp.as_dict().items() if k != "hashes"}


def _checkpoint_quietly(anchor: AuditAnchor) -> None:
    try:
        anchor.checkpoint()
    except Exception:  # noqa: BLE001 - anchoring must never take the API down; retried next period
        log.exception("could not make an audit checkpoint; retrying at the next period")


async def _anchor_every(anchor: AuditAnchor, seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        await asyncio.to_thread(_checkpoint_quietly, anchor)


def install_auth(app: FastAPI, ctx: AppContext) -> AuthState:
    """Attach the auth services (``ctx.auth`` when given, else built from the settings), mount the
    auth routes, and run the live-view sweep (``ctx.live_sessions``) for as long as the app runs."""
    state = ctx.auth or AuthState.from_context(ctx)
    ctx.auth = state
    anchor = AuditAnchor.open(state.users.engine, ctx.settings.data_dir, ctx.settings.audit_key_file, ctx.store)
    # Every export manifest carries a fresh signed checkpoint of the audit chain.
    ctx.exports.audit_anchor = lambda: _checkpoint_dict(anchor)
    live = ctx.live_sessions
    live.max_per_user = ctx.settings.live_max_views_per_user
    live.connect_timeout_s = ctx.settings.whep_connect_timeout_seconds
    live.bind(state.users, ctx.registry, state.sessions)
    app.include_router(router)
    previous = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        live.start()
        anchoring = asyncio.get_running_loop().create_task(_anchor_every(anchor, ctx.settings.audit_checkpoint_seconds))
        try:
            async with previous(a) as inner:
                yield inner
        finally:
            anchoring.cancel()
            await live.close()
            await asyncio.to_thread(_checkpoint_quietly, anchor)  # the last rows of this run, anchored

    app.router.lifespan_context = lifespan
    return state
