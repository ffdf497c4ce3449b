"""The segmenter against real PyAV encodes: cuts, time model, quirks, and files that decode."""

from __future__ import annotations

from pathlib import Path

import av
import pytest

from ingest.recording.access_units import AccessUnitJoiner, DecodeTimestamper
from ingest.recording.segmenter import Segmenter, parameter_sets
from ingest.recording.spool import Spool, SpoolEntry
from storage.index.keyframes import Keyframe
from storage.mp4.read import init_segment_size, parse_init, presented_at, scan_fragments
from tests.support.packets import clone, encode, split_nals

T0 = 1_800_000_000_000_000  # a fixed wall clock start, in microseconds


class FakeClock:
    """Wall clock that follows the media: what a camera on a perfect network looks like."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


def run(encoded, target_s: float = 2.0, packets=None, tmp: Path | None = None, clock=None, **kw):
    spool = Spool(tmp, 1 << 30)
    closed: list[SpoolEntry] = []
    clock = clock or FakeClock()
    seg = Segmenter("cam-1", "main", spool, target_us=int(target_s * 1e6), clock=clock,
                    on_closed=closed.append, **kw)
    seg.start_input(encoded.video, encoded.audio)
    joiner = AccessUnitJoiner(frame_ticks=3600)
    for p in packets if packets is not None else encoded.video_packets:
        if p.pts is not None:
            clock.now = T0 + int((p.pts - encoded.video_packets[0].pts) * p.time_base * 1e6)
        for au, arrival in joiner.push(p, clock.now):
            seg.push_video(au, arrival)
    for au, arrival in joiner.flush():
        seg.push_video(au, arrival)
    seg.end_run()
    return spool, closed


def decode_all(path: Path) -> list[av.VideoFrame]:
    with av.open(str(path)) as c:
        return list(c.decode(video=0))


def check_file(spool: Spool, entry: SpoolEntry) -> list[av.VideoFrame]:
    path = spool.media_path(entry)
    data = path.read_bytes()
    isz = init_segment_size(data)
    tracks = parse_init(data[:isz])
    vid = next(t for t in tracks.values() if t.handler == "vide")
    frags = scan_fragments(data, tracks, isz)
    table = [(presented_at(f.runs[vid.track_id].samples[0], vid) * 1_000_000 // vid.timescale, f.moof_offset)
             for f in frags]
    assert entry.keyframes == table, "keyframe table must match the fragments in the file"
    assert all(f.runs[vid.track_id].samples[0].keyframe for f in frags), "every fragment starts at a keyframe"
    frames = decode_all(path)
    assert frames, "segment must decode"
    return frames


def test_cuts_at_keyframes_contiguous_and_decodable(tmp_path: Path) -> None:
    enc = encode(seconds=8.0, gop=25)  # keyframe every 1 s
    spool, closed = run(enc, target_s=2.0, tmp=tmp_path)
    assert len(closed) == 4
    for a, b in zip(closed, closed[1:]):
        assert a.end_us == b.start_us, "segments of one run are contiguous to the microsecond"
    for e in closed:
        assert e.end_us - e.start_us == pytest.approx(2_000_000, abs=1)
        frames = check_file(spool, e)
        assert len(frames) == 50
        assert len(e.keyframes) == 2  # one fragment per GOP
    assert closed[0].start_us == T0
    total = sum(e.end_us - e.start_us for e in closed)
    assert total == pytest.approx(8_000_000, abs=1)


def test_leading_idr_without_pts_is_recorded(tmp_path: Path) -> None:
    enc = encode(seconds=4.0, gop=25)
    pkts = list(enc.video_packets)
    no_pts = clone(pkts[0])
    no_pts.pts = None
    no_pts.dts = None
    spool, closed = run(enc, packets=[no_pts] + pkts[1:], tmp=tmp_path)
    assert closed[0].start_us == T0
    assert sum(len(check_file(spool, e)) for e in closed) == len(pkts)


def test_recording_starts_at_the_first_keyframe(tmp_path: Path) -> None:
    enc = encode(seconds=4.0, gop=25)
    pkts = list(enc.video_packets)
    # A camera joined mid-GOP: frames before the next keyframe cannot be decoded alone.
    spool, closed = run(enc, packets=pkts[10:], tmp=tmp_path)
    assert closed[0].start_us == T0 + int((pkts[25].pts - pkts[0].pts) / 90000 * 1e6)
    frames = check_file(spool, closed[0])
    assert frames[0].key_frame


def test_multi_slice_frames_are_joined_into_one_sample(tmp_path: Path) -> None:
    enc = encode(seconds=4.0, gop=25, slices=4)
    split = [q for p in enc.video_packets for q in split_nals(p)]
    assert len(split) > len(enc.video_packets), "the clip must have frames of several NAL units"
    spool, closed = run(enc, packets=split, tmp=tmp_path)
    frames = [f for e in closed for f in check_file(spool, e)]
    assert len(frames) == len(enc.video_packets)


def test_backward_pts_jump_closes_segment_and_never_overlaps(tmp_path: Path) -> None:
    enc = encode(seconds=6.0, gop=25)
    pkts = enc.video_packets
    # Frames 0..74, then the camera's clock restarts: 75.. come again with the pts of 0..
    jumped = pkts[:75] + [clone(p, pts=p.pts - pkts[75].pts + pkts[0].pts) for p in pkts[75:]]
    clock = FakeClock()

    spool = Spool(tmp_path, 1 << 30)
    closed: list[SpoolEntry] = []
    seg = Segmenter("cam-1", "main", spool, target_us=2_000_000, clock=clock, on_closed=closed.append)
    seg.start_input(enc.video, None)
    for i, p in enumerate(jumped):
        clock.now = T0 + i * 40_000  # the wall clock keeps going
        seg.push_video(p)
    seg.end_run()
    assert seg.discontinuities == 1
    for a, b in zip(closed, closed[1:]):
        assert b.start_us >= a.end_us, "no overlap after a jump"
    assert sum(len(check_file(spool, e)) for e in closed) == 150


def test_forward_jump_past_bound_starts_new_run(tmp_path: Path) -> None:
    enc = encode(seconds=4.0, gop=25)
    pkts = enc.video_packets
    jump = 30 * 90000  # 30 s forward
    jumped = pkts[:50] + [clone(p, pts=p.pts + jump) for p in pkts[50:]]
    spool, closed = run(enc, packets=jumped, tmp=tmp_path, max_jump_us=5_000_000)
    # FakeClock follows media time, so the second run starts 30 s after the first ended.
    assert len(closed) >= 2
    assert closed[1].start_us - closed[0].end_us == pytest.approx(30_000_000, abs=50_000)


def test_h265_is_tagged_hvc1(tmp_path: Path) -> None:
    enc = encode("hevc", seconds=3.0, gop=25)
    spool, closed = run(enc, tmp=tmp_path)
    assert closed[0].codec == "h265"
    with av.open(str(spool.media_path(closed[0]))) as c:
        assert c.streams.video[0].codec_context.codec_tag == "hvc1"
    check_file(spool, closed[0])


def test_aac_audio_is_recorded_with_the_video(tmp_path: Path) -> None:
    enc = encode(seconds=4.0, gop=25, audio=True)
    spool = Spool(tmp_path, 1 << 30)
    closed: list[SpoolEntry] = []
    clock = FakeClock()
    seg = Segmenter("cam-1", "main", spool, target_us=2_000_000, clock=clock, on_closed=closed.append)
    seg.start_input(enc.video, enc.audio)
    merged = sorted(enc.video_packets + enc.audio_packets, key=lambda p: float(p.pts * p.time_base))
    for p in merged:
        if p.stream is enc.video:
            seg.push_video(p)
        else:
            seg.push_audio(p)
    seg.end_run()
    assert closed[0].audio_codec == "aac"
    with av.open(str(spool.media_path(closed[0]))) as c:
        assert c.streams.audio and c.streams.audio[0].codec_context.name == "aac"
        assert sum(1 for _ in c.decode(audio=0)) > 50


def test_parameter_sets_are_taken_in_band_when_sdp_has_none(tmp_path: Path) -> None:
    enc = encode(seconds=3.0, gop=25)
    assert parameter_sets(bytes(enc.video_packets[0]), "h264")
    enc.video.codec_context.extradata = None
    spool, closed = run(enc, tmp=tmp_path)
    check_file(spool, closed[0])


def test_segment_names_its_camera_and_start(tmp_path: Path) -> None:
    enc = encode(seconds=2.0, gop=25)
    spool, closed = run(enc, tmp=tmp_path, target_s=10)
    with av.open(str(spool.media_path(closed[0]))) as c:
        assert c.metadata["title"] == "cam-1/main"
        assert c.metadata["comment"] == f"sharpeyes start_us={closed[0].start_us}"


def test_a_burst_of_buffered_frames_at_connect_does_not_put_times_in_the_future(tmp_path: Path) -> None:
    enc = encode(seconds=6.0, gop=25)
    spool = Spool(tmp_path, 1 << 30)
    closed: list[SpoolEntry] = []
    seg = Segmenter("cam-1", "main", spool, target_us=2_000_000, clock=FakeClock(), on_closed=closed.append)
    seg.start_input(enc.video, None)
    latency = 10_000
    arrivals = []
    for k, p in enumerate(enc.video_packets):
        # The first second was buffered by the camera and arrives at once, one second late.
        arrival = T0 + 1_000_000 + latency if k < 25 else T0 + k * 40_000 + latency
        arrivals.append(arrival)
        seg.push_video(p, arrival)
    seg.end_run()
    assert closed[0].start_us == T0 + latency, "the anchor settles on the earliest consistent capture time"
    for e in closed:
        assert e.end_us <= arrivals[-1] + 40_000, "no segment ends after its frames arrived"
    for a, b in zip(closed, closed[1:]):
        assert a.end_us == b.start_us


def test_a_resolution_change_mid_stream_starts_a_segment_with_the_new_size(tmp_path: Path) -> None:
    small = encode(seconds=2.0, gop=25, size=(320, 180))
    big = encode(seconds=2.0, gop=25, size=(640, 360))
    step = 3600
    last = small.video_packets[-1].pts
    # One RTSP session: the camera switches resolution, its pts carry on.
    packets = list(small.video_packets) + [clone(p, pts=last + step * (i + 1)) for i, p in enumerate(big.video_packets)]
    spool, closed = run(small, packets=packets, tmp=tmp_path, target_s=10)
    assert [(e.width, e.height) for e in closed] == [(320, 180), (640, 360)]
    assert closed[0].end_us == closed[1].start_us
    for e, size in zip(closed, [(320, 180), (640, 360)]):
        frames = check_file(spool, e)
        assert (frames[-1].width, frames[-1].height) == size and len(frames) == 50


def _rtp_like(enc, packets=None):
    """The encoder's packets as an RTSP session has them: presentation times only,
    each access unit's decode time derived (what CameraSession does)."""
    stamper = DecodeTimestamper(enc.video)
    out = []
    for p in packets if packets is not None else enc.video_packets:
        q = clone(p)
        q.dts = None
        stamper.stamp(q)
        out.append(q)
    return out, stamper


