"""Bad cameras and an unreachable store, against real peers: each fault is named, retried
sensibly, recorded as a gap with its reason, and never disturbs the other cameras."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from ingest.recording.backoff import RECONNECT_STEPS, UNAUTHORIZED_STEPS, reconnect_delay
from config.times import now_us
from tests.support.cameras import Mount
from tests.support.recording import Recorder

SMALL = (640, 360)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def cams(camera_server):  # type: ignore[no-untyped-def]
    return camera_server({
        "/good": Mount("h264", size=SMALL, label="good"),
        "/locked": Mount("h264", size=SMALL, label="locked", user="admin", password="s3cret-pw"),
        "/mjpeg": Mount("mjpeg", size=SMALL, label="mjpeg"),
        "/noisy": Mount("h264", size=SMALL, label="noisy", corrupt_ratio=0.05),
    })


def test_backoff_schedule_is_plain_data() -> None:
    expected = [d for d, n in RECONNECT_STEPS[:-1] for _ in range(n)] + [60.0] * 3
    assert [reconnect_delay(i) for i in range(len(expected))] == expected
    assert expected[0] == 1.0, "a camera back from a short outage is retried within a second"
    assert reconnect_delay(10_000) == 60.0 == RECONNECT_STEPS[-1][0]
    assert reconnect_delay(0, UNAUTHORIZED_STEPS) >= 10.0


def test_each_bad_camera_gets_its_reason_and_the_good_one_records(tmp_path: Path, cams, garbage_rtsp_server) -> None:  # type: ignore[no-untyped-def]
    cameras = {
        "good": cams.url("/good"),
        "unreachable": f"rtsp://127.0.0.1:{closed_port()}/x",
        "wrong-password": cams.url("/locked", user="admin", password="not-it"),
        "mjpeg": cams.url("/mjpeg"),
        "garbage": garbage_rtsp_server.url,
    }
    rec = Recorder.start(tmp_path, cameras, segment_target_seconds=2)
    try:
        rec.wait_for(lambda: rec.status("unreachable")["state"] == "offline", 10, "unreachable camera offline")
        rec.wait_for(lambda: rec.status("wrong-password")["state"] == "unauthorized", 15, "401 seen as unauthorized")
        rec.wait_for(lambda: rec.status("mjpeg")["state"] == "unsupported", 15, "MJPEG seen as unsupported")
        rec.wait_for(lambda: rec.status("garbage")["state"] == "offline", 15, "garbage camera offline")
        rec.wait_for(lambda: rec.status("good")["segments"] >= 2, 30, "the good camera to record two segments")
        # A wrong password is retried slowly, not in a storm: no reconnect within the first 10 s.
        assert rec.status("wrong-password")["reconnects"] <= 1
        statuses = {c: rec.status(c) for c in cameras}
    finally:
        rec.close()
    assert "connection refused" in statuses["unreachable"]["last_error"]
    assert "credentials" in statuses["wrong-password"]["last_error"]
    assert "mjpeg" in statuses["mjpeg"]["last_error"].lower()
    for cam in cameras:
        assert "not-it" not in str(statuses[cam]), "the password never appears in a status"
    reasons = {c: {g.reason for g in rec.index.gaps(c, "main")} for c in cameras}
    assert reasons["unreachable"] == {"offline"}
    assert reasons["wrong-password"] == {"unauthorized"}
    assert reasons["mjpeg"] == {"unsupported"}
    assert reasons["garbage"] <= {"network", "offline"} and reasons["garbage"]
    assert len(rec.index.segments("good")) >= 2


def test_corrupted_packets_are_recorded_through(tmp_path: Path, cams) -> None:  # type: ignore[no-untyped-def]
    rec = Recorder.start(tmp_path, {"noisy": cams.url("/noisy")}, segment_target_seconds=2)
    try:
        rec.wait_for(lambda: rec.status("noisy")["segments"] >= 3, 40, "three segments from the noisy camera")
        assert rec.status("noisy")["state"] == "recording"
    finally:
        rec.close()
    assert len(rec.index.segments("noisy")) >= 3


def test_store_unreachable_at_start_then_back(tmp_path: Path, cams, s3_server, s3_bucket) -> None:  # type: ignore[no-untyped-def]
    s3_server.stop()
    rec = Recorder.start(tmp_path, {"good": cams.url("/good")}, s3=s3_server, bucket=s3_bucket,
                         segment_target_seconds=2)
    try:
        rec.wait_for(lambda: len(rec.supervisor.spool.closed_entries()) >= 3, 30, "segments waiting in the spool")
        assert rec.index.segments("good") == []
        assert not rec.supervisor.uploader.store_available
        s3_server.start()
        rec.store.check()  # moto came back empty: the bucket is created again
        rec.wait_for(lambda: len(rec.index.segments("good")) >= 3, 30, "the backlog to upload")
    finally:
        rec.close()
    segs = rec.index.segments("good")
    for a, b in zip(segs, segs[1:]):
        assert abs(b.start_us - a.end_us) <= 40_000, "nothing lost while the store was down"
    assert {s.object_key for s in segs} == {o.key for o in rec.store.list("good/")}


def test_registry_change_reaches_a_running_recorder_within_five_seconds(tmp_path: Path, cams) -> None:  # type: ignore[no-untyped-def]
    from config.cameras import Camera

    rec = Recorder.start(tmp_path, {}, segment_target_seconds=2)
    try:
        rec.registry.add_camera(Camera(id="late", name="late", region="r", main_url=cams.url("/good")))
        took = rec.wait_for(lambda: rec.supervisor.session("late") is not None, 10, "the new camera's session")
        assert took < 5.0
        rec.wait_for(lambda: rec.status("late")["state"] == "recording", 20, "recording")
        rec.registry.update_camera("late", enabled=False)
        took = rec.wait_for(lambda: rec.supervisor.session("late") is None, 10, "the disabled camera to stop")
        assert took < 5.0
    finally:
        rec.close()
    gaps = rec.index.gaps("late", "main")
    assert gaps and gaps[-1].reason == "disabled" and gaps[-1].end_us is None
    assert gaps[-1].start_us <= now_us()


def test_a_silent_camera_is_detected_over_udp_too(tmp_path: Path, camera_server) -> None:  # type: ignore[no-untyped-def]
    srv = camera_server({"/u": Mount("h264", size=SMALL, label="u")})
    rec = Recorder.start(tmp_path, {"udp-cam": {"main_url": srv.url("/u"), "rtsp_transport": "udp"}},
                         segment_target_seconds=2, stall_timeout_seconds=3)
    try:
        rec.wait_for(lambda: rec.status("udp-cam")["state"] == "recording", 20, "recording over UDP")
        srv.pause()
        rec.wait_for(lambda: rec.status("udp-cam")["state"] == "offline", 12, "the stall watchdog over UDP")
        assert "stalled" in rec.status("udp-cam")["last_error"] or "no data" in rec.status("udp-cam")["last_error"]
    finally:
        srv.resume()
        rec.close()
