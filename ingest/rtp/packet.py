"""RTP packets (RFC 3550 §5.1): parsing and building, bounded, with no socket in sight.

Parsing is the per-packet hot path of every camera, so it reads the fixed header with one
``struct`` call and touches the CSRC list and header extension only when their bits say so.
Anything that does not fit (a short packet, version other than 2, a CSRC list, extension or
padding that runs past the end) raises :class:`RtpError` with what was wrong: a receiver
counts it and drops the packet, it never guesses.
"""

from __future__ import annotations

import struct

RTP_VERSION = 2
RTP_HEADER_SIZE = 12
# Larger than any datagram a camera sends (jumbo frames included) and than RFC 4571's 16-bit length.
RTP_MAX_PACKET = 65535

# The fixed header (flags, marker + payload type, sequence, timestamp, SSRC); the depacketisers'
# hot path reads it too (video.VideoDepacketizer.push_rtp).
RTP_FIXED_HEADER = _HEADER = struct.Struct("!BBHII")
_EXTENSION = struct.Struct("!HH")


class RtpError(ValueError):
    """A datagram or frame that is not a valid RTP packet; the message says why."""


class RtpPacket:
    """One parsed RTP packet. ``payload`` excludes the header, CSRCs, extension and padding."""

    __slots__ = ("marker", "payload_type", "sequence", "timestamp", "ssrc", "csrc", "extension_profile",
                 "extension", "payload")

    def __init__(self, payload_type: int, sequence: int, timestamp: int, ssrc: int, payload: bytes, *,
                 marker: bool = False, csrc: tuple[int, ...] = (), extension_profile: int | None = None,
                 extension: bytes = b"") -> None:
        self.marker = marker
        self.payload_type = payload_type
        self.sequence = sequence
        self.timestamp = timestamp
        self.ssrc = ssrc
        self.csrc = csrc
        self.extension_profile = extension_profile
        self.extension = extension
        self.payload = payload

    def __repr__(self) -> str:
        return (f"RtpPacket(pt={self.payload_type}, seq={self.sequence}, ts={self.timestamp}, "
                f"marker={self.marker}, {len(self.payload)} B)")

    def to_bytes(self, padding: int = 0) -> bytes:
        """Serialise the packet, with ``padding`` bytes of RTP padding (0..255) if asked."""
        if not 0 <= padding <= 255:
            raise ValueError(f"RTP padding is 0..255 bytes, not {padding}")
        if len(self.csrc) > 15:
            raise ValueError(f"RTP carries at most 15 CSRCs, not {len(self.csrc)}")
        has_ext = self.extension_profile is not None
        if has_ext and len(self.extension) % 4:
            raise ValueError("an RTP header extension is a whole number of 32-bit words")
        b0 = (RTP_VERSION << 6) | (0x20 if padding else 0) | (0x10 if has_ext else 0) | len(self.csrc)
        b1 = (0x80 if self.marker else 0) | (self.payload_type & 0x7F)
        parts = [_HEADER.pack(b0, b1, self.sequence & 0xFFFF, self.timestamp & 0xFFFFFFFF, self.ssrc & 0xFFFFFFFF)]
        parts.extend(struct.pack("!I", c) for c in self.csrc)
        if has_ext:
            parts.append(_EXTENSION.pack(self.extension_profile or 0, len(self.extension) // 4))
            parts.append(self.extension)
        parts.append(self.payload)
        if padding:
            parts.append(bytes(padding - 1) + bytes((padding,)))
        return b"".join(parts)


def parse_rtp(data: bytes) -> RtpPacket:
    """Parse one RTP packet from ``data`` (a datagram or one TCP frame); raise :class:`RtpError`."""
    n = len(data)
    if n < RTP_HEADER_SIZE:
        raise RtpError(f"RTP packet of {n} B is shorter than the 12 B header")
    if n > RTP_MAX_PACKET:
        raise RtpError(f"RTP packet of {n} B is longer than {RTP_MAX_PACKET} B")
    b0, b1, seq, ts, ssrc = _HEADER.unpack_from(data)
    if b0 >> 6 != RTP_VERSION:
        raise RtpError(f"RTP version {b0 >> 6}, expected 2 (is this RTCP or another protocol?)")
    start = RTP_HEADER_SIZE
    cc = b0 & 0x0F
    csrc: tuple[int, ...] = ()
    if cc:
        start += 4 * cc
        if start > n:
            raise RtpError(f"RTP CSRC count {cc} runs past the {n} B packet")
        csrc = struct.unpack_from(f"!{cc}I", data, RTP_HEADER_SIZE)
    profile: int | None = None
    extension = b""
    if b0 & 0x10:
        if start + 4 > n:
            raise RtpError("RTP extension header runs past the packet")
        profile, words = _EXTENSION.unpack_from(data, start)
        start += 4
        end = start + 4 * words
        if end > n:
            raise RtpError(f"RTP extension of {words} words runs past the {n} B packet")
        extension = data[start:end]
        start = end
    end = n
    if b0 & 0x20:
        pad = data[-1]
        if pad == 0 or start + pad > n:
            raise RtpError(f"RTP padding of {pad} B does not fit the packet")
        end = n - pad
    return RtpPacket(b1 & 0x7F, seq, ts, ssrc, data[start:end] if (start or end != n) else data,
                     marker=bool(b1 & 0x80), csrc=csrc, extension_profile=profile, extension=extension)


def seq_delta(a: int, b: int) -> int:
    """``b - a`` for 16-bit RTP sequence numbers, in -32768..32767 (wrap-around aware)."""
    return ((b - a + 0x8000) & 0xFFFF) - 0x8000


def ts_delta(a: int, b: int) -> int:
    """``b - a`` for 32-bit RTP timestamps, wrap-around aware (signed, half the range each way)."""
    return ((b - a + 0x8000_0000) & 0xFFFF_FFFF) - 0x8000_0000
