"""``sharpeyes demo`` set-up: a small region tree and simulated cameras registered in it."""

from __future__ import annotations

from config.cameras import Camera, Region
from storage.index.registry import Registry

COUNTY = Region(code="demo", name="示范县 Demo County")
TOWNSHIPS = (
    Region(code="demo-east", name="东镇 East Township", parent="demo"),
    Region(code="demo-west", name="西镇 West Township", parent="demo"),
)


def register_demo(registry: Registry, urls: dict[str, str]) -> list[Camera]:
    """Register (or re-point) one camera per simulated ``sim-N`` path, alternating townships.

    Idempotent: a second demo start only updates URLs that changed (a new port).
    """
    existing = {r.code for r in registry.regions()}
    for region in (COUNTY, *TOWNSHIPS):
        if region.code not in existing:
            registry.add_region(region)
    cameras = []
    mains = sorted((p for p in urls if "/" not in p), key=lambda p: int(p.rsplit("-", 1)[1]))
    for n, path in enumerate(mains):
        cam = Camera(
            id=path,
            name=f"模拟摄像机 {n + 1} (simulated)",
            region=TOWNSHIPS[n % len(TOWNSHIPS)].code,
            main_url=urls[path],
            sub_url=urls.get(f"{path}/sub"),
        )
        current = registry.camera(cam.id)
        if current is None:
            registry.add_camera(cam)
        elif (current.main_url, current.sub_url) != (cam.main_url, cam.sub_url):
            registry.update_camera(cam.id, main_url=cam.main_url, sub_url=cam.sub_url)
        cameras.append(cam)
    return cameras
