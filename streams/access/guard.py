"""Rights, rules and the caller: who may call which route, and the audit helper every route uses.

Every route declares a rule. A new route picks one of (each is a real route):

    @router.get("/api/cameras/{id}/recordings")
    def recordings(id: str, request: Request, start: str, end: str,
                   principal: Principal = allow("investigator")): ...

    @router.get("/api/cameras/{id}/live.m3u8")
    async def live_playlist(id: str, request: Request,
                            principal: Principal = allow("viewer", query_token=True)): ...

    @router.get("/api/health/fleet")
    def fleet_history(request: Request, principal: Principal = allow("operator", camera_param=None)): ...

    @router.get("/api/ping", dependencies=[public()])
    def ping(): ...

``allow(role, camera_param="id", query_token=False)`` authenticates the caller
(401), checks the role (403), and when ``camera_param`` names a path parameter,
loads that camera and checks it against the caller's region scope: a camera out
of scope answers exactly like an unknown one (404, ``camera_not_found``). The
checked camera is ``principal.camera``. ``tests/auth`` walks ``app.routes`` and
fails for a route without a rule. The routes of access itself (sign-in, users,
keys, audit query) are in ``streams.access.routes``.

Rights (a partial order, see ``streams.access.users``): ``viewer`` rules admit every
role; ``investigator`` admits investigator and admin; ``operator`` admits
operator and admin; ``admin`` admits admin; ``user`` admits anyone signed in.

Credentials: ``Authorization: Bearer <access token | API key>``. Only routes
declared with ``query_token=True`` (HLS, RTSP-style URLs a player fetches by
itself) also take ``?token=``, and only a stream token bound to that camera
(``POST /api/cameras/{id}/stream-token``, 15 minutes).

Audit: ``audit(request, "playback", camera_id=id, start_us=s, end_us=e)`` writes
one row as the signed-in caller, with the client IP. Behind nginx, set
``forwarded_allow_ips`` to nginx's address only (``deploy/``), so the IP is the
viewer's and cannot be forged by a client's own ``X-Forwarded-For``.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Literal

from fastapi import Depends, FastAPI, HTTPException
from starlette.requests import HTTPConnection

from config.cameras import Camera, Region
from streams.access.audit import AuditEntry, AuditLog
from streams.access.changes import Actor, RegistryChanges, regions_in_scope, sees_all
from storage.index.registry import Registry
from storage.index.credentials import load_cipher
from streams.access.users import (
    ALL_REGIONS,
    ROLES,
    UserStore,
)
from streams.context import AppContext
from streams.access.ratelimit import SignInLimiter
from streams.access.live_sessions import LiveSessions, LiveView, TooManyViews
from streams.access.sessions import SignInSessions
from streams.access.tokens import TokenClaims, TokenError, TokenSigner

__all__ = [
    "AuthState",
    "Principal",
    "Rule",
    "allow",
    "audit",
    "camera_not_found",
    "public",
    "route_rule",
    "walk_routes",
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
    # The largest request body the route reads (bytes); ``streams.access.bodygate`` refuses more
    # before the app reads any of it.
    max_body: int = 64 * 1024

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
    # The sign-in session the token belongs to, and when the credential runs out (µs; None: a key).
    session: str | None = None
    expires_us: int | None = None
    issued_us: int = 0

    @property
    def sees_all(self) -> bool:
        return sees_all(self.role, self.scope)

    def region_codes(self, registry: Registry) -> set[str] | None:
        """Every region code in scope (sub-regions included); None means all."""
        return regions_in_scope(self.role, self.scope, registry)

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


class ViewingLog:
    """Which viewings were audited lately, so one viewing made of many requests (the byte ranges
    of a clip, a playlist reloaded every second, the thumbnails of a scrubber) is one audit row.

    A key is seen again within ``window_s`` of its *last* request: the same viewing. In memory,
    per process: with several API nodes a viewing spread over nodes is one row per node.
    """

    max_keys = 100_000

    def __init__(self, window_s: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self._clock = clock
        self._last: dict[tuple[Any, ...], float] = {}
        self._lock = threading.Lock()

    def first(self, key: tuple[Any, ...], window_s: float | None = None) -> bool:
        """True when ``key`` starts a new viewing (and remember it)."""
        window = self.window_s if window_s is None else window_s
        now = self._clock()
        with self._lock:
            if len(self._last) > self.max_keys:
                self._last = {k: t for k, t in self._last.items() if now - t <= self.window_s}
            last = self._last.get(key)
            self._last[key] = now
        return last is None or now - last > window


@dataclass
class AuthState:
    """The auth services one app uses; give one as ``AppContext(auth=...)`` to inject clocks in tests."""

    users: UserStore
    audit: AuditLog
    tokens: TokenSigner
    limiter: SignInLimiter = field(default_factory=SignInLimiter)
    sessions: SignInSessions | None = None
    viewings: ViewingLog = field(default_factory=ViewingLog)

    def __post_init__(self) -> None:
        if self.sessions is None:
            self.sessions = SignInSessions(self.users.engine, clock=self.users.clock)

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


def _user_principal(state: AuthState, claims: TokenClaims, via: Any) -> Principal:
    user = state.users.get(claims.subject)
    if user is None or user.disabled or claims.issued_us < user.tokens_valid_after_us:
        raise _unauthorized("the token is no longer valid: sign in again")
    if claims.session is not None and state.sessions is not None and not state.sessions.active(claims.session):
        raise _unauthorized("this sign-in has ended (signed out or revoked): sign in again")
    return Principal(user.name, user.role, user.scope, via, session=claims.session, expires_us=claims.expires_us,
                     issued_us=claims.issued_us)


def authenticate_bearer(conn: HTTPConnection) -> Principal | None:
    """The caller named by ``Authorization: Bearer``; None when there is no such header; 401 when it is bad."""
    state = _state(conn)
    header = conn.headers.get("authorization", "")
    scheme, _, credential = header.partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        return None
    key = state.users.verify_api_key(credential)
    if key is not None:
        return Principal(f"key:{key.name}", key.role, key.scope, "api_key", expires_us=key.expires_us)
    try:
        claims = state.tokens.verify(credential, "access")
    except TokenError as exc:
        raise _unauthorized(f"{exc}; sign in with POST /api/auth/token") from None
    return _user_principal(state, claims, "token")


def stream_principal(state: AuthState, token: str, camera_id: str) -> Principal:
    """The caller a stream token names, when it is valid for ``camera_id``; 401 otherwise."""
    try:
        claims = state.tokens.verify(token, "stream")
    except TokenError as exc:
        raise _unauthorized(f"{exc}; get a new one with POST /api/cameras/{{id}}/stream-token") from None
    if claims.camera_id != camera_id:
        raise _unauthorized("this stream token is for another camera")
    return _user_principal(state, claims, "stream_token")


def _authenticate(conn: HTTPConnection, rule: Rule) -> Principal:
    state = _state(conn)
    principal = authenticate_bearer(conn)
    if principal is not None:
        return principal
    query = conn.query_params.get("token")
    if query and rule.query_token:
        wanted = conn.path_params.get(rule.camera_param) if rule.camera_param else None
        if wanted is None:
            raise _unauthorized("this stream token is for another camera")
        return stream_principal(state, query, wanted)
    if query:
        raise _unauthorized("this route does not take ?token=: send Authorization: Bearer <token>")
    raise _unauthorized("sign in first: send Authorization: Bearer <token> (POST /api/auth/token)")


def allow(role: RuleRole, camera_param: str | None = "id", query_token: bool = False,
          max_body: int = 64 * 1024) -> Any:
    """The dependency every non-public route declares (as a parameter or in ``dependencies=``).

    ``camera_param`` names the path parameter holding a camera id (``None`` for
    routes about no single camera). ``query_token=True`` also accepts a stream
    token in ``?token=``; it needs a ``camera_param``. ``max_body`` caps the request body.
    """
    if role not in RIGHTS or role == "public":
        raise ValueError(f"allow({role!r}): use one of user, {', '.join(ROLES)}; or public()")
    if query_token and camera_param is None:
        raise ValueError("query tokens are bound to one camera: give camera_param")
    rule = Rule(role, camera_param, query_token, max_body)

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
            principal = replace(principal, camera=camera)
            conn.state.principal = principal
        return principal

    setattr(check, RULE_ATTR, rule)
    return Depends(check)


def allow_scrape() -> Any:
    """The rule of ``/metrics``: an operator (or admin) credential, or no credential from an address
    in the setting ``metrics_allow_ips`` (a Prometheus server), which reads as an all-county operator."""
    rule = Rule("operator", None, False)

    def check(conn: HTTPConnection) -> Principal:
        settings = conn.app.state.ctx.settings
        if not conn.headers.get("authorization") and _address_in(client_ip(conn), settings.metrics_allow_ips):
            principal = Principal("scraper", "operator", (ALL_REGIONS,), "api_key")
            conn.state.principal = principal
            return principal
        principal = _authenticate(conn, rule)
        conn.state.principal = principal
        if not rule.admits(principal.role):
            raise HTTPException(403, detail=f"role {principal.role} may not scrape metrics; it needs operator")
        return principal

    setattr(check, RULE_ATTR, rule)
    return Depends(check)


def _address_in(address: str, ranges: list[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(r, strict=False) for r in ranges)


def public(max_body: int = 4096) -> Any:
    """The rule for routes anyone may call (ping, sign-in). Declare it so the route walk sees intent.

    Their bodies are read unauthenticated, so the cap is small."""

    def open_route() -> None:
        return None

    setattr(open_route, RULE_ATTR, Rule("public", None, False, max_body))
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


def live_view(conn: HTTPConnection, principal: Principal, kind: str, stop: Any, *, connected: bool = True) -> LiveView:
    """Register a live view of ``principal.camera`` for the re-authorization sweep (``LiveSessions``);
    429 when the user already holds as many live views as allowed."""
    assert principal.camera is not None
    view = LiveView(principal.name, principal.camera.id, kind, stop, principal.issued_us,
                    expires_us=principal.expires_us, session=principal.session, connected=connected)
    live = live_sessions(conn)
    try:
        return live.add(view)
    except TooManyViews:
        raise HTTPException(429, detail=f"{principal.name} already has {live.max_per_user} live views open "
                                        "(live_max_views_per_user); close one first",
                            headers={"Retry-After": "10"}) from None


def live_sessions(conn: HTTPConnection) -> LiveSessions:
    sessions: LiveSessions = conn.app.state.ctx.live_sessions
    return sessions


def actor(conn: HTTPConnection) -> Actor:
    """The authenticated caller as the actor of a change (``streams.access.changes``)."""
    principal: Principal = conn.state.principal
    return Actor(principal.name, principal.role, client_ip(conn), principal.scope)


def changes(conn: HTTPConnection) -> RegistryChanges:
    """The audited, scope-checked change service for this app."""
    state = _state(conn)
    return RegistryChanges(_registry(conn), state.audit, state.users)


def client_ip(conn: HTTPConnection) -> str:
    return conn.client.host if conn.client else "-"


def audit_viewing(conn: HTTPConnection, action: str, key: tuple[Any, ...], *, window_s: float | None = None,
                  **fields: Any) -> AuditEntry | None:
    """``audit`` once per viewing: the first request of ``key`` by this caller from this address
    writes the row; the requests that follow within the window (``ViewingLog``) write none."""
    principal: Principal | None = getattr(conn.state, "principal", None)
    camera = fields.get("camera_id") or (principal.camera.id if principal and principal.camera else None)
    who = (principal.name if principal else "-", client_ip(conn), action, camera, *key)
    if not _state(conn).viewings.first(who, window_s):
        return None
    return audit(conn, action, **fields)


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
