"""The native puller records through the real Supervisor: segments in the index that FFmpeg plays,
one sample per picture from the first (multi-slice cameras), and the status says which puller."""

from __future__ import annotations

import io
import time
from pathlib import Path

import av

from tests.support.cameras import Mount
from tests.support.recording import Recorder

SIZE = (640, 360)


def test_native_puller_records_playable_segments_one_sample_per_picture(tmp_path: Path, camera_server) -> None:  # type: ignore[no-untyped-def]
    srv = camera_server({"/s": Mount("h264_slices", size=SIZE, label="ns1"),
                         "/h5": Mount("h265", size=SIZE, label="ns2"),
                         "/a": Mount("h264_aac", size=SIZE, label="ns3")})
    cams = {"slices": srv.url("/s"), "hevc": srv.url("/h5"), "aac": srv.url("/a")}
    rec = Recorder.start(tmp_path, cams, segment_target_seconds=3)
    try:
        rec.wait_for(lambda: all(rec.status(c)["state"] == "recording" for c in cams), 30, "recording")
        assert {rec.status(c)["puller"] for c in cams} == {"native"}
        time.sleep(8)
        status = rec.status("slices")
        assert status["lost_packets"] == 0 and status["errors"] == 0
    finally:
        assert rec.close() == 0
    for cam in cams:
        segs = rec.index.segments(cam, "main")
        assert len(segs) >= 2, cam
        for s in segs:
            data = rec.store.get_range(s.object_key, 0, s.bytes)
            with av.open(io.BytesIO(data)) as c:
                v = c.streams.video[0]
                assert v.codec_context.name == ("hevc" if cam == "hevc" else "h264")
                packets = [p for p in c.demux(v) if p.size]
                if cam == "aac":
                    assert c.streams.audio and c.streams.audio[0].codec_context.name == "aac"
            pts = [p.pts for p in packets]
            assert len(pts) == len(set(pts)), f"{cam}: a picture stored twice"
            assert packets[0].is_keyframe
            assert abs(len(packets) * 40_000 - (s.end_us - s.start_us)) <= 80_000
            assert s.keyframes, f"{cam}: keyframe table"
        for a, b in zip(segs, segs[1:]):
            assert abs(b.start_us - a.end_us) <= 40_000 and b.prev_sha256 == a.sha256


def test_the_puller_is_chosen_per_camera_and_shown_in_the_status(tmp_path: Path, camera_server) -> None:  # type: ignore[no-untyped-def]
    srv = camera_server({"/t": Mount("h264", size=SIZE, label="nt1")})
    cams = {"ff": {"main_url": srv.url("/t"), "puller": "ffmpeg"}, "nat": srv.url("/t")}
    rec = Recorder.start(tmp_path, cams)
    try:
        rec.wait_for(lambda: all(rec.status(c)["state"] == "recording" for c in cams), 30, "recording")
        assert rec.status("ff")["puller"] == "ffmpeg" and rec.status("nat")["puller"] == "native"
        assert rec.registry.camera("ff").puller == "ffmpeg" and rec.registry.camera("nat").puller is None
    finally:
        rec.close()
    pyav = Recorder.start(tmp_path / "all-ffmpeg", {"x": srv.url("/t")}, ingest_puller="ffmpeg")
    try:
        pyav.wait_for(lambda: pyav.status("x")["state"] == "recording", 30, "recording")
        assert pyav.status("x")["puller"] == "ffmpeg"
    finally:
        pyav.close()


def test_udp_through_a_path_that_drops_and_reorders_one_percent(tmp_path: Path, camera_server) -> None:  # type: ignore[no-untyped-def]
    from tests.support.rtsp_udp_proxy import LossyRtspProxy

    srv = camera_server({"/u": Mount("h264", size=SIZE, label="nu1")})
    proxy = LossyRtspProxy("127.0.0.1", srv.port, loss=0.01, reorder=0.01).start()
    try:
        rec = Recorder.start(tmp_path, {"udp": {"main_url": proxy.url("/u"), "rtsp_transport": "udp"}},
                             segment_target_seconds=4)
        try:
            rec.wait_for(lambda: rec.status("udp")["state"] == "recording", 30, "recording")
            time.sleep(14)
            status = rec.status("udp")
            dropped_then = proxy.dropped
            assert status["state"] == "recording" and status["puller"] == "native"
        finally:
            assert rec.close() == 0
    finally:
        proxy.stop()
    assert proxy.dropped > 0 and proxy.reordered > 0
    # Dropped packets are counted lost and shown in the status. The status is refreshed once a GOP,
    # so it may lag the proxy's count by the drops of the last GOP; it never counts more than dropped.
    assert dropped_then // 2 <= status["lost_packets"] <= proxy.dropped
    assert status["errors"] >= 1 and status["dropped_frames"] >= 1
    segs = rec.index.segments("udp", "main")
    assert len(segs) >= 2
    for s in segs:
        with av.open(io.BytesIO(rec.store.get_range(s.object_key, 0, s.bytes))) as c:
            frames = list(c.decode(video=0))  # a lost picture is dropped, never stored broken
        assert frames and frames[0].key_frame
