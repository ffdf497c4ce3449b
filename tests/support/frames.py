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
    out_of_order: int  # steps inside a part that go back or repeat a frame (or an unreadable code)
    missing_inside: int  # frames skipped inside parts (steps forward by more than one: lost)
    lost_at_cuts: int  # frames missing between the end of a part and the start of the next
    repeated_at_cuts: int  # frames shown again at the start of the next part


def _step(a: int, b: int, loop: int) -> int:
    """Frames from code ``a`` to code ``b``: 1 is the next frame, <= 0 back or the same."""
    step = (b - a) % loop
    return step - loop if step > loop // 2 else step


def continuity(parts: list[list[int]], loop: int) -> Continuity:
    """Count breaks in ``parts`` (each one file's codes, in recording order)."""
    out_of_order = missing = lost = repeated = 0
    for codes in parts:
        for a, b in zip(codes, codes[1:]):
            if a == UNREADABLE or b == UNREADABLE:
                out_of_order += 1
                continue
            step = _step(a, b, loop)
            if step <= 0:
                out_of_order += 1
            elif step > 1:
                missing += step - 1
    for before, after in zip(parts, parts[1:]):
        if not before or not after or before[-1] == UNREADABLE or after[0] == UNREADABLE:
            continue
        step = _step(before[-1], after[0], loop)
        if step <= 0:
            repeated += 1 - step
        else:
            lost += step - 1
    return Continuity(sum(len(p) for p in parts), out_of_order, missing, lost, repeated)
