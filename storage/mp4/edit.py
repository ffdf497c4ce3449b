"""Rewriting fragmented MP4 for clips, without re-encoding.

Three edits, each on bytes only (what a clip is made of, and which ranges, is planned in
``storage.archive.clips``):

* ``build_header``: a clip's ``ftyp``+``moov`` from a segment's init segment, durations
  set to the clip's and an edit list per track saying where presentation starts.
* ``fold_preroll``: the clip's first fragment rebuilt, so that a chosen instant inside
  the GOP becomes media time 0 (the frames before it fold to one tick each just
  before 0, and the edit list starts after them).
* ``patch_fragment``: any later fragment patched in place, size-neutral: its ``mfhd``
  sequence number, explicit base data offsets, every ``tfdt`` moved onto the clip's
  timeline, and each ``trun`` trimmed to the samples presented before the clip's end.

Every box is read and written through ``storage.mp4.boxes``. Malformed input raises
``FragmentError`` (a ``ValueError``); the caller knows which object it came from.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from storage.mp4.boxes import (
    Box,
    TrunSample,
    box,
    find_box,
    find_boxes,
    full_box,
    iter_boxes,
    mfhd_box,
    read_mfhd,
    read_tfdt,
    read_tfhd,
    read_trun,
    sample_flags,
    tfdt_box,
    tfhd_box,
    trun_box,
)
from storage.mp4.read import Sample, TrackInfo, parse_moof, presented_at

__all__ = [
    "FragmentError",
    "TimeOverflow",
    "TrackShift",
    "build_header",
    "ceil_ticks",
    "check_fragment",
    "fold_preroll",
    "patch_fragment",
    "ticks",
]


class FragmentError(ValueError):
    """Bytes that are not the fragment they were expected to be; the message says how."""


class TimeOverflow(FragmentError):
    """A shifted decode time does not fit the 32-bit ``tfdt`` the source fragment has."""


def ticks(us: int, timescale: int) -> int:
    """Microseconds to media ticks, rounded to the nearest tick (exact for negative values too)."""
    return (us * timescale + (500_000 if us >= 0 else -500_000)) // 1_000_000


def ceil_ticks(us: int, timescale: int) -> int:
    """Microseconds to media ticks, rounded up: a sample starting before ``us`` by less than
    a tick is still before it."""
    return -(-us * timescale // 1_000_000)


# -- fragments as stored ------------------------------------------------------------------


def check_fragment(data: bytearray) -> tuple[Box, Box]:
    """The ``moof`` and ``mdat`` that ``data`` must consist of, starting at byte 0.

    The last fragment of a segment carries the muxer's trailer (``mfra``), whose offsets are
    the source file's: it is turned into a ``free`` box of the same size, in place."""
    found = list(iter_boxes(data))
    if len(found) < 2 or found[0].type != "moof" or found[1].type != "mdat" or found[0].offset != 0:
        raise FragmentError("are not a moof+mdat fragment")
    tail = found[1].end
    if tail != len(data):
        if len(data) - tail < 8 or any(b.type in ("moof", "mdat") for b in found[2:]):
            raise FragmentError("do not hold exactly one moof+mdat fragment")
        struct.pack_into(">I4s", data, tail, len(data) - tail, b"free")
    return found[0], found[1]


@dataclass(frozen=True)
class TrackShift:
    """How ``patch_fragment`` moves one track: ``ticks`` added to its decode times (clamped
    at 0), and with ``end_ticks`` (on the new timeline) only the samples presented before
    it are kept."""

    ticks: int
    end_ticks: int | None = None


