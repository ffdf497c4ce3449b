"""Finding a camera stream's live hub for a viewer, with the errors every live route shares.

WHEP, MSE and the stream index all ask the same questions (does this node hold the camera?
is it online? may one more viewer join? can a browser play its codec?) and must answer
them the same way, so the answers live here.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import HTTPException
from starlette.requests import HTTPConnection

from config.cameras import Camera
from ingest.live.hub import LiveHub, LiveHubs
from streams.context import AppContext

StreamParam = Literal["main", "sub"]


def live_hubs(conn: HTTPConnection) -> LiveHubs | None:
    """This process's hubs, or None on a node that does not ingest."""
    ctx: AppContext = conn.app.state.ctx
    supervisor = ctx.supervisor
    return getattr(supervisor, "live", None)


def hub_for_viewer(conn: HTTPConnection, camera: Camera, stream: str, *, browser_codec: bool = True,
                   webrtc: bool = False) -> LiveHub:
    """The hub a new viewer joins, or the HTTPException that says why not (503, 404, 409, 429).

    ``webrtc``: the viewer decodes RTP in a browser, which cannot take B-frames (409 then)."""
    ctx: AppContext = conn.app.state.ctx
    hubs = live_hubs(conn)
    if hubs is None:
        raise HTTPException(503, detail=f"camera {camera.id}: this node does not ingest cameras; "
                                        "ask the worker named in GET /api/streams")
    if not camera.has_stream(stream):  # type: ignore[arg-type]
        raise HTTPException(404, detail=f"camera {camera.id} has no {stream} stream; use stream=main")
    if hubs.loop is None:
        # An app run without its lifespan (tests with a bare ASGI client): bind on first use.
        hubs.bind_loop(asyncio.get_running_loop())
    hub = hubs.get(camera.id, stream)
    if hub is None or not hub.online or hub.params is None:
        session = hub.session if hub is not None else None
        state = session.status.state if session is not None else ("disabled" if not camera.enabled else "not_started")
        error = session.status.last_error if session is not None else None
        raise HTTPException(503, detail={
            "message": f"camera {camera.id} ({stream}) is not delivering video now; try again when it is online",
            "camera_id": camera.id, "stream": stream, "state": state, "last_error": error,
        })
    if browser_codec and hub.params.codec != "h264":
        raise HTTPException(409, detail=(
            f"camera {camera.id} ({stream}) sends {hub.params.codec.upper()}, which browsers cannot play live; "
            "set the camera's transcode profile to live-h264 (or use stream=sub if it is H.264), "
            "or watch rtsp:// with a player that decodes H.265"))
    if webrtc and hub.b_frames:
        raise HTTPException(409, detail=(
            f"camera {camera.id} ({stream}) sends B-frames, which browsers' WebRTC decoders cannot play "
            "(RTP carries no decode times); set the camera's transcode profile to live-h264 (re-encoded "
            "without B-frames), or watch it over MSE (live.mp4), LL-HLS (live.m3u8) or rtsp://"))
    limit = ctx.settings.live_max_viewers
    if hub.viewer_count >= limit:
        raise HTTPException(429, detail=f"camera {camera.id} ({stream}) already has {hub.viewer_count} live viewers, "
                                        f"the limit (live_max_viewers={limit}); try again later",
                            headers={"Retry-After": "10"})
    return hub
