"""Authentication, authorization and audit for the HTTP API.

Every route declares a rule. A new route picks one of:

    @router.get("/api/cameras/{id}/recordings")
    def recordings(id: str, principal: Principal = allow("investigator")): ...

    @router.get("/api/cameras/{id}/hls/index.m3u8")
    def hls(id: str, principal: Principal = allow("viewer", query_token=True)): ...

    @router.get("/api/health", dependencies=[allow("operator", camera_param=None)])
    def health(): ...

    @router.get("/api/version", dependencies=[public()])
    def version(): ...

``allow(role, camera_param="id", query_token=False)`` authenticates the caller
(401), checks the role (403), and when ``camera_param`` names a path parameter,
loads that camera and checks it against the caller's region scope: a camera out
of scope answers exactly like an unknown one (404, ``camera_not_found``). The
checked camera is ``principal.camera``. ``tests/auth`` walks ``app.routes`` and
fails for a route without a rule.

Rights (a partial order, see ``streams.access.users``): ``viewer`` rules admit every
role; ``investigator`` admits investigator and admin; ``operator`` admits
operator and admin; ``admin`` admits admin; ``user`` admits anyone signed in.

Credentials: ``Authorization: Bearer <access token | API key>``. Only routes
declared with ``query_token=True`` (HLS, RTSP-style URLs a player fetches by
itself) also take ``?token=``, and only a stream token bound to that camera
(``POST /api/cameras/{id}/stream-token``, 15 minutes).

Audit: ``audit(request, "playback", camera_id=id, start_us=s, end_us=e)`` writes
one row as the signed-in caller, with the client IP. Behind nginx, run uvicorn
with ``--proxy-headers --forwarded-allow-ips=<nginx address>`` so the IP is the
viewer's and not the proxy's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query
from pydantic import BaseModel, Field
from starlette.requests import HTTPConnection

from config.cameras import Camera, Region
from streams.access.audit import ACTIONS, AuditEntry, AuditLog
from storage.index.registry import Registry
from storage.index.credentials import load_cipher
from streams.access.users import (
    ALL_REGIONS,
    ROLES,
    ApiKey,
    User,
    UserError,
    UserExists,
    UserNotFound,
    UserStore,
    ensure_first_admin,
)
from streams.api.params import time_param
from streams.context import AppContext
from streams.access.ratelimit import SignInLimiter
from streams.access.tokens import TokenError, TokenSigner

__all__ = [
    "AuthState",
    "Principal",
    "Rule",
    "allow",
    "audit",
    "camera_not_found",
    "ensure_first_admin",
    "install_auth",
    "public",
    "route_rule",
    "walk_routes",
    "router",
]

RULE_ATTR = "__sharpeyes_rule__"
RuleRole = Literal["public", "user", "viewer", "investigator", "operator", "admin"]

# Which user roles each rule admits.
RIGHTS: dict[str, frozenset[str]] = {
    "public": frozenset(),
    "user": frozenset(ROLES),
    "viewer": frozenset(ROLES),
    "investigator": frozenset({"investigator", "admin"}),
    "operator": frozenset({"operator", "admin"}),
    "admin": frozenset({"admin"}),
}


@dataclass(frozen=True)
class Rule:
    """What a route requires; found on the route by ``route_rule``."""

    role: RuleRole
    camera_param: str | None = None
    query_token: bool = False

    def admits(self, role: str) -> bool:
        return self.role == "public" or role in RIGHTS[self.role]


@dataclass(frozen=True)
class Principal:
    """The authenticated caller. Role and scope come from the user (or key) row, read per request."""

    name: str
    role: str
    scope: tuple[str, ...]
    via: Literal["token", "api_key", "stream_token"]
    camera: Camera | None = None

    @property
    def sees_all(self) -> bool:
        return self.role == "admin" or ALL_REGIONS in self.scope

    def region_codes(self, registry: Registry) -> set[str] | None:
        """Every region code in scope (sub-regions included); None means all."""
        if self.sees_all:
            return None
        codes: set[str] = set()
        for code in self.scope:
            codes |= registry.region_subtree(code)
        return codes

    def can_see(self, camera: Camera, registry: Registry) -> bool:
        codes = self.region_codes(registry)
        return codes is None or camera.region in codes

    def visible_cameras(self, registry: Registry) -> list[Camera]:
        """The cameras this caller may know exist: use for every list of cameras."""
        codes = self.region_codes(registry)
        cameras = registry.cameras()
        return cameras if codes is None else [c for c in cameras if c.region in codes]

    def visible_regions(self, registry: Registry) -> list[Region]:
        """The regions in scope. A scope root's parent is outside it: show such regions as roots."""
        codes = self.region_codes(registry)
        regions = registry.regions()
        return regions if codes is None else [r for r in regions if r.code in codes]


