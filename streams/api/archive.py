"""The archive over HTTP: timeline, clip.mp4 (with Range), HLS VOD and snapshots.

Times in: ISO 8601 with an offset, or epoch milliseconds (``config.times``). Times
out: UTC (ISO with Z and epoch ms) plus the display zone's offset. Video answers
(clip, vod, snapshot) are audited; the timeline is not video and is not.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Iterator, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response, StreamingResponse

from config.settings import Settings
from config.times import display_offset, iso_utc
from storage.archive.clips import (
    ClipPlan,
    EncodingChanged,
    NoRecordings,
    SegmentCorrupt,
    SegmentMissing,
    clip_file_name,
    plan_clip,
)
from storage.archive.timeline import CONTIGUOUS_US, ClipGap, Timeline, timeline
from streams.access.guard import Principal, allow, audit, audit_viewing
from streams.api.params import time_param, time_range
from streams.context import AppContext
from ingest.media.archive_frame import snapshot_jpeg

router = APIRouter()

Stream = Literal["main", "sub"]


def _ctx(request: Request) -> AppContext:
    return request.app.state.ctx  # type: ignore[no-any-return]


# -- shared answers (the CLI prints the same) -----------------------------------------


def parse_range(start: str, end: str, max_seconds: float | None = None) -> tuple[int, int]:
    """``(start_us, end_us)`` from query strings; ``HTTPException(422)`` saying what to send."""
    return time_range(start, end, max_seconds, too_long="clip.mp4 serves at most clip_max_seconds; ask for a "
                      "shorter range or use an export job (POST /api/exports)")


def gap_view(g: ClipGap) -> dict[str, Any]:
    return {"start": iso_utc(g.start_us), "start_ms": g.start_us // 1000, "end": iso_utc(g.end_us),
            "end_ms": g.end_us // 1000, "duration_ms": (g.end_us - g.start_us) // 1000,
            "reason": g.reason, "detail": g.detail}


def timeline_view(tl: Timeline, settings: Settings) -> dict[str, Any]:
    """A timeline as the API answers it (and ``sharpeyes recordings`` prints it)."""
    return {
        "camera": tl.camera_id,
        "stream": tl.stream,
        "start": iso_utc(tl.start_us), "start_ms": tl.start_us // 1000,
        "end": iso_utc(tl.end_us), "end_ms": tl.end_us // 1000,
        "display_timezone": settings.display_timezone,
        "display_offset": display_offset(settings.display_timezone, tl.start_us),
        "runs": [
            {"start": iso_utc(r.start_us), "start_ms": r.start_us // 1000, "end": iso_utc(r.end_us),
             "end_ms": r.end_us // 1000, "duration_ms": (r.end_us - r.start_us) // 1000,
             "segments": r.segments, "bytes": r.bytes}
            for r in tl.runs
        ],
        "gaps": [gap_view(g) for g in tl.gaps],
    }


def plan_or_http(ctx: AppContext, camera_id: str, stream: str, start_us: int, end_us: int,
                 allow_gaps: bool = False) -> ClipPlan:
    """``plan_clip`` (through the app's ``PlanCache``) with its refusals as HTTP errors
    (404 with the gaps, 409)."""
    cache = ctx.clip_plans
    try:
        return cache.get((camera_id, stream, start_us, end_us, allow_gaps), lambda: plan_clip(
            ctx.index, camera_id, stream, start_us, end_us, store=ctx.store, allow_gaps=allow_gaps))
    except NoRecordings as exc:
        raise HTTPException(404, {"message": str(exc), "gaps": [gap_view(g) for g in exc.gaps]}) from None
    except (EncodingChanged, SegmentMissing, SegmentCorrupt) as exc:
        raise HTTPException(409, str(exc)) from None


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``[first, end)`` of a single-range ``Range`` header; None for no header.
    ``HTTPException(416)`` if it cannot be satisfied (multiple ranges are not served)."""
    if not header:
        return None
    m = _RANGE.match(header.strip())
    unsatisfiable = HTTPException(416, f"range {header!r} is outside the clip of {size} bytes",
                                  headers={"Content-Range": f"bytes */{size}"})
    if not m or (not m.group(1) and not m.group(2)):
        raise unsatisfiable
    if not m.group(1):  # suffix: the last N bytes
        n = int(m.group(2))
        if n == 0:
            raise unsatisfiable
        return max(0, size - n), size
    first = int(m.group(1))
    last = int(m.group(2)) if m.group(2) else size - 1
    if first >= size or last < first:
        raise unsatisfiable
    return first, min(last, size - 1) + 1


# -- routes ------------------------------------------------------------------------


@router.get("/api/cameras/{id}/recordings")
def recordings(id: str, request: Request, start: str, end: str, stream: Stream = "main",
               principal: Principal = allow("investigator")) -> dict[str, Any]:
    """Runs (contiguous recorded spans) and gaps (with reasons) of one camera stream."""
    ctx = _ctx(request)
    s, e = parse_range(start, end)
    return timeline_view(timeline(ctx.index, id, stream, s, e), ctx.settings)


def _token_query(request: Request) -> dict[str, str]:
    token = request.query_params.get("token")
    return {"token": token} if token else {}


@router.get("/api/cameras/{id}/clip.mp4")
def clip_mp4(id: str, request: Request, start: str, end: str, stream: Stream = "main", allow_gaps: bool = False,
             principal: Principal = allow("investigator", query_token=True)) -> Response:
    """One MP4 of ``[start, end)``, streamed as it is fetched; Range on the built file."""
    ctx = _ctx(request)
    s, e = parse_range(start, end, ctx.settings.clip_max_seconds)
    plan = plan_or_http(ctx, id, stream, s, e, allow_gaps)
    size = plan.size
    rng = byte_range(request.headers.get("range"), size)
    first, stop = rng if rng is not None else (0, size)
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Length": str(stop - first),
        "Content-Disposition": f'attachment; filename="{clip_file_name(id, s, e)}"',
        "X-Sharpeyes-Start": iso_utc(plan.first_us),
        "X-Sharpeyes-End": iso_utc(plan.last_us),
        "X-Sharpeyes-Gaps": json.dumps([{"start": iso_utc(g.start_us), "end": iso_utc(g.end_us), "reason": g.reason}
                                        for g in plan.gaps], separators=(",", ":")),
    }
    if rng is not None:
        headers["Content-Range"] = f"bytes {first}-{stop - 1}/{size}"
    # A player fetching byte ranges of the clip (HLS VOD, seeking) is one viewing: its first
    # request writes the row, whatever byte it starts at; the ranges that follow write none.
    audit_viewing(request, "playback", ("clip", stream, plan.first_us, plan.last_us), camera_id=id,
                  start_us=plan.first_us, end_us=plan.last_us,
                  detail=f"clip.mp4 {stream}" + (" allow_gaps" if allow_gaps else "") + (" range" if rng else ""))

    def body() -> Iterator[bytes]:
        yield from plan.iter_bytes(ctx.store, first, stop)

    return StreamingResponse(body(), status_code=206 if rng is not None else 200, media_type="video/mp4",
                             headers=headers)