def patch_fragment(data: bytearray, sequence: int, byte_shift: int, shifts: dict[int, TrackShift]) -> bytearray:
    """Patch a checked fragment (see ``check_fragment``) in place, keeping its size:
    ``sequence`` into ``mfhd``, ``byte_shift`` added to explicit base data offsets (they
    are absolute in the source file), and each track in ``shifts`` moved and trimmed.
    Tracks not in ``shifts`` keep their times. Raises ``TimeOverflow``, or ``ValueError``
    for boxes too short for their fields."""
    moof = next(iter_boxes(data))
    mfhd = find_box(data, "mfhd", moof.payload_offset, moof.end)
    if mfhd is not None:
        struct.pack_into(">I", data, read_mfhd(data, mfhd)[1], sequence)
    for traf in find_boxes(data, "traf", moof.payload_offset, moof.end):
        tfhd_at = find_box(data, "tfhd", traf.payload_offset, traf.end)
        if tfhd_at is None:
            continue
        tfhd = read_tfhd(data, tfhd_at)
        if tfhd.base_data_offset is not None and tfhd.base_data_offset_at is not None:
            struct.pack_into(">Q", data, tfhd.base_data_offset_at, tfhd.base_data_offset + byte_shift)
        shift = shifts.get(tfhd.track_id)
        tfdt_at = find_box(data, "tfdt", traf.payload_offset, traf.end)
        if shift is None or tfdt_at is None:
            continue
        tfdt = read_tfdt(data, tfdt_at)
        base = max(0, tfdt.base_decode_time + shift.ticks)
        if not tfdt.patch(data, base):
            raise TimeOverflow("decode time too large for a 32-bit tfdt")
        if shift.end_ticks is not None:
            _trim_truns(data, traf, base, shift.end_ticks, tfhd.default_sample_duration or 0)
    return data


def _trim_truns(data: bytearray, traf: Box, base_time: int, end_ticks: int, default_duration: int) -> None:
    """Keep, in each trun of ``traf``, only the samples presented before ``end_ticks``
    (size-neutral: see ``Trun.trim``)."""
    t = base_time
    for trun_at in find_boxes(data, "trun", traf.payload_offset, traf.end):
        trun = read_trun(data, trun_at)
        keep = 0
        for i, entry in enumerate(trun.entries):
            if t + entry.composition_offset < end_ticks:
                keep = i + 1
            t += default_duration if entry.duration is None else entry.duration
        trun.trim(data, keep)


# -- the first fragment: pre-roll folded ----------------------------------------------------


@dataclass(frozen=True)
class _Kept:
    decode_time: int  # on the clip's timeline
    sample: TrunSample
    data_offset: int  # in the source fragment


def fold_preroll(data: bytearray, tracks: dict[int, TrackInfo], sequence: int, start_offset_us: int,
                 end_us: int) -> tuple[bytes, dict[int, int], int]:
    """A fragment rebuilt so that clip time 0 is ``start_offset_us`` after its segment's
    start (in presentation: ``storage.mp4.read.presented_at``), ending at clip time ``end_us``.

    The GOP's frames before clip time 0 must stay (the frame on screen at 0 decodes from
    the keyframe) but must not be shown: they are folded to one tick each, just before
    the edit list's start. Players that honor edit lists skip them; those that do not in
    fragmented MP4 (FFmpeg, Chromium) show them for a tick each, i.e. not at all. B-frames
    keep their composition offsets, so every frame from 0 on is shown at its time. Other
    tracks (audio) lose their samples before 0. Samples presented at or after ``end_us``
    are dropped unless a frame presented before it comes later in decode order (it may
    reference them; the edit list's duration ends the clip before them). The mdat is
    copied unchanged; only the moof is new (its sample table explicit per sample).

    Returns the fragment's bytes, each track's edit-list media time, and the clip time
    (at most 0) of the video frame on screen at clip time 0.
    """
    moof, mdat = check_fragment(data)
    _seq, runs = parse_moof(data, moof, tracks)
    media_times: dict[int, int] = {}
    zero_frame_us = 0
    trafs: list[tuple[int, list[_Kept]]] = []
    for track_id, run in runs.items():
        info = tracks.get(track_id)
        if info is None or not run.samples:
            continue
        ts = info.timescale
        shift = ticks(-start_offset_us, ts)
        end_ticks = ceil_ticks(end_us, ts)
        kept: list[_Kept] = []
        media_times[track_id] = 0
        if info.handler == "vide":
            kept, media_times[track_id], zero_at = _fold_video(run.samples, info, shift, end_ticks)
            zero_frame_us = zero_at * 1_000_000 // ts - start_offset_us
        else:
            for smp in run.samples:
                t = presented_at(smp, info) + shift
                if 0 <= t < end_ticks:
                    kept.append(_Kept(t, TrunSample(smp.duration, smp.size, sample_flags(smp.keyframe),
                                                    smp.composition_offset), smp.data_offset))
        if kept:
            trafs.append((track_id, kept))

    def build(delta: int) -> bytes:
        out = bytearray(mfhd_box(sequence))
        for track_id, kept in trafs:
            body = bytearray(tfhd_box(track_id) + tfdt_box(kept[0].decode_time))
            groups: list[list[_Kept]] = []
            for k in kept:  # one trun per run of contiguous sample data
                if groups and groups[-1][-1].data_offset + groups[-1][-1].sample.size == k.data_offset:
                    groups[-1].append(k)
                else:
                    groups.append([k])
            for g in groups:
                body += trun_box([k.sample for k in g], g[0].data_offset + delta)
            out += box(b"traf", bytes(body))
        return box(b"moof", bytes(out))

    size = len(build(0))
    new_moof = build(size - moof.size)
    return new_moof + bytes(data[mdat.offset:]), media_times, zero_frame_us


