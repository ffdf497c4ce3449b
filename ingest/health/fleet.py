"""Fleet health: online rate against a target, recording coverage per region, spool backlog.

One snapshot function serves ``GET /api/health`` and ``sharpeyes status``. A camera
is online when its live session is recording (in a process that records) or, read
from the index alone, when no gap is open and its newest segment is recent.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ingest.recording.status import CameraStatus
from storage.index.coverage import fleet_coverage
from storage.index.segments import SegmentIndex
from storage.index.registry import Registry

HOUR_US = 3_600_000_000


@dataclass
class CameraHealth:
    camera_id: str
    region: str
    state: str  # the live state, or "recording"/"offline"/"stale"/"disabled" from the index
    online: bool
    coverage_1h: float
    open_gap_reason: str | None


@dataclass
class RegionHealth:
    code: str
    cameras: int = 0
    online: int = 0
    coverage_1h: float = 0.0  # mean over the enabled cameras of the region and below


@dataclass
class FleetHealth:
    now_us: int
    target: float
    cameras: int
    online: int
    online_rate: float
    ok: bool
    regions: list[RegionHealth]
    camera_health: list[CameraHealth]
    spool: dict[str, Any] = field(default_factory=dict)  # bytes, segments, quota_bytes; empty without ingest

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def fleet_health(
    registry: Registry,
    index: SegmentIndex,
    *,
    now_us: int,
    target: float,
    stale_us: int,
    statuses: list[CameraStatus] | None = None,
    spool: dict[str, Any] | None = None,
    region_codes: set[str] | None = None,
) -> FleetHealth:
    """Health of every enabled camera's main stream. ``statuses`` are the live sessions of
    this process (None: judge from the index alone, with segments older than
    ``stale_us`` counting as offline). ``region_codes`` limits it to those regions' cameras
    and regions (a caller's scope); None: all."""
    live = {(s.camera_id, s.stream): s for s in statuses or []}
    cov = fleet_coverage(index, now_us - HOUR_US, now_us)
    parent = {r.code: r.parent for r in registry.regions()}
    regions: dict[str, RegionHealth] = {code: RegionHealth(code) for code in parent
                                        if region_codes is None or code in region_codes}
    sums: dict[str, float] = {}
    cameras: list[CameraHealth] = []
    for cam in registry.cameras():
        if not cam.enabled or (region_codes is not None and cam.region not in region_codes):
            continue
        c = cov.get((cam.id, "main"))
        ratio = c.ratio(HOUR_US) if c else 0.0
        status = live.get((cam.id, "main"))
        if status is not None:
            state = status.state
            online = state == "recording"
        elif c is not None and c.open_gap_reason is not None:
            state, online = c.open_gap_reason, False
        elif c is not None and c.last_end_us is not None and c.last_end_us >= now_us - stale_us:
            state, online = "recording", True
        else:
            state, online = "stale", False
        cameras.append(CameraHealth(cam.id, cam.region, state, online, ratio, c.open_gap_reason if c else None))
        code: str | None = cam.region
        while code is not None and code in regions:
            regions[code].cameras += 1
            regions[code].online += int(online)
            sums[code] = sums.get(code, 0.0) + ratio
            code = parent.get(code)
    for code, r in regions.items():
        r.coverage_1h = sums.get(code, 0.0) / r.cameras if r.cameras else 0.0
    online = sum(c.online for c in cameras)
    rate = online / len(cameras) if cameras else 1.0
    return FleetHealth(
        now_us=now_us,
        target=target,
        cameras=len(cameras),
        online=online,
        online_rate=rate,
        ok=rate >= target,
        regions=sorted(regions.values(), key=lambda r: r.code),
        camera_health=cameras,
        spool=spool or {},
    )