@router.get("/api/cameras/{id}/vod.m3u8")
def vod_m3u8(id: str, request: Request, start: str, end: str, stream: Stream = "main",
             principal: Principal = allow("investigator", query_token=True)) -> Response:
    """HLS VOD (version 7, fMP4): the clip's header as EXT-X-MAP, one byte range of
    clip.mp4 per fragment (GOP). A gap inside the range is an EXT-X-DISCONTINUITY."""
    ctx = _ctx(request)
    s, e = parse_range(start, end, ctx.settings.clip_max_seconds)
    found = plan_or_http(ctx, id, stream, s, e)
    # Pin the clip to what exists now (whole ms), and lay the playlist out from exactly
    # the plan clip.mp4 will make for those parameters, so every byte range matches.
    query = {"start": str(found.first_us // 1000), "end": str(-(-found.last_us // 1000)), "stream": stream}
    plan = plan_or_http(ctx, id, stream, int(query["start"]) * 1000, int(query["end"]) * 1000)
    uri = "clip.mp4?" + urlencode({**query, **_token_query(request)})
    durations = [max(0, min(f.end_us, plan.last_us) - max(f.start_us, plan.first_us)) / 1e6 for f in plan.fragments]
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:7",
        f"#EXT-X-TARGETDURATION:{max(1, math.ceil(max(durations, default=1)))}",
        "#EXT-X-PLAYLIST-TYPE:VOD",
        "#EXT-X-INDEPENDENT-SEGMENTS",
        f'#EXT-X-MAP:URI="{uri}",BYTERANGE="{len(plan.header)}@0"',
    ]
    prev_end = None
    for frag, dur in zip(plan.fragments, durations):
        if prev_end is not None and frag.start_us - prev_end > CONTIGUOUS_US:
            lines.append("#EXT-X-DISCONTINUITY")
        lines += [f"#EXTINF:{dur:.3f},", f"#EXT-X-BYTERANGE:{frag.size}@{frag.clip_offset}", uri]
        prev_end = frag.end_us
    lines.append("#EXT-X-ENDLIST")
    audit(request, "playback", camera_id=id, start_us=plan.first_us, end_us=plan.last_us, detail=f"vod.m3u8 {stream}")
    return Response("\n".join(lines) + "\n", media_type="application/vnd.apple.mpegurl",
                    headers={"Cache-Control": "no-store"})


@router.get("/api/cameras/{id}/snapshot.jpg")
def snapshot(id: str, request: Request, at: str, width: int | None = Query(None, ge=16, le=7680),
             stream: Stream = "main", principal: Principal = allow("investigator", query_token=True)) -> Response:
    """The frame on screen at ``at`` as JPEG, optionally scaled to ``width`` (aspect kept)."""
    ctx = _ctx(request)
    t = time_param(at, "at")
    plan = plan_or_http(ctx, id, stream, t, t + 1)
    try:
        shot = snapshot_jpeg(plan, ctx.store, width)
    except (SegmentMissing, SegmentCorrupt) as exc:
        raise HTTPException(409, str(exc)) from None
    audit(request, "snapshot", camera_id=id, start_us=t, end_us=t, detail=f"{stream} width={shot.width}")
    return Response(shot.jpeg, media_type="image/jpeg",
                    headers={"X-Sharpeyes-Frame-Time": iso_utc(shot.t_us), "Cache-Control": "no-store"})
