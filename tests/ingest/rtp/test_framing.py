"""TCP framing: RTSP interleaved frames mixed with RTSP messages, and RFC 4571, split anywhere."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.rtp.framing import (
    MAX_RTSP_BODY, FramingError, InterleavedDecoder, InterleavedFrame, Rfc4571Decoder, RtspText, frame_rfc4571,
    interleave,
)

REPLY = b"RTSP/1.0 200 OK\r\nCSeq: 7\r\nContent-Length: 5\r\n\r\nhello"


def split_feed(dec, data: bytes, cuts: list[int]):  # type: ignore[no-untyped-def]
    out = []
    pos = 0
    for c in sorted(set(min(c, len(data)) for c in cuts)) + [len(data)]:
        out.extend(dec.feed(data[pos:c]))
        pos = c
    return out


@given(st.lists(st.one_of(st.tuples(st.integers(0, 3), st.binary(max_size=2000)), st.just(None)), max_size=20),
       st.lists(st.integers(0, 50000), max_size=30))
def test_interleaved_stream_split_anywhere_gives_back_frames_and_messages(items, cuts) -> None:  # type: ignore[no-untyped-def]
    stream = b"".join(REPLY if it is None else interleave(*it) for it in items)
    got = split_feed(InterleavedDecoder(), stream, cuts)
    want = [RtspText(REPLY.split(b"\r\n\r\n")[0], b"hello") if it is None else InterleavedFrame(*it) for it in items]
    assert got == want


def test_junk_between_frames_is_skipped_and_counted() -> None:
    dec = InterleavedDecoder()
    out = dec.feed(b"\x00\x01junk" + interleave(0, b"rtp"))
    assert out == [InterleavedFrame(0, b"rtp")] and dec.skipped == 6


def test_a_body_past_the_bound_is_refused() -> None:
    with pytest.raises(FramingError, match="bound"):
        InterleavedDecoder().feed(f"RTSP/1.0 200 OK\r\nContent-Length: {MAX_RTSP_BODY + 1}\r\n\r\n".encode())


def test_a_head_that_never_ends_is_refused() -> None:
    dec = InterleavedDecoder()
    with pytest.raises(FramingError, match="head"):
        for _ in range(100):
            dec.feed(b"RTSP/1.0 200 OK\r\nX: " + b"a" * 1000)


@given(st.lists(st.binary(max_size=3000), max_size=20), st.lists(st.integers(0, 60000), max_size=30))
def test_rfc4571_split_anywhere(packets: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(frame_rfc4571(p) for p in packets)
    dec = Rfc4571Decoder()
    assert split_feed(dec, stream, cuts) == [p for p in packets if p]
    assert dec.pending == 0


def test_rfc4571_length_prefix_is_big_endian() -> None:
    assert frame_rfc4571(b"\x80" * 258)[:2] == b"\x01\x02"
    assert Rfc4571Decoder().feed(b"\x00\x03abc\x00\x02d") == [b"abc"]
