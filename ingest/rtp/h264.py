"""RFC 6184 payloads for H.264: FU-A fragmentation and the SDP ``fmtp`` line."""

from __future__ import annotations

import base64

# An RTP payload of at most this many bytes keeps a packet (12 B RTP header + 20 B IP +
# 8 B UDP, or 4 B interleave + TCP/IP) under a 1500 B Ethernet MTU with room for tunnels.
RTP_MAX_PAYLOAD = 1400

NAL_FU_A = 28


def fu_a_payloads(nal: bytes, max_payload: int = RTP_MAX_PAYLOAD) -> list[bytes]:
    """Fragment one NAL unit into FU-A payloads (RFC 6184 §5.8) of at most ``max_payload`` bytes."""
    header = nal[0]
    indicator = bytes(((header & 0xE0) | NAL_FU_A,))  # F and NRI from the NAL, type 28
    ntype = header & 0x1F
    body = memoryview(nal)[1:]
    step = max_payload - 2  # FU indicator + FU header
    out: list[bytes] = []
    for off in range(0, len(body), step):
        start = off == 0
        end = off + step >= len(body)
        fu_header = bytes(((0x80 if start else 0) | (0x40 if end else 0) | ntype,))
        out.append(indicator + fu_header + body[off : off + step].tobytes())
    return out


def sdp_fmtp(sps: bytes, pps: bytes) -> str:
    """The ``a=fmtp`` parameters for payload type 96 (RFC 6184 §8.1), without the ``a=fmtp:96 `` prefix."""
    profile_level_id = sps[1:4].hex().upper()
    sprop = ",".join(base64.b64encode(p).decode("ascii") for p in (sps, pps))
    return f"packetization-mode=1;profile-level-id={profile_level_id};sprop-parameter-sets={sprop}"
