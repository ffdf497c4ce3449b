"""The FastAPI application: one router per concern, all mounted here."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from streams.api import archive as api_archive
from streams.api import exports as api_exports
from streams.api import gb_media as api_gb_media
from streams.api import fleet_health as api_health_console
from streams.api import gb as api_gb
from streams.api import holds as api_holds
from streams.api import media as api_media
from streams.api import registry as api_registry
from streams.access.bodygate import BodyGate
from streams.access.headers import SecurityHeaders
from streams.access.guard import public
from streams.access.routes import install_auth
from streams.console.routes import install_console
from streams.context import AppContext
from streams.api.metrics import install_metrics
from streams.live.routes import install_live


def create_app(ctx: AppContext) -> FastAPI:
    # The schema and the docs page are routes of ours (below), so they declare a rule like every other.
    app = FastAPI(title="sharpeyes", version="0.1.0", openapi_url=None, docs_url=None, redoc_url=None)
    app.state.ctx = ctx
    app.add_middleware(SecurityHeaders)

    if ctx.settings.tls_cert is not None:
        @app.middleware("http")
        async def hsts(request, call_next):  # type: ignore[no-untyped-def]
            # Served over HTTPS: browsers must never fall back to plain HTTP for this host.
            response = await call_next(request)
            response.headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
            return response

    # No CORS middleware on purpose: other origins cannot read the API from a browser.

    @app.exception_handler(OverflowError)
    async def number_out_of_range(request, exc):  # type: ignore[no-untyped-def]
        # An id or time past 64 bits reaches the database driver as OverflowError: the
        # caller's mistake (422), found by fuzzing, not a server error.
        return JSONResponse(status_code=422, content={"detail": "a number in the request is out of range"})

    @app.get("/api/ping", dependencies=[public()])
    def ping() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/openapi.json", dependencies=[public()], include_in_schema=False)
    def openapi() -> JSONResponse:
        """The API's shape (public: it holds no data, and clients generate code from it)."""
        return JSONResponse(app.openapi())

    @app.get("/docs", dependencies=[public()], include_in_schema=False)
    def docs() -> HTMLResponse:
        """Swagger UI over /openapi.json; its scripts come from a CDN, which its CSP names (SecurityHeaders)."""
        return get_swagger_ui_html(openapi_url="/openapi.json", title="sharpeyes API")

    # Every other route declares allow(...) or public(); see streams/access/guard.py.
    install_auth(app, ctx)
    app.include_router(api_registry.router)
    app.include_router(api_media.router)
    install_metrics(app, ctx)
    app.include_router(api_archive.router)
    app.include_router(api_holds.router)
    app.include_router(api_exports.router)
    app.include_router(api_gb_media.router)
    install_live(app, ctx)
    app.include_router(api_health_console.router)
    app.include_router(api_gb.router)
    install_console(app)
    # Outermost: a body is capped, and its sender authenticated, before anything reads it.
    app.add_middleware(BodyGate, fastapi_app=app)
    return app
