"""The recording acceptance run: 8 independent RTSP cameras recorded into S3 for 60 s.

Cameras: GStreamer's RTSP server (five H.264 with a 2 s GOP, one H.265, one
multi-slice H.264, one H.264 + AAC). Store: moto's S3 server. Segments: 10 s.
Everything is checked from the index and the bucket alone.
"""

from __future__ import annotations

import hashlib
import io
import time
from pathlib import Path

import av
import pytest

from config.times import now_us
from tests.support.recording import Recorder

RECORD_SECONDS = 60
FRAME_US = 40_000


@pytest.fixture
def recorded(tmp_path: Path, test_cameras, s3_server, s3_bucket):  # type: ignore[no-untyped-def]
    cameras = {name.replace("_", "-"): url for name, url in test_cameras.urls.items()}
    rec = Recorder.start(tmp_path, cameras, s3=s3_server, bucket=s3_bucket, segment_target_seconds=10)
    try:
        rec.wait_for(lambda: all(rec.status(c)["state"] == "recording" for c in cameras), 30, "every camera recording")
        time.sleep(RECORD_SECONDS)
    finally:
        left = rec.close()
    stopped_us = now_us()
    assert left == 0, "the spool must drain on a clean stop"
    return rec, cameras, stopped_us


def test_sixty_seconds_of_eight_cameras(recorded) -> None:  # type: ignore[no-untyped-def]
    rec, cameras, stopped_us = recorded
    rows = rec.index.all_segments()
    objects = {o.key: o for o in rec.store.list("")}
    assert {r.object_key for r in rows} == set(objects), "index rows and bucket objects match one to one"

    for cam in cameras:
        segs = rec.index.segments(cam, "main")
        assert len(segs) >= 5, f"{cam}: expected about six 10 s segments, got {len(segs)}"
        first_start = segs[0].start_us
        recorded_us = sum(s.end_us - s.start_us for s in segs)
        coverage = recorded_us / (stopped_us - first_start)
        assert coverage >= 0.98, f"{cam}: coverage {coverage:.3f}"
        prev = None
        for s in segs:
            data = rec.store.get_range(s.object_key, 0, s.bytes)
            assert len(data) == s.bytes == objects[s.object_key].size
            assert hashlib.sha256(data).hexdigest() == s.sha256, f"{cam}: hash of {s.object_key}"
            if prev is not None:
                assert abs(s.start_us - prev.end_us) <= FRAME_US, f"{cam}: not contiguous at {s.start_us}"
                assert s.prev_sha256 == prev.sha256, f"{cam}: hash chain broken at {s.object_key}"
            with av.open(io.BytesIO(data)) as c:
                frames = list(c.decode(video=0))
            assert frames and frames[0].key_frame, f"{cam}: {s.object_key} must start with a decodable keyframe"
            expected_codec = "hevc" if cam == "h265" else "h264"
            with av.open(io.BytesIO(data)) as c:
                assert c.streams.video[0].codec_context.name == expected_codec
                if cam == "h264-aac":
                    assert c.streams.audio and c.streams.audio[0].codec_context.name == "aac"
            assert abs(len(frames) * FRAME_US - (s.end_us - s.start_us)) <= 2 * FRAME_US, (
                f"{cam}: {len(frames)} frames in a {(s.end_us - s.start_us) / 1e6:.2f} s segment")
            prev = s
