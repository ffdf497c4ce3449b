"""Catalog channels become cameras in the registry.

Every video channel (type 131/132) of a device is a camera with id = the channel's DeviceID,
name = its ``Name`` (Chinese kept), ``source`` gb28181 and region from ``CivilCode``. When
that code is not a registered region, the camera goes under the nearest registered parent
(the code cut to 8, 6, 4, 2 digits: grass-roots unit, county, city, province), then the
device id's own division, then the top of the tree; ``Camera.region_note`` says so in the
camera list. A channel seen again updates its name and region but keeps what an operator
set (enabled, retention, transcode). Channels are never removed here: a device often leaves
offline channels out of its Catalog.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from config.cameras import Camera, Region
from config.gb28181 import InvalidCameraId, gb_division, validate_camera_id
from ingest.gb28181.catalog import CatalogItem
from storage.index.registry import Registry, RegistryError

log = logging.getLogger(__name__)

FALLBACK_REGION = Region(code="gb28181", name="GB/T 28181 未归属设备")


@dataclass
class SyncReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    not_video: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # "id: reason"

    def as_dict(self) -> dict[str, object]:
        return {"added": self.added, "updated": self.updated, "unchanged": len(self.unchanged),
                "not_video": self.not_video, "refused": self.refused}


def _prefixes(code: str) -> list[str]:
    digits = code if code.isdigit() else ""
    out = [code] if code else []
    out += [digits[:n] for n in (8, 6, 4, 2) if len(digits) > n]
    return out


def resolve_region(civil_code: str, device_id: str, regions: list[Region]) -> str | None:
    """The region a channel goes under, or None when no region is registered at all."""
    codes = {r.code for r in regions}
    for candidate in _prefixes(civil_code) + _prefixes(gb_division(device_id)):
        if candidate in codes:
            return candidate
    roots = [r.code for r in regions if r.parent is None]
    return roots[0] if roots else (regions[0].code if regions else None)


def sync_channels(registry: Registry, device_id: str, items: list[CatalogItem], *, auto_enable: bool) -> SyncReport:
    report = SyncReport()
    regions = registry.regions()
    if not regions:
        registry.add_region(FALLBACK_REGION)
        regions = [FALLBACK_REGION]
    new: list[Camera] = []
    for item in items:
        if not item.is_video_channel:
            report.not_video.append(item.device_id)
            continue
        try:
            validate_camera_id(item.device_id)
        except InvalidCameraId as exc:
            report.refused.append(f"{item.device_id}: {exc}")
            continue
        region = resolve_region(item.civil_code, device_id, regions) or FALLBACK_REGION.code
        current = registry.camera(item.device_id)
        if current is None:
            new.append(Camera.model_validate({
                "id": item.device_id, "name": item.name, "region": region, "source": "gb28181",
                "gb_device_id": device_id, "gb_civil_code": item.civil_code or None, "enabled": auto_enable}))
            continue
        if current.source != "gb28181":
            report.refused.append(f"{item.device_id}: an RTSP camera already has this id; channel not added")
            continue
        changes = {k: v for k, v in (("name", item.name), ("region", region), ("gb_device_id", device_id),
                                     ("gb_civil_code", item.civil_code or None)) if getattr(current, k) != v}
        if not changes:
            report.unchanged.append(item.device_id)
            continue
        try:
            registry.update_camera(item.device_id, **changes)
            report.updated.append(item.device_id)
        except RegistryError as exc:
            report.refused.append(f"{item.device_id}: {exc}")
    if new:
        try:
            registry.add_cameras(new)
            report.added += [c.id for c in new]
        except RegistryError:
            for cam in new:  # one bad channel must not keep the others out
                try:
                    registry.add_camera(cam)
                    report.added.append(cam.id)
                except RegistryError as exc:
                    report.refused.append(f"{cam.id}: {exc}")
    if report.added or report.updated:
        log.info("device %s: channels added %s, updated %s", device_id, report.added, report.updated)
    return report
