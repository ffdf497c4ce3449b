"""Joining slices into access units, and placing a leading packet that has no pts."""

from __future__ import annotations

from ingest.recording.access_units import AccessUnitJoiner
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
    assert out == []  # held until a pts shows where it belongs
    out = list(joiner.push(enc.video_packets[1], 6))
    assert len(out) == 1
    au, arrival = out[0]
    assert au.pts == enc.video_packets[1].pts - 3600 and au.is_keyframe and arrival == 5


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