def _fold_video(samples: list[Sample], info: TrackInfo, shift: int, end_ticks: int) -> tuple[list[_Kept], int, int]:
    """The first GOP's video samples on the clip's timeline: (samples kept, the edit list's
    media time E, the source presentation time of the frame on screen at 0), in track ticks.

    With ``p`` a sample's clip time (presentation, ``shift`` applied): the frame on screen
    at 0 (largest ``p <= 0``) is presented at media time E; the ``h`` frames shown before
    it are hidden at one tick each just below E, in presentation order; every later frame
    at ``p + E``. Decode times count one tick per sample up to the last hidden one in
    decode order (index ``L``), then follow the source's, so ``E = L + 1 + h`` leaves every
    presentation at or after its decode time even when B-frames decode out of order.
    """
    clip = [presented_at(smp, info) + shift for smp in samples]
    zero = max((i for i, p in enumerate(clip) if p <= 0), key=lambda i: clip[i], default=0)
    hidden = sorted((i for i, p in enumerate(clip) if p < clip[zero]), key=lambda i: clip[i])
    last_needed = max([zero, *hidden])
    media_time = last_needed + 1 + len(hidden)
    shown_at = {i: last_needed + 1 + rank for rank, i in enumerate(hidden)}
    shown_at[zero] = media_time
    # Decode order up to the last sample presented before the end: later ones are not needed.
    keep = max((i for i, p in enumerate(clip) if p < end_ticks), default=zero)
    keep = max(keep, zero)
    decode: list[int] = []
    for i, smp in enumerate(samples[:keep + 1]):
        own = smp.decode_time - info.media_time + shift + media_time  # the source's, on the clip's timeline
        decode.append(i if i <= last_needed else max(decode[-1] + 1, own))
    kept: list[_Kept] = []
    for i, smp in enumerate(samples[:keep + 1]):
        nxt = decode[i + 1] if i + 1 < len(decode) else max(
            decode[i] + 1, smp.decode_time + smp.duration - info.media_time + shift + media_time)
        presented = shown_at.get(i, clip[i] + media_time)
        kept.append(_Kept(decode[i], TrunSample(nxt - decode[i], smp.size, sample_flags(smp.keyframe),
                                                presented - decode[i]), smp.data_offset))
    return kept, media_time, presented_at(samples[zero], info)


# -- the header -----------------------------------------------------------------------------


def _timescale_or_id(data: bytes, found: Box) -> int:
    """mvhd/mdhd timescale or tkhd track id: the field after the creation/modification times."""
    p = found.payload_offset
    return struct.unpack_from(">I", data, p + (20 if data[p] == 1 else 12))[0]


