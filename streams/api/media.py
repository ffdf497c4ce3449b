"""Snapshots, timeline thumbnails, motion search and motion settings over HTTP.

Times in query parameters follow ``config.times``: ISO 8601 with an offset, or epoch milliseconds.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, HTTPException, Request, Response
from pydantic import ValidationError

from config.motion import MotionSettings
from ingest.media.jpeg import resize_jpeg
from storage.index.media import MediaIndex
from streams.access.guard import Principal, allow, audit, audit_viewing
from streams.api.params import time_range
from streams.context import AppContext

router = APIRouter()

MAX_RANGE_US = 31 * 86400 * 1_000_000


def _ctx(request: Request) -> AppContext:
    return request.app.state.ctx  # type: ignore[no-any-return]


def media_index(ctx: AppContext) -> MediaIndex:
    """The process's ``MediaIndex``."""
    return ctx.media_index


def _range(start: str, end: str) -> tuple[int, int]:
    return time_range(start, end, MAX_RANGE_US / 1_000_000, too_long="ask for 31 days or less")


@router.get("/api/cameras/{id}/latest.jpg")
def latest_jpeg(id: str, request: Request, width: int | None = None,
                principal: Principal = allow("viewer")) -> Response:
    """The camera's latest keyframe as JPEG (sub-stream preferred); ``width`` scales it down.
    503 with the reason (and Retry-After) while there is no picture yet."""
    pipelines = _ctx(request).media
    snap = pipelines.snapshots.latest(id) if pipelines is not None else None
    if snap is None:
        reason = ("this process does not record cameras (no ingest here)" if pipelines is None
                  else f"camera {id}: no picture yet: the camera has not sent a keyframe since recording started; "
                       "check its status")
        # Not 404: that answer is reserved for unknown/out-of-scope cameras (streams.access.guard).
        raise HTTPException(503, reason, headers={"Retry-After": "2"})
    body = snap.jpeg
    if width is not None:
        if not 16 <= width <= 4096:
            raise HTTPException(422, "width must be 16..4096")
        body = resize_jpeg(body, width)
    # A wall polling a tile's picture is one viewing per camera, not one row per poll.
    audit_viewing(request, "snapshot", ("latest.jpg",), start_us=snap.t_us, end_us=snap.t_us,
                  detail=f"latest.jpg {snap.stream}")
    return Response(body, media_type="image/jpeg",
                    headers={"Cache-Control": "no-store", "X-Snapshot-Time-Us": str(snap.t_us),
                             "X-Snapshot-Stream": snap.stream})


@router.get("/api/cameras/{id}/thumbnails")
def thumbnails(id: str, request: Request, start: str, end: str,
               principal: Principal = allow("investigator")) -> list[dict[str, Any]]:
    """Timeline thumbnails in ``[start, end)``: time, stream, size and URL of each."""
    s, e = _range(start, end)
    rows = media_index(_ctx(request)).thumbnail_times(id, s, e)
    return [{"t_us": t, "stream": stream, "width": w, "height": h, "url": f"/api/cameras/{id}/thumbnails/{t}.jpg"}
            for stream, t, w, h in rows]


@router.get("/api/cameras/{id}/thumbnails/{t}.jpg")
def thumbnail(id: str, t: int, request: Request, principal: Principal = allow("investigator")) -> Response:
    """The thumbnail nearest ``t`` (µs), within one thumbnail interval; 204 when there is none."""
    ctx = _ctx(request)
    tolerance = int(ctx.settings.thumbnail_interval_seconds * 1_000_000)
    thumb = media_index(ctx).thumbnail_near(id, t, tolerance)
    if thumb is None:
        # 204, not 404: 404 means an unknown camera (streams.access.guard).
        return Response(status_code=204, headers={
            "X-Reason": f"camera {id}: no thumbnail within {tolerance // 1_000_000} s of {t}"})
    # The thumbnails of one scrubber are one viewing of the camera.
    audit_viewing(request, "snapshot", ("thumbnails",), start_us=thumb.t_us, end_us=thumb.t_us, detail="thumbnail")
    return Response(thumb.jpeg, media_type="image/jpeg", headers={"X-Thumbnail-Time-Us": str(thumb.t_us)})


@router.get("/api/cameras/{id}/motion")
def camera_motion(id: str, request: Request, start: str, end: str, min_level: int = 1,
                  principal: Principal = allow("investigator")) -> list[dict[str, Any]]:
    """Spans with motion (adjacent seconds merged) at or over ``min_level`` (1..255)."""
    s, e = _range(start, end)
    spans = media_index(_ctx(request)).motion_spans([id], s // 1_000_000, -(-e // 1_000_000), max(1, min_level))
    audit(request, "motion_search", camera_id=id, start_us=s, end_us=e)
    return [span.as_dict() for span in spans]


@router.get("/api/motion")
def region_motion(request: Request, start: str, end: str, region: str | None = None, min_level: int = 1,
                  principal: Principal = allow("investigator", camera_param=None)) -> list[dict[str, Any]]:
    """Spans with motion on every camera in scope (under ``region`` when given)."""
    ctx = _ctx(request)
    s, e = _range(start, end)
    cameras = principal.visible_cameras(ctx.registry)
    if region is not None:
        subtree = ctx.registry.region_subtree(region)
        cameras = [c for c in cameras if c.region in subtree]
    spans = media_index(ctx).motion_spans([c.id for c in cameras], s // 1_000_000, -(-e // 1_000_000),
                                          max(1, min_level))
    audit(request, "motion_search", start_us=s, end_us=e, detail=f"region={region or '*'}")
    return [span.as_dict() for span in spans]


@router.get("/api/cameras/{id}/motion-settings")
def get_motion_settings(id: str, request: Request, principal: Principal = allow("viewer")) -> dict[str, Any]:
    return media_index(_ctx(request)).motion_settings(id).model_dump()


@router.put("/api/cameras/{id}/motion-settings")
def put_motion_settings(id: str, request: Request, body: dict[str, Any] = Body(...),
                        principal: Principal = allow("operator")) -> dict[str, Any]:
    """Masks (polygons to ignore) and sensitivity; bad polygons are refused with the reason (422)."""
    try:
        settings = MotionSettings.model_validate(body)
    except ValidationError as exc:
        raise HTTPException(422, "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors())) from None
    media_index(_ctx(request)).set_motion_settings(id, settings)
    audit(request, "camera_edit", camera_id=id, detail="motion-settings")
    return settings.model_dump()
