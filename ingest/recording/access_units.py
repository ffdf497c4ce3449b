"""Turn demuxed packets into whole access units.

FFmpeg's RTSP demuxer may hand over one packet per slice group, so a camera that
codes each frame as several slices can give several packets with the same pts.
The MP4 muxer needs one sample per frame (two samples with the same dts fail
with EINVAL), so packets with equal pts are joined here.

The first packet of an RTSP session often has no pts (seen with GStreamer's
server and our own), and it is the IDR frame. Dropping it would delay the
recording by a whole GOP after every reconnect, so packets without pts at the
very start are held and given the pts one frame before the first real one.
Later packets without pts cannot be placed in time and are dropped.

RTP carries presentation times only. A camera that sends B-frames sends them in
decode order with presentation times that go back and forth, so every access unit
gets its decode time from ``DecodeTimestamper`` (the rule of
``storage.mp4.decode_time``, the same for every ingest path) before the segmenter
and the live taps see it.
"""

from __future__ import annotations

from typing import Iterator

import av

from storage.mp4.decode_time import DecodeTimes, reorder_depth
from storage.mp4.nal import parameter_set_nals, parameter_sets_from_extradata, split_annexb
from storage.mp4.sps import sequence_info

_CODECS = {"h264": "h264", "hevc": "h265"}


class AccessUnitJoiner:
    """Feed video packets in demux order; whole access units come out one packet late."""

    def __init__(self, frame_ticks: int = 0) -> None:
        """``frame_ticks``: one frame's duration in the stream's time base (0 if unknown),
        used to place a leading packet that has no pts."""
        self._pending: list[av.Packet] = []
        self._arrival_us = 0
        self._leading: list[av.Packet] = []
        self._leading_arrival_us = 0
        self._seen_pts = False
        self.frame_ticks = frame_ticks
        self.dropped_no_pts = 0

    def push(self, packet: av.Packet, arrival_us: int = 0) -> Iterator[tuple[av.Packet, int]]:
        """Yield ``(access unit, arrival time of its first packet)`` that ``packet`` completes, if any.

        The arrival time travels with the unit because the unit itself leaves one
        packet late: the time anchor must be when the frame came, not when the next did.
        """
        if packet.size == 0:
            return
        if packet.pts is None:
            if not self._seen_pts and self.frame_ticks > 0:
                if not self._leading:
                    self._leading_arrival_us = arrival_us
                self._leading.append(packet)
            else:
                self.dropped_no_pts += 1
            return
        if not self._seen_pts:
            self._seen_pts = True
            if self._leading:
                lead = self._join(self._leading, packet.pts - self.frame_ticks)
                self._leading = []
                yield lead, self._leading_arrival_us
        if self._pending and self._pending[0].pts != packet.pts:
            yield self._join(self._pending), self._arrival_us
            self._pending = []
        if not self._pending:
            self._arrival_us = arrival_us
        self._pending.append(packet)

    def flush(self) -> Iterator[tuple[av.Packet, int]]:
        """Yield the last, held-back access unit (at end of stream)."""
        if self._pending:
            yield self._join(self._pending), self._arrival_us
            self._pending = []

    @staticmethod
    def _join(parts: list[av.Packet], pts: int | None = None) -> av.Packet:
        first = parts[0]
        if len(parts) == 1 and pts is None:
            return first
        joined = av.Packet(b"".join(bytes(p) for p in parts))
        joined.pts = first.pts if pts is None else pts
        joined.dts = joined.pts
        joined.time_base = first.time_base
        joined.stream = first.stream
        joined.is_keyframe = any(p.is_keyframe for p in parts)
        return joined


def frame_ticks(stream: av.video.stream.VideoStream) -> int:
    """One frame's duration in ``stream``'s time base, from its advertised rate (0 if unknown)."""
    rate = stream.guessed_rate or stream.average_rate or stream.base_rate
    if not rate or not stream.time_base:
        return 0
    return max(1, round(1 / (rate * stream.time_base)))


class DecodeTimestamper:
    """Sets ``packet.dts`` on one connection's access units, in decode order, from their pts.

    The reorder depth comes from the SPS: the stream's extradata (the SDP's parameter
    sets) at first, then each keyframe's in-band SPS, which wins when it asks for more.
    Whatever the source put in ``dts`` (FFmpeg guesses one, from the third packet on)
    is replaced, so every ingest path records by the same rule. ``reordered`` counts
    pictures presented before the one decoded just before them: B-frames.
    """

    def __init__(self, stream: av.video.stream.VideoStream) -> None:
        ctx = stream.codec_context
        self.codec = _CODECS.get(ctx.name, ctx.name)
        info = sequence_info(self.codec, parameter_sets_from_extradata(self.codec, ctx.extradata))
        self.times = DecodeTimes(reorder_depth(info), frame_ticks(stream))
        self.reordered = 0
        self._last_pts: int | None = None

    @property
    def depth(self) -> int:
        """Pictures the decoder holds before it outputs one (0: no B-frames)."""
        return self.times.depth

    @property
    def b_frames(self) -> bool:
        """The stream has sent pictures out of presentation order."""
        return self.reordered > 0

    def stamp(self, packet: av.Packet) -> None:
        """Give ``packet`` (a whole access unit with a pts) its dts; a picture that reorders
        deeper than the SPS said also has its pts raised to that dts (see ``DecodeTimes``)."""
        if packet.is_keyframe and packet.pts is not None:
            self._read_sps(bytes(packet))
        if packet.pts is None:
            return
        if self._last_pts is not None and packet.pts < self._last_pts:
            self.reordered += 1
        self._last_pts = packet.pts
        dts, pts = self.times.push(packet.pts)
        packet.dts = dts
        if pts != packet.pts:
            packet.pts = pts

    def _read_sps(self, annexb: bytes) -> None:
        info = sequence_info(self.codec, parameter_set_nals(self.codec, split_annexb(annexb)))
        depth = reorder_depth(info) if info is not None else 0
        if depth > self.times.depth:
            self.times.depth = depth
