"""``/api/gb/...``: GB/T 28181 devices, from the index (any node answers), and on-demand
queries on the node that runs the SIP server.

``GET /api/gb/devices``: every device (id, address, transport, last keepalive, channels,
state and reason, last Catalog, last INVITE) with ``gb doctor``'s findings. An operator
whose scope is not the whole county sees the devices with a channel in scope.
``POST /api/gb/devices/{device_id}/refresh``: Catalog, DeviceInfo and DeviceStatus again.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request

from config.settings import Settings
from ingest.gb28181.doctor import diagnose, media_address
from ingest.gb28181.service import GbError
from storage.index.gb_devices import GbDevice, GbDeviceStore
from streams.access.guard import Principal, allow, audit
from streams.context import AppContext

router = APIRouter()


def _store(ctx: AppContext) -> GbDeviceStore:
    return GbDeviceStore(ctx.index.engine)  # no cipher: passwords are never read here


def _visible(principal: Principal, ctx: AppContext, devices: list[GbDevice]) -> list[GbDevice]:
    if principal.sees_all:
        return devices
    owners = {c.gb_device_id for c in principal.visible_cameras(ctx.registry) if c.gb_device_id}
    return [d for d in devices if d.device_id in owners]


def device_view(settings: Settings, device: GbDevice) -> dict[str, Any]:
    out = device.as_dict()
    out["doctor"] = diagnose(settings, device).as_dict()["findings"]
    return out


@router.get("/api/gb/devices")
def gb_devices(request: Request, principal: Principal = allow("operator", camera_param=None)) -> dict[str, Any]:
    """GB/T 28181 devices and their state, with the server's own settings for context."""
    ctx: AppContext = request.app.state.ctx
    s = ctx.settings
    devices = _visible(principal, ctx, _store(ctx).all())
    return {
        "enabled": bool(s.gb_sip_bind),
        "server": {"sip_bind": s.gb_sip_bind, "id": s.gb_id, "domain": s.gb_domain,
                   "media_host": media_address(s), "rtp_ports": s.gb_rtp_ports, "auto_enable": s.gb_auto_enable,
                   "here": ctx.gb is not None},
        "devices": [device_view(s, d) for d in devices],
    }


@router.post("/api/gb/devices/{device_id}/refresh")
def gb_refresh(device_id: str, request: Request,
               principal: Principal = allow("operator", camera_param=None)) -> dict[str, Any]:
    """Ask the device for its Catalog, DeviceInfo and DeviceStatus now (on the SIP server's node)."""
    ctx: AppContext = request.app.state.ctx
    if ctx.gb is None:
        # 421 Misdirected Request: the node that runs the SIP server can answer; this one cannot.
        raise HTTPException(421, detail="this node runs no GB/T 28181 SIP server (GB_SIP_BIND is empty here); "
                                 "send this to the node started with GB_SIP_BIND")
    if device_id not in {d.device_id for d in _visible(principal, ctx, _store(ctx).all())}:
        raise HTTPException(404, detail=f"device {device_id} is not known; see GET /api/gb/devices")
    if device_id not in ctx.gb.service.sessions:
        raise HTTPException(409, detail=f"device {device_id} is not registered with this node")
    try:
        failures = ctx.gb.call(ctx.gb.service.refresh(device_id)).result(120)
    except GbError as exc:
        raise HTTPException(409, detail=str(exc)) from None
    audit(request, "gb_device_refresh", detail=f"device {device_id}")
    return {"device_id": device_id, "failures": failures}
