"""The FastAPI application: one router per concern, all mounted here."""

from __future__ import annotations

from fastapi import FastAPI

from streams.context import AppContext


def create_app(ctx: AppContext) -> FastAPI:
    app = FastAPI(title="sharpeyes", version="0.1.0")
    app.state.ctx = ctx

    @app.get("/api/ping")
    def ping() -> dict[str, str]:
        return {"status": "ok"}

    return app