def build_header(init: bytes, media_times: dict[int, int], duration_us: int) -> bytes:
    """A clip's ``ftyp``+``moov`` from a segment's init: durations set to the clip's,
    an edit list per track starting presentation at ``media_times[track_id]`` (ticks
    of the track's timescale) and lasting ``duration_us``, ``mehd`` with the fragment duration, and
    the segment's own metadata (``udta``: its start time) left out."""
    out = bytearray()
    for top in iter_boxes(init):
        if top.type != "moov":
            out += init[top.offset:top.end]
            continue
        mvhd = find_box(init, "mvhd", top.payload_offset, top.end)
        if mvhd is None:
            raise FragmentError("init segment has no mvhd")
        movie_ts = _timescale_or_id(init, mvhd)
        children = bytearray()
        for child in iter_boxes(init, top.payload_offset, top.end):
            if child.type == "mvhd":
                children += _with_duration(init, child, ticks(duration_us, movie_ts))
            elif child.type == "trak":
                children += _trak(init, child, movie_ts, media_times, duration_us)
            elif child.type == "mvex":
                children += _mvex(init, child, ticks(duration_us, movie_ts))
            elif child.type != "udta":
                children += init[child.offset:child.end]
        out += box(b"moov", bytes(children))
    return bytes(out)


def _with_duration(data: bytes, child: Box, duration: int) -> bytes:
    """mvhd/tkhd/mdhd rewritten as version 1 with ``duration``."""
    p = child.payload_offset
    version = data[p]
    flags = int.from_bytes(data[p + 1:p + 4], "big")
    body = data[p + 4:child.end]
    tkhd = child.type == "tkhd"
    if version == 0:
        c, m = struct.unpack_from(">II", body, 0)
        if tkhd:
            tid, res, _d = struct.unpack_from(">III", body, 8)
            new = struct.pack(">QQIIQ", c, m, tid, res, duration) + body[20:]
        else:
            ts, _d = struct.unpack_from(">II", body, 8)
            new = struct.pack(">QQIQ", c, m, ts, duration) + body[16:]
    elif tkhd:
        new = body[:24] + struct.pack(">Q", duration) + body[32:]
    else:
        new = body[:20] + struct.pack(">Q", duration) + body[28:]
    return full_box(child.type.encode("latin-1"), 1, flags, new)


def _trak(init: bytes, trak: Box, movie_ts: int, media_times: dict[int, int], duration_us: int) -> bytes:
    mdhd = find_box(init, "mdia/mdhd", trak.payload_offset, trak.end)
    tkhd = find_box(init, "tkhd", trak.payload_offset, trak.end)
    if mdhd is None or tkhd is None:
        raise FragmentError("init segment has a trak without tkhd or mdhd")
    ts = _timescale_or_id(init, mdhd)
    track_id = _timescale_or_id(init, tkhd)
    # One entry: ``duration_us`` of presentation from media time ``media_times[track_id]``, at rate 1.
    entry = struct.pack(">IQqhh", 1, ticks(duration_us, movie_ts), media_times.get(track_id, 0), 1, 0)
    elst = full_box(b"elst", 1, 0, entry)
    out = bytearray()
    for child in iter_boxes(init, trak.payload_offset, trak.end):
        if child.type == "tkhd":
            out += _with_duration(init, child, ticks(duration_us, movie_ts))
            out += box(b"edts", elst)
        elif child.type == "edts":
            continue  # replaced by ours
        elif child.type == "mdia":
            out += _mdia(init, child, ticks(duration_us, ts))
        else:
            out += init[child.offset:child.end]
    return box(b"trak", bytes(out))


def _mdia(init: bytes, mdia: Box, duration: int) -> bytes:
    out = bytearray()
    for child in iter_boxes(init, mdia.payload_offset, mdia.end):
        if child.type == "mdhd":
            out += _with_duration(init, child, duration)
        else:
            out += init[child.offset:child.end]
    return box(b"mdia", bytes(out))


def _mvex(init: bytes, mvex: Box, duration: int) -> bytes:
    out = bytearray(full_box(b"mehd", 1, 0, struct.pack(">Q", duration)))
    for child in iter_boxes(init, mvex.payload_offset, mvex.end):
        if child.type != "mehd":
            out += init[child.offset:child.end]
    return box(b"mvex", bytes(out))
