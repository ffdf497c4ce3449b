"""``LiveSessions``: every live view this process serves, re-authorized every second.

A live view (a WHEP peer connection, an MSE WebSocket, an RTSP restream session) outlives
the request that opened it, so the per-request checks of ``streams.access.guard`` do not
reach it. Each view registers here; ``sweep`` re-reads its user and ends the view when:

- the user is disabled, their password changed or their role or scope changed (a token
  issued before ``tokens_valid_after_us``), or the scope no longer covers the camera;
- the sign-in session was signed out;
- its credential expired and was not renewed (``renew``);
- (WHEP) the peer never connected within ``connect_timeout_s``.

Views of the same user share one user-row read per sweep. Per-user caps (``max_per_user``)
keep one account from holding every viewer slot of a camera. The sweep reads the database
in a worker thread, so the event loop that carries the video never waits on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from config.times import now_us

if TYPE_CHECKING:
    from storage.index.registry import Registry
    from streams.access.sessions import SignInSessions
    from streams.access.users import UserStore

log = logging.getLogger(__name__)

Stop = Callable[[str], "Awaitable[None] | None"]


@dataclass(eq=False)
class LiveView:
    """One live view: who, which camera, how, and how to end it (``stop(reason)``, on the loop)."""

    user: str
    camera_id: str
    kind: str
    stop: Stop
    issued_us: int
    expires_us: int | None = None
    session: str | None = None
    connected: bool = True
    started: float = field(default_factory=time.monotonic)
    id: str = field(default_factory=lambda: secrets.token_hex(8))
    ended: bool = False


class TooManyViews(Exception):
    """The user already holds ``max_per_user`` live views."""


class LiveSessions:
    """The registry of live views and the sweep that ends those whose user lost the right."""

    def __init__(self, *, max_per_user: int = 32, connect_timeout_s: float = 30.0, sweep_s: float = 1.0,
                 clock: Callable[[], int] = now_us) -> None:
        self.max_per_user = max_per_user
        self.connect_timeout_s = connect_timeout_s
        self.sweep_s = sweep_s
        self._clock = clock
        self._views: dict[str, LiveView] = {}
        self._users: UserStore | None = None
        self._registry: Registry | None = None
        self._sessions: SignInSessions | None = None
        # One sweep per event loop the app runs on (a test client may run a second lifespan).
        self._tasks: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}

    def bind(self, users: UserStore, registry: Registry | None = None,
             sessions: SignInSessions | None = None) -> None:
        self._users = users
        self._registry = registry or self._registry
        self._sessions = sessions or self._sessions

    def views(self, user: str | None = None) -> list[LiveView]:
        return [v for v in self._views.values() if user is None or v.user == user]

    def add(self, view: LiveView) -> LiveView:
        """Register a view; ``TooManyViews`` when its user is at the cap (API keys have no cap)."""
        if not view.user.startswith("key:") and len(self.views(view.user)) >= self.max_per_user:
            raise TooManyViews(view.user)
        self._views[view.id] = view
        return view

    def remove(self, view: LiveView) -> None:
        self._views.pop(view.id, None)

    def renew(self, view: LiveView, expires_us: int | None) -> None:
        """A fresh credential for the view: it may run until ``expires_us``."""
        view.expires_us = expires_us

    # -- the sweep ---------------------------------------------------------------

    def start(self) -> None:
        """Run the sweep on the running loop until ``close``."""
        loop = asyncio.get_running_loop()
        if loop not in self._tasks:
            self._tasks[loop] = loop.create_task(self._run(), name="live-sessions-sweep")

    async def close(self) -> None:
        task = self._tasks.pop(asyncio.get_running_loop(), None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_s)
            try:
                await self.sweep()
            except Exception:  # noqa: BLE001 - a database hiccup must not end the sweeping
                log.exception("live session sweep failed; trying again in %.0f s", self.sweep_s)

    async def sweep(self) -> int:
        """End every view that may not go on; returns how many were ended."""
        views = list(self._views.values())
        if not views:
            return 0
        verdicts = await asyncio.to_thread(self._verdicts, views)
        for view, reason in verdicts:
            await self.end(view, reason)
        return len(verdicts)

    async def end_user(self, user: str, reason: str) -> int:
        """End every view of ``user`` now (disable, passwd, scope change on this node)."""
        views = self.views(user)
        for view in views:
            await self.end(view, reason)
        return len(views)

    async def end(self, view: LiveView, reason: str) -> None:
        if view.ended:
            return
        view.ended = True
        self.remove(view)
        try:
            result = view.stop(reason)
            if inspect.isawaitable(result):
                await result
        except Exception:  # noqa: BLE001 - one view failing to stop must not keep the others
            log.exception("could not end live view %s of %s on camera %s", view.kind, view.user, view.camera_id)

    def _verdicts(self, views: list[LiveView]) -> list[tuple[LiveView, str]]:
        now = self._clock()
        mono = time.monotonic()
        users: dict[str, Any] = {}
        out = []
        for view in views:
            reason = self._verdict(view, now, mono, users)
            if reason is not None:
                out.append((view, reason))
        return out

    def _verdict(self, view: LiveView, now: int, mono: float, users: dict[str, Any]) -> str | None:
        if not view.connected and mono - view.started > self.connect_timeout_s:
            return f"not connected within {self.connect_timeout_s:.0f} s"
        if view.expires_us is not None and now >= view.expires_us:
            return "credential expired (not renewed)"
        if self._users is None or view.user.startswith("key:"):
            return None
        if view.user not in users:
            users[view.user] = self._users.get(view.user)
        user = users[view.user]
        if user is None or user.disabled:
            return "user disabled"
        if view.issued_us < user.tokens_valid_after_us:
            return "user's rights changed (password, role or scope): sign in again"
        if view.session is not None and self._sessions is not None and not self._sessions.active(view.session):
            return "signed out"
        if self._registry is not None and "*" not in user.scope and user.role != "admin":
            camera = self._registry.camera(view.camera_id)
            codes: set[str] = set()
            for code in user.scope:
                codes |= self._registry.region_subtree(code)
            if camera is None or camera.region not in codes:
                return "camera no longer in the user's scope"
        return None
