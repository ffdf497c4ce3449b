"""Fault injection against real processes: GStreamer cameras, moto S3 in its own
process, and ``sharpeyes ingest`` as a subprocess. Loss is counted from the index and
the objects alone, and checked against the burned-in frame codes at each gap's edges.

Windows are short by default (10-30 s); ``--soak`` holds each fault for minutes.
Marked slow: run with ``pytest -m slow tests/faults``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from config.cameras import Camera, Region
from tests.faults.harness import (
    FPS,
    IngestProcess,
    Witness,
    check_rows_and_objects,
    frame_codes,
    frames_missing,
    wait_for,
)
from tests.support.cameras import Mount
from tests.support.s3server import MotoS3Server

# Part of the default run with short fault windows (10-30 s); --soak holds each fault longer.

GOP_US = 2_000_000
SIZE = (640, 360)


def _register(proc: IngestProcess, cameras: dict[str, str]) -> None:
    reg = proc.svc.registry
    reg.add_region(Region(code="county", name="County"))
    for cid, url in cameras.items():
        reg.add_camera(Camera(id=cid, name=cid, region="county", main_url=url))


def _segments(proc: IngestProcess, cam: str):  # type: ignore[no-untyped-def]
    return proc.svc.index.segments(cam)


def _loss_at(proc: IngestProcess, before, after) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """(frames missing by the decoded codes, frames missing by the index times)."""
    missing = frames_missing(frame_codes(proc.svc, before.object_key), frame_codes(proc.svc, after.object_key))
    by_index = round((after.start_us - before.end_us) / 1e6 * FPS)
    return missing, by_index


@pytest.fixture(scope="module")
def cams(camera_server):  # type: ignore[no-untyped-def]
    return camera_server({"/a": Mount("h264", size=SIZE, label="a"), "/b": Mount("h264", size=SIZE, label="b")})


def test_kill9_mid_segment_loses_at_most_a_gop_plus_restart(tmp_path: Path, cams) -> None:  # type: ignore[no-untyped-def]
    proc = IngestProcess(tmp_path, segment_target_seconds=4)
    _register(proc, {"cam-a": cams.url("/a")})
    proc.start()
    try:
        with Witness(cams.url("/a")):
            wait_for(lambda: len(_segments(proc, "cam-a")) >= 2, 40, "two segments")
            time.sleep(2.5)  # well inside the next 4 s segment: a .part with a fragment or two
            killed_us = time.time_ns() // 1000
            proc.kill9()
            parts = list((tmp_path / "spool").glob("*/*/*.part"))
            assert parts, "a partial spool file was being written"
            restart = time.monotonic()
            proc.start()
            wait_for(lambda: any(s.start_us > killed_us for s in _segments(proc, "cam-a")), 40, "recording after restart")
            restart_s = time.monotonic() - restart
            proc.terminate()
    finally:
        proc.stop()
    segs = _segments(proc, "cam-a")
    check_rows_and_objects(proc.svc)
    before = max((s for s in segs if s.start_us < killed_us), key=lambda s: s.start_us)
    after = min((s for s in segs if s.start_us > killed_us), key=lambda s: s.start_us)
    assert before.end_us > killed_us - GOP_US - 500_000, "the partial segment was recovered up to its last fragment"
    gap = [g for g in proc.svc.index.gaps("cam-a") if g.reason == "worker_restart" and g.start_us < after.start_us]
    assert [(g.start_us, g.end_us) for g in gap] == [(before.end_us, after.start_us)]
    missing, by_index = _loss_at(proc, before, after)
    print(f"\nkill -9: {missing} frames lost ({missing / FPS:.2f} s), restart took {restart_s:.1f} s; "
          f"index gap {by_index} frames")
    assert missing <= GOP_US / 1e6 * FPS + (after.start_us - killed_us) / 1e6 * FPS + 5
    # The index may overstate a gap (the new connection's wall anchor is its first packet's
    # arrival: measured ~1 s late after a restart) but must never hide a loss.
    assert by_index >= missing - 5, "the index gap covers every frame really lost"


def test_s3_outage_loses_nothing_keeps_order_and_drains_fast(tmp_path: Path, cams, fault_window) -> None:  # type: ignore[no-untyped-def]
    s3 = MotoS3Server(log_path=tmp_path / "moto.log")
    s3.start()
    bucket = "faults"
    proc = IngestProcess(tmp_path / "data", s3_endpoint=s3.endpoint, s3_access_key=s3.access_key,
                         s3_secret_key=s3.secret_key, s3_bucket=bucket, s3_region=s3.region)
    (tmp_path / "data").mkdir()
    _register(proc, {"cam-a": cams.url("/a")})
    outage = fault_window(15, 120)
    try:
        proc.start()
        wait_for(lambda: len(_segments(proc, "cam-a")) >= 2, 40, "two segments")
        s3.stop()
        down_us = time.time_ns() // 1000
        time.sleep(outage)
        s3.start()
        proc.svc.store.check()  # moto lost everything: the bucket must be created again
        up_us = time.time_ns() // 1000
        spool = tmp_path / "data" / "spool"
        wait_for(lambda: not list(spool.glob("*/*/*.mp4")), 120, "the spool to drain")
        proc.terminate()
    finally:
        proc.stop()
        s3.stop()
    segs = _segments(proc, "cam-a")
    assert not [g for g in proc.svc.index.gaps("cam-a") if g.reason != "worker_restart"], "nothing lost"
    run = [s for s in segs if s.start_us >= down_us - 4_000_000]
    for a, b in zip(run, run[1:]):
        assert b.start_us == a.end_us, "contiguous across the outage"
    created = [s.created_us for s in run]
    assert created == sorted(created), "uploaded in recording order"
    backlog = [s for s in run if s.created_us >= up_us]
    video_s = sum(s.end_us - s.start_us for s in backlog) / 1e6
    wall_s = (backlog[-1].created_us - backlog[0].created_us) / 1e6 + 1e-6
    print(f"\nS3 down {outage} s: {len(backlog)} backlog segments ({video_s:.0f} s of video) drained in "
          f"{wall_s:.2f} s = {video_s / wall_s:.0f}x real time")
    assert video_s / wall_s >= 5


def test_camera_outage_and_stall(tmp_path: Path, camera_server, fault_window) -> None:  # type: ignore[no-untyped-def]
    srv = camera_server({"/o": Mount("h264", size=SIZE, label="o", gop_seconds=1)})
    proc = IngestProcess(tmp_path, stall_timeout_seconds=3)
    _register(proc, {"cam-o": srv.url("/o")})
    outage = fault_window(12, 30)
    try:
        proc.start()
        wait_for(lambda: len(_segments(proc, "cam-o")) >= 1, 40, "a segment")
        wait_for(lambda: proc.camera_up("cam-o") == 1.0, 10, "up")
        srv.stop()
        stopped_us = time.time_ns() // 1000
        offline_s = wait_for(lambda: proc.camera_up("cam-o") == 0.0, 15, "offline")
        time.sleep(max(0.0, outage - offline_s))
        srv.start()
        back_us = time.time_ns() // 1000
        wait_for(lambda: any(s.start_us > back_us for s in _segments(proc, "cam-o")), 30, "recording again")
        # The stall: TCP open, nothing sent. The watchdog must notice.
        srv.pause()
        paused_us = time.time_ns() // 1000
        stall_s = wait_for(lambda: proc.camera_up("cam-o") == 0.0, 15, "stall detected")
        srv.resume()
        wait_for(lambda: any(s.start_us > paused_us for s in _segments(proc, "cam-o")), 40, "recording after stall")
        proc.terminate()
    finally:
        if srv.running:
            srv.resume()
        proc.stop()
    segs = _segments(proc, "cam-o")
    before = max((s for s in segs if s.start_us < stopped_us), key=lambda s: s.start_us)
    after = min((s for s in segs if s.start_us > back_us), key=lambda s: s.start_us)
    gaps = [g for g in proc.svc.index.gaps("cam-o") if before.end_us <= g.start_us < after.start_us]
    assert [(g.start_us, g.end_us) for g in gaps] == [(before.end_us, after.start_us)], "one gap, exactly the outage"
    assert gaps[0].reason in ("offline", "network")
    resume_s = (after.start_us - back_us) / 1e6
    print(f"\ncamera down {outage} s: offline after {offline_s:.1f} s, recording {resume_s:.2f} s after return; "
          f"gap {before.end_us - stopped_us:+d} us from the stop; stall detected after {stall_s:.1f} s")
    assert offline_s <= 10
    assert resume_s <= 3
    assert abs(before.end_us - stopped_us) <= 1_500_000  # the last frame before the stop
    assert stall_s <= 3 + 5
    stall_gaps = [g for g in proc.svc.index.gaps("cam-o") if g.start_us >= paused_us - 1_500_000]
    assert stall_gaps and stall_gaps[0].reason in ("network", "offline")


def test_sigterm_closes_uploads_and_restart_gap_is_bounded(tmp_path: Path, cams) -> None:  # type: ignore[no-untyped-def]
    proc = IngestProcess(tmp_path, segment_target_seconds=4, shutdown_timeout_seconds=10)
    _register(proc, {"cam-a": cams.url("/a"), "cam-b": cams.url("/b")})
    try:
        proc.start()
        wait_for(lambda: len(_segments(proc, "cam-b")) >= 2, 40, "segments")
        time.sleep(2)
        term_us = time.time_ns() // 1000
        took = proc.terminate()
        assert proc.proc is not None and proc.proc.returncode == 0
        assert not list((tmp_path / "spool").glob("*/*/*.*[!n]")), "spool drained before exit"
        restart = time.monotonic()
        proc.start()
        wait_for(lambda: all(any(s.start_us > term_us for s in _segments(proc, c)) for c in ("cam-a", "cam-b")),
                 40, "recording after restart")
        restart_us = int((time.monotonic() - restart) * 1e6)
        proc.terminate()
    finally:
        proc.stop()
    check_rows_and_objects(proc.svc)
    print(f"\nSIGTERM: exited in {took:.2f} s; restart {restart_us / 1e6:.1f} s")
    assert took <= 10 + 2
    for cam in ("cam-a", "cam-b"):
        segs = _segments(proc, cam)
        before = max((s for s in segs if s.start_us < term_us), key=lambda s: s.start_us)
        after = min((s for s in segs if s.start_us > term_us), key=lambda s: s.start_us)
        assert before.end_us >= term_us - GOP_US - 500_000, "closed at the last keyframe, not the last segment cut"
        g = [g for g in proc.svc.index.gaps(cam) if g.reason == "worker_restart" and g.start_us < after.start_us]
        assert [(x.start_us, x.end_us) for x in g] == [(before.end_us, after.start_us)]
        assert after.start_us - before.end_us <= restart_us + took * 1e6 + GOP_US


def test_corrupt_camera_records_and_leaves_others_alone(tmp_path: Path, camera_server) -> None:  # type: ignore[no-untyped-def]
    srv = camera_server({"/bad": Mount("h264", size=SIZE, label="bad", corrupt_ratio=0.01),
                         "/good": Mount("h264", size=SIZE, label="good")})
    proc = IngestProcess(tmp_path)
    _register(proc, {"cam-bad": srv.url("/bad"), "cam-good": srv.url("/good")})
    try:
        proc.start()
        wait_for(lambda: len(_segments(proc, "cam-good")) >= 6, 60, "the good camera's segments")
        assert proc.proc is not None and proc.proc.poll() is None, "the worker survived"
        proc.terminate()
    finally:
        proc.stop()
    good = _segments(proc, "cam-good")
    for a, b in zip(good, good[1:]):
        assert b.start_us == a.end_us, "the good camera recorded without a gap"
    assert _segments(proc, "cam-bad"), "the corrupt camera recorded what it could"
    check_rows_and_objects(proc.svc)
