"""``PsDemuxer``: MPEG program stream (ISO/IEC 13818-1 §2.5) to access units, for GB/T 28181 media.

GB/T 28181 devices send their video as an MPEG-PS byte stream over RTP. The RTP layer strips
RTP (and TCP framing) and feeds the payload bytes here in order; RTP packet boundaries mean
nothing to PS, so the demuxer keeps its own buffer and parses pack headers (MPEG-1 and MPEG-2),
system headers, program stream maps (PSM) and PES packets wherever they fall.

Rules (docs/gb28181.md, "PS media"):
- The codec comes from the PSM when there is one (stream types 0x1B H.264, 0x24 H.265, 0x90/0x91
  G.711 A-law/µ-law): nothing is probed. Without a PSM (ffmpeg's ``-f mpeg``, some devices) the
  video codec is detected from the NAL unit headers (an H.264 SPS/AUD or an H.265 VPS/SPS/PPS/AUD);
  audio without a PSM is dropped, because G.711 cannot be told from MP3 by its bytes.
- A PSM that changes the video stream's type mid-stream (a device switched H.264 -> H.265) ends
  the access unit in progress; the next frames carry the new codec, and the consumer restarts
  its output on the codec change.
- Access units are cut by the bitstream (AUD, parameter sets or SEI after a picture, a slice that
  starts a new picture), never by PES or RTP boundaries: muxers differ there (mpegpsmux writes a
  PES per frame; ffmpeg starts frames in the middle of a PES). A PES timestamp belongs to the
  first access unit whose first byte (start code) lies in that PES (13818-1 §2.4.3.7); an access unit
  without one is placed one frame after the previous one. 33-bit timestamps are unwrapped.
- ``lost()`` (the RTP layer saw a sequence gap) drops the partial PS packet and the access unit
  in progress; frames are dropped until the next keyframe, and each drop is counted.

Pure bytes in and frames out: no sockets, no threads, so it is tested against GStreamer's and
ffmpeg's PS output directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ingest.access_unit import AccessUnit

# PSM stream types (13818-1 Table 2-34, plus the GB/T 28181 audio assignments).
STREAM_TYPE_H264 = 0x1B
STREAM_TYPE_H265 = 0x24
STREAM_TYPE_G711A = 0x90
STREAM_TYPE_G711U = 0x91
VIDEO_STREAM_TYPES = {STREAM_TYPE_H264: "h264", STREAM_TYPE_H265: "h265"}
AUDIO_STREAM_TYPES = {STREAM_TYPE_G711A: "pcm_alaw", STREAM_TYPE_G711U: "pcm_mulaw"}

PACK_START = 0xBA
SYSTEM_HEADER = 0xBB
PSM = 0xBC
PROGRAM_END = 0xB9
_PTS_WRAP = 1 << 33
_DEFAULT_FRAME_90K = 3600  # 25 fps, until two timestamps say otherwise
# A PS packet (or an unbounded video PES) larger than this is garbage: resynchronise.
MAX_PACKET_BYTES = 4 * 1024 * 1024
# An access unit larger than this is dropped (a corrupt stream with no start codes).
MAX_ACCESS_UNIT_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class VideoFrame:
    """One access unit of the PS video stream: Annex-B bytes and 90 kHz times (unwrapped)."""

    codec: str  # "h264" or "h265"
    data: bytes  # Annex B, as it came (start codes kept)
    pts_90k: int
    dts_90k: int
    keyframe: bool

    def access_unit(self, wallclock: float | None = None) -> AccessUnit:
        return AccessUnit.from_annexb(self.data, self.pts_90k, self.keyframe, wallclock)


@dataclass(frozen=True)
class AudioFrame:
    """One audio PES payload (G.711 from the PSM): ``codec`` is FFmpeg's name."""

    codec: str
    data: bytes
    pts_90k: int | None


