"""A worker that dies for good costs at most the takeover time, and loses no spooled video.

Three ``sharpeyes ingest`` processes share six GStreamer cameras (10 s segments) over one
PostgreSQL index, moto S3 and a shared spool volume; each camera has a main stream (2 s GOP)
and a sub-stream (320x180, 4 s GOP, a few hundred kbit/s: its segment fills slowly). The
busiest worker is stopped (SIGSTOP, so its spool can be read exactly as it is at the kill)
and killed with SIGKILL. For each stream of each of its cameras: no segment overlaps
another, every GOP it had spooled is in the index (adopted by the taker from the shared
spool), and the hole in the recording is at most TTL + 5 s for the main stream and
TTL + 1 s + two GOPs for the sub-stream (docs/scale.md: the GOP in memory at the kill is
lost, and the taker starts at the next keyframe).
Then the dead worker is started again after the TTL: it records again, its segments do not
overlap, and no object was deleted (every stored object is an indexed segment or a
quarantined piece).

The default run uses a 5 s TTL to stay short; ``SHARPEYES_TEST_LEASE_TTL=15`` runs it at the
default lease TTL (the issue's bound, TTL + 5 s, is checked against whichever TTL runs).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Iterator

import pytest
from minio import Minio

from storage.mp4.read import init_segment_size, parse_init, scan_fragments
from tests.scale.cluster import S, Cluster, Worker
from tests.scale.test_multi_worker import assert_no_overlap, gaps_between, start_cameras
from tests.support.cameras import Mount

TTL = float(os.environ.get("SHARPEYES_TEST_LEASE_TTL", "5"))
SEGMENT = 10.0


@pytest.fixture
def shared_cluster(postgres_url: str, tmp_path: Path, s3_server, s3_bucket: str) -> Iterator[Cluster]:  # type: ignore[no-untyped-def]
    c = Cluster.create(postgres_url, tmp_path, s3_server, s3_bucket, ttl=TTL, segment_seconds=SEGMENT,
                       shared_spool=True)
    try:
        yield c
    finally:
        c.close()


STREAMS = ("main", "sub")
SUB_GOP = 4.0
Key = tuple[str, str]  # (camera id, stream)


def spooled_gops(spool: Path, keys: list[Key]) -> dict[Key, list[int]]:
    """Start time (µs) of every complete GOP in a (stopped) worker's spool, per camera stream."""
    out: dict[Key, list[int]] = {k: [] for k in keys}
    for key in keys:
        cam, stream = key
        for meta in spool.glob(f"{cam}/{stream}/*.json"):
            entry = json.loads(meta.read_text())
            if meta.with_suffix(".mp4").exists():
                out[key] += [entry["start_us"] + t for t, _ in entry["keyframes"]]
            elif meta.with_suffix(".part").exists():
                data = meta.with_suffix(".part").read_bytes()
                try:
                    size = init_segment_size(data)
                except ValueError:
                    continue
                tracks = parse_init(data[:size])
                video = next(t for t in tracks.values() if t.handler == "vide")
                for frag in scan_fragments(data, tracks, size):
                    run = frag.runs.get(video.track_id)
                    if run and run.samples:
                        out[key].append(entry["start_us"] + run.samples[0].decode_time * S // video.timescale)
    return out


def pause_with_spooled_gops(cluster: Cluster, w: Worker, cams: list[Key], timeout: float = 30
                            ) -> dict[Key, list[int]]:
    """SIGSTOP ``w`` at a moment when each of ``cams`` has a GOP in its spool; returns them."""
    deadline = time.monotonic() + timeout
    while True:
        w.pause()
        spooled = spooled_gops(cluster.spool_of(w.worker_id), cams)
        if all(spooled.values()) or time.monotonic() > deadline:
            assert all(spooled.values()), spooled
            return spooled
        w.resume()
        time.sleep(0.5)


def segments_by_stream(cluster: Cluster) -> dict[Key, list]:
    out: dict[Key, list] = {}
    for row in cluster.index.all_segments():
        out.setdefault((row.camera_id, row.stream), []).append(row)
    return out


def start_sub_streams(camera_server, n: int) -> dict[str, str]:  # type: ignore[no-untyped-def]
    mounts = {f"/sub{i:02d}": Mount("h264", size=(320, 180), label="scale-sub", seconds=24,
                                    gop_seconds=int(SUB_GOP)) for i in range(n)}
    srv = camera_server(mounts)
    return {f"cam-{i:02d}": srv.url(f"/sub{i:02d}") for i in range(n)}


def hole_bound(stream: str) -> float:
    return TTL + 5 if stream == "main" else TTL + 1 + 2 * SUB_GOP


def test_dead_worker_loses_no_spooled_video(shared_cluster: Cluster, camera_server, s3_server, s3_bucket) -> None:  # type: ignore[no-untyped-def]
    cluster = shared_cluster
    cams = cluster.add_cameras(start_cameras(camera_server, 6), start_sub_streams(camera_server, 6))
    keys = [(c, s) for c in cams for s in STREAMS]
    for name in ("w1", "w2", "w3"):
        cluster.worker(name)
    cluster.wait_for("every camera stream recording", lambda: len(segments_by_stream(cluster)) == len(keys),
                     timeout=90)
    time.sleep(4)  # mid-segment: the victim has open .part files with several GOPs
    owners = cluster.owners()
    per_worker = {w: sum(1 for o in owners.values() if o == w) for w in ("w1", "w2", "w3")}
    victim = max(per_worker, key=lambda w: per_worker[w])
    orphans = sorted((c, s) for c, o in owners.items() if o == victim for s in STREAMS)

    w = cluster.workers[victim]
    spooled = pause_with_spooled_gops(cluster, w, orphans)  # its spool, exactly as the kill leaves it
    killed_at = time.time_ns() // 1000
    w.kill()

    def taken_over() -> bool:
        by_key = segments_by_stream(cluster)
        return all(any(r.worker_id != victim and r.start_us > killed_at for r in by_key.get(k, [])) for k in orphans)
    cluster.wait_for("orphans recording elsewhere", taken_over, timeout=TTL + 5 + SEGMENT + 30)
    by_key = segments_by_stream(cluster)
    holes = {}
    for k in orphans:
        rows = by_key[k]
        taker_start = min(r.start_us for r in rows if r.worker_id != victim and r.start_us > killed_at)
        last_before = max(r.end_us for r in rows if r.start_us < killed_at)
        holes[k] = (taker_start - last_before) / S
        # Every GOP the dead worker had spooled is indexed (the taker adopted its spool).
        missing = [t for t in spooled[k] if not any(r.start_us <= t < r.end_us for r in rows)]
        assert not missing, f"camera {k}: spooled GOPs at {missing} are not in the index"
    over = {k: h for k, h in holes.items() if h > hole_bound(k[1])}
    assert not over, f"holes over TTL + 5 s (main) or TTL + 1 s + 2 GOPs (sub): {over}"
    assert_no_overlap(by_key)

    # The dead worker comes back after the TTL: it records again, without overlap, and nothing is deleted.
    time.sleep(TTL)
    restarted_at = time.time_ns() // 1000
    cluster.worker(victim).wait_ready()
    cluster.wait_for(f"{victim} recording again", lambda: any(
        r.worker_id == victim and r.start_us > restarted_at for r in cluster.index.all_segments()), timeout=60)
    stop_at = time.time_ns() // 1000
    for worker in cluster.workers.values():
        assert worker.stop() == 0, worker.log()[-3000:]
    by_key = segments_by_stream(cluster)
    assert_no_overlap(by_key)
    rows = [r for rs in by_key.values() for r in rs]
    quarantined = cluster.index.quarantined()
    client = Minio(s3_server.endpoint, access_key=s3_server.access_key, secret_key=s3_server.secret_key,
                   secure=False, region=s3_server.region)
    objects = {o.object_name for o in client.list_objects(s3_bucket, recursive=True)}
    assert {r.object_key for r in rows} | {q.object_key for q in quarantined} == objects
    assert not [line for w in cluster.workers.values() for line in w.log().splitlines() if "deleted" in line]
    rejoin_holes = [(b - a) / S for k in keys for a, b in gaps_between(by_key[k], restarted_at, stop_at - 2 * S)]
    print({"victim": victim, "ttl_s": TTL, "takeover_holes_s": {f"{c}/{s}": h for (c, s), h in holes.items()},
           "spooled_gops": {f"{c}/{s}": len(v) for (c, s), v in spooled.items()}, "rejoin_holes_s": rejoin_holes,
           "quarantined": len(quarantined), "rows": len(rows)})
