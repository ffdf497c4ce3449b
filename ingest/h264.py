"""H.264 access units, Annex-B parsing and RFC 6184 RTP payloads.

This module only knows bytes: it has no sockets and no event loop, so the RTSP server,
the live hub and the tests can all share it.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from functools import cached_property

# An RTP payload of at most this many bytes keeps a packet (12 B RTP header + 20 B IP +
# 8 B UDP, or 4 B interleave + TCP/IP) under a 1500 B Ethernet MTU with room for tunnels.
RTP_MAX_PAYLOAD = 1400

NAL_SLICE = 1
NAL_IDR = 5
NAL_SEI = 6
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9
NAL_FU_A = 28


# H.265 VPS, SPS, PPS nal_unit_types, in decoding order.
HEVC_PARAMETER_SETS = (32, 33, 34)


def nal_type(nal: bytes) -> int:
    """The nal_unit_type of an H.264 NAL unit (its first byte's low five bits)."""
    return nal[0] & 0x1F


def split_annexb(data: bytes) -> list[bytes]:
    """Split an Annex-B byte stream into NAL units, without their start codes.

    Both 3- and 4-byte start codes are accepted. Trailing zero bytes before a start
    code (``trailing_zero_8bits``) are not part of the NAL unit and are stripped.
    """
    nals: list[bytes] = []
    n = len(data)
    i = data.find(b"\x00\x00\x01")
    while i >= 0:
        start = i + 3
        nxt = data.find(b"\x00\x00\x01", start)
        end = n if nxt < 0 else nxt
        nal = data[start:end].rstrip(b"\x00") if nxt >= 0 else data[start:end]
        if nal:
            nals.append(nal)
        i = nxt
    return nals


def parameter_set_nals(codec: str, nals: list[bytes]) -> tuple[bytes, ...]:
    """One of each parameter set in ``nals`` (``codec`` "h264" or "h265"), in decoding order;
    () unless all are there."""
    if codec == "h264":
        sps = next((n for n in nals if nal_type(n) == NAL_SPS), None)
        pps = next((n for n in nals if nal_type(n) == NAL_PPS), None)
        return (sps, pps) if sps and pps else ()
    found = {t: next((n for n in nals if (n[0] >> 1) & 0x3F == t), None) for t in HEVC_PARAMETER_SETS}
    return tuple(found[t] for t in HEVC_PARAMETER_SETS) if all(found.values()) else ()  # type: ignore[misc]



@dataclass(frozen=True, eq=False)
class AccessUnit:
    """One coded picture: its NAL units (no start codes), 90 kHz pts and whether it is a keyframe.

    A keyframe access unit must be decodable on its own: it carries SPS and PPS in-band
    or the source's ``parameter_sets()`` describe it. ``wallclock`` is when the picture
    was captured (UNIX seconds) if the source knows; RTCP sender reports use it.
    """

    nals: tuple[bytes, ...]
    pts_90k: int
    keyframe: bool
    wallclock: float | None = None

    @classmethod
    def from_annexb(
        cls, data: bytes, pts_90k: int, keyframe: bool | None = None, wallclock: float | None = None
    ) -> AccessUnit:
        """Build an access unit from Annex-B bytes; ``keyframe`` defaults to "has an IDR slice"."""
        nals = tuple(split_annexb(data))
        if keyframe is None:
            keyframe = any(nal_type(n) == NAL_IDR for n in nals)
        return cls(nals, pts_90k, keyframe, wallclock)

    @cached_property
    def rtp_payloads(self) -> tuple[bytes, ...]:
        """The RFC 6184 payloads of this access unit, computed once for every subscriber.

        The last payload is the one that carries the RTP marker bit. (A cached property
        writes to the instance ``__dict__``, which a frozen dataclass still allows.)
        """
        out: list[bytes] = []
        for nal in self.nals:
            if nal_type(nal) == NAL_AUD:
                continue  # RFC 6184 §6.2 suggests dropping AUDs; the marker bit replaces them
            out.extend(fu_a_payloads(nal) if len(nal) > RTP_MAX_PAYLOAD else (nal,))
        return tuple(out)


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