@dataclass
class AuthState:
    """The auth services one app uses; give one as ``AppContext(auth=...)`` to inject clocks in tests."""

    users: UserStore
    audit: AuditLog
    tokens: TokenSigner
    limiter: SignInLimiter = field(default_factory=SignInLimiter)

    @classmethod
    def from_context(cls, ctx: AppContext) -> "AuthState":
        engine = ctx.index.engine
        cipher = load_cipher(ctx.settings.data_dir)
        return cls(
            users=UserStore(engine),
            audit=AuditLog(engine),
            tokens=TokenSigner(cipher.derive("sharpeyes token signing v1")),
        )


def _state(conn: HTTPConnection) -> AuthState:
    auth: AuthState = conn.app.state.ctx.auth
    return auth


def _registry(conn: HTTPConnection) -> Registry:
    return conn.app.state.ctx.registry  # type: ignore[no-any-return]


def camera_not_found(camera_id: str) -> HTTPException:
    """The one answer for an unknown camera and for a camera out of the caller's scope."""
    return HTTPException(404, detail=f"camera {camera_id} is not registered")


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(401, detail=message, headers={"WWW-Authenticate": "Bearer"})


def _user_principal(state: AuthState, name: str, issued_us: int, via: Any) -> Principal:
    user = state.users.get(name)
    if user is None or user.disabled or issued_us < user.tokens_valid_after_us:
        raise _unauthorized("the token is no longer valid: sign in again")
    return Principal(user.name, user.role, user.scope, via)


def _authenticate(conn: HTTPConnection, rule: Rule) -> Principal:
    state = _state(conn)
    header = conn.headers.get("authorization", "")
    scheme, _, credential = header.partition(" ")
    credential = credential.strip()
    if scheme.lower() == "bearer" and credential:
        key = state.users.verify_api_key(credential)
        if key is not None:
            return Principal(f"key:{key.name}", key.role, key.scope, "api_key")
        try:
            claims = state.tokens.verify(credential, "access")
        except TokenError as exc:
            raise _unauthorized(f"{exc}; sign in with POST /api/auth/token") from None
        return _user_principal(state, claims.subject, claims.issued_us, "token")
    query = conn.query_params.get("token")
    if query and rule.query_token:
        try:
            claims = state.tokens.verify(query, "stream")
        except TokenError as exc:
            raise _unauthorized(f"{exc}; get a new one with POST /api/cameras/{{id}}/stream-token") from None
        wanted = conn.path_params.get(rule.camera_param) if rule.camera_param else None
        if wanted is None or claims.camera_id != wanted:
            raise _unauthorized("this stream token is for another camera")
        return _user_principal(state, claims.subject, claims.issued_us, "stream_token")
    if query:
        raise _unauthorized("this route does not take ?token=: send Authorization: Bearer <token>")
    raise _unauthorized("sign in first: send Authorization: Bearer <token> (POST /api/auth/token)")


def allow(role: RuleRole, camera_param: str | None = "id", query_token: bool = False) -> Any:
    """The dependency every non-public route declares (as a parameter or in ``dependencies=``).

    ``camera_param`` names the path parameter holding a camera id (``None`` for
    routes about no single camera). ``query_token=True`` also accepts a stream
    token in ``?token=``; it needs a ``camera_param``.
    """
    if role not in RIGHTS or role == "public":
        raise ValueError(f"allow({role!r}): use one of user, {', '.join(ROLES)}; or public()")
    if query_token and camera_param is None:
        raise ValueError("query tokens are bound to one camera: give camera_param")
    rule = Rule(role, camera_param, query_token)

    def check(conn: HTTPConnection) -> Principal:
        principal = _authenticate(conn, rule)
        conn.state.principal = principal
        if not rule.admits(principal.role):
            raise HTTPException(403, detail=f"role {principal.role} may not do this; it needs {role}")
        if camera_param is not None:
            camera_id = conn.path_params.get(camera_param)
            if camera_id is None:
                raise RuntimeError(f"route {conn.url.path} declares camera_param={camera_param!r} but has no such path parameter")
            registry = _registry(conn)
            camera = registry.camera(camera_id)
            if camera is None or not principal.can_see(camera, registry):
                raise camera_not_found(camera_id)
            principal = Principal(principal.name, principal.role, principal.scope, principal.via, camera)
            conn.state.principal = principal
        return principal

    setattr(check, RULE_ATTR, rule)
    return Depends(check)


def public() -> Any:
    """The rule for routes anyone may call (ping, sign-in). Declare it so the route walk sees intent."""

    def open_route() -> None:
        return None

    setattr(open_route, RULE_ATTR, Rule("public", None, False))
    return Depends(open_route)


def walk_routes(app: FastAPI) -> list[Any]:
    """Every route the app serves, with ``include_router`` prefixes and dependencies applied.

    Newer FastAPI keeps included routers as one entry in ``app.routes``;
    ``iter_route_contexts`` expands them. Each item has ``path``, ``methods``,
    ``dependant`` and ``original_route`` (the ``APIRoute``/``Mount``/... object).
    """
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI: app.routes is already flat
        return list(app.routes)
    return list(iter_route_contexts(app.routes))


