"""Unit tests for Annex-B parsing, RFC 6184 payloads and the GOP-caching fan-out."""

from __future__ import annotations

import asyncio

from ingest.live.fanout import AccessUnitFanout
from ingest.access_unit import AccessUnit
from ingest.rtp.h264 import NAL_FU_A, RTP_MAX_PAYLOAD, fu_a_payloads, sdp_fmtp
from storage.mp4.nal import split_annexb


def test_split_annexb_mixed_start_codes() -> None:
    data = b"\x00\x00\x00\x01\x67\x42\xc0\x1e" + b"\x00\x00\x01\x68\xce" + b"\x00\x00\x00\x01\x65\x88\x80"
    assert split_annexb(data) == [b"\x67\x42\xc0\x1e", b"\x68\xce", b"\x65\x88\x80"]


def test_fu_a_round_trip() -> None:
    nal = bytes([0x65]) + bytes(range(256)) * 20  # 5121 bytes, an IDR slice
    payloads = fu_a_payloads(nal)
    assert all(len(p) <= RTP_MAX_PAYLOAD for p in payloads)
    assert all(p[0] == (0x60 | NAL_FU_A) for p in payloads)  # NRI kept, type 28
    assert payloads[0][1] == 0x85 and payloads[-1][1] == 0x45  # S bit first, E bit last
    assert all(p[1] == 0x05 for p in payloads[1:-1])
    assert bytes([0x65]) + b"".join(p[2:] for p in payloads) == nal


def test_access_unit_payloads_single_and_fragmented() -> None:
    small, big = b"\x41" + b"x" * 100, b"\x41" + b"y" * 3000
    au = AccessUnit((b"\x09\x10", small, big), 0, False)  # the AUD is dropped
    payloads = au.rtp_payloads
    assert payloads[0] == small
    assert len(payloads) == 1 + 3


def test_sdp_fmtp() -> None:
    fmtp = sdp_fmtp(b"\x67\x42\xc0\x1e\xda", b"\x68\xce\x3c\x80")
    assert fmtp == "packetization-mode=1;profile-level-id=42C01E;sprop-parameter-sets=Z0LAHto=,aM48gA=="


def _au(i: int, key: bool) -> AccessUnit:
    return AccessUnit((b"\x65" if key else b"\x41",), i * 3600, key)


def test_fanout_new_subscriber_starts_at_cached_keyframe() -> None:
    async def main() -> list[int]:
        fanout = AccessUnitFanout()
        for i in range(7):
            fanout.publish(_au(i, i % 5 == 0))
        sub = fanout.subscribe()
        fanout.publish(_au(7, False))
        fanout.close()
        return [au.pts_90k // 3600 async for au in sub]

    assert asyncio.run(main()) == [5, 6, 7]


def test_fanout_overflow_skips_to_next_keyframe_and_never_blocks() -> None:
    async def main() -> tuple[list[int], int]:
        fanout = AccessUnitFanout(max_queue=4)
        sub = fanout.subscribe()
        for i in range(13):  # keyframes at 0, 5, 10; nobody reads
            fanout.publish(_au(i, i % 5 == 0))
        fanout.close()
        return [au.pts_90k // 3600 async for au in sub], sub.overflows

    got, overflows = asyncio.run(main())
    assert got == [10, 11, 12]
    assert overflows >= 1


def test_rtcp_sender_report_layout() -> None:
    import struct
    import time

    from streams.rtsp.server import NTP_UNIX_OFFSET, _Session

    session = _Session(id="s", path="p", source=None, conn=None, transport="tcp", track_url="u")  # type: ignore[arg-type]
    au = AccessUnit((b"\x65" + b"z" * 3000,), 90000, True, time.time() - 1.0)
    session.rtp_packets(au)
    report = session.sender_report(au, "sharpeyes@host")
    v, pt, length, ssrc, ntp_sec, _, rtp_ts, packets, octets = struct.unpack("!BBHIIIIII", report[:28])
    assert (v, pt, length, ssrc) == (0x80, 200, 6, session.ssrc)
    assert abs(ntp_sec - NTP_UNIX_OFFSET - time.time()) < 2
    # captured 1 s ago: "now" is about 90000 ticks past the access unit's timestamp
    assert abs(((rtp_ts - session.rtp_timestamp(au)) & 0xFFFFFFFF) - 90000) < 900
    assert (packets, octets) == (3, 3000 + 3 * 2)  # 3 FU-A packets: the NAL body plus 2 B of FU headers each
    sdes = report[28:]
    assert sdes[:2] == b"\x81\xca" and len(sdes) % 4 == 0
    assert struct.unpack("!H", sdes[2:4])[0] == len(sdes) // 4 - 1
