"""``PsMuxer``: access units to an MPEG program stream, as GB/T 28181 devices send it.

For the cascade (an upper platform INVITEs one of our cameras) and for the simulated device of
``sharpeyes demo``. Every access unit becomes one pack: a pack header (MPEG-2, SCR from the
DTS), and in front of each keyframe a system header and a PSM naming the codec (0x1B H.264,
0x24 H.265), then the picture in PES packets of at most ``max_pes_payload`` bytes, the first
with PTS (and DTS when it differs). That is the layout Hikvision and Dahua devices use, so
upper platforms that only cope with it (a PSM before every keyframe) are served too.
"""

from __future__ import annotations

from ingest.gb28181.ps import STREAM_TYPE_H264, STREAM_TYPE_H265

VIDEO_STREAM_ID = 0xE0
_STREAM_TYPES = {"h264": STREAM_TYPE_H264, "h265": STREAM_TYPE_H265}
# 64 KiB minus headers is the PES limit; devices use less so a PES fits a few RTP packets.
DEFAULT_MAX_PES_PAYLOAD = 60000
_MUX_RATE = 0x3FFFFF  # program_mux_rate in 50 B/s units: "unknown, high"; receivers ignore it


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        c = i << 24
        for _ in range(8):
            c = ((c << 1) ^ 0x04C11DB7) if c & 0x80000000 else (c << 1)
        table.append(c & 0xFFFFFFFF)
    return table


_CRC = _crc_table()


def crc32_mpeg(data: bytes) -> int:
    """CRC-32/MPEG-2 (13818-1 Annex A): what a PSM ends with."""
    crc = 0xFFFFFFFF
    for b in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC[((crc >> 24) ^ b) & 0xFF]
    return crc


def encode_timestamp(prefix: int, ts: int) -> bytes:
    """A 33-bit PTS/DTS in its 5-byte PES form, with the 4-bit ``prefix`` (0b0010, 0b0011, 0b0001)."""
    ts &= (1 << 33) - 1
    return bytes((
        (prefix << 4) | ((ts >> 29) & 0x0E) | 1,
        (ts >> 22) & 0xFF,
        ((ts >> 14) & 0xFE) | 1,
        (ts >> 7) & 0xFF,
        ((ts << 1) & 0xFE) | 1,
    ))


def pack_header(scr_90k: int) -> bytes:
    """An MPEG-2 pack header with SCR = ``scr_90k`` (extension 0) and no stuffing."""
    scr = scr_90k & ((1 << 33) - 1)
    v = (0b01 << 46) | (((scr >> 30) & 7) << 43) | (1 << 42) | (((scr >> 15) & 0x7FFF) << 27) | (1 << 26)
    v |= ((scr & 0x7FFF) << 11) | (1 << 10) | 1
    return b"\x00\x00\x01\xba" + v.to_bytes(6, "big") + ((_MUX_RATE << 2) | 3).to_bytes(3, "big") + b"\xf8"


def system_header(stream_ids: tuple[int, ...]) -> bytes:
    body = bytearray(((_MUX_RATE >> 15) | 0x80, (_MUX_RATE >> 7) & 0xFF, ((_MUX_RATE << 1) & 0xFE) | 1))
    audio_bound = sum(1 for s in stream_ids if 0xC0 <= s <= 0xDF)
    video_bound = sum(1 for s in stream_ids if 0xE0 <= s <= 0xEF)
    body += bytes(((audio_bound << 2) | 0, 0xE0 | video_bound, 0x7F))
    for sid in stream_ids:
        # P-STD buffer bound: scale 1 (1024 B units) for video, 0 (128 B units) for audio.
        bound = (1 << 13) | 400 if 0xE0 <= sid <= 0xEF else 32
        body += bytes((sid, 0xC0 | (bound >> 8), bound & 0xFF))
    return b"\x00\x00\x01\xbb" + len(body).to_bytes(2, "big") + bytes(body)


def program_stream_map(streams: dict[int, int], version: int = 0) -> bytes:
    """A PSM for ``{stream_id: stream_type}``."""
    es_map = b"".join(bytes((stype, sid, 0, 0)) for sid, stype in streams.items())
    body = bytes((0x80 | 0x20 | (version & 0x1F), 0xFF)) + b"\x00\x00" + len(es_map).to_bytes(2, "big") + es_map
    length = len(body) + 4
    head = b"\x00\x00\x01\xbc" + length.to_bytes(2, "big") + body
    return head + crc32_mpeg(head).to_bytes(4, "big")


def pes_packets(stream_id: int, payload: bytes, pts: int | None, dts: int | None,
                max_payload: int = DEFAULT_MAX_PES_PAYLOAD) -> list[bytes]:
    """``payload`` as PES packets; the first carries the timestamps."""
    out: list[bytes] = []
    view = memoryview(payload)
    first = True
    for off in range(0, max(1, len(payload)), max_payload):
        chunk = view[off : off + max_payload]
        if first and pts is not None:
            if dts is not None and dts != pts:
                flags, ts = 0xC0, encode_timestamp(0b0011, pts) + encode_timestamp(0b0001, dts)
            else:
                flags, ts = 0x80, encode_timestamp(0b0010, pts)
        else:
            flags, ts = 0x00, b""
        header = bytes((0x80, flags, len(ts))) + ts
        length = len(header) + len(chunk)
        out.append(b"\x00\x00\x01" + bytes((stream_id,)) + length.to_bytes(2, "big") + header + chunk.tobytes())
        first = False
    return out


class PsMuxer:
    """One video stream to PS, an access unit at a time."""

    def __init__(self, codec: str, max_pes_payload: int = DEFAULT_MAX_PES_PAYLOAD) -> None:
        if codec not in _STREAM_TYPES:
            raise ValueError(f"PS muxing takes h264 or h265, not {codec!r}")
        self.codec = codec
        self.max_pes_payload = max_pes_payload
        self._psm = program_stream_map({VIDEO_STREAM_ID: _STREAM_TYPES[codec]})
        self._system = system_header((VIDEO_STREAM_ID,))

    def mux(self, nals: tuple[bytes, ...] | list[bytes], pts_90k: int, keyframe: bool,
            dts_90k: int | None = None) -> bytes:
        """One access unit (NAL units without start codes) as a PS pack."""
        dts = pts_90k if dts_90k is None else dts_90k
        es = b"".join(b"\x00\x00\x00\x01" + n for n in nals)
        parts = [pack_header(max(0, dts - 3600))]  # SCR a frame ahead of decoding time
        if keyframe:
            parts += [self._system, self._psm]
        parts += pes_packets(VIDEO_STREAM_ID, es, pts_90k, dts, self.max_pes_payload)
        return b"".join(parts)
