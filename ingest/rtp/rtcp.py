"""RTCP (RFC 3550 §6): sender reports read, receiver reports written.

A camera's sender report ties its RTP clock to its own wall clock (NTP). The RTSP client
keeps the last one so the recording can note how far the camera's clock is from ours
(drift, bounded and recorded, never hidden: DESIGN.md). Receiver reports tell the camera
we are alive, which some cameras need on UDP to keep sending.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

RTCP_SR = 200
RTCP_RR = 201
RTCP_BYE = 203
NTP_UNIX_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01

_HEAD = struct.Struct("!BBH")
_SR = struct.Struct("!IIIIII")


@dataclass(frozen=True, slots=True)
class SenderReport:
    """One RTCP SR: the sender's wall clock (UNIX seconds) at RTP time ``rtp_timestamp``."""

    ssrc: int
    wallclock: float
    ntp_middle: int  # the middle 32 bits of the NTP timestamp: the LSR of a receiver report
    rtp_timestamp: int
    packets: int
    octets: int


def parse_rtcp(data: bytes) -> tuple[list[SenderReport], bool]:
    """The sender reports in a compound RTCP packet, and whether it holds a BYE.

    Malformed trailing parts are ignored (RTCP is advisory; a bad report must not end a session).
    """
    reports: list[SenderReport] = []
    bye = False
    pos = 0
    n = len(data)
    while pos + 4 <= n:
        b0, pt, words = _HEAD.unpack_from(data, pos)
        end = pos + 4 * (words + 1)
        if b0 >> 6 != 2 or end > n:
            break
        if pt == RTCP_SR and end - pos >= 28:
            ssrc, ntp_s, ntp_f, rtp_ts, packets, octets = _SR.unpack_from(data, pos + 4)
            wall = ntp_s - NTP_UNIX_OFFSET + ntp_f / 2**32
            middle = ((ntp_s & 0xFFFF) << 16) | (ntp_f >> 16)
            reports.append(SenderReport(ssrc, wall, middle, rtp_ts, packets, octets))
        elif pt == RTCP_BYE:
            bye = True
        pos = end
    return reports, bye


def sender_report(ssrc: int, wallclock: float, rtp_timestamp: int, packets: int, octets: int) -> bytes:
    """Build an RTCP SR with no report blocks (for test peers and our own RTSP server)."""
    secs = int(wallclock) + NTP_UNIX_OFFSET
    frac = int((wallclock % 1) * 2**32) & 0xFFFFFFFF
    return _HEAD.pack(0x80, RTCP_SR, 6) + _SR.pack(ssrc, secs & 0xFFFFFFFF, frac, rtp_timestamp & 0xFFFFFFFF,
                                                   packets & 0xFFFFFFFF, octets & 0xFFFFFFFF)


def receiver_report(ssrc: int, source_ssrc: int, *, fraction_lost: int = 0, cumulative_lost: int = 0,
                    highest_seq: int = 0, jitter: int = 0, last_sr: int = 0, delay_since_sr: int = 0) -> bytes:
    """Build an RTCP RR with one report block about ``source_ssrc`` (RFC 3550 §6.4.2)."""
    lost = max(-0x800000, min(0x7FFFFF, cumulative_lost)) & 0xFFFFFF
    block = struct.pack("!IIIIII", source_ssrc, ((fraction_lost & 0xFF) << 24) | lost, highest_seq & 0xFFFFFFFF,
                        jitter & 0xFFFFFFFF, last_sr & 0xFFFFFFFF, delay_since_sr & 0xFFFFFFFF)
    return _HEAD.pack(0x81, RTCP_RR, 7) + struct.pack("!I", ssrc) + block
