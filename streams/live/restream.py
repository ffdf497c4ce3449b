"""The RTSP restream: every ingested camera at ``rtsp://HOST:PORT/{camera_id}`` and ``/{camera_id}/sub``.

Other platforms and players pull through the aggregator instead of from the village: the
project's own ``RtspServer`` serves each ``LiveHub`` (a hub is an ``AccessUnitSource``),
so one camera pull feeds any number of RTSP clients. The server runs on the app's event
loop, the loop the hubs publish on; ``install_restream`` starts it with the app.

Access (setting ``rtsp_auth``, on by default): a player gives a stream token in the URL,
``rtsp://HOST:PORT/{camera_id}?token=<POST /api/cameras/{id}/stream-token>``, or a machine
client gives an API key as the password of RTSP Basic authentication. (RTSP Digest would
need an MD5 of each user's password on file; passwords are kept only as argon2 hashes.)
Every session that plays writes ``live_start`` and ``live_stop`` audit rows and is a live
view (``LiveSessions``): it ends when its user is disabled or its token expires.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any, AsyncIterator
from urllib.parse import parse_qs, urlsplit

from fastapi import FastAPI, HTTPException

from ingest.live.hub import LiveHub, LiveHubs
from streams.access.guard import Principal, stream_principal
from streams.access.live_sessions import LiveView, TooManyViews
from streams.context import AppContext
from streams.rtsp.server import Denied, Grant, RtspServer

log = logging.getLogger(__name__)


def restream_path(camera_id: str, stream: str) -> str:
    """``{camera_id}`` for the main stream, ``{camera_id}/sub`` for the sub-stream."""
    return camera_id if stream == "main" else f"{camera_id}/{stream}"


def serve_hubs(server: RtspServer, hubs: LiveHubs) -> None:
    """Serve every hub there is and every hub to come; stop serving removed ones."""

    def add(hub: LiveHub) -> None:
        path = restream_path(hub.camera_id, hub.stream)
        if path not in server.paths():
            server.add_path(path, hub)

    def remove(hub: LiveHub) -> None:
        loop = hubs.loop
        path = restream_path(hub.camera_id, hub.stream)
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(server.remove_path, path)

    for hub in hubs.all():
        add(hub)
    hubs.on_new_hub.append(add)
    hubs.on_removed_hub.append(remove)


CHALLENGE = {"WWW-Authenticate": 'Basic realm="sharpeyes"'}


@dataclass(eq=False)
class ViewerGrant:
    """One authorized RTSP client: audits its sessions and registers them as live views."""

    ctx: AppContext
    principal: Principal
    client_ip: str
    camera_id: str
    server: RtspServer
    views: dict[str, LiveView] = field(default_factory=dict)

    @property
    def user(self) -> str:
        return self.principal.name

    def _audit(self, action: str, detail: str) -> None:
        auth = self.ctx.auth
        assert auth is not None
        loop = asyncio.get_running_loop()
        # The audit write is a database call: off the loop that carries the video.
        loop.run_in_executor(None, lambda: auth.audit.append(
            user=self.principal.name, role=self.principal.role, client_ip=self.client_ip, action=action,
            camera_id=self.camera_id, detail=detail))

    def playing(self, session_id: str, path: str) -> None:
        view = LiveView(self.principal.name, self.camera_id, "rtsp",
                        lambda reason: self.server.end_session(session_id, reason) and None,
                        self.principal.issued_us, expires_us=self.principal.expires_us,
                        session=self.principal.session)
        try:
            self.views[session_id] = self.ctx.live_sessions.add(view)
        except TooManyViews:
            self.server.end_session(session_id, "too many live views for this user")
            return
        self._audit("live_start", f"rtsp path={path} session={session_id}")

    def ended(self, session_id: str, path: str, reason: str) -> None:
        view = self.views.pop(session_id, None)
        if view is not None:
            self.ctx.live_sessions.remove(view)
        self._audit("live_stop", f"rtsp path={path} session={session_id} {reason}")


class RestreamAccess:
    """The restream's ``authorize`` hook: a stream token in the URL, or Basic with an API key."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.server: RtspServer | None = None

    async def __call__(self, method: str, url: str, headers: dict[str, str], peer: str, path: str) -> Grant:
        camera_id = path.split("/", 1)[0]
        principal = await asyncio.to_thread(self._principal, url, headers, camera_id)
        registry = self.ctx.registry
        camera = await asyncio.to_thread(registry.camera, camera_id)
        if camera is None or not await asyncio.to_thread(principal.can_see, camera, registry):
            raise Denied(404)
        assert self.server is not None
        return ViewerGrant(self.ctx, principal, peer, camera_id, self.server)

    def _principal(self, url: str, headers: dict[str, str], camera_id: str) -> Principal:
        auth = self.ctx.auth
        assert auth is not None
        token = (parse_qs(urlsplit(url).query).get("token") or [""])[0].split("/")[0]
        if token:
            try:
                return stream_principal(auth, token, camera_id)
            except HTTPException:
                raise Denied(401, CHALLENGE) from None
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                _, _, key = base64.b64decode(value.strip(), validate=True).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise Denied(401, CHALLENGE) from None
            facts = auth.users.verify_api_key(key)
            if facts is not None:
                return Principal(f"key:{facts.name}", facts.role, facts.scope, "api_key", expires_us=facts.expires_us)
        raise Denied(401, CHALLENGE)


def install_restream(app: FastAPI, hubs: LiveHubs, bind: str) -> None:
    """Run an RTSP restream server on ``bind`` (host:port) for as long as the app runs."""
    host, _, port = bind.rpartition(":")
    previous = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        ctx: AppContext = a.state.ctx
        settings = ctx.settings
        access = RestreamAccess(ctx) if settings.rtsp_auth else None
        server: RtspServer | None = RtspServer(
            host, int(port), authorize=access, idle_timeout=settings.rtsp_idle_timeout_seconds,
            max_connections_per_client=settings.rtsp_max_connections_per_client,
            max_sessions_per_connection=settings.rtsp_max_sessions_per_connection)
        if access is not None:
            access.server = server
        assert server is not None
        serve_hubs(server, hubs)
        try:
            await server.start()
        except OSError as exc:
            # Recording and the API matter more than the restream: run without it.
            log.error("RTSP restream not started on %s: %s; set rtsp_bind to a free host:port", bind, exc)
            server = None
        a.state.rtsp_server = server
        try:
            async with previous(a) as state:
                yield state
        finally:
            if server is not None:
                await server.close()

    app.router.lifespan_context = lifespan
