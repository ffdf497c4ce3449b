"""clip.mp4 from real recorded segments: frame-exact, across segments and gaps, Range, playable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from storage.archive.clips import plan_clip
from tests.archive.conftest import GAP, Archive
from tests.archive.helpers import code_at, decode, ffprobe, presented
from tests.archive.recorded import FRAME_US, T0


def ms(t_us: int) -> int:
    return t_us // 1000


def shown_from(frames: list, shown: list) -> int:
    return frames.index(shown[0])


def clip_url(start_us: int, end_us: int, cam: str = "cam-1", **extra: str) -> str:
    q = "&".join(f"{k}={v}" for k, v in extra.items())
    return f"/api/cameras/{cam}/clip.mp4?start={ms(start_us)}&end={ms(end_us)}" + (f"&{q}" if q else "")


def test_frame_exact_start_and_end_across_a_segment_boundary(archive: Archive, tmp_path: Path) -> None:
    start, end = T0 + 3_690_000, T0 + 9_130_000  # mid-frame, mid-GOP; segments 0-4, 4-8, 8-12
    r = archive.get(clip_url(start, end))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "video/mp4"
    assert int(r.headers["content-length"]) == len(r.content)
    frames = decode(r.content)
    shown = presented(frames)
    assert abs(shown[0].code - code_at(start)) <= 1, "first presented frame is the one on screen at start"
    assert shown[-1].code == code_at(end - 1), "last frame is the last one before end"
    assert frames[-1].code == code_at(end - 1), "frames at or after end are not in the clip at all"
    codes = [f.code for f in frames]
    assert codes == list(range(codes[0], codes[-1] + 1)), "every frame once, in order, across segment boundaries"
    assert frames[0].code == 75, "decoding starts at the keyframe at or before start (GOP = 25 frames)"
    assert all(-0.001 < f.time < 0 for f in frames[:shown_from(frames, shown)]), "pre-roll folded before 0"
    # The presentation timeline is wall time minus start.
    for f in shown[1:]:
        assert f.time == pytest.approx((f.wall_us - start) / 1e6, abs=FRAME_US / 1e6)


def test_ffprobe_sees_the_requested_span(archive: Archive, tmp_path: Path) -> None:
    start, end = T0 + 5_500_000, T0 + 11_000_000
    path = tmp_path / "c.mp4"
    path.write_bytes(archive.get(clip_url(start, end)).content)
    info = ffprobe(path)
    assert info["streams"][0]["codec_name"] == "h264" and info["streams"][0]["width"] == 640
    fmt = info["format"]
    assert float(fmt["duration"]) == pytest.approx((end - start) / 1e6, abs=FRAME_US / 1e6)
    # The GOP's pre-roll is folded to a tick per frame before 0: FFmpeg sees it as
    # starting a fraction of a millisecond early, not half a second.
    assert -0.001 < float(fmt["start_time"]) <= 0


def test_a_gap_inside_the_range_is_jumped_over_and_listed(archive: Archive) -> None:
    start, end = T0 + 10_500_000, T0 + 17_500_000  # run A ends at 12 s, run B starts at 16 s
    r = archive.get(clip_url(start, end))
    assert r.status_code == 200, r.text
    gaps = json.loads(r.headers["x-sharpeyes-gaps"])
    assert gaps == [{"start": "2025-06-15T08:00:12.000Z", "end": "2025-06-15T08:00:16.000Z", "reason": "offline"}]
    shown = presented(decode(r.content))
    codes = [f.code for f in shown]
    assert codes[0] in (code_at(start) - 1, code_at(start), code_at(start) + 1)
    assert codes[-1] == code_at(end - 1)
    assert code_at(GAP[0]) not in codes and code_at(GAP[0]) - 1 in codes and code_at(GAP[1]) in codes
    # The clip's timeline keeps wall time: after the gap, clip time t still shows start + t.
    after = next(f for f in shown if f.code == code_at(GAP[1]))
    assert after.time == pytest.approx((GAP[1] - start) / 1e6, abs=0.001)


def test_range_requests_return_the_bytes_of_the_whole_file(archive: Archive) -> None:
    url = clip_url(T0 + 2_000_000, T0 + 9_000_000)
    full = archive.get(url).content
    n = len(full)
    for header, first, stop in [("bytes=0-99", 0, 100), ("bytes=500-", 500, n), ("bytes=-1000", n - 1000, n),
                                ("bytes=100000-200000", 100000, 200001), (f"bytes={n - 1}-{n + 50}", n - 1, n)]:
        r = archive.get(url, headers={"Range": header})
        assert r.status_code == 206, header
        assert r.headers["content-range"] == f"bytes {first}-{stop - 1}/{n}"
        assert r.content == full[first:stop], header
    r = archive.get(url, headers={"Range": f"bytes={n}-"})
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{n}"
    r = archive.get(url, headers={"Range": "bytes=0-1,5-6"})
    assert r.status_code == 416


def test_headers_name_the_file_and_offer_ranges(archive: Archive) -> None:
    r = archive.get(clip_url(T0 + 1_000_000, T0 + 2_000_000))
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["content-disposition"] == (
        'attachment; filename="cam-1_20250615T080001000Z_20250615T080002000Z.mp4"'
    )
    assert r.headers["x-sharpeyes-gaps"] == "[]"


def test_a_range_starting_before_the_first_recording_starts_at_it(archive: Archive) -> None:
    r = archive.get(clip_url(T0 - 5_000_000, T0 + 1_000_000))
    assert r.status_code == 200
    assert r.headers["x-sharpeyes-start"] == "2025-06-15T08:00:00.000Z"
    gaps = json.loads(r.headers["x-sharpeyes-gaps"])
    assert gaps == [], "the clip covers what it shows; the timeline reports the hole before"
    shown = presented(decode(r.content))
    assert shown[0].code == 0 and shown[-1].code == 24


def test_clip_plan_is_the_streamed_file(archive: Archive) -> None:
    start, end = T0 + 3_000_000, T0 + 20_000_000
    plan = plan_clip(archive.index, "cam-1", "main", start, end, store=archive.store)
    data = b"".join(plan.iter_bytes(archive.store))
    assert len(data) == plan.size
    assert data == archive.get(clip_url(start, end)).content
    assert [s.start_us - T0 for s in plan.segments] == [0, 4_000_000, 8_000_000, 16_000_000]
    seqs = [f.sequence for f in plan.fragments]
    assert seqs == list(range(1, len(seqs) + 1))
