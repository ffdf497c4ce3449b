"""Evidence exports over HTTP: start a job, follow its progress, download the clip and
its signed manifest; and the site's public key for checking manifests.

The work is ``storage.evidence.exports.ExportService``; this module checks who may do
what. Investigators and admins export cameras in their region scope (a camera
out of scope answers exactly like an unknown one). Each caller sees their own
jobs; admins see all. Creating an export and downloading its files are audited
as ``export``.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from storage.archive.clips import NoRecordings
from storage.evidence.exports import ExportError, ExportJob, ExportService
from storage.evidence.manifest import gap_dict
from storage.evidence.signing import ALGORITHM, key_id, load_signing_key, public_key_pem
from config.times import parse_time
from streams.access.guard import Principal, allow, audit, camera_not_found, public
from streams.context import AppContext

router = APIRouter()


class NewExport(BaseModel):
    camera: str = Field(min_length=1, max_length=64)
    start: str | int = Field(description="ISO 8601 with an offset, or epoch milliseconds")
    end: str | int = Field(description="ISO 8601 with an offset, or epoch milliseconds")
    reason: str = Field(min_length=1, max_length=2000, description="Case number or request the export serves")
    stream: Literal["main", "sub"] = "main"
    allow_gaps: bool = Field(False, description="Leave out missing or corrupt segments (listed in the manifest) instead of failing")


def exports(request: Request) -> ExportService:
    """The app's export service."""
    ctx: AppContext = request.app.state.ctx
    return ctx.exports


def _view(job: ExportJob) -> dict[str, Any]:
    out = job.as_dict()
    base = f"/api/exports/{job.id}"
    out["links"] = {"self": base}
    if job.status == "done":
        out["links"] |= {"clip": f"{base}/clip.mp4", "manifest": f"{base}/manifest.json"}
    return out


def _visible_job(request: Request, export_id: str, principal: Principal) -> ExportJob:
    """The job if the caller made it (or is an admin) and its camera is in their scope; else 404."""
    job = exports(request).get(export_id)
    ctx: AppContext = request.app.state.ctx
    camera = ctx.registry.camera(job.camera_id) if job else None
    mine = job is not None and (principal.role == "admin" or job.created_by == principal.name)
    in_scope = camera is None or principal.can_see(camera, ctx.registry)  # a removed camera's exports stay readable
    if job is None or not mine or not in_scope:
        raise HTTPException(404, detail=f"no export {export_id}; list yours with GET /api/exports")
    return job


@router.post("/api/exports", status_code=202)
def start_export(body: NewExport, request: Request, principal: Principal = allow("investigator", camera_param=None)) -> dict[str, Any]:
    """Start an export job; follow it with ``GET /api/exports/{id}``."""
    ctx: AppContext = request.app.state.ctx
    camera = ctx.registry.camera(body.camera)
    if camera is None or not principal.can_see(camera, ctx.registry):
        raise camera_not_found(body.camera)
    service = exports(request)
    try:
        start_us = parse_time(str(body.start), "start")
        end_us = parse_time(str(body.end), "end")
        job = service.create(camera.id, start_us, end_us, body.reason, principal.name,
                             stream=body.stream, allow_gaps=body.allow_gaps)
    except NoRecordings as exc:
        raise HTTPException(404, detail={"message": str(exc), "gaps": [gap_dict(g) for g in exc.gaps]}) from None
    except (ValueError, ExportError) as exc:
        raise HTTPException(422, detail=str(exc)) from None
    audit(request, "export", camera_id=camera.id, start_us=start_us, end_us=end_us,
          detail=f"export={job.id} stream={job.stream} allow_gaps={job.allow_gaps} reason={job.reason[:200]}")
    service.start(job.id)
    return _view(job)


@router.get("/api/exports")
def list_exports(request: Request, principal: Principal = allow("investigator", camera_param=None)) -> list[dict[str, Any]]:
    """The caller's export jobs, newest first (admins: everyone's)."""
    ctx: AppContext = request.app.state.ctx
    jobs = exports(request).list(created_by=None if principal.role == "admin" else principal.name)
    visible = []
    for job in jobs:
        camera = ctx.registry.camera(job.camera_id)
        if camera is None or principal.can_see(camera, ctx.registry):
            visible.append(_view(job))
    return visible


@router.get("/api/exports/{export_id}")
def get_export(export_id: str, request: Request, principal: Principal = allow("investigator", camera_param=None)) -> dict[str, Any]:
    """One job: status (queued, running, done, failed), progress 0..1, bytes, error, download links."""
    return _view(_visible_job(request, export_id, principal))


def _download(request: Request, export_id: str, principal: Principal, what: str, media_type: str) -> StreamingResponse:
    job = _visible_job(request, export_id, principal)
    try:
        name, size, body = exports(request).open_download(job, what)
    except ExportError as exc:
        raise HTTPException(409, detail=str(exc)) from None
    audit(request, "export", camera_id=job.camera_id, start_us=job.start_us, end_us=job.end_us,
          detail=f"export={job.id} download={what}")
    return StreamingResponse(body, media_type=media_type, headers={
        "Content-Length": str(size),
        "Content-Disposition": f'attachment; filename="{name}"',
    })


@router.get("/api/exports/{export_id}/clip.mp4")
def download_clip(export_id: str, request: Request, principal: Principal = allow("investigator", camera_param=None)) -> StreamingResponse:
    """The exported clip, exactly the bytes the manifest's ``clip.sha256`` covers."""
    return _download(request, export_id, principal, "clip", "video/mp4")


@router.get("/api/exports/{export_id}/manifest.json")
def download_manifest(export_id: str, request: Request, principal: Principal = allow("investigator", camera_param=None)) -> StreamingResponse:
    """The signed manifest of an exported clip."""
    return _download(request, export_id, principal, "manifest", "application/json")


@router.get("/api/keys/export", dependencies=[public()])
def export_public_key(request: Request) -> dict[str, str]:
    """The public key that checks this site's export manifests (public: a court or a
    defence expert needs it without an account). Compare ``key_id`` with the
    manifest's ``signing_key_id``."""
    ctx: AppContext = request.app.state.ctx
    public_key = load_signing_key(ctx.settings.data_dir).public_key()
    return {"algorithm": ALGORITHM, "key_id": key_id(public_key), "public_key_pem": public_key_pem(public_key)}
