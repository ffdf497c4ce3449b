"""Spool quota policies: drop-oldest-unuploaded (also while the store is up but slow)
and stop-recording (the segmenter stops opening segments; the session records why)."""

from __future__ import annotations

import os
from pathlib import Path

from config.cameras import Camera, Region
from config.settings import Settings
from ingest.recording.access_units import AccessUnitJoiner
from ingest.recording.segmenter import Segmenter
from ingest.recording.spool import Spool, SpoolEntry
from ingest.supervisor import Supervisor
from sharpeyes.services import Services
from tests.support.packets import encode

T0 = 1_800_000_000_000_000
MB = 1024 * 1024


def _closed(spool: Spool, cam: str, start: int, size: int) -> SpoolEntry:
    e = SpoolEntry(camera_id=cam, stream="main", start_us=start, codec="h264", width=640, height=360)
    path = spool.open(e)
    path.write_bytes(os.urandom(size))
    e.end_us = start + 2_000_000
    e.keyframes = [(0, 0)]
    spool.close(e)
    return e


def test_drop_oldest_runs_on_segment_close_while_the_upload_is_slow(tmp_path: Path) -> None:
    """The store is up but one upload takes forever: closing segments must still keep the
    spool under quota, never drop the segment being uploaded, and record each loss."""
    svc = Services(Settings(data_dir=tmp_path, spool_quota_bytes=MB, spool_policy="drop-oldest-unuploaded"))
    sup = Supervisor(svc.settings, svc.registry, svc.index, svc.store)  # not started: no upload finishes
    spool, up = sup.spool, sup.uploader
    entries = [_closed(spool, "cam-a", T0 + i * 2_000_000, 300 * 1024) for i in range(3)]
    up._busy = ("cam-a", "main", entries[0].start_us)  # the upload in flight
    entries.append(_closed(spool, "cam-a", T0 + 3 * 2_000_000, 300 * 1024))
    up.notify(entries[-1])  # what the segmenter calls on close
    left = [e.start_us for e in spool.closed_entries()]
    assert left == [entries[0].start_us, entries[2].start_us, entries[3].start_us]
    assert spool.bytes_used() <= MB
    gaps = svc.index.gaps("cam-a")
    assert [(g.start_us, g.end_us, g.reason) for g in gaps] == [
        (entries[1].start_us, entries[1].end_us, "storage_unavailable")]
    assert up.dropped == 1 and sup.worker_stats()["storage_losses"] == 1


def test_stop_recording_closes_at_a_keyframe_and_resumes_below_quota(tmp_path: Path) -> None:
    encoded = encode(seconds=12, gop=25)  # a keyframe every second
    spool = Spool(tmp_path, 1 << 30)
    closed: list[SpoolEntry] = []
    refused: list[int] = []
    started: list[int] = []
    admit = {"ok": True}
    seg = Segmenter("cam-a", "main", spool, target_us=100_000_000, clock=lambda: T0, on_closed=closed.append,
                    on_started=started.append, admit=lambda: admit["ok"], on_refused=refused.append)
    seg.start_input(encoded.video, None)
    joiner = AccessUnitJoiner(frame_ticks=3600)
    first = encoded.video_packets[0].pts
    for p in encoded.video_packets:
        t = int((p.pts - first) * p.time_base * 1e6)
        admit["ok"] = not (3_000_000 <= t < 7_000_000)  # over quota from 3 s to 7 s
        for au, arrival in joiner.push(p, T0 + t):
            seg.push_video(au, arrival)
    seg.end_run()
    assert refused == [T0 + 3_000_000]  # once, at the first keyframe over quota
    assert seg.refusals == 1
    assert [(e.start_us, e.end_us) for e in closed][0] == (T0, T0 + 3_000_000)
    assert started == [T0, T0 + 7_000_000]  # the next keyframe below quota opens a segment


def test_stop_recording_session_writes_a_storage_unavailable_gap(tmp_path: Path, camera_server) -> None:  # type: ignore[no-untyped-def]
    """Through a real camera: over quota, the session opens a storage_unavailable gap from
    the end of the last segment; below quota, recording resumes and the gap closes."""
    from tests.support.cameras import Mount

    srv = camera_server({"/q": Mount("h264", size=(640, 360), label="q", gop_seconds=1)})
    svc = Services(Settings(data_dir=tmp_path, segment_target_seconds=2, spool_quota_bytes=MB,
                            spool_policy="stop-recording"))
    svc.registry.add_region(Region(code="r", name="R"))
    svc.registry.add_camera(Camera(id="cam-q", name="q", region="r", main_url=srv.url("/q")))
    sup = Supervisor(svc.settings, svc.registry, svc.index, svc.store)
    sup.start()
    try:
        import time

        def wait(cond, timeout=30.0):  # type: ignore[no-untyped-def]
            deadline = time.monotonic() + timeout
            while not cond():
                assert time.monotonic() < deadline, "timed out"
                time.sleep(0.1)

        wait(lambda: svc.index.segment_count() >= 1)
        ballast = sup.spool.root / "ballast" / "main"  # the store "down": the spool fills up
        ballast.mkdir(parents=True)
        (ballast / "x.bin").write_bytes(b"\0" * (2 * MB))
        wait(lambda: any(g.reason == "storage_unavailable" for g in svc.index.open_gaps("cam-q", "main")))
        (ballast / "x.bin").unlink()
        wait(lambda: not svc.index.open_gaps("cam-q", "main"))
        gap = [g for g in svc.index.gaps("cam-q") if g.reason == "storage_unavailable"][0]
        wait(lambda: svc.index.segments("cam-q", start_us=gap.end_us))
        before = [s for s in svc.index.segments("cam-q") if s.end_us <= gap.start_us]
        after = svc.index.segments("cam-q", start_us=gap.end_us)
        assert before[-1].end_us == gap.start_us and after[0].start_us == gap.end_us  # the gap is exact
        assert sup.worker_stats()["storage_losses"] == 1
    finally:
        sup.close()
