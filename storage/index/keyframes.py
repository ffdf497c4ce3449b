"""The compact keyframe table kept in each segment's index row.

One entry per fragment (one GOP): the fragment's first presentation time,
relative to the segment start in microseconds, and the byte offset of its
``moof`` box. With it, playback and export turn a time range into S3 range
GETs without reading any segment header.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

_ENTRY = struct.Struct("<qQ")


@dataclass(frozen=True)
class Keyframe:
    offset_us: int  # presentation time relative to the segment start
    byte_offset: int  # where this fragment's moof starts in the object


def pack_keyframes(entries: list[Keyframe]) -> bytes:
    return b"".join(_ENTRY.pack(e.offset_us, e.byte_offset) for e in entries)


def unpack_keyframes(data: bytes) -> list[Keyframe]:
    if len(data) % _ENTRY.size:
        raise ValueError(f"keyframe table of {len(data)} bytes is not a whole number of entries")
    return [Keyframe(t, o) for t, o in _ENTRY.iter_unpack(data)]
