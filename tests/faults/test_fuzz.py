"""Fuzzing the input path with hypothesis: malformed H.264/H.265 access units through
the joiner, the segmenter and the camera session, and malformed MP4 through the parsers
the spool recovery and playback use. Nothing may escape the camera session; the parsers
may only refuse with ValueError (which their callers handle)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import av
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.cameras import Camera
from ingest.recording.segmenter import Segmenter
from ingest.recording.session import CameraSession
from ingest.recording.spool import Spool
from storage.db.engine import open_engine
from storage.index.segments import SegmentIndex
from storage.index.keyframes import unpack_keyframes
from storage.mp4.read import init_segment_size, parse_init, scan_fragments
from tests.support.packets import encode

FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
T0 = 1_800_000_000_000_000

START = b"\x00\x00\x00\x01"
# NAL headers: H.264 SPS/PPS/IDR/non-IDR/SEI, H.265 VPS/SPS/PPS/IDR
NAL_HEADERS = [b"\x67", b"\x68", b"\x65", b"\x41", b"\x06", b"\x40\x01", b"\x42\x01", b"\x44\x01", b"\x26\x01"]

nal = st.builds(lambda h, body: START + h + body, st.sampled_from(NAL_HEADERS), st.binary(max_size=64))
access_unit = st.one_of(st.binary(max_size=200), st.lists(nal, min_size=1, max_size=4).map(b"".join))
step = st.sampled_from([3600, 3600, 3600, 0, -3600, 90000 * 10, 1])  # normal, repeat, back, jump


@pytest.fixture(scope="module")
def streams():  # type: ignore[no-untyped-def]
    return {"h264": encode("h264", seconds=1), "hevc": encode("hevc", seconds=1)}


@FUZZ
@given(codec=st.sampled_from(["h264", "hevc"]),
       units=st.lists(st.tuples(access_unit, st.booleans(), step, st.booleans()), min_size=1, max_size=40))
def test_malformed_access_units_never_escape_the_session(streams, codec, units) -> None:  # type: ignore[no-untyped-def]
    enc = streams[codec]
    with tempfile.TemporaryDirectory() as tmp:
        engine = open_engine(f"sqlite:///{tmp}/index.db")
        spool = Spool(Path(tmp) / "spool", 1 << 30)
        seg = Segmenter("cam-f", "main", spool, target_us=1_000_000, clock=lambda: T0, on_closed=lambda e: None)
        cam = Camera(id="cam-f", name="f", region="r", main_url="rtsp://127.0.0.1/x")
        session = CameraSession(cam, "main", seg, SegmentIndex(engine), clock=lambda: T0)
        seg.start_input(enc.video, None)
        pts = 0
        # Real first keyframe so the segmenter opens a file, then the fuzzed units.
        first = enc.video_packets[0]
        for data, key, dt, no_pts in [(bytes(first), True, 0, False)] + units:
            p = av.Packet(data)
            pts += dt
            p.pts = None if no_pts else pts
            p.dts = p.pts
            p.time_base = enc.video.time_base
            p.stream = enc.video
            p.is_keyframe = key
            if p.pts is None:
                continue  # the joiner drops or places these; see test_access_units
            session._on_access_unit(p, T0 + pts * 100 // 9)  # what the pull loop calls
        spool.recover()  # as after a kill -9 here: the open .part is cut to its last fragment
        engine.dispose()


@FUZZ
@given(data=st.binary(max_size=600), cut=st.integers(0, 600))
def test_mp4_parsers_refuse_garbage_with_value_error(streams, data, cut) -> None:  # type: ignore[no-untyped-def]
    _parse(data)
    _parse(_real_segment(streams)[:cut] + data)  # a real file, truncated, then garbage


def _parse(data: bytes) -> None:
    try:
        size = init_segment_size(data)
        tracks = parse_init(data[:size])
        scan_fragments(data, tracks, size)
    except ValueError:
        pass


_SEGMENT: list[bytes] = []


def _real_segment(streams) -> bytes:  # type: ignore[no-untyped-def]
    if not _SEGMENT:
        with tempfile.TemporaryDirectory() as tmp:
            spool = Spool(Path(tmp), 1 << 30)
            closed = []
            seg = Segmenter("cam-f", "main", spool, target_us=10_000_000, clock=lambda: T0, on_closed=closed.append)
            enc = streams["h264"]
            seg.start_input(enc.video, None)
            for p in enc.video_packets:
                seg.push_video(p, T0 + int(p.pts * p.time_base * 1e6))
            seg.end_run()
            _SEGMENT.append(spool.media_path(closed[0]).read_bytes())
    return _SEGMENT[0]


@FUZZ
@given(data=st.binary(max_size=200))
def test_keyframe_tables_refuse_garbage_with_value_error(data: bytes) -> None:
    try:
        unpack_keyframes(data)
    except ValueError:
        pass