@dataclass
class PsStats:
    """What the demuxer saw; the GB media session shows these in the camera status."""

    packs: int = 0
    psms: int = 0
    psm_changes: int = 0  # a PSM whose stream map differs from the one before
    pes: int = 0
    resync_bytes: int = 0  # bytes skipped looking for a start code
    frames: int = 0
    dropped_frames: int = 0  # after a loss, until the next keyframe; or oversized
    dropped_audio: int = 0  # audio of a type we do not take, or with no PSM to say what it is
    dropped_other: int = 0  # private streams, padding, unsupported video types
    codec_detected: str | None = None  # set when the video codec came from NAL units, not a PSM
    unsupported_video: int | None = None  # a PSM stream type for video we cannot record
    losses: int = 0
    stale_timestamps: int = 0  # a PES timestamp that belonged to the unit before (see _emit)


def read_timestamp(b: bytes | bytearray, i: int) -> int:
    """A 33-bit PTS/DTS from its 5-byte PES encoding at ``b[i]``."""
    return (((b[i] >> 1) & 7) << 30) | (b[i + 1] << 22) | ((b[i + 2] >> 1) << 15) | (b[i + 3] << 7) | (b[i + 4] >> 1)


def parse_psm(body: bytes | bytearray) -> tuple[bool, int, dict[int, int]] | None:
    """A PSM's (current_next, version, {stream_id: stream_type}); ``body`` follows the length field."""
    if len(body) < 6:
        return None
    current = bool(body[0] & 0x80)
    version = body[0] & 0x1F
    info_len = int.from_bytes(body[2:4], "big")
    p = 4 + info_len
    if p + 2 > len(body):
        return None
    map_len = int.from_bytes(body[p : p + 2], "big")
    p += 2
    end = min(p + map_len, len(body))
    streams: dict[int, int] = {}
    while p + 4 <= end:
        stream_type, stream_id = body[p], body[p + 1]
        p += 4 + int.from_bytes(body[p + 2 : p + 4], "big")
        streams[stream_id] = stream_type
    return current, version, streams


def parse_pes_header(pkt: bytes | bytearray) -> tuple[int | None, int | None, int] | None:
    """(pts, dts, payload offset) of a PES packet (MPEG-2 or MPEG-1 syntax); ``pkt`` starts at 00 00 01."""
    n = len(pkt)
    if n < 9:
        return None
    if pkt[6] & 0xC0 == 0x80:  # MPEG-2 PES header
        flags = pkt[7] >> 6
        start = 9 + pkt[8]
        if start > n:
            return None
        pts = read_timestamp(pkt, 9) if flags & 2 and n >= 14 else None
        dts = read_timestamp(pkt, 14) if flags == 3 and n >= 19 else pts
        return pts, dts, start
    p = 6  # MPEG-1 (ISO 11172-1 §2.4.3.3), as ffmpeg's -f mpeg writes
    while p < n and pkt[p] == 0xFF and p < 6 + 16:
        p += 1
    if p < n and pkt[p] & 0xC0 == 0x40:  # STD buffer size
        p += 2
    if p >= n:
        return None
    kind = pkt[p] & 0xF0
    if kind == 0x20 and p + 5 <= n:
        pts = read_timestamp(pkt, p)
        return pts, pts, p + 5
    if kind == 0x30 and p + 10 <= n:
        return read_timestamp(pkt, p), read_timestamp(pkt, p + 5), p + 10
    if pkt[p] == 0x0F:
        return None, None, p + 1
    return None


# -- access units from an elementary stream ---------------------------------------------------------

_H264_VCL = frozenset(range(1, 6))
_H264_AU_START = frozenset({6, 7, 8, 9, 13, 14, 15, 16, 17, 18})  # 7.4.1.2.3
_H265_AU_START = frozenset({32, 33, 34, 35, 39, 41, 42, 43, 44, *range(48, 56)})  # 7.4.2.4.4
_H264_PROFILES = frozenset({44, 66, 77, 83, 86, 88, 100, 110, 118, 122, 128, 134, 135, 138, 139, 144, 244})


