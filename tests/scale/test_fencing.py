"""Fencing: a worker paused (SIGSTOP) past its lease and then resumed cannot index
what it recorded after another worker took the camera over."""

from __future__ import annotations

import time

from minio import Minio

from tests.scale.cluster import S, Cluster
from tests.scale.test_multi_worker import assert_no_overlap, cluster, start_cameras  # noqa: F401 - fixtures

TTL = 4.0


def test_paused_worker_cannot_index_after_takeover(cluster: Cluster, camera_server, s3_server, s3_bucket) -> None:  # type: ignore[no-untyped-def]  # noqa: F811 - the fixture
    (cam,) = cluster.add_cameras(start_cameras(camera_server, 1))
    a = cluster.worker("a")
    cluster.wait_for("a recording", lambda: any(r.worker_id == "a" for r in cluster.index.all_segments()))
    b = cluster.worker("b")
    cluster.wait_for("b alive", lambda: any(w.worker_id == "b" for w in cluster.leases.live_workers(
        time.time_ns() // 1000, int(TTL * S))))
    assert cluster.owners() == {cam: "a"}

    a.pause()
    lease = cluster.wait_for("b takes the camera over", lambda: (held := cluster.leases.lease(cam)) and held.worker_id == "b" and held)
    assert lease.epoch == 2
    cluster.wait_for("b recording", lambda: any(r.worker_id == "b" for r in cluster.index.all_segments()), timeout=30)
    a.resume()
    cluster.wait_for("a sees it lost the camera and drops its segment",
                     lambda: "lost the lease" in a.log() and "not indexed" in a.log(), timeout=30)
    assert a.stop() == 0 and b.stop() == 0

    rows = cluster.index.segments(cam)
    from_a = [r for r in rows if r.worker_id == "a"]
    assert from_a and all(r.end_us <= lease.acquired_us for r in from_a), \
        [(r.start_us, r.end_us, lease.acquired_us) for r in from_a]
    assert_no_overlap({cam: rows})
    # The refused segment's object was deleted too: every object has its row.
    client = Minio(s3_server.endpoint, access_key=s3_server.access_key, secret_key=s3_server.secret_key,
                   secure=False, region=s3_server.region)
    objects = {o.object_name for o in client.list_objects(s3_bucket, recursive=True)}
    assert objects == {r.object_key for r in rows}
