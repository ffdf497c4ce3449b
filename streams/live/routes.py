"""Mounts the live-view routes (WHEP, MSE, LL-HLS, stream index) and ties the live hubs to the app's loop.

``install_live(app, ctx)`` is the one call ``create_app`` makes. At start-up it binds the
process's ``LiveHubs`` (``ctx.supervisor.live``) to the app's event loop, so hubs keep
their GOP cache from then on and a first viewer starts at once; at shutdown it ends
every WebRTC session.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator

from fastapi import FastAPI

from streams.live import catalog as live_index
from streams.live import hls as live_hls
from streams.live import mse as live_mse
from streams.live import webrtc as live_webrtc
from streams.context import AppContext


def install_live(app: FastAPI, ctx: AppContext) -> None:
    live_webrtc.use_host_addresses(ctx.settings.webrtc_host_addresses)
    previous = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        hubs = getattr(ctx.supervisor, "live", None)
        if hubs is not None:
            hubs.bind_loop(asyncio.get_running_loop())
        async with previous(a) as state:
            yield state
        if hubs is not None:
            hubs.bind_loop(None)  # sessions outlive the loop while the supervisor stops
        await live_webrtc.close_all(ctx.live)
        live_hls.close_all(ctx.live)
        live_mse.close_all(ctx.live)

    app.router.lifespan_context = lifespan
    app.include_router(live_webrtc.router)
    app.include_router(live_mse.router)
    app.include_router(live_hls.router)
    app.include_router(live_index.router)