def detect_codec(h0: int, h1: int) -> str | None:
    """The codec a NAL unit header (its first two bytes) shows for sure, if any.

    An H.265 VPS/SPS/PPS/AUD header has nuh_temporal_id_plus1 in 1..7 (never 0) and is no
    H.264 SPS/AUD; an H.264 SPS or AUD reads as a reserved type in H.265."""
    t265 = (h0 >> 1) & 0x3F
    if h0 & 0x80:
        return None  # forbidden_zero_bit
    if t265 in (32, 33, 34, 35) and 1 <= (h1 & 7) and (h1 >> 3) == 0 and not h0 & 1:
        return "h265"
    t264 = h0 & 0x1F
    if t264 == 9 or (t264 == 7 and h1 in _H264_PROFILES):
        return "h264"
    return None


@dataclass
class _EsAssembler:
    """Cuts one video elementary stream into access units."""

    codec: str | None  # None: detect from the NAL units (no PSM)
    stats: PsStats
    buf: bytearray = field(default_factory=bytearray)
    base: int = 0  # ES offset of buf[0]
    au_start: int | None = None  # buffer index where the access unit in progress starts
    scan: int = 0
    has_vcl: bool = False
    key: bool = False
    marks: list[tuple[int, int, int]] = field(default_factory=list)  # (ES offset, pts, dts)
    last_pts: int | None = None  # unwrapped
    last_dts: int | None = None
    au_pts: tuple[int, int] | None = None
    frame_90k: int = _DEFAULT_FRAME_90K
    wait_key: bool = False

    def push(self, payload: bytes | bytearray, pts: int | None, dts: int | None, out: list) -> None:
        if pts is not None:
            self.marks.append((self.base + len(self.buf), pts, dts if dts is not None else pts))
        self.buf += payload
        self._scan(out)
        if len(self.buf) > MAX_ACCESS_UNIT_BYTES:
            self.stats.dropped_frames += 1
            self.reset(wait_key=True)

    def _scan(self, out: list) -> None:
        buf = self.buf
        while True:
            i = buf.find(b"\x00\x00\x01", self.scan)
            if i < 0:
                self.scan = max(self.scan, len(buf) - 2)
                break
            if i + 6 > len(buf):
                self.scan = i
                break
            self.scan = i + 3
            h0, h1, h2 = buf[i + 3], buf[i + 4], buf[i + 5]
            if self.codec is None:
                self.codec = detect_codec(h0, h1)
                if self.codec is None:
                    continue  # before the first NAL unit that names the codec: undecodable
                self.stats.codec_detected = self.codec
            if self.codec == "h264":
                t = h0 & 0x1F
                vcl = t in _H264_VCL
                starts = t in _H264_AU_START or (vcl and h1 & 0x80)  # first_mb_in_slice == 0
                key = t == 5
            else:
                t = (h0 >> 1) & 0x3F
                vcl = t < 32
                starts = t in _H265_AU_START or (vcl and h2 & 0x80)  # first_slice_segment_in_pic_flag
                key = 16 <= t <= 21
            if self.au_start is None:
                self._begin(i)
            elif starts and self.has_vcl:
                self._emit(i, out)
                self._begin(i)
            if vcl:
                self.has_vcl = True
                self.key = self.key or key
        if self.au_start is None:
            # Nothing to keep before the first access unit: bound the buffer.
            keep = min(self.scan, len(buf))
            del buf[:keep]
            self.base += keep
            self.scan -= keep
        elif self.au_start > 0:
            del buf[: self.au_start]
            self.base += self.au_start
            self.scan -= self.au_start
            self.au_start = 0

    def _begin(self, i: int) -> None:
        self.au_start = i
        self.has_vcl = False
        self.key = False
        # The timestamp of the PES in which this unit's first byte (its start code, with the
        # leading zero of a 4-byte one) lies: as ffmpeg and mpegpsmux assign them.
        first = self.base + (i - 1 if i > 0 and self.buf[i - 1] == 0 else i)
        mark = None
        while self.marks and self.marks[0][0] <= first:
            mark = self.marks.pop(0)
        self.au_pts = (mark[1], mark[2]) if mark is not None else None

    def _emit(self, end: int, out: list) -> None:
        assert self.au_start is not None and self.codec is not None
        # Without the zero bytes before the next start code (the first of a 4-byte one).
        data = bytes(self.buf[self.au_start : end]).rstrip(b"\x00")
        stamped = self.au_pts is not None
        if self.au_pts is not None:
            pts, dts = self._unwrap(self.au_pts[0]), self._unwrap(self.au_pts[1])
            if self.last_dts is not None and 0 <= self.last_dts - dts <= 2 * self.frame_90k:
                # Decoding time never stands still: this is the previous unit's timestamp (its start
                # code straddled two PES packets and its first byte was read into the earlier one).
                # A larger step back is a new timeline (a device restart) and is kept.
                self.stats.stale_timestamps += 1
                stamped = False
            elif self.last_pts is not None and 0 < pts - self.last_pts < 90000:
                self.frame_90k = pts - self.last_pts
        if not stamped:
            if self.last_pts is None:
                self.stats.dropped_frames += 1  # no time at all yet: cannot be placed
                return
            pts = self.last_pts + self.frame_90k
            dts = (self.last_dts if self.last_dts is not None else self.last_pts) + self.frame_90k
        self.last_pts, self.last_dts = pts, dts
        if self.wait_key and not self.key:
            self.stats.dropped_frames += 1
            return
        self.wait_key = False
        self.stats.frames += 1
        out.append(VideoFrame(self.codec, data, pts, dts, self.key))

    def _unwrap(self, ts: int) -> int:
        ref = self.last_pts
        if ref is None:
            return ts
        delta = (ts - ref) % _PTS_WRAP
        if delta >= _PTS_WRAP // 2:
            delta -= _PTS_WRAP
        return ref + delta

    def flush(self, out: list) -> None:
        if self.au_start is not None and self.has_vcl:
            self._emit(len(self.buf), out)
        self.reset(wait_key=self.wait_key)

    def reset(self, wait_key: bool) -> None:
        self.buf.clear()
        self.base = 0
        self.au_start = None
        self.scan = 0
        self.has_vcl = False
        self.key = False
        self.marks.clear()
        self.au_pts = None
        self.wait_key = wait_key


