"""The registry over HTTP: regions, cameras (one or a CSV/YAML batch), probes and status.

Writes go through ``storage.index.registry`` (validated, all-or-nothing) and are
audited. Lists show only what the caller's region scope covers. Passwords in
camera URLs are never returned: every URL is redacted.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any, Literal

from fastapi import APIRouter, Body, HTTPException, Request
from pydantic import BaseModel, ValidationError

from config.cameras import Camera, Region
from config.fleet import FleetFileError, read_fleet_text
from config.redact import redact_url
from ingest.recording.probe import probe_url
from ingest.media.transcode import TranscodeError, check_profile
from storage.index.camera_status import CameraStatusTable
from config.times import now_us
from storage.index.registry import RegistryError
from streams.access.changes import NotInScope, OutOfScope
from streams.access.egress import EgressRefused, ProbeLimiter, check_probe_target
from streams.access.guard import Principal, actor, allow, audit, camera_not_found, changes
from streams.context import AppContext

router = APIRouter()


def _ctx(request: Request) -> AppContext:
    return request.app.state.ctx  # type: ignore[no-any-return]


def statuses(ctx: AppContext) -> dict[tuple[str, str], dict[str, Any]]:
    """Live status of every camera stream: from this process's supervisor when it
    records, else (API-only nodes) as the ingest workers last published it to the
    index; a status not refreshed for two lease TTLs is left out (its worker is gone)."""
    if ctx.supervisor is None:
        stale_us = int(2 * ctx.settings.lease_ttl_seconds * 1_000_000)
        return CameraStatusTable(ctx.index.engine).statuses(now_us=now_us(), stale_us=stale_us)
    return {(s.camera_id, s.stream): s.as_dict() for s in ctx.supervisor.statuses()}


def camera_view(camera: Camera, status: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    """A camera as the API shows it: URLs redacted, with the status of each stream."""
    out = camera.model_dump()
    out["main_url"] = redact_url(camera.main_url)
    out["sub_url"] = redact_url(camera.sub_url) if camera.sub_url else None
    out["region_note"] = camera.region_note  # a GB/T 28181 channel placed under a parent of its CivilCode
    main = status.get((camera.id, "main"))
    out["status"] = {s: status[(camera.id, s)] for s in ("main", "sub") if (camera.id, s) in status}
    out["state"] = main["state"] if main else ("disabled" if not camera.enabled else "unknown")
    return out


def _check_retention_override(principal: Principal, requested: bool, current: bool = False) -> None:
    """Only an admin may set or clear the override that allows retention below 30 days:
    the floor is the rule for public-security video."""
    if requested != current and principal.role != "admin":
        raise HTTPException(403, "only an admin may change retention_override (retention below 30 days)")


def _refused(exc: Exception) -> HTTPException:
    if isinstance(exc, ValidationError):
        msg = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors())
        return HTTPException(422, msg)
    return HTTPException(422, str(exc))


# -- regions ----------------------------------------------------------------------


@router.get("/api/regions")
def list_regions(request: Request, principal: Principal = allow("viewer", camera_param=None)) -> list[dict[str, Any]]:
    """Regions in the caller's scope with online/total camera counts (sub-regions included)."""
    ctx = _ctx(request)
    regions = principal.visible_regions(ctx.registry)
    cameras = principal.visible_cameras(ctx.registry)
    status = statuses(ctx)
    parent = {r.code: r.parent for r in ctx.registry.regions()}
    total: dict[str, int] = {}
    online: dict[str, int] = {}
    for cam in cameras:
        up = status.get((cam.id, "main"), {}).get("state") == "recording"
        code: str | None = cam.region
        while code is not None:
            total[code] = total.get(code, 0) + 1
            online[code] = online.get(code, 0) + int(up)
            code = parent.get(code)
    visible = {r.code for r in regions}
    return [
        {"code": r.code, "name": r.name, "parent": r.parent if r.parent in visible else None,
         "cameras": total.get(r.code, 0), "online": online.get(r.code, 0)}
        for r in regions
    ]