def test_b_frames_are_recorded_by_decode_time(tmp_path: Path) -> None:
    """A B-frame stream (pts back and forth in decode order) is one run: segments cut at
    keyframes, contiguous, each frame once and in presentation order, and presentation
    starts at the keyframe (the edit list hides the decoder's delay)."""
    enc = encode(seconds=8.0, gop=25, b_frames=3)
    pkts = enc.video_packets
    assert sum(1 for a, b in zip(pkts, pkts[1:]) if b.pts < a.pts) > 50, "the encode must reorder"
    stamped, stamper = _rtp_like(enc)
    assert stamper.depth == 2 and stamper.b_frames and stamper.times.late == 0
    spool, closed = run(enc, packets=stamped, tmp=tmp_path, target_s=2.0)
    assert len(closed) == 4
    for a, b in zip(closed, closed[1:]):
        assert a.end_us == b.start_us
    first_pts = min(p.pts for p in pkts)
    for k, e in enumerate(closed):
        assert e.start_us == T0 + k * 2_000_000 and e.end_us - e.start_us == 2_000_000
        frames = check_file(spool, e)
        assert len(frames) == 50
        times = [f.pts for f in frames]
        assert times == sorted(times) and times[0] == 0, "presentation order, from 0 (edit list)"
        assert all(b - a == 3600 for a, b in zip(times, times[1:]))
        assert [t.offset_us for t in [Keyframe(*kf) for kf in e.keyframes]] == [0, 1_000_000]
    # the frames decoded in segment k are exactly the frames the camera presented in that span
    assert first_pts == pkts[0].pts


def test_a_restart_in_a_b_frame_stream_is_still_a_jump(tmp_path: Path) -> None:
    enc = encode(seconds=6.0, gop=25, b_frames=3)
    pkts = enc.video_packets
    cut = next(i for i, p in enumerate(pkts) if p.is_keyframe and i >= 75)
    restarted = pkts[:cut] + [clone(p, pts=p.pts - pkts[cut].pts + 3600) for p in pkts[cut:]]
    stamped, stamper = _rtp_like(enc, restarted)
    assert stamper.times.restarts == 1
    clock = FakeClock()
    spool = Spool(tmp_path, 1 << 30)
    closed: list[SpoolEntry] = []
    seg = Segmenter("cam-1", "main", spool, target_us=2_000_000, clock=clock, on_closed=closed.append)
    seg.start_input(enc.video, None)
    for i, p in enumerate(stamped):
        clock.now = T0 + i * 40_000
        seg.push_video(p)
    seg.end_run()
    assert seg.discontinuities == 1
    for a, b in zip(closed, closed[1:]):
        assert b.start_us >= a.end_us
    assert sum(len(check_file(spool, e)) for e in closed) == len(pkts)
