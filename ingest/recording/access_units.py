"""Turn demuxed packets into whole access units.

FFmpeg's RTSP demuxer may hand over one packet per slice group, so a camera that
codes each frame as several slices can give several packets with the same pts.
The MP4 muxer needs one sample per frame (two samples with the same dts fail
with EINVAL), so packets with equal pts are joined here.

The first packet of an RTSP session often has no pts (seen with GStreamer's
server, VLC's and our own), and it is the IDR frame. Dropping it would delay the
recording by a whole GOP after every reconnect, so packets without pts at the
very start are held and given the pts one frame before the earliest of the next
``LEAD_WINDOW`` pts (with B-frames the packet after the IDR is presented several
frames after it; the IDR of a closed GOP is presented before all of them). Later
packets without pts cannot be placed in time and are dropped.

RTP carries presentation times only. A camera that sends B-frames sends them in
decode order with presentation times that go back and forth, so every access unit
gets its decode time from ``DecodeTimestamper`` (the rule of
``storage.mp4.decode_time``, the same for every ingest path) before the segmenter
and the live taps see it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

from storage.mp4.decode_time import DecodeTimes, reorder_depth
from storage.mp4.nal import parameter_set_nals, parameter_sets_from_extradata, split_annexb
from storage.mp4.sps import sequence_info

if TYPE_CHECKING:
    import av  # only PyAV pulls build packets here; the native path never loads it

_CODECS = {"h264": "h264", "hevc": "h265"}
# Packets (with a pts) looked at to place a leading IDR without one: more than any
# camera's run of B-frames between references.
LEAD_WINDOW = 8


class AccessUnitJoiner:
    """Feed video packets in demux order; whole access units come out one packet late."""

    def __init__(self, frame_ticks: int = 0) -> None:
        """``frame_ticks``: one frame's duration in the stream's time base (0 if unknown),
        used to place a leading packet that has no pts."""
        self._pending: list[av.Packet] = []
        self._arrival_us = 0
        self._leading: list[av.Packet] = []
        self._leading_arrival_us = 0
        self._after_leading: list[tuple[av.Packet, int]] = []  # held until the IDR is placed
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
            if self._leading:
                self._after_leading.append((packet, arrival_us))
                if len({p.pts for p, _ in self._after_leading}) < LEAD_WINDOW:
                    return
                yield from self._place_leading()
                return
            self._seen_pts = True
        yield from self._add(packet, arrival_us)

    def _place_leading(self) -> Iterator[tuple[av.Packet, int]]:
        """The held leading IDR, one frame before the earliest pts after it, then the rest."""
        self._seen_pts = True
        earliest = min(p.pts for p, _ in self._after_leading if p.pts is not None)
        lead = self._join(self._leading, earliest - self.frame_ticks)
        self._leading = []
        yield lead, self._leading_arrival_us
        held, self._after_leading = self._after_leading, []
        for packet, arrival_us in held:
            yield from self._add(packet, arrival_us)

    def _add(self, packet: av.Packet, arrival_us: int) -> Iterator[tuple[av.Packet, int]]:
        if self._pending and self._pending[0].pts != packet.pts:
            yield self._join(self._pending), self._arrival_us
            self._pending = []
        if not self._pending:
            self._arrival_us = arrival_us
        self._pending.append(packet)

    def flush(self) -> Iterator[tuple[av.Packet, int]]:
        """Yield the last, held-back access unit (at end of stream)."""
        if self._leading and self._after_leading:
            yield from self._place_leading()
        if self._pending:
            yield self._join(self._pending), self._arrival_us
            self._pending = []

    @staticmethod
    def _join(parts: list[av.Packet], pts: int | None = None) -> av.Packet:
        first = parts[0]
        if len(parts) == 1 and pts is None:
            return first
        import av

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

    The derivation starts at the connection's first keyframe: a stream joined mid-GOP
    starts with pictures that cannot be decoded, and whose presentation times are not
    the earliest of what follows (the rule's start would take them for late pictures).
    """

    def __init__(self, stream: av.video.stream.VideoStream) -> None:
        ctx = stream.codec_context
        self.codec = _CODECS.get(ctx.name, ctx.name)
        info = sequence_info(self.codec, parameter_sets_from_extradata(self.codec, ctx.extradata))
        self.times = DecodeTimes(reorder_depth(info), frame_ticks(stream))
        self.reordered = 0
        self._last_pts: int | None = None
        self._started = False

    @property
    def depth(self) -> int:
        """Pictures the decoder holds before it outputs one (0: no B-frames)."""
        return self.times.depth

    @property
    def b_frames(self) -> bool:
        """The stream has sent pictures out of presentation order."""
        return self.reordered > 0

    def stamp(self, packet: av.Packet) -> bool:
        """Give ``packet`` (a whole access unit with a pts) its dts; a picture that reorders
        deeper than the SPS said also has its pts raised to that dts (see ``DecodeTimes``).
        False (and no dts) for a picture before the connection's first keyframe: drop it."""
        if packet.is_keyframe and packet.pts is not None:
            self._read_sps(bytes(packet))
            self._started = True
        if packet.pts is None or not self._started:
            return False
        if self._last_pts is not None and packet.pts < self._last_pts:
            self.reordered += 1
        self._last_pts = packet.pts
        dts, pts = self.times.push(packet.pts)
        packet.dts = dts
        if pts != packet.pts:
            packet.pts = pts
        return True

    def _read_sps(self, annexb: bytes) -> None:
        info = sequence_info(self.codec, parameter_set_nals(self.codec, split_annexb(annexb)))
        depth = reorder_depth(info) if info is not None else 0
        if depth > self.times.depth:
            self.times.depth = depth
