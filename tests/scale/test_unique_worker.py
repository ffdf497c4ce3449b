"""A second live ``sharpeyes ingest`` process with a worker id already in use refuses to start."""

from __future__ import annotations

from tests.scale.cluster import Cluster, Worker
from tests.support.s3server import free_port


def test_duplicate_worker_id_is_refused(cluster: Cluster) -> None:
    first = cluster.worker("w1")
    first.wait_ready()
    port = free_port()
    dup = Worker("w1", cluster.root / "w1-dup", dict(cluster.env, SHARPEYES_DATA_DIR=str(cluster.root / "w1-dup")),
                 port)
    dup.start()
    assert dup.proc is not None
    code = dup.proc.wait(60)
    out = dup.log()
    assert code == 3, out[-3000:]
    assert "worker id 'w1' is in use by another live process" in out and "--worker-id" in out, out[-3000:]
    assert first.proc is not None and first.proc.poll() is None  # the first one runs on
    assert first.stop() == 0
