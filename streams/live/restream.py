"""The RTSP restream: every ingested camera at ``rtsp://HOST:PORT/{camera_id}`` and ``/{camera_id}/sub``.

Other platforms and players pull through the aggregator instead of from the village: the
project's own ``RtspServer`` serves each ``LiveHub`` (a hub is an ``AccessUnitSource``),
so one camera pull feeds any number of RTSP clients. The server runs on the app's event
loop, the loop the hubs publish on; ``install_restream`` starts it with the app.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, AsyncIterator

from fastapi import FastAPI

from ingest.live.hub import LiveHub, LiveHubs
from streams.rtsp.server import RtspServer

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


def install_restream(app: FastAPI, hubs: LiveHubs, bind: str) -> None:
    """Run an RTSP restream server on ``bind`` (host:port) for as long as the app runs."""
    host, _, port = bind.rpartition(":")
    previous = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        server: RtspServer | None = RtspServer(host, int(port))
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
