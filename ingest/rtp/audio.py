"""RTP depacketisers for audio: AAC as RFC 3640 ``mpeg4-generic`` (AAC-hbr and AAC-lbr).

G.711 (PCMU/PCMA) is not depacketised: it is not recorded, as before the native client
(no browser plays it from MP4, and converting it to AAC costs a decoder and an encoder
per camera: docs/recording.md). The RTSP client does not set up a G.711 track at all.

An RFC 3640 packet carries an AU-headers section (16-bit length in bits, then one header
per access unit: ``sizeLength`` bits of size, ``indexLength``/``indexDeltaLength`` bits of
index) and then the access units back to back. One AAC frame may also be fragmented over
several packets (one header whose size exceeds the data): it is joined until the marker.
A lost packet drops the frames it touched and counts one error; audio needs no keyframe.
"""

from __future__ import annotations

from dataclasses import dataclass

from ingest.rtp.packet import RtpPacket
from ingest.rtp.video import TimestampUnwrapper

AAC_FRAME_SAMPLES = 1024


@dataclass(frozen=True, slots=True)
class AudioFrame:
    """One AAC access unit (raw, no ADTS header), its pts in the track's clock rate."""

    data: bytes
    pts: int


def parse_fmtp(fmtp: str) -> dict[str, str]:
    """``a=fmtp`` parameters (without the payload type) as a lower-cased-key dict."""
    out: dict[str, str] = {}
    for part in fmtp.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep:
            out[key.strip().lower()] = value.strip()
    return out


class AacDepacketizer:
    """RFC 3640 AAC: ``fmtp`` gives the AU header layout and the AudioSpecificConfig."""

    def __init__(self, fmtp: dict[str, str], clock_rate: int) -> None:
        mode = fmtp.get("mode", "").lower()
        if mode and mode not in ("aac-hbr", "aac-lbr"):
            raise ValueError(f"RFC 3640 mode {mode!r} is not AAC (expected AAC-hbr or AAC-lbr)")
        self.size_length = int(fmtp.get("sizelength", "13"))
        self.index_length = int(fmtp.get("indexlength", "3"))
        self.index_delta_length = int(fmtp.get("indexdeltalength", "3"))
        self.frame_samples = int(fmtp.get("constantduration", AAC_FRAME_SAMPLES))
        self.config = bytes.fromhex(fmtp.get("config", ""))  # AudioSpecificConfig: the esds of the MP4 track
        self.clock_rate = clock_rate
        self._unwrap = TimestampUnwrapper()
        self._next_seq: int | None = None
        self._fragment: bytearray | None = None
        self._fragment_size = 0
        self._fragment_ts = 0
        self.errors = 0
        self.frames = 0

    def push(self, packet: RtpPacket) -> list[AudioFrame]:
        """Take the next packet in sequence order; return the frames it carries or completes."""
        seq = packet.sequence
        if self._next_seq is not None and seq != self._next_seq:
            self.errors += 1
            self._fragment = None
        self._next_seq = (seq + 1) & 0xFFFF
        try:
            return self._unpack(packet)
        except (IndexError, ValueError):
            self.errors += 1
            self._fragment = None
            return []

    def _unpack(self, packet: RtpPacket) -> list[AudioFrame]:
        p = packet.payload
        if len(p) < 2:
            raise ValueError("RFC 3640 payload shorter than its AU-headers-length")
        header_bits = (p[0] << 8) | p[1]
        header_bytes = (header_bits + 7) // 8
        data_pos = 2 + header_bytes
        if data_pos > len(p):
            raise ValueError("RFC 3640 AU headers run past the packet")
        sizes: list[int] = []
        bits = int.from_bytes(p[2:data_pos], "big") if header_bytes else 0
        left = header_bytes * 8
        first = True
        used = 0
        while used + self.size_length <= header_bits:
            idx_len = self.index_length if first else self.index_delta_length
            shift = left - used - self.size_length
            sizes.append((bits >> shift) & ((1 << self.size_length) - 1))
            used += self.size_length + idx_len
            first = False
        data = p[data_pos:]
        if self._fragment is not None:
            # The continuation of a fragmented frame: its data is all of this packet's data.
            self._fragment += data
            if packet.marker or len(self._fragment) >= self._fragment_size:
                whole = bytes(self._fragment[: self._fragment_size])
                self._fragment = None
                self.frames += 1
                return [AudioFrame(whole, self._unwrap(self._fragment_ts))]
            return []
        if len(sizes) == 1 and sizes[0] > len(data):
            self._fragment = bytearray(data)
            self._fragment_size = sizes[0]
            self._fragment_ts = packet.timestamp
            return []
        out: list[AudioFrame] = []
        pos = 0
        base = self._unwrap(packet.timestamp)
        for i, size in enumerate(sizes):
            if pos + size > len(data):
                raise ValueError("RFC 3640 access unit runs past the packet")
            out.append(AudioFrame(data[pos:pos + size], base + i * self.frame_samples))
            pos += size
        self.frames += len(out)
        return out
