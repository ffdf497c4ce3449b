"""The compact keyframe table kept in each segment's index row.

One entry per fragment (one GOP): the fragment's first presentation time,
relative to the segment start in microseconds, and the byte offset of its
``moof`` box. With it, playback and export turn a time range into S3 range
GETs without reading any segment header.

Format (version 1, migration 0015): one byte ``0x01``, then per entry two
zigzag varints: the change of the time step (delta of delta: 0 for a steady
GOP, one byte) and the change of the byte step (the previous GOP's size minus
the one before: up to three bytes for GOPs of a few MB).
Thirty 2 s GOPs of a 4 Mbit/s segment take ~120 bytes instead of 480.
The table written before (16 bytes a fragment, little-endian ``<qQ``) is still
read, so rows can be converted in batches while the index is in use.

Format version 2 (migration 0016, what ``pack_keyframes`` writes now): byte ``0x02``,
varint count, then the first entry (zigzag time, byte offset) as varints; for the
other entries their time steps and their sizes (GOP bytes), each as a frame of
reference: the smallest value (zigzag varint), a bit width (one byte), and every
value minus the smallest packed in that many bits, least significant first. GOP sizes
vary by a few hundred kB, so a size takes ~19 bits instead of a 3-byte varint, and a
steady GOP length takes 0 bits: thirty 2 s GOPs of a 4 Mbit/s segment take ~83 bytes
(version 1: ~120).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

_LEGACY_ENTRY = struct.Struct("<qQ")
VERSION = 2
_V1 = 1


@dataclass(frozen=True)
class Keyframe:
    offset_us: int  # presentation time relative to the segment start
    byte_offset: int  # where this fragment's moof starts in the object


def pack_keyframes(entries: list[Keyframe]) -> bytes:
    """The version 2 table of ``entries`` (in byte order, as the segmenter wrote them)."""
    out = bytearray([VERSION])
    _varint(out, len(entries))
    if not entries:
        return bytes(out)
    _varint(out, _zigzag(entries[0].offset_us))
    _varint(out, entries[0].byte_offset)
    steps = [b.offset_us - a.offset_us for a, b in zip(entries, entries[1:])]
    sizes = [b.byte_offset - a.byte_offset for a, b in zip(entries, entries[1:])]
    if steps:
        for values in (steps, sizes):
            low = min(values)
            width = (max(values) - low).bit_length()
            _varint(out, _zigzag(low))
            out.append(width)
            packed = 0
            for i, v in enumerate(values):
                packed |= (v - low) << (i * width)
            out += packed.to_bytes((len(values) * width + 7) // 8, "little")
    return bytes(out)


def _pack_v1(entries: list[Keyframe]) -> bytes:
    """Version 1 (migration 0015), kept to test that it is still read."""
    out = bytearray([_V1])
    prev_t = prev_step = prev_b = prev_size = 0
    for e in entries:
        step, size = e.offset_us - prev_t, e.byte_offset - prev_b
        _varint(out, _zigzag(step - prev_step))
        _varint(out, _zigzag(size - prev_size))
        prev_t, prev_step, prev_b, prev_size = e.offset_us, step, e.byte_offset, size
    return bytes(out)


def unpack_keyframes(data: bytes) -> list[Keyframe]:
    if not data:
        return []
    if data[0] == VERSION:
        return _unpack_v2(data)
    if data[0] != _V1:
        return _unpack_legacy(data)
    out: list[Keyframe] = []
    pos, t, step, b, size = 1, 0, 0, 0, 0
    n = len(data)
    while pos < n:
        dd, pos = _read_varint(data, pos)
        ds, pos = _read_varint(data, pos)
        step += _unzigzag(dd)
        size += _unzigzag(ds)
        t += step
        b += size
        out.append(Keyframe(t, b))
    return out


def _unpack_v2(data: bytes) -> list[Keyframe]:
    n, pos = _read_varint(data, 1)
    if n == 0:
        return []
    t, pos = _read_varint(data, pos)
    b, pos = _read_varint(data, pos)
    out = [Keyframe(_unzigzag(t), b)]
    columns: list[list[int]] = []
    for _ in range(2 if n > 1 else 0):
        low, pos = _read_varint(data, pos)
        if pos >= len(data):
            raise ValueError("keyframe table ends inside a bit width")
        width = data[pos]
        nbytes = ((n - 1) * width + 7) // 8
        if pos + 1 + nbytes > len(data):
            raise ValueError("keyframe table ends inside its packed values")
        packed = int.from_bytes(data[pos + 1:pos + 1 + nbytes], "little")
        pos += 1 + nbytes
        mask, base = (1 << width) - 1, _unzigzag(low)
        columns.append([base + ((packed >> (i * width)) & mask) for i in range(n - 1)])
    if n > 1:
        t_us, off = out[0].offset_us, out[0].byte_offset
        for step, size in zip(*columns):
            t_us, off = t_us + step, off + size
            out.append(Keyframe(t_us, off))
    return out


def _unpack_legacy(data: bytes) -> list[Keyframe]:
    if len(data) % _LEGACY_ENTRY.size:
        raise ValueError(f"keyframe table of {len(data)} bytes is neither version 1, 2 nor whole 16-byte entries")
    return [Keyframe(t, o) for t, o in _LEGACY_ENTRY.iter_unpack(data)]


def _zigzag(v: int) -> int:
    return v * 2 if v >= 0 else -v * 2 - 1


def _unzigzag(v: int) -> int:
    return v >> 1 if not v & 1 else -((v + 1) >> 1)


def _varint(out: bytearray, v: int) -> None:
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    v = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("keyframe table ends inside a number")
        byte = data[pos]
        pos += 1
        v |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return v, pos
        shift += 7
