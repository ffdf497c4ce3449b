"""The archive of a camera that sends B-frames: segments, keyframe tables, clip.mp4, exports.

The camera's frames come in decode order with presentation times only (libx264, 3 B-frames
in a pyramid, GOP 25, burned-in frame codes); the archive layout is the one of
``tests.archive.conftest`` (run A 0-12 s, a gap, run B 16-24 s, 4 s segments).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest

from storage.evidence.exports import ExportService
from storage.evidence.manifest import verify_clip
from storage.evidence.signing import load_signing_key
from storage.index.keyframes import unpack_keyframes
from storage.mp4.read import init_segment_size, parse_init, presented_at, scan_fragments
from tests.archive.conftest import Archive, build_archive
from tests.archive.helpers import code_at, decode, ffprobe
from tests.archive.recorded import FRAME_US, T0
from tests.support.frames import continuity, presented_codes

REORDER_DEPTH = 2  # libx264 -bf 3 with its default b-pyramid


@pytest.fixture(scope="module")
def bf_archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    a = build_archive(tmp_path_factory.mktemp("bframes-archive"), kind="h264_bframes")
    with a.client:
        yield a
    a.index.engine.dispose()


def ms(t_us: int) -> int:
    return t_us // 1000


def test_segments_are_whole_runs_with_exact_keyframe_tables(bf_archive: Archive) -> None:
    rows = bf_archive.index.segments("cam-1", "main")
    assert [(r.start_us - T0, r.end_us - T0) for r in rows] == [
        (0, 4_000_000), (4_000_000, 8_000_000), (8_000_000, 12_000_000),
        (16_000_000, 20_000_000), (20_000_000, 24_000_000)]
    parts = []
    for r in rows:
        data = bf_archive.store.get_range(r.object_key, 0, r.bytes)
        size = init_segment_size(data)
        tracks = parse_init(data[:size])
        video = next(t for t in tracks.values() if t.handler == "vide")
        assert video.media_time == REORDER_DEPTH * 3600, "the edit list hides the decoder's delay"
        frags = scan_fragments(data, tracks, size)
        table = [(k.offset_us, k.byte_offset) for k in unpack_keyframes(r.keyframes)]
        assert table == [(presented_at(f.runs[video.track_id].samples[0], video) * 1_000_000 // 90000, f.moof_offset)
                         for f in frags]
        assert [k for k, _ in table] == list(range(0, 4_000_000, 1_000_000))
        samples = [s for f in frags for s in f.runs[video.track_id].samples]
        assert any(s.composition_offset != samples[0].composition_offset for s in samples), "B-frames reorder"
        codes = presented_codes(data)
        assert codes == list(range(code_at(r.start_us), code_at(r.end_us))), "each frame once, presentation order"
        parts.append(codes)
    assert continuity(parts[:3], 600).lost_at_cuts == 0


def test_a_clip_holds_exactly_the_requested_frames(bf_archive: Archive) -> None:
    start, end = T0 + 3_690_000, T0 + 9_130_000  # mid-frame, mid-GOP, over two segment boundaries
    r = bf_archive.get(f"/api/cameras/cam-1/clip.mp4?start={ms(start)}&end={ms(end)}")
    assert r.status_code == 200, r.text
    frames = decode(r.content)
    duration = (end - start) / 1e6
    shown = [f for i, f in enumerate(frames)
             if f.time < duration - 1e-6 and (i + 1 == len(frames) or frames[i + 1].time > 1e-6)]
    assert [f.code for f in shown] == list(range(code_at(start), code_at(end - 1) + 1)), \
        "from the frame on screen at start to the last one before end, each once, in order"
    for f in shown[1:]:
        assert f.time == pytest.approx((f.wall_us - start) / 1e6, abs=FRAME_US / 1e6)
    before = frames[:frames.index(shown[0])]
    assert before and all(-0.001 < f.time < 0 for f in before), "the GOP's pre-roll is folded before 0"
    after = frames[frames.index(shown[-1]) + 1:]
    # A B-frame before ``end`` may reference a frame presented after it: those stay in
    # the file (decodable), after the edit list's end.
    assert len(after) <= REORDER_DEPTH and all(f.time >= duration - 1e-6 for f in after)


def test_ffprobe_sees_the_requested_span(bf_archive: Archive, tmp_path: Path) -> None:
    start, end = T0 + 5_500_000, T0 + 11_000_000
    path = tmp_path / "c.mp4"
    path.write_bytes(bf_archive.get(f"/api/cameras/cam-1/clip.mp4?start={ms(start)}&end={ms(end)}").content)
    fmt = ffprobe(path)["format"]
    assert -0.001 < float(fmt["start_time"]) <= 0
    assert float(fmt["duration"]) == pytest.approx((end - start) / 1e6, abs=3 * FRAME_US / 1e6)


def test_a_clip_across_the_gap_keeps_its_frames_at_their_times(bf_archive: Archive) -> None:
    start, end = T0 + 10_000_000, T0 + 18_000_000
    frames = decode(bf_archive.get(f"/api/cameras/cam-1/clip.mp4?start={ms(start)}&end={ms(end)}").content)
    codes = [f.code for f in frames if 0 <= f.time < (end - start) / 1e6]
    assert codes == list(range(code_at(start), code_at(T0 + 12_000_000))) + list(
        range(code_at(T0 + 16_000_000), code_at(end)))
    after_gap = next(f for f in frames if f.code == code_at(T0 + 16_000_000))
    assert after_gap.time == pytest.approx(6.0, abs=FRAME_US / 1e6)


def test_an_export_verifies(bf_archive: Archive, tmp_path: Path) -> None:
    a = bf_archive
    svc = ExportService(a.index.engine, a.index, a.registry, a.store, a.settings.data_dir)
    job = svc.create("cam-1", T0 + 2_020_000, T0 + 6_500_000, "case b-frames", "inv")
    done = svc.run(job.id, tmp_path / "clip.mp4")
    assert done.status == "done", done
    report = verify_clip(tmp_path / "clip.mp4", tmp_path / "clip.manifest.json",
                         load_signing_key(a.settings.data_dir).public_key())
    assert report.ok, report
    manifest = json.loads((tmp_path / "clip.manifest.json").read_text())
    assert len(manifest["segments"]) == 2
    frames = decode(str(tmp_path / "clip.mp4"))
    shown = [f.code for f in frames if 0 <= f.time < 4.48]
    assert shown == list(range(code_at(T0 + 2_020_000), code_at(T0 + 6_500_000 - 1) + 1))
