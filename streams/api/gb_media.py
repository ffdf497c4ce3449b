"""``/api/cameras/{id}/device-records`` and ``/api/cameras/{id}/backfill``: a GB/T 28181 channel's
own recordings on its device (RecordInfo), and downloading them into our archive (s=Download).

Both need the SIP server, so they answer on the node that runs it (``sharpeyes run`` with
``GB_SIP_BIND``); elsewhere 503 says where to ask. Both are audited.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from config.cameras import Camera
from streams.access.guard import Principal, allow, audit
from streams.api.params import time_range
from streams.context import AppContext

router = APIRouter()

# A backfill request downloads at most this much at once (the device sends ~4x real time).
MAX_BACKFILL_SECONDS = 6 * 3600


def _gb_channel(request: Request, camera_id: str) -> tuple[AppContext, Any, Camera]:
    ctx: AppContext = request.app.state.ctx
    server = getattr(ctx, "gb", None)
    if server is None:
        raise HTTPException(421, "this node does not run the GB/T 28181 SIP server; ask the one started with "
                                 "GB_SIP_BIND (sharpeyes run)")
    camera = ctx.registry.camera(camera_id)
    if camera is None:
        raise HTTPException(404, f"camera {camera_id} not found")
    if camera.source != "gb28181" or not camera.gb_device_id:
        raise HTTPException(409, f"camera {camera_id} is not a GB/T 28181 channel: it has no device recordings")
    return ctx, server, camera


@router.get("/api/cameras/{id}/device-records")
def device_records(id: str, request: Request, start: str, end: str,
                   principal: Principal = allow("investigator")) -> dict[str, Any]:
    """What the channel's device has recorded in ``[start, end)`` (RecordInfo), SumNum-aggregated."""
    from ingest.gb28181.media.records import RecordInfoClient

    ctx, server, camera = _gb_channel(request, id)
    s, e = time_range(start, end)
    client = getattr(server, "record_info", None)
    if client is None:
        client = server.record_info = RecordInfoClient(server.service, ctx.settings.display_timezone)
    try:
        result = server.call(client.query(camera.gb_device_id or "", camera.id, s, e)).result(30)
    except Exception as exc:  # noqa: BLE001 - the device's failure is the answer
        audit(request, "gb_records", outcome="failed", camera_id=id, start_us=s, end_us=e, detail=str(exc)[:200])
        raise HTTPException(502, f"camera {id}: device {camera.gb_device_id} did not list its recordings: "
                                 f"{exc}") from exc
    audit(request, "gb_records", camera_id=id, start_us=s, end_us=e,
          detail=f"{len(result.items)} recording(s), complete={result.complete}")
    return result.as_dict()


@router.post("/api/cameras/{id}/backfill")
def backfill(id: str, request: Request, start: str, end: str,
             principal: Principal = allow("operator")) -> dict[str, Any]:
    """Download the device's recording of every gap of ``[start, end)`` into the archive (segments
    marked ``origin: device``). Answers when done, with what each gap gave."""
    from ingest.gb28181.media.backfill import DeviceBackfill
    from ingest.gb28181.media.session import media_link

    ctx, server, camera = _gb_channel(request, id)
    s, e = time_range(start, end, MAX_BACKFILL_SECONDS, too_long="ask for at most 6 hours at a time")
    sup = ctx.supervisor
    if sup is None:
        raise HTTPException(421, "this node does not record (no ingest): backfill runs where the SIP server records")
    job = DeviceBackfill(media_link(ctx.settings, server), camera, camera.gb_device_id or "", ctx.index, sup.spool,
                         on_closed=sup.uploader.notify, target_us=int(ctx.settings.segment_target_seconds * 1e6),
                         media_timeout=ctx.settings.stall_timeout_seconds,
                         connect_timeout=ctx.settings.connect_timeout_seconds, worker_id=ctx.settings.worker_id)
    report = job.run(s, e)
    failed = [p.error for p in report.parts if p.error]
    audit(request, "gb_backfill", outcome="failed" if failed and not report.segments else "ok", camera_id=id,
          start_us=s, end_us=e, detail=f"{report.segments} segment(s) from {len(report.parts)} gap(s)"
          + (f"; {failed[0][:150]}" if failed else ""))
    return report.as_dict()


