"""``GET /api/streams[?region=]``: every camera the caller may see, with its live URLs and state."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request

from config.cameras import STREAMS
from streams.access.guard import Principal, allow
from streams.live.viewers import live_hubs

router = APIRouter()


@router.get("/api/streams")
def stream_index(
    request: Request,
    region: str | None = Query(None, description="only cameras in this region or its sub-regions"),
    principal: Principal = allow("viewer", camera_param=None),
) -> list[dict[str, Any]]:
    """Per visible camera and stream: WHEP, MSE, HLS and RTSP URLs; status, codec, size, fps, viewers, worker."""
    ctx = request.app.state.ctx
    registry = ctx.registry
    cameras = principal.visible_cameras(registry)
    if region is not None:
        if region not in {r.code for r in principal.visible_regions(registry)}:
            raise HTTPException(404, detail=f"region {region} is not registered")
        subtree = registry.region_subtree(region)
        cameras = [c for c in cameras if c.region in subtree]
    hubs = live_hubs(request)
    base = str(request.base_url).rstrip("/")
    ws_base = base.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
    rtsp_host = request.url.hostname or "127.0.0.1"
    rtsp_port = ctx.settings.rtsp_bind.rpartition(":")[2]
    out = []
    for cam in cameras:
        for stream in STREAMS:
            if not cam.has_stream(stream):
                continue
            hub = hubs.get(cam.id, stream) if hubs is not None else None
            session = hub.session if hub is not None else None
            status = session.status if session is not None else None
            params = hub.params if hub is not None else None
            q = f"?stream={stream}"
            out.append({
                "camera_id": cam.id,
                "name": cam.name,
                "region": cam.region,
                "stream": stream,
                "urls": {
                    "whep": f"{base}/api/cameras/{cam.id}/whep{q}",
                    "mse": f"{ws_base}/api/cameras/{cam.id}/live.mp4{q}",
                    "hls": f"{base}/api/cameras/{cam.id}/live.m3u8{q}",
                    "rtsp": f"rtsp://{rtsp_host}:{rtsp_port}/{cam.id}" + ("/sub" if stream == "sub" else ""),
                },
                "status": (
                    status.state if status is not None
                    else ("disabled" if not cam.enabled else "not_ingested_here")
                ),
                "online": bool(hub is not None and hub.online),
                "last_error": status.last_error if status is not None else None,
                "codec": params.codec if params is not None else None,
                # B-frames: WHEP answers 409 unless the live-h264 profile feeds this hub.
                "b_frames": bool(hub is not None and hub.b_frames),
                "width": params.width if params is not None else None,
                "height": params.height if params is not None else None,
                "fps": round(status.fps, 2) if status is not None and status.fps else (params.fps if params else None),
                "viewers": hub.viewer_count if hub is not None else 0,
                "worker_id": ctx.settings.worker_id if hub is not None else None,
            })
    return out

