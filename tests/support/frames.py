"""Read back the burned-in frame codes of a recording and count what went wrong.

    codes = presented_codes(mp4_bytes)            # frame codes in presentation order
    report = continuity([codes_seg1, codes_seg2], loop=clip.frames)
    report.lost_at_cuts, report.out_of_order, report.frames

Codes are the clip's frame index within its loop (``tests.support.clips``), so every
difference is taken modulo the loop length. A frame whose code cannot be read counts
as out of order.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import av

from tests.support.clips import read_frame_code

UNREADABLE = -1


def presented_codes(media: bytes | Path, max_frames: int | None = None) -> list[int]:
    """The frame codes of every decoded video frame, in the order a player shows them."""
    source = io.BytesIO(media) if isinstance(media, bytes) else str(media)
    codes: list[int] = []
    with av.open(source) as c:
        for frame in c.decode(video=0):
            try:
                codes.append(read_frame_code(frame.to_ndarray(format="gray")))
            except ValueError:
                codes.append(UNREADABLE)
            if max_frames is not None and len(codes) >= max_frames:
                break
    return codes


@dataclass
class Continuity:
    frames: int  # decoded frames in all parts
    out_of_order: int  # steps inside a part that are not "next frame"
    lost_at_cuts: int  # frames missing between the end of a part and the start of the next
    repeated_at_cuts: int  # frames shown again at the start of the next part


def continuity(parts: list[list[int]], loop: int) -> Continuity:
    """Count breaks in ``parts`` (each one file's codes, in recording order)."""
    out_of_order = lost = repeated = 0
    for codes in parts:
        out_of_order += sum(1 for a, b in zip(codes, codes[1:])
                            if a == UNREADABLE or b == UNREADABLE or (b - a) % loop != 1)
    for before, after in zip(parts, parts[1:]):
        if not before or not after or before[-1] == UNREADABLE or after[0] == UNREADABLE:
            continue
        step = (after[0] - before[-1]) % loop
        if step == 0 or step > loop // 2:
            repeated += (loop - step) % loop + 1
        else:
            lost += step - 1
    return Continuity(sum(len(p) for p in parts), out_of_order, lost, repeated)
