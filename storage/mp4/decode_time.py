"""Decode times (DTS) for video that arrives with presentation times (PTS) only.

A camera that sends B-frames sends its pictures in decode order, and their presentation
times go back and forth. An MP4 track is laid out in decode order: each sample has a
decode time (which only grows) and a composition offset (PTS - DTS, never negative
here). RTP gives only the PTS, so the DTS is derived, by the rule FFmpeg's demuxer
uses too: a decoder that must hold ``depth`` pictures before it outputs one outputs,
at each new picture, the earliest one it holds. The DTS of picture *i* is the PTS of
the picture output at that step; for the first ``depth`` pictures (nothing output yet)
it is the first PTS less one frame per missing output. The result never exceeds the
PTS and grows by about one frame per picture.

The depth comes from the SPS (``storage.mp4.sps``), or the most the level allows when
the SPS does not say. A stream that reorders deeper than it declared makes the depth
grow; the one picture that showed it is placed just after the previous DTS ("late").

Every recorder (the PyAV segmenter, the native fMP4 writer) uses ``DecodeTimes`` for
the DTS and ``breaks_run`` for the continuity rule, so they cut at the same places.
"""

from __future__ import annotations

import heapq

from storage.mp4.sps import SequenceInfo

# H.264/H.265 decoders hold at most 16 pictures: no conforming stream reorders deeper.
MAX_REORDER_DEPTH = 16


def reorder_depth(info: SequenceInfo | None) -> int:
    """The depth to derive decode times with: the SPS's own statement, or, when it makes
    none, the level's bound (a safe over-estimate: it only makes composition offsets
    larger, and the edit list hides the start-up delay). 0 without an SPS."""
    if info is None:
        return 0
    if info.reorder_depth is not None:
        return min(info.reorder_depth, MAX_REORDER_DEPTH)
    return min(info.max_reorder_depth, MAX_REORDER_DEPTH)


def breaks_run(previous_dts: int, dts: int, max_step: int) -> bool:
    """True if decode time going from ``previous_dts`` to ``dts`` is a discontinuity (a
    camera restart, a wrap, a pause): it does not grow, or grows by more than ``max_step``.

    This is the recording rule: decode time, never presentation time, decides (a B-frame's
    PTS is earlier than the one before it in a perfectly continuous stream).
    """
    return dts <= previous_dts or dts - previous_dts > max_step


class DecodeTimes:
    """Derives one stream's DTS from its PTS, picture by picture, in decode order.

    ``frame_ticks`` is one frame's duration in the PTS time base (0 if unknown: then the
    first pictures' DTS are spaced by one tick). A PTS more than the reorder window
    before the previous DTS is a jump (restart, wrap), not reordering: the derivation
    starts over there, and the DTS it returns goes back too, so ``breaks_run`` sees it.
    """

    def __init__(self, depth: int, frame_ticks: int = 0):
        self.depth = max(0, min(depth, MAX_REORDER_DEPTH))
        self.frame_ticks = max(0, frame_ticks)
        self.late = 0  # pictures that reordered deeper than ``depth`` (each grew it by one)
        self.restarts = 0  # backward jumps past the reorder window
        self._held: list[int] = []
        self._count = 0
        self._first_pts = 0
        self._last_dts: int | None = None

    @property
    def window_ticks(self) -> int:
        """How far a PTS may fall behind the previous DTS and still be reordering."""
        return (MAX_REORDER_DEPTH + 1) * max(self.frame_ticks, 1)

    def reset(self) -> None:
        """Forget the stream so far (a new connection)."""
        self._held.clear()
        self._count = 0
        self._last_dts = None

    def push(self, pts: int) -> tuple[int, int]:
        """``(dts, pts)`` for the next picture in decode order, with ``dts <= pts``.

        ``pts`` comes back unchanged except for a late picture, whose PTS is raised to
        its DTS (shown a few milliseconds late rather than dropped: later pictures may
        reference it).
        """
        last = self._last_dts
        if last is not None and pts < last - self.window_ticks:
            self.restarts += 1
            self.reset()
            last = None
        if self._count == 0:
            self._first_pts = pts
        self._count += 1
        heapq.heappush(self._held, pts)
        if len(self._held) > self.depth:
            dts = heapq.heappop(self._held)
        elif self._count <= self.depth:
            dts = self._first_pts - (self.depth - self._count + 1) * max(self.frame_ticks, 1)
        else:
            dts = pts if last is None else last + 1  # the buffer refills after the depth grew
        if last is not None and dts <= last:
            dts = last + 1
        if dts > pts:
            # Deeper reordering than declared: hold one picture more from now on.
            self.late += 1
            if self.depth < MAX_REORDER_DEPTH:
                self.depth += 1
            pts = dts
        self._last_dts = dts
        return dts, pts