@router.post("/api/regions", status_code=201)
def add_region(region: Region, request: Request, principal: Principal = allow("operator", camera_param=None)) -> dict[str, Any]:
    """Add a region. Its parent must be in the caller's scope; a new root needs the whole county."""
    try:
        changes(request).add_region(actor(request), region)
    except OutOfScope as exc:
        raise HTTPException(403, str(exc)) from None
    except RegistryError as exc:
        raise _refused(exc) from None
    return region.model_dump()


# -- cameras ----------------------------------------------------------------------


@router.get("/api/cameras")
def list_cameras(request: Request, region: str | None = None, state: str | None = None, q: str | None = None,
                 principal: Principal = allow("viewer", camera_param=None)) -> list[dict[str, Any]]:
    """Cameras in scope, optionally under ``region``, in ``state``, or matching ``q`` (id or name)."""
    ctx = _ctx(request)
    cameras = principal.visible_cameras(ctx.registry)
    if region is not None:
        subtree = ctx.registry.region_subtree(region)
        cameras = [c for c in cameras if c.region in subtree]
    if q:
        needle = q.lower()
        cameras = [c for c in cameras if needle in c.id.lower() or needle in c.name.lower()]
    status = statuses(ctx)
    views = [camera_view(c, status) for c in cameras]
    return [v for v in views if state is None or v["state"] == state]


@router.get("/api/cameras/{id}")
def get_camera(id: str, request: Request, principal: Principal = allow("viewer")) -> dict[str, Any]:
    assert principal.camera is not None
    return camera_view(principal.camera, statuses(_ctx(request)))


@router.post("/api/cameras", status_code=201)
def add_camera(request: Request, body: dict[str, Any] = Body(...),
               principal: Principal = allow("operator", camera_param=None)) -> dict[str, Any]:
    """Register one camera; a recording process starts on it within seconds."""
    ctx = _ctx(request)
    try:
        camera = Camera.model_validate(body)
        _check_retention_override(principal, camera.retention_override)
        check_profile(camera, ctx.settings)
        changes(request).add_camera(actor(request), camera)
    except OutOfScope as exc:
        raise HTTPException(403, str(exc)) from None
    except (ValidationError, RegistryError, TranscodeError) as exc:
        raise _refused(exc) from None
    return camera_view(camera, {})


@router.patch("/api/cameras/{id}")
def edit_camera(id: str, request: Request, edits: dict[str, Any] = Body(...),
                principal: Principal = allow("operator")) -> dict[str, Any]:
    """Change a camera. Moving it to another region needs that region in the caller's scope too."""
    ctx = _ctx(request)
    assert principal.camera is not None
    if "retention_override" in edits:
        _check_retention_override(principal, bool(edits["retention_override"]), principal.camera.retention_override)
    try:
        if "transcode" in edits and principal.camera is not None:
            check_profile(principal.camera.model_copy(update={"transcode": edits["transcode"]}), ctx.settings)
        camera = changes(request).edit_camera(actor(request), id, edits)
    except OutOfScope as exc:
        raise HTTPException(403, str(exc)) from None
    except NotInScope:
        raise camera_not_found(id) from None
    except (RegistryError, TranscodeError, TypeError) as exc:
        raise _refused(exc) from None
    return camera_view(camera, statuses(ctx))


@router.delete("/api/cameras/{id}", status_code=204)
def remove_camera(id: str, request: Request, principal: Principal = allow("operator")) -> None:
    try:
        changes(request).remove_camera(actor(request), id)
    except (RegistryError, NotInScope):
        raise camera_not_found(id) from None


class ImportResult(BaseModel):
    imported: int
    errors: list[dict[str, Any]] = []


# A fleet file of ``import_max_rows`` rows is well under this; the gate refuses more unread.
IMPORT_MAX_BYTES = 4 * 1024 * 1024


