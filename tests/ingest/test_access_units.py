"""Joining slices into access units, and placing a leading packet that has no pts."""

from __future__ import annotations

from ingest.recording.access_units import LEAD_WINDOW, AccessUnitJoiner
from tests.support.packets import clone, encode, split_nals


def test_slices_with_one_pts_become_one_unit_with_the_first_arrival_time() -> None:
    enc = encode(seconds=1.0, gop=25, slices=4)
    joiner = AccessUnitJoiner(frame_ticks=3600)
    out = []
    for n, p in enumerate(enc.video_packets):
        for k, part in enumerate(split_nals(p)):
            out.extend(joiner.push(part, arrival_us=n * 1000 + k))
    out.extend(joiner.flush())
    assert [au.pts for au, _ in out] == [p.pts for p in enc.video_packets]
    assert [bytes(au) for au, _ in out] == [bytes(p) for p in enc.video_packets]
    assert [t for _, t in out] == [n * 1000 for n in range(len(enc.video_packets))]
    assert out[0][0].is_keyframe


def test_leading_packet_without_pts_is_kept_one_frame_before_the_first_pts() -> None:
    enc = encode(seconds=1.0, gop=25)
    first = clone(enc.video_packets[0])
    first.pts = None
    first.dts = None
    joiner = AccessUnitJoiner(frame_ticks=3600)
    out = list(joiner.push(first, 5))
    assert out == []  # held until the pts after it show where it belongs
    for k, p in enumerate(enc.video_packets[1:LEAD_WINDOW + 1]):
        out += list(joiner.push(p, 6 + k))
    au, arrival = out[0]
    assert au.pts == enc.video_packets[1].pts - 3600 and au.is_keyframe and arrival == 5
    assert [a for _, a in out] == list(range(5, 5 + len(out))), "every unit keeps its own arrival"


def test_a_leading_idr_of_a_b_frame_stream_is_placed_before_its_gop() -> None:
    """With B-frames the packet after the IDR is a P-frame presented frames later: the IDR
    goes one frame before the earliest pts that follows, not before the next one."""
    enc = encode(seconds=1.0, gop=25, b_frames=3)
    first = clone(enc.video_packets[0])
    first.pts = None
    joiner = AccessUnitJoiner(frame_ticks=3600)
    out = list(joiner.push(first, 0))
    for p in enc.video_packets[1:]:
        out += list(joiner.push(p, 0))
    out += list(joiner.flush())
    assert out[0][0].pts == enc.video_packets[0].pts
    assert sorted(au.pts for au, _ in out) == sorted(p.pts for p in enc.video_packets)


def test_later_packet_without_pts_is_dropped_and_counted() -> None:
    enc = encode(seconds=1.0, gop=25)
    joiner = AccessUnitJoiner(frame_ticks=3600)
    list(joiner.push(enc.video_packets[0]))
    lost = clone(enc.video_packets[1])
    lost.pts = None
    assert list(joiner.push(lost)) == []
    assert joiner.dropped_no_pts == 1


def test_without_a_frame_rate_a_leading_packet_without_pts_is_dropped() -> None:
    enc = encode(seconds=1.0, gop=25)
    first = clone(enc.video_packets[0])
    first.pts = None
    joiner = AccessUnitJoiner(frame_ticks=0)
    assert list(joiner.push(first)) == [] and joiner.dropped_no_pts == 1
