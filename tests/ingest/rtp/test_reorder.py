"""The UDP reorder window: order restored within the window, losses counted, wrap and restarts survived."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from ingest.rtp.packet import RtpPacket
from ingest.rtp.reorder import ReorderBuffer


def pkt(seq: int) -> RtpPacket:
    return RtpPacket(96, seq & 0xFFFF, 0, 1, b"")


def run(buf: ReorderBuffer, seqs: list[int]) -> list[int]:
    out: list[int] = []
    for s in seqs:
        out.extend(p.sequence for p in buf.push(pkt(s)))
    out.extend(p.sequence for p in buf.flush())
    return out


def test_in_order_packets_pass_straight_through() -> None:
    buf = ReorderBuffer(8)
    assert [p.sequence for p in buf.push(pkt(5))] == [5]
    assert [p.sequence for p in buf.push(pkt(6))] == [6]
    assert buf.lost == 0 and buf.held == 0


def test_a_swapped_pair_comes_out_in_order() -> None:
    buf = ReorderBuffer(8)
    assert run(buf, [1, 3, 2, 4]) == [1, 2, 3, 4]
    assert buf.lost == 0 and buf.reordered == 1


def test_a_hole_is_given_up_when_the_window_fills_and_counted_once() -> None:
    buf = ReorderBuffer(4)
    out = run(buf, [1, 3, 4, 5, 6, 7])
    assert out == [1, 3, 4, 5, 6, 7] and buf.lost == 1
    assert buf.push(pkt(2)) == [] and buf.late == 1  # too late: dropped, not released out of order


def test_sequence_wrap_is_in_order() -> None:
    buf = ReorderBuffer(4)
    assert run(buf, [65534, 65535, 1, 0, 2]) == [65534, 65535, 0, 1, 2]
    assert buf.lost == 0


def test_a_camera_restart_resyncs_instead_of_waiting() -> None:
    buf = ReorderBuffer(4)
    assert run(buf, [100, 101, 40000, 40001]) == [100, 101, 40000, 40001]
    assert buf.resyncs == 1 and buf.lost == 0


@given(st.integers(0, 0xFFFF), st.integers(50, 400), st.floats(0, 0.2), st.floats(0, 0.2), st.integers(0, 2**32))
def test_random_loss_and_local_reordering(start: int, n: int, loss: float, swap: float, seed: int) -> None:
    rng = random.Random(seed)
    sent = [(start + i) & 0xFFFF for i in range(n)]
    kept = [s for s in sent if rng.random() >= loss]
    arrivals = kept[:]
    # Swap neighbours: reordering by at most a few places. The first arrival sets where the stream
    # starts (one that comes before it later is late), so the first pair stays in order.
    for i in range(1, len(arrivals) - 1):
        if rng.random() < swap:
            arrivals[i], arrivals[i + 1] = arrivals[i + 1], arrivals[i]
    buf = ReorderBuffer(16)
    out = run(buf, arrivals)
    assert out == kept  # every packet that came, once, in sending order
    if kept:
        span = sent[sent.index(kept[0]):sent.index(kept[-1]) + 1]
        assert buf.lost == len(set(span) - set(kept))
    assert buf.late == 0


def test_take_in_order_is_push_without_a_packet_object_and_declines_anything_else() -> None:
    buf = ReorderBuffer(8)
    assert buf.take_in_order(10) and buf.take_in_order(11)  # the first packet, then the next one
    assert not buf.take_in_order(13)  # a jump: push must judge it
    assert buf.received == 2
    assert [p.sequence for p in buf.push(pkt(13))] == []  # held: 12 is missing
    assert not buf.take_in_order(12)  # something is held: the window must release it in order
    assert [p.sequence for p in buf.push(pkt(12))] == [12, 13]
    assert buf.take_in_order(14) and buf.received == 5 and buf.lost == 0 and buf.reordered == 1