@router.post("/api/cameras/import")
async def import_cameras(request: Request, format: Literal["csv", "yaml"] = "csv",
                         principal: Principal = allow("operator", camera_param=None, max_body=IMPORT_MAX_BYTES)
                         ) -> ImportResult:
    """A CSV or YAML fleet file as the request body: all rows, or none with an error per bad row (422).

    Parsed and written in a worker thread, so live video and other requests go on meanwhile; at
    most ``import_max_rows`` rows and 4 MiB; one audit row for the whole batch."""
    ctx = _ctx(request)
    raw = await request.body()
    return await asyncio.to_thread(_import, ctx, request, principal, raw, format)


def _import(ctx: AppContext, request: Request, principal: Principal, raw: bytes, fmt: str) -> ImportResult:
    text = raw.decode("utf-8-sig", errors="replace")
    try:
        cameras = read_fleet_text(text, fmt, max_rows=ctx.settings.import_max_rows)
    except FleetFileError as exc:
        raise HTTPException(422, {"imported": 0, "errors": [
            {"row": e.row, "camera_id": e.camera_id, "message": e.message} for e in exc.errors]}) from None
    if principal.role != "admin" and any(c.retention_override for c in cameras):
        raise HTTPException(403, "only an admin may import cameras with retention_override")
    outside = [c.id for c in cameras if not principal.can_see(c, ctx.registry)]
    if outside:
        raise HTTPException(422, {"imported": 0, "errors": [
            {"row": None, "camera_id": c, "message": "region outside your scope"} for c in outside[:100]]})
    try:
        for cam in cameras:
            check_profile(cam, ctx.settings)
        count = changes(request).import_cameras(actor(request), cameras, source=f"API {fmt}")
    except OutOfScope as exc:
        raise HTTPException(403, str(exc)) from None
    except (RegistryError, TranscodeError) as exc:
        raise HTTPException(422, {"imported": 0, "errors": [{"row": None, "camera_id": None, "message": m}
                                                          for m in str(exc).splitlines()[:100]]}) from None
    return ImportResult(imported=count)


class ProbeRequest(BaseModel):
    url: str
    transport: Literal["tcp", "udp"] = "tcp"
    timeout: float = 10.0


PROBES = ProbeLimiter()


@router.post("/api/probe")
async def probe(body: ProbeRequest, request: Request,
                principal: Principal = allow("operator", camera_param=None)) -> dict[str, Any]:
    """Connect to a URL (before registering it) and report codec, resolution, fps and bitrate.

    Audited; at most 10 a minute per user; loopback, link-local and this server's own ports are
    refused unless an admin allowed the range (``probe_allow_ranges``)."""
    ctx = _ctx(request)
    safe = redact_url(body.url)
    wait = PROBES.retry_after(principal.name)
    if wait is not None:
        await asyncio.to_thread(audit, request, "probe", outcome="rate_limited", detail=safe)
        raise HTTPException(429, f"at most {PROBES.per_minute} probes a minute: wait {wait:.0f} s",
                            headers={"Retry-After": str(max(1, int(wait) + 1))})
    try:
        await asyncio.to_thread(check_probe_target, body.url, ctx.settings)
    except EgressRefused as exc:
        await asyncio.to_thread(audit, request, "probe", outcome="denied", detail=f"{safe}: {exc}")
        raise HTTPException(403, str(exc)) from None
    timeout = min(max(body.timeout, 1.0), 15.0) if math.isfinite(body.timeout) else 10.0
    result = await asyncio.to_thread(probe_url, body.url, transport=body.transport, timeout=timeout)
    await asyncio.to_thread(audit, request, "probe", outcome="ok" if result.ok else "failed",
                            detail=f"{safe} {result.state}")
    return result.as_dict()


@router.get("/api/cameras/{id}/status")
def camera_status(id: str, request: Request, principal: Principal = allow("viewer")) -> dict[str, Any]:
    status = statuses(_ctx(request))
    return {s: status[(id, s)] for s in ("main", "sub") if (id, s) in status}
