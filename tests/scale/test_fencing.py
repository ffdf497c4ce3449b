"""Fencing by time: a worker that lost a camera's lease cannot index the seconds the new owner
records, but what it recorded before the takeover, which nobody else has, is indexed; refused
pieces are kept under quarantine/, never deleted."""

from __future__ import annotations

import time

from minio import Minio

from tests.scale.cluster import S, Cluster
from tests.scale.test_dead_worker import pause_with_spooled_gops
from tests.scale.test_multi_worker import assert_no_overlap, start_cameras

TTL = 4.0


def stored_objects(s3_server, s3_bucket: str) -> set[str]:  # type: ignore[no-untyped-def]
    client = Minio(s3_server.endpoint, access_key=s3_server.access_key, secret_key=s3_server.secret_key,
                   secure=False, region=s3_server.region)
    return {o.object_name for o in client.list_objects(s3_bucket, recursive=True)}


def test_paused_worker_cannot_index_after_takeover(cluster: Cluster, camera_server, s3_server, s3_bucket) -> None:  # type: ignore[no-untyped-def]
    (cam,) = cluster.add_cameras(start_cameras(camera_server, 1))
    a = cluster.worker("a")
    cluster.wait_for("a recording", lambda: any(r.worker_id == "a" for r in cluster.index.all_segments()))
    b = cluster.worker("b")
    cluster.wait_for("b alive", lambda: any(w.worker_id == "b" for w in cluster.leases.live_workers(
        time.time_ns() // 1000, int(TTL * S))))
    assert cluster.owners() == {cam: "a"}

    a.pause()
    lease = cluster.wait_for("b takes the camera over", lambda: (lz := cluster.leases.lease(cam)) and lz.worker_id == "b" and lz)
    assert lease.epoch == 2
    cluster.wait_for("b recording", lambda: any(r.worker_id == "b" for r in cluster.index.all_segments()), timeout=30)
    a.resume()
    cluster.wait_for("a sees it lost the camera", lambda: "lease lost to another worker" in a.log(), timeout=30)
    assert a.stop() == 0 and b.stop() == 0

    rows = cluster.index.segments(cam)
    from_a = [r for r in rows if r.worker_id == "a"]
    assert from_a and all(r.end_us <= lease.acquired_us for r in from_a), \
        [(r.start_us, r.end_us, lease.acquired_us) for r in from_a]
    assert_no_overlap({cam: rows})
    quarantined = cluster.index.quarantined(cam)
    assert all(q.reason == "taken_over" and q.worker_id == "a" and q.end_us > lease.acquired_us
               for q in quarantined), quarantined
    # Nothing was deleted: every object is an indexed segment or a quarantined piece.
    assert stored_objects(s3_server, s3_bucket) == {r.object_key for r in rows} | {q.object_key for q in quarantined}


def test_worker_restarted_after_the_ttl_indexes_its_recovered_spool(  # type: ignore[no-untyped-def]
        cluster: Cluster, camera_server, s3_server, s3_bucket) -> None:
    """Private spools (no shared volume): the killed worker's spool waits for it. Started
    again after the takeover, it indexes the recovered segment, which precedes the takeover."""
    (cam,) = cluster.add_cameras(start_cameras(camera_server, 1))
    a = cluster.worker("a")
    cluster.wait_for("a recording", lambda: any(r.worker_id == "a" for r in cluster.index.all_segments()))
    b = cluster.worker("b")
    cluster.wait_for("b alive", lambda: any(w.worker_id == "b" for w in cluster.leases.live_workers(
        time.time_ns() // 1000, int(TTL * S))))
    spooled = pause_with_spooled_gops(cluster, a, [(cam, "main")])
    a.kill()
    lease = cluster.wait_for("b takes over", lambda: (lz := cluster.leases.lease(cam)) and lz.worker_id == "b" and lz)
    cluster.wait_for("b recording", lambda: any(r.worker_id == "b" for r in cluster.index.all_segments()), timeout=30)
    time.sleep(TTL)
    before = {r.start_us for r in cluster.index.segments(cam) if r.worker_id == "a"}
    cluster.worker("a").wait_ready()
    recovered = cluster.wait_for("a's recovered segment indexed", lambda: [
        r for r in cluster.index.segments(cam) if r.worker_id == "a" and r.start_us not in before
        and r.end_us <= lease.acquired_us], timeout=40)
    assert a.stop() == 0 and b.stop() == 0
    rows = cluster.index.segments(cam)
    assert_no_overlap({cam: rows})
    assert recovered and not cluster.index.quarantined(cam)
    assert all(any(r.start_us <= t < r.end_us for r in rows) for t in spooled[(cam, "main")])
    assert stored_objects(s3_server, s3_bucket) == {r.object_key for r in rows}
