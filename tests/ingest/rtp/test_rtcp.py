"""RTCP: sender reports read from a compound packet (hand-made bytes), receiver reports built to RFC 3550."""

from __future__ import annotations

import struct

from ingest.rtp.rtcp import parse_rtcp, receiver_report, sender_report


def test_sender_report_in_a_compound_packet_with_sdes_and_bye() -> None:
    # SR: 2026-01-01T00:00:00.5Z as NTP, RTP ts 90000, 10 packets, 1000 octets; then an SDES and a BYE.
    ntp = 1767225600 + 2_208_988_800
    sr = struct.pack("!BBHIIIIII", 0x80, 200, 6, 0x1234, ntp, 0x80000000, 90000, 10, 1000)
    sdes = struct.pack("!BBHI", 0x81, 202, 2, 0x1234) + b"\x01\x02ab"[:4]
    bye = struct.pack("!BBHI", 0x81, 203, 1, 0x1234)
    reports, has_bye = parse_rtcp(sr + sdes + bye)
    assert has_bye and len(reports) == 1
    r = reports[0]
    assert (r.ssrc, r.rtp_timestamp, r.packets, r.octets) == (0x1234, 90000, 10, 1000)
    assert r.wallclock == 1767225600.5
    assert r.ntp_middle == ((ntp & 0xFFFF) << 16) | 0x8000


def test_sender_report_round_trip_and_truncated_input() -> None:
    raw = sender_report(7, 1767225600.25, 123, 4, 5)
    (r,), _ = parse_rtcp(raw)
    assert (r.ssrc, r.rtp_timestamp, r.packets, r.octets) == (7, 123, 4, 5)
    assert abs(r.wallclock - 1767225600.25) < 1e-6
    assert parse_rtcp(raw[:20]) == ([], False)


def test_receiver_report_layout() -> None:
    rr = receiver_report(1, 2, fraction_lost=3, cumulative_lost=4, highest_seq=5, last_sr=6, delay_since_sr=7)
    assert len(rr) == 32 and rr[:2] == b"\x81\xc9" and struct.unpack("!H", rr[2:4])[0] == 7
    assert struct.unpack("!IIIIIII", rr[4:]) == (1, 2, (3 << 24) | 4, 5, 0, 6, 7)
