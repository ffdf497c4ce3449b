"""Just enough ISO BMFF (MP4) parsing for fragmented MP4 segments.

The segmenter writes one ``moof``+``mdat`` fragment per GOP after an init
segment (``ftyp``+``moov``). This module finds those pieces in a file or a byte
string: to build the keyframe table, to recover a spool file cut short by a
crash, and to assemble clips from byte ranges.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator

_HEADER = struct.Struct(">I4s")


@dataclass(frozen=True)
class Box:
    type: str
    offset: int  # of the box header in the containing buffer or file
    size: int  # whole box, header included
    header_size: int

    @property
    def end(self) -> int:
        return self.offset + self.size

    @property
    def payload_offset(self) -> int:
        return self.offset + self.header_size


def iter_boxes(data: bytes | memoryview, start: int = 0, end: int | None = None) -> Iterator[Box]:
    """Boxes laid end to end in ``data[start:end]``. Stops at a truncated box."""
    end = len(data) if end is None else end
    pos = start
    while pos + 8 <= end:
        size, kind = _HEADER.unpack_from(data, pos)
        header = 8
        if size == 1:
            if pos + 16 > end:
                return
            size = struct.unpack_from(">Q", data, pos + 8)[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            return
        yield Box(kind.decode("latin-1"), pos, size, header)
        pos += size


def iter_file_boxes(f: BinaryIO, file_size: int) -> Iterator[Box]:
    """Top-level boxes of a file, reading only their headers. Stops at a truncated box."""
    pos = 0
    while pos + 8 <= file_size:
        f.seek(pos)
        head = f.read(16)
        if len(head) < 8:
            return
        size, kind = _HEADER.unpack_from(head, 0)
        header = 8
        if size == 1:
            if len(head) < 16:
                return
            size = struct.unpack_from(">Q", head, 8)[0]
            header = 16
        elif size == 0:
            size = file_size - pos
        if size < header or pos + size > file_size:
            return
        yield Box(kind.decode("latin-1"), pos, size, header)
        pos += size


def find_box(data: bytes | memoryview, path: str, start: int = 0, end: int | None = None) -> Box | None:
    """The first box at ``path`` ("moov/trak/mdia/mdhd") inside ``data[start:end]``."""
    first, _, rest = path.partition("/")
    for box in iter_boxes(data, start, end):
        if box.type == first:
            if not rest:
                return box
            return find_box(data, rest, box.payload_offset, box.end)
    return None


def find_boxes(data: bytes | memoryview, kind: str, start: int = 0, end: int | None = None) -> list[Box]:
    return [b for b in iter_boxes(data, start, end) if b.type == kind]


@dataclass
class TrackInfo:
    track_id: int
    handler: str  # "vide" or "soun"
    timescale: int
    default_sample_duration: int = 0
    default_sample_size: int = 0
    default_sample_flags: int = 0


def parse_init(init: bytes) -> dict[int, TrackInfo]:
    """Tracks of an init segment (``ftyp``+``moov``) by track id."""
    moov = find_box(init, "moov")
    if moov is None:
        raise ValueError("no moov box in init segment")
    tracks: dict[int, TrackInfo] = {}
    for trak in find_boxes(init, "trak", moov.payload_offset, moov.end):
        tkhd = find_box(init, "tkhd", trak.payload_offset, trak.end)
        mdhd = find_box(init, "mdia/mdhd", trak.payload_offset, trak.end)
        hdlr = find_box(init, "mdia/hdlr", trak.payload_offset, trak.end)
        if tkhd is None or mdhd is None or hdlr is None:
            raise ValueError("incomplete trak in init segment")
        p = tkhd.payload_offset
        version = init[p]
        track_id = struct.unpack_from(">I", init, p + (20 if version == 1 else 12))[0]
        p = mdhd.payload_offset
        version = init[p]
        timescale = struct.unpack_from(">I", init, p + (20 if version == 1 else 12))[0]
        handler = init[hdlr.payload_offset + 8 : hdlr.payload_offset + 12].decode("latin-1")
        tracks[track_id] = TrackInfo(track_id, handler, timescale)
    mvex = find_box(init, "mvex", moov.payload_offset, moov.end)
    if mvex is not None:
        for trex in find_boxes(init, "trex", mvex.payload_offset, mvex.end):
            tid, _desc, dur, size, flags = struct.unpack_from(">IIIII", init, trex.payload_offset + 4)
            if tid in tracks:
                tracks[tid].default_sample_duration = dur
                tracks[tid].default_sample_size = size
                tracks[tid].default_sample_flags = flags
    return tracks


@dataclass
class Sample:
    decode_time: int  # in the track's timescale
    duration: int
    size: int
    data_offset: int  # absolute, in the same coordinates as the moof
    composition_offset: int
    keyframe: bool


@dataclass
class TrackRun:
    track_id: int
    base_decode_time: int
    samples: list[Sample] = field(default_factory=list)

    @property
    def duration(self) -> int:
        return sum(s.duration for s in self.samples)


@dataclass
class Fragment:
    moof_offset: int
    size: int  # moof + mdat
    sequence: int
    runs: dict[int, TrackRun]

    @property
    def end(self) -> int:
        return self.moof_offset + self.size


_NON_SYNC = 0x00010000


def parse_moof(data: bytes | memoryview, moof: Box, tracks: dict[int, TrackInfo]) -> tuple[int, dict[int, TrackRun]]:
    """Sequence number and per-track sample runs of one ``moof``.

    Sample offsets are resolved the way our muxer writes them
    (``default-base-is-moof``): relative to the start of the moof.
    """
    mfhd = find_box(data, "mfhd", moof.payload_offset, moof.end)
    sequence = struct.unpack_from(">I", data, mfhd.payload_offset + 4)[0] if mfhd else 0
    runs: dict[int, TrackRun] = {}
    for traf in find_boxes(data, "traf", moof.payload_offset, moof.end):
        tfhd = find_box(data, "tfhd", traf.payload_offset, traf.end)
        if tfhd is None:
            continue
        p = tfhd.payload_offset
        flags = int.from_bytes(data[p + 1 : p + 4], "big")
        track_id = struct.unpack_from(">I", data, p + 4)[0]
        info = tracks.get(track_id, TrackInfo(track_id, "", 1))
        q = p + 8
        base = moof.offset
        if flags & 0x01:
            base = struct.unpack_from(">Q", data, q)[0]
            q += 8
        if flags & 0x02:
            q += 4
        dflt_dur = info.default_sample_duration
        dflt_size = info.default_sample_size
        dflt_flags = info.default_sample_flags
        if flags & 0x08:
            dflt_dur = struct.unpack_from(">I", data, q)[0]
            q += 4
        if flags & 0x10:
            dflt_size = struct.unpack_from(">I", data, q)[0]
            q += 4
        if flags & 0x20:
            dflt_flags = struct.unpack_from(">I", data, q)[0]
            q += 4
        tfdt = find_box(data, "tfdt", traf.payload_offset, traf.end)
        base_time = 0
        if tfdt is not None:
            v = data[tfdt.payload_offset]
            fmt = ">Q" if v == 1 else ">I"
            base_time = struct.unpack_from(fmt, data, tfdt.payload_offset + 4)[0]
        run = runs.setdefault(track_id, TrackRun(track_id, base_time))
        t = base_time + run.duration
        for trun in find_boxes(data, "trun", traf.payload_offset, traf.end):
            r = trun.payload_offset
            version = data[r]
            tflags = int.from_bytes(data[r + 1 : r + 4], "big")
            count = struct.unpack_from(">I", data, r + 4)[0]
            r += 8
            offset = base
            if tflags & 0x01:
                offset = base + struct.unpack_from(">i", data, r)[0]
                r += 4
            first_flags = None
            if tflags & 0x04:
                first_flags = struct.unpack_from(">I", data, r)[0]
                r += 4
            for i in range(count):
                dur, size, sflags, cto = dflt_dur, dflt_size, dflt_flags, 0
                if tflags & 0x100:
                    dur = struct.unpack_from(">I", data, r)[0]
                    r += 4
                if tflags & 0x200:
                    size = struct.unpack_from(">I", data, r)[0]
                    r += 4
                if tflags & 0x400:
                    sflags = struct.unpack_from(">I", data, r)[0]
                    r += 4
                elif i == 0 and first_flags is not None:
                    sflags = first_flags
                if tflags & 0x800:
                    cto = struct.unpack_from(">i" if version else ">I", data, r)[0]
                    r += 4
                run.samples.append(Sample(t, dur, size, offset, cto, not (sflags & _NON_SYNC)))
                t += dur
                offset += size
    return sequence, runs


def scan_fragments(data: bytes | memoryview, tracks: dict[int, TrackInfo], start: int = 0) -> list[Fragment]:
    """Complete ``moof``+``mdat`` pairs from ``start`` on; a trailing partial pair is left out."""
    fragments: list[Fragment] = []
    pending: Box | None = None
    for box in iter_boxes(data, start):
        if box.type == "moof":
            pending = box
        elif box.type == "mdat" and pending is not None:
            seq, runs = parse_moof(data, pending, tracks)
            fragments.append(Fragment(pending.offset, box.end - pending.offset, seq, runs))
            pending = None
    return fragments


def init_segment_size(data: bytes | memoryview) -> int:
    """Bytes of ``ftyp``+``moov`` at the start of a segment (the init segment)."""
    for box in iter_boxes(data):
        if box.type == "moov":
            return box.end
    raise ValueError("no moov box: not an fMP4 segment")
