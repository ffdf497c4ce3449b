"""The web console: static ES modules from ``streams/console/web`` served at ``/`` and ``/web/...``.

There is no build step: the browser loads ``index.html`` and the ES modules as they are
in the package (``pyproject.toml`` ships ``streams/console/web/**``). The routes are plain
``APIRoute``s declared ``public()`` (the console's code is not secret; every API call it
makes carries the signed-in user's token), so the auth route walk sees them like any other.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, HTTPException
from fastapi.responses import FileResponse

from streams.access.guard import public

WEB_DIR = Path(__file__).resolve().parent / "web"

# The console is small and changes with each release: let browsers revalidate every load.
_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".html": "text/html; charset=utf-8", ".png": "image/png", ".svg": "image/svg+xml"}

router = APIRouter(include_in_schema=False)


def _file(relative: str) -> FileResponse:
    path = (WEB_DIR / relative).resolve()
    if not path.is_relative_to(WEB_DIR) or not path.is_file():
        raise HTTPException(404, detail=f"no console file {relative!r}")
    return FileResponse(path, media_type=_TYPES.get(path.suffix, "application/octet-stream"), headers=_HEADERS)


@router.get("/", dependencies=[public()])
def console_index() -> FileResponse:
    """The console's single page; it routes by the URL fragment (``#/wall``, ``#/playback``, ...)."""
    return _file("index.html")


@router.get("/web/{path:path}", dependencies=[public()])
def console_file(path: str) -> FileResponse:
    """One of the console's modules, styles or string catalogues."""
    return _file(path)


def install_console(app: FastAPI) -> None:
    """Mount the console's routes (call once from ``create_app``)."""
    app.include_router(router)
