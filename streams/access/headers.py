"""``SecurityHeaders``: what every answer tells the browser about framing, scripts and referrers.

- ``Content-Security-Policy``: the console's own scripts, styles and API only (``'self'``);
  pictures and video from ``blob:``/``data:`` (MSE, JPEG tiles); WebSockets to this host;
  ``frame-ancestors 'none'`` so no other site can frame the console (clickjacking).
  ``/docs`` (Swagger UI) also loads its scripts and styles from its CDN.
- ``X-Frame-Options: DENY`` for browsers older than ``frame-ancestors``.
- ``Referrer-Policy: no-referrer``: stream tokens travel in URLs and must not leak in a Referer.
- ``X-Content-Type-Options: nosniff``.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

CONSOLE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
               "img-src 'self' blob: data:; media-src 'self' blob:; connect-src 'self' ws: wss:; "
               "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
DOCS_CDN = "https://cdn.jsdelivr.net"
DOCS_CSP = (f"default-src 'self'; script-src 'self' 'unsafe-inline' {DOCS_CDN}; style-src 'self' {DOCS_CDN}; "
            "img-src 'self' data: https://fastapi.tiangolo.com; connect-src 'self'; object-src 'none'; "
            "base-uri 'none'; frame-ancestors 'none'")

Message = dict[str, Any]


class SecurityHeaders:
    """ASGI middleware adding the headers above to every HTTP answer that does not set them."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = DOCS_CSP if scope["path"] == "/docs" else CONSOLE_CSP

        async def add(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                for name, value in ((b"content-security-policy", csp.encode()), (b"x-frame-options", b"DENY"),
                                    (b"referrer-policy", b"no-referrer"), (b"x-content-type-options", b"nosniff")):
                    if name not in present:
                        headers.append((name, value))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, add)
