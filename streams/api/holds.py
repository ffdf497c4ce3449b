"""Legal holds over HTTP: place, list and release holds on one camera's recordings.

Investigators (and admins) hold video that is evidence so retention keeps it.
Every hold and release is audited; where the bucket has S3 object lock the
segment objects get an S3 legal hold too (``storage.archive.holds``).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from storage.archive.holds import HoldError, HoldNotFound, HoldStore
from storage.objects.store import ObjectStoreUnavailable
from config.times import iso_utc, parse_time
from streams.access.guard import Principal, allow, audit
from streams.context import AppContext

router = APIRouter()


class NewHold(BaseModel):
    start: str | int = Field(description="ISO 8601 with an offset, or epoch milliseconds")
    end: str | int = Field(description="ISO 8601 with an offset, or epoch milliseconds")
    reason: str = Field(min_length=1, max_length=2000, description="Case number or request the hold serves")
    stream: Literal["main", "sub"] | None = Field(None, description="One stream; leave out to hold both")


def holds(request: Request) -> HoldStore:
    """The app's hold store (one per app, on the index's engine)."""
    ctx: AppContext = request.app.state.ctx
    return ctx.holds


def _view(hold: Any) -> dict[str, Any]:
    out = hold.as_dict()
    out["start"] = iso_utc(hold.start_us)
    out["end"] = iso_utc(hold.end_us)
    return out


def _sync(request: Request, hold: Any) -> int | str:
    """Mirror the hold onto the store's own legal hold; an unreachable store is reported, not fatal:
    the index's hold already keeps retention away, and the next hold or release re-syncs."""
    ctx: AppContext = request.app.state.ctx
    if ctx.store is None:
        return 0
    try:
        return holds(request).sync_store_holds(ctx.store, hold)
    except ObjectStoreUnavailable as exc:
        return f"not set: {exc}"


@router.post("/api/cameras/{id}/holds", status_code=201)
def place_hold(id: str, body: NewHold, request: Request, principal: Principal = allow("investigator")) -> dict[str, Any]:
    """Keep this camera's recordings in ``[start, end)`` from retention until released."""
    try:
        start_us = parse_time(str(body.start), "start")
        end_us = parse_time(str(body.end), "end")
        hold = holds(request).place(id, start_us, end_us, body.reason, principal.name, stream=body.stream)
    except (ValueError, HoldError) as exc:
        raise HTTPException(422, detail=str(exc)) from None
    locked = _sync(request, hold)
    audit(request, "hold", start_us=start_us, end_us=end_us, detail=f"hold={hold.id} stream={hold.stream or 'both'} reason={hold.reason[:200]}")
    return {**_view(hold), "object_legal_holds": locked}


@router.get("/api/cameras/{id}/holds")
def list_holds(id: str, request: Request, released: bool = False, principal: Principal = allow("investigator")) -> list[dict[str, Any]]:
    """This camera's active holds, newest first (``?released=true`` includes released ones)."""
    return [_view(h) for h in holds(request).list(camera_id=id, active_only=not released)]


@router.delete("/api/cameras/{id}/holds/{hold_id}")
def release_hold(id: str, hold_id: int, request: Request, principal: Principal = allow("investigator")) -> dict[str, Any]:
    """Release a hold: its segments fall back under retention (unless another hold covers them).

    Only the investigator who placed it, or an admin, may release it; the audit row names both."""
    existing = holds(request).get(hold_id)
    if existing is None or existing.camera_id != id:
        raise HTTPException(404, detail=f"camera {id} has no hold {hold_id}; list them with GET /api/cameras/{id}/holds")
    if existing.created_by != principal.name and principal.role != "admin":
        audit(request, "hold_release", outcome="denied", start_us=existing.start_us, end_us=existing.end_us,
              detail=f"hold={hold_id} placed_by={existing.created_by} refused_to={principal.name}")
        raise HTTPException(403, detail=f"hold {hold_id} was placed by {existing.created_by}: only they or an admin "
                                        "may release it")
    try:
        hold = holds(request).release(hold_id, principal.name, camera_id=id)
    except HoldNotFound:
        raise HTTPException(404, detail=f"camera {id} has no hold {hold_id}; list them with GET /api/cameras/{id}/holds") from None
    unlocked = _sync(request, hold)
    audit(request, "hold_release", start_us=hold.start_us, end_us=hold.end_us,
          detail=f"hold={hold.id} placed_by={hold.created_by} released_by={hold.released_by or principal.name}")
    return {**_view(hold), "object_legal_holds": unlocked}
