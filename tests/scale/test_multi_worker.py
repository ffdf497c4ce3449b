"""Several ``sharpeyes ingest`` processes share the cameras by lease (PostgreSQL + moto S3).

Each camera has one owner; a worker killed with -9 has its cameras recording
elsewhere within TTL + 5 s; a joining worker takes its share with only a
reconnect's gap; and across the run no camera's segments overlap.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import pytest

from storage import CameraStatusTable
from tests.scale.cluster import S, Cluster, covered, merged
from tests.support.cameras import Mount

TTL = 4.0
SEGMENT = 4.0
# One reconnect: the release is seen within a lease poll (0.5 s), then connect and
# wait for the next keyframe (2 s GOP); plus the segment-end rounding of both sides.
ONE_RECONNECT_S = 5.0


def start_cameras(camera_server, n: int) -> dict[str, str]:  # type: ignore[no-untyped-def]
    # One clip shared by all mounts (same label): encoded once, cached.
    mounts = {f"/cam{i:02d}": Mount("h264", size=(640, 360), label="scale", seconds=24) for i in range(n)}
    srv = camera_server(mounts)
    return {f"cam-{i:02d}": srv.url(f"/cam{i:02d}") for i in range(n)}


def now_us() -> int:
    return time.time_ns() // 1000


def segments_by_camera(cluster: Cluster) -> dict[str, list]:
    out: dict[str, list] = {}
    for row in cluster.index.all_segments():
        out.setdefault(row.camera_id, []).append(row)
    return out


def assert_no_overlap(by_cam: Mapping[Any, list]) -> None:
    """No two segments of one key (a camera, or a camera stream) overlap."""
    for cam, rows in by_cam.items():
        rows = sorted(rows, key=lambda r: r.start_us)
        for a, b in zip(rows, rows[1:]):
            assert b.start_us >= a.end_us, (
                f"camera {cam}: {a.worker_id} [{a.start_us}, {a.end_us}) overlaps {b.worker_id} [{b.start_us}, {b.end_us})")


def gaps_between(rows: list, start: int, end: int) -> list[tuple[int, int]]:
    """Holes in the recording of one camera within [start, end)."""
    spans = merged([(r.start_us, r.end_us) for r in rows])
    holes, cursor = [], start
    for a, b in spans:
        if a > cursor and cursor < end:
            holes.append((cursor, min(a, end)))
        cursor = max(cursor, b)
    if cursor < end:
        holes.append((cursor, end))
    return holes


def run_scenario(cluster: Cluster, camera_server, n_cameras: int, steady_s: float) -> dict:  # type: ignore[no-untyped-def]
    cams = cluster.add_cameras(start_cameras(camera_server, n_cameras))
    for name in ("w1", "w2", "w3"):
        cluster.worker(name)
    # 1. Every camera owned by exactly one of the three, shared fairly.
    owners = cluster.wait_for("all cameras leased", lambda: (o := cluster.owners()) and len(o) == n_cameras and o)
    cluster.wait_for("every camera recording", lambda: len(segments_by_camera(cluster)) == n_cameras, timeout=60)
    owners = cluster.owners()
    per_worker = {w: sum(1 for o in owners.values() if o == w) for w in ("w1", "w2", "w3")}
    share = -(-n_cameras // 3)
    assert all(0 < k <= share + 1 for k in per_worker.values()), per_worker
    # API nodes see each camera's status as its owner published it, and where to redirect.
    published = cluster.wait_for("statuses published", lambda: (st := CameraStatusTable(cluster.engine).statuses(
        now_us=now_us(), stale_us=int(2 * TTL * S))) and len(st) == n_cameras and st)
    assert {c: st["worker_id"] for (c, _), st in published.items()} == owners
    for c, w in owners.items():
        assert cluster.leases.owner_url(c, now_us=now_us()) == f"http://127.0.0.1:{cluster.workers[w].http_port}"
    steady_from = now_us()
    time.sleep(steady_s)

    # 2. kill -9 one worker: its cameras record again elsewhere within TTL + 5 s.
    victim = max(per_worker, key=lambda w: per_worker[w])
    orphans = [c for c, o in owners.items() if o == victim]
    killed_at = now_us()
    cluster.workers[victim].kill()
    def resumed() -> bool:
        by_cam = segments_by_camera(cluster)
        return all(any(r.worker_id != victim and r.start_us > killed_at for r in by_cam.get(c, [])) for c in orphans)
    cluster.wait_for("orphans recording elsewhere", resumed, timeout=TTL + 5 + SEGMENT + 15)
    by_cam = segments_by_camera(cluster)
    takeover_s = {c: (min(r.start_us for r in by_cam[c] if r.worker_id != victim and r.start_us > killed_at)
                      - killed_at) / S for c in orphans}
    assert max(takeover_s.values()) <= TTL + 5, takeover_s
    time.sleep(steady_s / 2)

    # 3. A fourth worker joins: it takes its share; moved cameras lose at most a reconnect.
    joined_at = now_us()
    cluster.worker("w4")
    fair = -(-n_cameras // 3)  # w1..w3 minus the victim, plus w4: three live workers
    cluster.wait_for("w4 holding its share",
                     lambda: sum(1 for o in cluster.owners().values() if o == "w4") >= fair - 1, timeout=40)
    time.sleep(steady_s / 2 + SEGMENT)
    stop_at = now_us()
    for name, w in cluster.workers.items():
        if name != victim:
            assert w.stop() == 0, w.log()[-3000:]

    by_cam = segments_by_camera(cluster)
    assert_no_overlap(by_cam)
    moved = {c for c, rows in by_cam.items() if any(r.worker_id == "w4" for r in rows)}
    assert moved, "the fourth worker recorded nothing"
    rebalance_gaps = [(b - a) / S for c in moved for a, b in gaps_between(by_cam[c], joined_at, stop_at - 2 * S)]
    assert max(rebalance_gaps, default=0) <= ONE_RECONNECT_S, rebalance_gaps

    # Coverage outside the takeover gap (and not counting the last second of shutdown).
    window = (steady_from, stop_at - S)
    total = missing_outside = 0
    for c in cams:
        rows = by_cam[c]
        spans = [(r.start_us, r.end_us) for r in rows]
        excluded = 0
        if c in orphans:
            # The takeover gap: from the victim's last indexed end to the new owner's first start.
            before = max((r.end_us for r in rows if r.start_us < killed_at), default=killed_at)
            after = min(r.start_us for r in rows if r.worker_id != victim and r.start_us > killed_at)
            excluded = max(0, min(after, window[1]) - max(before, window[0]))
        length = window[1] - window[0] - excluded
        total += length
        missing_outside += length - (covered(spans, *window))
    coverage = 1 - missing_outside / total
    assert coverage >= 0.98, coverage
    return {"per_worker": per_worker, "takeover_s": takeover_s, "rebalance_gaps_s": rebalance_gaps,
            "coverage": coverage}


def test_three_workers_share_take_over_and_rebalance(cluster: Cluster, camera_server) -> None:  # type: ignore[no-untyped-def]
    result = run_scenario(cluster, camera_server, n_cameras=9, steady_s=14)
    print(result)


@pytest.mark.slow
def test_three_workers_24_cameras(cluster: Cluster, camera_server) -> None:  # type: ignore[no-untyped-def]
    result = run_scenario(cluster, camera_server, n_cameras=24, steady_s=30)
    print(result)
