"""``BodyGate``: authenticate, then read at most the route's cap, before any request body is parsed.

FastAPI reads and parses a JSON body before it runs a route's dependencies, so without this
an anonymous client could make every API node (and every recording worker: they serve the
same app) buffer a body of any size before hearing 401. The gate runs first:

1. It finds the route and its rule (``streams.access.guard.Rule``); a body larger than the
   rule's ``max_body`` (by ``Content-Length``) is refused with 413 before a byte is read.
2. For a route that is not public, a request with a body must carry a valid
   ``Authorization: Bearer`` credential, checked here (401) before the body is read.
3. The body is then counted as it streams in (chunked uploads have no length): past the
   cap the request ends with 413.

Unknown paths get the default cap. Bodies on routes that read none (GET, DELETE) are capped too.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any, Awaitable, Callable

from fastapi import FastAPI, HTTPException
from starlette.requests import HTTPConnection
from starlette.routing import compile_path

from streams.access.guard import Rule, authenticate_bearer, route_rule, walk_routes

DEFAULT_MAX_BODY = 64 * 1024

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, detail=f"the request body is larger than this route takes ({limit} bytes)")


class BodyGate:
    """ASGI middleware; ``app.add_middleware(BodyGate, fastapi_app=app)``."""

    def __init__(self, app: Any, fastapi_app: FastAPI) -> None:
        self.app = app
        self._fastapi = fastapi_app
        self._table: list[tuple[re.Pattern[str], set[str], Rule | None]] | None = None

    def _rules(self) -> list[tuple[re.Pattern[str], set[str], Rule | None]]:
        if self._table is None:
            table = []
            for route in walk_routes(self._fastapi):
                path = getattr(route, "path", None)
                if not path:
                    continue
                regex = compile_path(path)[0]
                table.append((regex, set(getattr(route, "methods", None) or ()), route_rule(route)))
            self._table = table
        return self._table

    def rule_for(self, method: str, path: str) -> Rule | None:
        for regex, methods, rule in self._rules():
            if (not methods or method in methods) and regex.match(path):
                return rule
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        length_header = headers.get(b"content-length")
        chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        if length_header is None and not chunked:
            await self.app(scope, receive, send)  # no body
            return
        rule = self.rule_for(scope["method"], scope["path"])
        limit = rule.max_body if rule is not None else DEFAULT_MAX_BODY
        try:
            length = int(length_header) if length_header is not None else None
        except ValueError:
            await _answer(send, 400, "Content-Length is not a number")
            return
        if length is not None and length > limit:
            await _answer(send, 413, str(BodyTooLarge(limit).detail), close=True)
            return
        if length != 0 and rule is not None and rule.role != "public":
            try:
                # The API-key check reads the database: keep it off the event loop.
                principal = await asyncio.to_thread(authenticate_bearer, HTTPConnection(scope))
                if principal is None:
                    raise HTTPException(401, detail="sign in first: send Authorization: Bearer <token> "
                                                    "(POST /api/auth/token) with the request")
            except HTTPException as exc:
                await _answer(send, exc.status_code, str(exc.detail), close=True,
                              extra=[(b"www-authenticate", b"Bearer")])
                return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, watch)
        except BodyTooLarge as exc:
            if not started:
                await _answer(send, 413, str(exc.detail), close=True)


async def _answer(send: Send, status: int, detail: str, *, close: bool = False,
                  extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        # The client may still be sending the body we will not read: close after answering.
        headers.append((b"connection", b"close"))
    headers += extra or []
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
