"""RTP packet parsing: every header field, CSRCs, extension and padding, and refusal of what does not fit."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.rtp.packet import RtpError, RtpPacket, parse_rtp, seq_delta, ts_delta

# A packet made by hand from RFC 3550 §5.1, not by our serialiser: V=2 P=0 X=0 CC=0 M=1 PT=96.
HAND_MADE = bytes.fromhex("80e0 04d2 0001e240 deadbeef".replace(" ", "")) + b"payload"


def test_parses_a_hand_made_packet() -> None:
    p = parse_rtp(HAND_MADE)
    assert (p.payload_type, p.marker, p.sequence, p.timestamp, p.ssrc) == (96, True, 1234, 123456, 0xDEADBEEF)
    assert p.payload == b"payload" and p.csrc == () and p.extension_profile is None


def test_csrc_extension_and_padding_are_stripped_from_the_payload() -> None:
    # V=2 P=1 X=1 CC=2, two CSRCs, a one-word extension with profile 0xBEDE, payload, 3 B of padding.
    raw = (bytes.fromhex("b2 60 0001 00000010 00000001".replace(" ", ""))
           + bytes.fromhex("0000000a 0000000b") + bytes.fromhex("bede0001 11223344") + b"xyz" + b"\x00\x00\x03")
    p = parse_rtp(raw)
    assert p.csrc == (10, 11)
    assert p.extension_profile == 0xBEDE and p.extension == bytes.fromhex("11223344")
    assert p.payload == b"xyz"


@pytest.mark.parametrize("raw, why", [
    (b"\x80\x60\x00", "shorter"),
    (bytes.fromhex("406000010000000100000001"), "version"),
    (bytes.fromhex("836000010000000100000001") + b"\x00" * 8, "CSRC"),
    (bytes.fromhex("906000010000000100000001") + b"\xbe\xde", "extension"),
    (bytes.fromhex("906000010000000100000001") + bytes.fromhex("bede0004") + b"\x00" * 8, "extension"),
    (bytes.fromhex("a06000010000000100000001") + b"ab\x09", "padding"),
    (bytes.fromhex("a06000010000000100000001") + b"ab\x00", "padding"),
])
def test_malformed_packets_are_refused_with_the_reason(raw: bytes, why: str) -> None:
    with pytest.raises(RtpError, match=why):
        parse_rtp(raw)


packets = st.builds(
    RtpPacket,
    st.integers(0, 127), st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF),
    st.binary(max_size=1500),
    marker=st.booleans(),
    csrc=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15).map(tuple),
    extension_profile=st.one_of(st.none(), st.integers(0, 0xFFFF)),
    extension=st.integers(0, 8).map(lambda w: bytes(range(4 * w))),
)


@given(packets, st.integers(0, 255))
def test_build_then_parse_gives_back_every_field(p: RtpPacket, padding: int) -> None:
    if p.extension_profile is None:
        p.extension = b""
    q = parse_rtp(p.to_bytes(padding))
    assert (q.payload_type, q.sequence, q.timestamp, q.ssrc, q.marker, q.csrc, q.extension_profile, q.extension,
            q.payload) == (p.payload_type, p.sequence, p.timestamp, p.ssrc, p.marker, p.csrc, p.extension_profile,
                           p.extension, p.payload)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_parse_or_raise_rtp_error_only(raw: bytes) -> None:
    try:
        p = parse_rtp(raw)
    except RtpError:
        return
    assert len(p.payload) <= len(raw) - 12


def test_sequence_and_timestamp_differences_wrap() -> None:
    assert seq_delta(65535, 0) == 1 and seq_delta(0, 65535) == -1 and seq_delta(10, 5) == -5
    assert ts_delta(0xFFFFFF00, 0x100) == 0x200 and ts_delta(0x100, 0xFFFFFF00) == -0x200