@router.get("/api/cameras/{id}/device-playback.mp4")
def device_playback(id: str, request: Request, start: str, end: str,
                    principal: Principal = allow("investigator")) -> StreamingResponse:
    """The device's own recording of ``[start, end)`` (s=Playback), as fragmented MP4 streamed while
    the device sends it; for times we did not record. Audited as a playback from the device."""
    from ingest.gb28181.media.playback import DevicePlayback
    from ingest.gb28181.media.session import media_link

    ctx, server, camera = _gb_channel(request, id)
    s, e = time_range(start, end, ctx.settings.clip_max_seconds, too_long="ask for less (clip_max_seconds)")
    play = DevicePlayback(media_link(ctx.settings, server), camera.id, camera.gb_device_id or "",
                          media_timeout=ctx.settings.stall_timeout_seconds,
                          connect_timeout=ctx.settings.connect_timeout_seconds)
    chunks = play.mp4(s, e)
    try:
        first = next(chunks)  # the INVITE's answer and the first fragment, before we say 200
    except StopIteration:
        first = b""
    except Exception as exc:  # noqa: BLE001 - a refused INVITE is the answer
        audit(request, "playback", outcome="failed", camera_id=id, start_us=s, end_us=e,
              detail=f"from the device: {exc}"[:200])
        raise HTTPException(502, f"camera {id}: the device did not play back its recording: {exc}") from exc
    audit(request, "playback", camera_id=id, start_us=s, end_us=e, detail="from the device's own recording")

    def body():  # type: ignore[no-untyped-def]
        yield first
        yield from chunks

    return StreamingResponse(body(), media_type="video/mp4")


class PtzRequest(BaseModel):
    action: str = Field(description="stop, left, right, up, down, up_left, up_right, down_left, down_right, "
                                    "zoom_in, zoom_out")
    speed: int = Field(128, ge=0, le=255)


@router.post("/api/cameras/{id}/ptz")
def ptz(id: str, body: PtzRequest, request: Request, principal: Principal = allow("viewer")) -> dict[str, Any]:
    """Pan, tilt, zoom or stop a GB/T 28181 channel (DeviceControl PTZCmd); any role that may watch
    the camera may steer it, and every command is audited."""
    import itertools

    from ingest.gb28181.media.ptz import PTZ_ACTIONS, device_control_body, ptz_command

    ctx, server, camera = _gb_channel(request, id)
    if body.action not in PTZ_ACTIONS:
        raise HTTPException(422, f"PTZ action {body.action!r}: one of {', '.join(PTZ_ACTIONS)}")
    cmd = ptz_command(body.action, body.speed)
    counter = getattr(server, "ptz_sn", None)
    if counter is None:
        counter = server.ptz_sn = itertools.count(8_000_000)
    try:
        resp = server.call(server.service.message(camera.gb_device_id,
                                                  device_control_body(next(counter), camera.id, cmd))).result(15)
    except Exception as exc:  # noqa: BLE001 - the device's failure is the answer
        audit(request, "ptz", outcome="failed", camera_id=id, detail=f"{body.action} {body.speed}: {exc}"[:200])
        raise HTTPException(502, f"camera {id}: PTZ to device {camera.gb_device_id} failed: {exc}") from exc
    ok = resp.status < 300
    audit(request, "ptz", outcome="ok" if ok else "failed", camera_id=id,
          detail=f"{body.action} speed {body.speed} ({cmd}): device answered {resp.status}")
    if not ok:
        raise HTTPException(502, f"camera {id}: the device answered {resp.status} {resp.reason} to PTZ")
    return {"camera_id": id, "action": body.action, "speed": body.speed, "ptz_cmd": cmd}