class PsDemuxer:
    """Feed PS bytes in order with ``feed``; get ``VideoFrame`` and ``AudioFrame`` objects back.

    One video stream is taken (the first video PES stream id seen, normally 0xE0)."""

    def __init__(self) -> None:
        self.stats = PsStats()
        self.stream_types: dict[int, int] = {}  # from the last PSM
        self.psm_version: int | None = None
        self.video_id: int | None = None
        self._video: _EsAssembler | None = None
        self._buf = bytearray()

    @property
    def video_codec(self) -> str | None:
        """The video codec, from the PSM or detected; None until known."""
        return self._video.codec if self._video is not None else None

    def feed(self, data: bytes | bytearray | memoryview) -> list[VideoFrame | AudioFrame]:
        out: list[VideoFrame | AudioFrame] = []
        self._buf += data
        buf = self._buf
        pos = 0
        n = len(buf)
        while n - pos >= 4:
            if buf[pos] != 0 or buf[pos + 1] != 0 or buf[pos + 2] != 1:
                nxt = buf.find(b"\x00\x00\x01", pos + 1)
                skip_to = nxt if nxt >= 0 else n - 2
                self.stats.resync_bytes += skip_to - pos
                pos = skip_to
                continue
            code = buf[pos + 3]
            if code == PACK_START:
                if n - pos < 14:
                    break
                if buf[pos + 4] & 0xC0 == 0x40:
                    size = 14 + (buf[pos + 13] & 7)
                elif buf[pos + 4] & 0xF0 == 0x20:
                    size = 12
                else:
                    self.stats.resync_bytes += 4
                    pos += 4
                    continue
                if n - pos < size:
                    break
                self.stats.packs += 1
                pos += size
                continue
            if code == PROGRAM_END:
                pos += 4
                continue
            if code < PROGRAM_END:
                # A NAL start code or garbage where a PS packet should be: resynchronise.
                self.stats.resync_bytes += 3
                pos += 3
                continue
            if n - pos < 6:
                break
            length = (buf[pos + 4] << 8) | buf[pos + 5]
            if length == 0 and 0xE0 <= code <= 0xEF:
                # An unbounded video PES (allowed in TS, seen in PS from some devices): it runs
                # to the next system start code (NAL headers are < 0x80, so never mistaken).
                end = self._next_system_code(pos + 6)
                if end is None:
                    if n - pos > MAX_PACKET_BYTES:
                        self.stats.resync_bytes += n - pos
                        pos = n
                    break
            else:
                end = pos + 6 + length
                if end > n:
                    break
            self._packet(code, buf[pos:end], out)
            pos = end
        del buf[:pos]
        return out

    def _next_system_code(self, start: int) -> int | None:
        buf = self._buf
        i = buf.find(b"\x00\x00\x01", start)
        while i >= 0 and i + 3 < len(buf):
            if buf[i + 3] >= PROGRAM_END:
                return i
            i = buf.find(b"\x00\x00\x01", i + 3)
        return None

    def _packet(self, code: int, pkt: bytearray, out: list) -> None:
        if code == PSM:
            self._psm(pkt[6:], out)
        elif 0xE0 <= code <= 0xEF:
            self._video_pes(code, pkt, out)
        elif 0xC0 <= code <= 0xDF:
            self._audio_pes(code, pkt, out)
        elif code != SYSTEM_HEADER:
            self.stats.dropped_other += 1  # private stream 1/2, padding, ECM/EMM, directory

    def _psm(self, body: bytearray, out: list) -> None:
        parsed = parse_psm(body)
        if parsed is None:
            return
        current, version, streams = parsed
        if not current:
            return  # not yet applicable (13818-1 §2.5.4.2)
        self.stats.psms += 1
        if self.stream_types and streams != self.stream_types:
            self.stats.psm_changes += 1
        self.stream_types = streams
        self.psm_version = version
        if self._video is not None and self.video_id is not None:
            codec = VIDEO_STREAM_TYPES.get(streams.get(self.video_id, -1))
            if codec is not None and codec != self._video.codec:
                # The device switched codec: finish the unit in progress, start a new stream.
                self._video.flush(out)
                self._video = _EsAssembler(codec, self.stats, wait_key=True)

    def _video_pes(self, code: int, pkt: bytearray, out: list) -> None:
        self.stats.pes += 1
        if self.video_id is None:
            self.video_id = code
        elif code != self.video_id:
            self.stats.dropped_other += 1
            return
        header = parse_pes_header(pkt)
        if header is None:
            return
        pts, dts, start = header
        if self._video is None:
            stream_type = self.stream_types.get(code)
            if stream_type is not None and stream_type not in VIDEO_STREAM_TYPES:
                self.stats.unsupported_video = stream_type
                self.stats.dropped_other += 1
                return
            self._video = _EsAssembler(VIDEO_STREAM_TYPES.get(stream_type) if stream_type else None, self.stats)
        self._video.push(pkt[start:], pts, dts, out)

    def _audio_pes(self, code: int, pkt: bytearray, out: list) -> None:
        codec = AUDIO_STREAM_TYPES.get(self.stream_types.get(code, -1))
        header = parse_pes_header(pkt)
        if codec is None or header is None:
            self.stats.dropped_audio += 1
            return
        pts, _dts, start = header
        out.append(AudioFrame(codec, bytes(pkt[start:]), pts))

    def lost(self) -> None:
        """Bytes are missing (an RTP sequence gap): drop the partial packet and the unit in
        progress, and frames until the next keyframe."""
        self.stats.losses += 1
        self._buf.clear()
        if self._video is not None:
            if self._video.au_start is not None and self._video.has_vcl:
                self.stats.dropped_frames += 1
            last_pts, last_dts, frame = self._video.last_pts, self._video.last_dts, self._video.frame_90k
            self._video.reset(wait_key=True)
            self._video.last_pts, self._video.last_dts, self._video.frame_90k = last_pts, last_dts, frame

    def flush(self) -> list[VideoFrame | AudioFrame]:
        """The access unit still held (at the end of the stream)."""
        out: list[VideoFrame | AudioFrame] = []
        if self._video is not None:
            self._video.flush(out)
        return out
