"""Turn demuxed packets into whole access units.

FFmpeg's RTSP demuxer hands over one packet per RTP-depacketised slice group,
so a camera that codes each frame as several slices gives several packets with
the same pts. The MP4 muxer needs one sample per frame (two samples with the
same dts fail with EINVAL), so packets with equal pts are joined here.
"""

from __future__ import annotations

from typing import Iterator

import av


class AccessUnitJoiner:
    """Feed video packets in demux order; whole access units come out one packet late."""

    def __init__(self) -> None:
        self._pending: list[av.Packet] = []
        self._arrival_us = 0
        self.dropped_no_pts = 0

    def push(self, packet: av.Packet, arrival_us: int = 0) -> Iterator[tuple[av.Packet, int]]:
        """Yield ``(access unit, arrival time of its first packet)`` that ``packet`` completes, if any.

        The arrival time travels with the unit because the unit itself leaves one
        packet late: the time anchor must be when the frame came, not when the next did.
        """
        if packet.pts is None:
            # Nothing can place it in time: RTSP gives this for the very first packet
            # of some cameras, before the first RTCP sender report.
            self.dropped_no_pts += 1
            return
        if packet.size == 0:
            return
        if self._pending and self._pending[0].pts != packet.pts:
            yield self._join(), self._arrival_us
        if not self._pending:
            self._arrival_us = arrival_us
        self._pending.append(packet)

    def flush(self) -> Iterator[tuple[av.Packet, int]]:
        """Yield the last, held-back access unit (at end of stream)."""
        if self._pending:
            yield self._join(), self._arrival_us

    def _join(self) -> av.Packet:
        parts, self._pending = self._pending, []
        first = parts[0]
        if len(parts) == 1:
            return first
        joined = av.Packet(b"".join(bytes(p) for p in parts))
        joined.pts = first.pts
        joined.dts = first.dts if first.dts is not None else first.pts
        joined.time_base = first.time_base
        joined.stream = first.stream
        joined.is_keyframe = any(p.is_keyframe for p in parts)
        joined.duration = first.duration
        return joined
