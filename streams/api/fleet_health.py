"""``GET /api/health/fleet?hours=24``: what the console's health page draws beyond ``/api/health``.

Per camera in the caller's scope: recording coverage of the main stream over the window,
or over the part of it since the camera was first seen when that is later, so a camera
added an hour ago is not shown as 4 % covered (worst first) and gaps opened per hour (each is a disconnection: a reconnect follows);
per region: bytes and segments stored, its sub-regions included. Everything is read
from the index, so an API-only node answers it too.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

from storage.index.coverage import fleet_coverage
from config.times import now_us
from storage.index.usage import HOUR_US, first_seen_by_camera, gaps_opened_by_hour, stored_by_camera
from streams.access.guard import Principal, allow
from streams.context import AppContext

router = APIRouter()


@router.get("/api/health/fleet")
def fleet_history(request: Request, hours: int = Query(24, ge=1, le=24 * 31),
                  principal: Principal = allow("operator", camera_param=None)) -> dict[str, Any]:
    """Coverage per camera (worst first), reconnects per hour, storage per region, over the last ``hours``."""
    ctx: AppContext = request.app.state.ctx
    end = now_us()
    start = end - hours * HOUR_US
    cameras = principal.visible_cameras(ctx.registry)
    coverage = fleet_coverage(ctx.index, start, end)
    opened = gaps_opened_by_hour(ctx.index, start, end)
    stored = stored_by_camera(ctx.index)
    first_seen = first_seen_by_camera(ctx.index)
    per_camera = []
    hourly = [0] * hours
    for cam in cameras:
        c = coverage.get((cam.id, "main"))
        since = max(start, first_seen.get(cam.id, start))
        by_hour = opened.get(cam.id, [0] * hours)
        hourly = [a + b for a, b in zip(hourly, by_hour)]
        per_camera.append({
            "camera_id": cam.id, "name": cam.name, "region": cam.region, "enabled": cam.enabled,
            "coverage": round(c.ratio(end - since), 4) if c else 0.0,
            "since_ms": since // 1000,
            "gaps": c.gaps if c else 0,
            "open_gap_reason": c.open_gap_reason if c else None,
            "reconnects": sum(by_hour),
        })
    per_camera.sort(key=lambda x: (x["coverage"], x["camera_id"]))
    # Storage per region, rolled up to every ancestor the caller can see.
    regions = {r.code: r for r in principal.visible_regions(ctx.registry)}
    parent = {r.code: r.parent for r in ctx.registry.regions()}
    totals: dict[str, list[int]] = {code: [0, 0] for code in regions}
    for cam in cameras:
        use = stored.get(cam.id)
        code: str | None = cam.region
        while use is not None and code is not None:
            if code in totals:
                totals[code][0] += use.bytes
                totals[code][1] += use.segments
            code = parent.get(code)
    return {
        "start_ms": start // 1000, "end_ms": end // 1000, "hours": hours,
        "cameras": per_camera,
        "reconnects_per_hour": [{"start_ms": (start + i * HOUR_US) // 1000, "count": n} for i, n in enumerate(hourly)],
        "storage": [{"region": code, "name": regions[code].name,
                     "parent": parent.get(code) if parent.get(code) in regions else None,
                     "bytes": b, "segments": n} for code, (b, n) in sorted(totals.items())],
    }
