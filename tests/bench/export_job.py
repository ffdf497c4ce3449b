"""What an evidence export job costs over the bare clip build, on the same segments in the same run.

Run directly: ``PYTHONPATH=$PWD python tests/bench/export_job.py [minutes] [s3]``.

Baseline: ``ClipPlan.write_to`` of the range to a file (the clip builder alone).
Measured: ``ExportService.run`` of the same range: every source segment read whole
and hashed first, then the same clip build, the manifest signed, both stored.
Data: ``minutes`` (default 10) of a 640x360 25 fps stream, 60 s segments, made
with the real Segmenter and Uploader (the clip repeated).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from config.cameras import Camera, Region
from storage.archive.clips import plan_clip
from storage.db.engine import open_engine
from storage.evidence.exports import ExportService
from storage.index.segments import SegmentIndex
from storage.objects.local import LocalObjectStore
from storage.index.registry import Registry
from storage.index.credentials import load_cipher
from tests.archive.recorded import T0, record


def main(minutes: int = 10, use_s3: bool = False) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    engine = open_engine(f"sqlite:///{work / 'index.db'}")
    index = SegmentIndex(engine)
    registry = Registry(engine, load_cipher(work))
    registry.add_region(Region(code="r", name="R"))
    registry.add_camera(Camera(id="cam-1", name="Bench", region="r", main_url="rtsp://10.0.0.1/main"))
    server = None
    if use_s3:
        from storage.objects.s3 import S3ObjectStore
        from tests.support.s3server import MotoS3Server

        server = MotoS3Server()
        server.start()
        store = S3ObjectStore(server.endpoint, server.access_key, server.secret_key, "bench", region=server.region)
    else:
        store = LocalObjectStore(work / "objects")
    try:
        frames = minutes * 60 * 25
        t = time.perf_counter()
        record(index, store, work / "spool", runs=[(0, frames)], target_s=60.0)
        print(f"recorded {minutes} min in {time.perf_counter() - t:.1f} s: {index.segment_count()} segments, "
              f"{sum(s.bytes for s in index.all_segments()) / 1e6:.1f} MB ({'moto S3' if use_s3 else 'local'})")
        start, end = T0, T0 + minutes * 60_000_000

        t = time.perf_counter()
        plan = plan_clip(index, "cam-1", "main", start, end, store=store)
        with open(work / "baseline.mp4", "wb") as out:
            plan.write_to(store, out)
        baseline = time.perf_counter() - t

        service = ExportService(engine, index, registry, store, work)
        job = service.create("cam-1", start, end, "bench", "bench")
        t = time.perf_counter()
        done = service.run(job.id, work / "export.mp4")
        measured = time.perf_counter() - t
        real = (end - start) / 1e6
        print(f"clip build alone (baseline): {baseline:.2f} s, {real / baseline:.0f}x real time")
        print(f"export job (verify + build + sign + store): {measured:.2f} s, {real / measured:.0f}x real time, "
              f"{measured / baseline:.2f}x the baseline; clip {done.bytes / 1e6:.1f} MB")
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10, len(sys.argv) > 2 and sys.argv[2] == "s3")
