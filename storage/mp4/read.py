"""Just enough ISO BMFF (MP4) parsing for fragmented MP4 segments.

The segmenter writes one ``moof``+``mdat`` fragment per GOP after an init
segment (``ftyp``+``moov``). This module finds those pieces in a file or a byte
string: to build the keyframe table, to recover a spool file cut short by a
crash, and to assemble clips from byte ranges.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from storage.mp4.boxes import (
    Box,
    find_box,
    find_boxes,
    is_sync,
    iter_boxes,
    read_mfhd,
    read_tfdt,
    read_tfhd,
    read_trun,
)

@dataclass
class TrackInfo:
    track_id: int
    handler: str  # "vide" or "soun"
    timescale: int
    default_sample_duration: int = 0
    default_sample_size: int = 0
    default_sample_flags: int = 0
    # The decode time shown at presentation time 0, in track ticks, from the edit list
    # (0 without one): a track with B-frames shows its first keyframe this late in media
    # time; a track that starts late (an empty edit) has it negative.
    media_time: int = 0


def _edit_media_time(init: bytes, trak: Box, timescale: int, movie_timescale: int) -> int:
    """``TrackInfo.media_time`` of ``trak``: its first non-empty edit's media time, less
    the empty edits before it (in the movie timescale)."""
    elst = find_box(init, "edts/elst", trak.payload_offset, trak.end)
    if elst is None or elst.payload_offset + 8 > elst.end:
        return 0
    p = elst.payload_offset
    version = init[p]
    count = struct.unpack_from(">I", init, p + 4)[0]
    entry = 20 if version == 1 else 12
    empty = 0
    for i in range(count):
        at = p + 8 + i * entry
        if at + entry > elst.end:
            break
        duration, media_time = struct.unpack_from(">Qq" if version == 1 else ">Ii", init, at)
        if media_time < 0:  # an empty edit: nothing shown for ``duration``
            empty += duration
            continue
        return int(media_time) - empty * timescale // max(movie_timescale, 1)
    return 0


def presented_at(sample: Sample, track: TrackInfo) -> int:
    """When ``sample`` is shown, in track ticks from the start of presentation: its decode
    time plus composition offset, less the edit list's media time."""
    return sample.decode_time + sample.composition_offset - track.media_time


def parse_init(init: bytes) -> dict[int, TrackInfo]:
    """Tracks of an init segment (``ftyp``+``moov``) by track id."""
    moov = find_box(init, "moov")
    if moov is None:
        raise ValueError("no moov box in init segment")
    tracks: dict[int, TrackInfo] = {}
    mvhd = find_box(init, "mvhd", moov.payload_offset, moov.end)
    movie_timescale = 1000
    if mvhd is not None:
        p = mvhd.payload_offset
        movie_timescale = struct.unpack_from(">I", init, p + (20 if init[p] == 1 else 12))[0]
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
        edit = _edit_media_time(init, trak, timescale, movie_timescale)
        tracks[track_id] = TrackInfo(track_id, handler, timescale, media_time=edit)
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


def parse_moof(data: bytes | memoryview, moof: Box, tracks: dict[int, TrackInfo]) -> tuple[int, dict[int, TrackRun]]:
    """Sequence number and per-track sample runs of one ``moof``.

    Sample offsets are resolved the way our muxer writes them
    (``default-base-is-moof``): relative to the start of the moof. Raises ``ValueError``
    for a box too short for the fields its flags announce.
    """
    mfhd = find_box(data, "mfhd", moof.payload_offset, moof.end)
    sequence = read_mfhd(data, mfhd)[0] if mfhd else 0
    runs: dict[int, TrackRun] = {}
    for traf in find_boxes(data, "traf", moof.payload_offset, moof.end):
        tfhd_at = find_box(data, "tfhd", traf.payload_offset, traf.end)
        if tfhd_at is None:
            continue
        tfhd = read_tfhd(data, tfhd_at)
        info = tracks.get(tfhd.track_id, TrackInfo(tfhd.track_id, "", 1))
        base = moof.offset if tfhd.base_data_offset is None else tfhd.base_data_offset
        dflt_dur = _or(tfhd.default_sample_duration, info.default_sample_duration)
        dflt_size = _or(tfhd.default_sample_size, info.default_sample_size)
        dflt_flags = _or(tfhd.default_sample_flags, info.default_sample_flags)
        tfdt = find_box(data, "tfdt", traf.payload_offset, traf.end)
        base_time = read_tfdt(data, tfdt).base_decode_time if tfdt is not None else 0
        run = runs.setdefault(tfhd.track_id, TrackRun(tfhd.track_id, base_time))
        t = base_time + run.duration
        for trun_at in find_boxes(data, "trun", traf.payload_offset, traf.end):
            trun = read_trun(data, trun_at)
            offset = base + (trun.data_offset or 0)
            first_flags = trun.first_sample_flags
            for dur, size, sflags, cto in trun.entries:
                dur = dflt_dur if dur is None else dur
                size = dflt_size if size is None else size
                if sflags is None:
                    sflags = dflt_flags if first_flags is None else first_flags
                first_flags = None  # first_sample_flags is the first sample's only
                run.samples.append(Sample(t, dur, size, offset, cto, is_sync(sflags)))
                t += dur
                offset += size
    return sequence, runs


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


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