def route_rule(route: Any) -> Rule | None:
    """The rule a route declared, found among its dependencies; None when it has none."""
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return None
    todo = list(dependant.dependencies)
    while todo:
        dep = todo.pop()
        rule = getattr(dep.call, RULE_ATTR, None)
        if rule is not None:
            return rule  # type: ignore[no-any-return]
        todo.extend(dep.dependencies)
    return None


def client_ip(conn: HTTPConnection) -> str:
    return conn.client.host if conn.client else "-"


def audit(
    conn: HTTPConnection,
    action: str,
    *,
    outcome: str = "ok",
    camera_id: str | None = None,
    start_us: int | None = None,
    end_us: int | None = None,
    detail: str = "",
    user: str | None = None,
    role: str | None = None,
) -> AuditEntry:
    """Write one audit row for this request, as the caller ``allow`` authenticated.

    ``user``/``role`` override the caller (sign-in, where there is none yet).
    Keep ``detail`` short and free of secrets; URLs in it are redacted anyway.
    """
    principal: Principal | None = getattr(conn.state, "principal", None)
    return _state(conn).audit.append(
        user=user or (principal.name if principal else "-"),
        role=role or (principal.role if principal else "-"),
        client_ip=client_ip(conn),
        action=action,
        outcome=outcome,
        camera_id=camera_id if camera_id is not None else (principal.camera.id if principal and principal.camera else None),
        range_start_us=start_us,
        range_end_us=end_us,
        detail=detail,
    )


# -- routes -------------------------------------------------------------------

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


def _pair(state: AuthState, name: str) -> TokenPair:
    access, _ = state.tokens.issue("access", name)
    refresh, _ = state.tokens.issue("refresh", name)
    return TokenPair(
        access_token=access,
        expires_in=state.tokens.ttl_s["access"],
        refresh_token=refresh,
        refresh_expires_in=state.tokens.ttl_s["refresh"],
    )


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
    }


@router.post("/api/auth/token", dependencies=[public()])
def sign_in(body: SignIn, conn: HTTPConnection) -> TokenPair:
    """Username and password in, a 12-hour access token and a refresh token out."""
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
    state.limiter.success(body.username)
    audit(conn, "sign_in", user=user.name, role=user.role)
    return _pair(state, user.name)


@router.post("/api/auth/refresh", dependencies=[public()])
def refresh(body: Refresh, conn: HTTPConnection) -> TokenPair:
    """A refresh token in, a new access and refresh token out (the refresh token is the credential)."""
    state = _state(conn)
    try:
        claims = state.tokens.verify(body.refresh_token, "refresh")
    except TokenError as exc:
        raise _unauthorized(f"{exc}; sign in again with POST /api/auth/token") from None
    principal = _user_principal(state, claims.subject, claims.issued_us, "token")
    conn.state.principal = principal
    audit(conn, "token_refresh")
    return _pair(state, principal.name)


@router.get("/api/me")
def me(principal: Principal = allow("user", camera_param=None)) -> dict[str, Any]:
    """Who the caller is: name, role, region scope."""
    return {"name": principal.name, "role": principal.role, "regions": list(principal.scope), "via": principal.via}


@router.post("/api/cameras/{id}/stream-token")
def stream_token(id: str, conn: HTTPConnection, principal: Principal = allow("viewer")) -> dict[str, Any]:
    """A short-lived token for ``?token=`` on this camera's HLS/RTSP URLs only."""
    if principal.via != "token":
        # API keys have no user row to revoke stream tokens through.
        raise HTTPException(403, detail="stream tokens are for signed-in users; machine clients send their key as a Bearer header")
    token, _ = _state(conn).tokens.issue("stream", principal.name, camera_id=id)
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
def set_password(name: str, body: NewPassword, conn: HTTPConnection) -> dict[str, str]:
    try:
        _state(conn).users.passwd(name, body.password)
    except UserError as exc:
        raise _user_error(exc) from None
    audit(conn, "user_passwd", detail=f"target={name}")
    return {"status": "ok"}


@router.post("/api/users/{name}/disable")
def disable_user(name: str, conn: HTTPConnection, principal: Principal = allow("admin", camera_param=None)) -> dict[str, str]:
    if name == principal.name:
        raise HTTPException(400, detail="you cannot disable yourself: ask another admin")
    try:
        _state(conn).users.disable(name)
    except UserError as exc:
        raise _user_error(exc) from None
    audit(conn, "user_disable", detail=f"target={name}")
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
def create_key(body: NewKey, conn: HTTPConnection, principal: Principal = allow("admin", camera_param=None)) -> dict[str, Any]:
    """A new API key. The ``key`` field is shown only in this answer: store it now."""
    try:
        key, facts = _state(conn).users.create_api_key(body.name, body.role, body.regions, created_by=principal.name)
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


def install_auth(app: FastAPI, ctx: AppContext) -> AuthState:
    """Attach the auth services (``ctx.auth`` when given, else built from the settings) and
    mount the auth routes."""
    state = ctx.auth or AuthState.from_context(ctx)
    ctx.auth = state
    app.include_router(router)
    return state
