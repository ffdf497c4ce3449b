"""Clips: one fragmented MP4 built from recorded segments, with no re-encode.

``plan_clip`` turns a camera, stream and time range into a ``ClipPlan`` using only
the index: which fragments (GOPs) of which segment objects overlap the range (from
each row's keyframe table), and the new header (``ftyp``+``moov`` from the indexed
init segment, with an edit list per track). Every size is known from the index, so
the plan knows the whole file's size and byte layout before a byte of video is read.

``ClipPlan.iter_bytes(store, first, end)`` then yields the file (or any byte range of
it, for HTTP Range): the header, the first fragment (fetched while planning, its moof
rebuilt by ``fold_preroll``), then each later source fragment fetched with one ranged
read per segment and patched in place (size-neutral) so that

* ``mfhd`` sequence numbers run 1, 2, 3... over the clip,
* every ``tfdt`` is on the clip's timeline, and
* in the fragment holding ``end``, each ``trun`` keeps only the samples before
  ``end`` (the dropped samples' bytes stay in the ``mdat``, unreferenced).

Time model of a clip (docs/archive.md): clip media time ``t`` is wall time
``first_us + t``. The first GOP's frames before the one on screen at ``first_us`` are
folded to one tick each just before 0 and the edit list starts after them, so every
player starts at ``start`` exactly. A gap inside the range is *not* collapsed: the
timeline jumps over it. Segments whose encoding differs (codec, resolution, tracks)
cannot share one header: ``plan_clip`` refuses with ``EncodingChanged``.

Integrity: before planning, each segment object is checked to exist with the
indexed size (``verify="stat"``). While streaming, every fragment must parse as
``moof``+``mdat`` filling exactly its indexed byte span, and a segment fetched whole
(its init from the index plus all its fragments) must hash to its indexed sha256;
otherwise ``SegmentCorrupt`` is raised and the stream ends short, never silently
handing out altered video.
"""

from __future__ import annotations

import hashlib
import re
import struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Iterator, Literal, Protocol

from config.times import iso_utc
from storage.index.segments import SegmentIndex
from storage.index.keyframes import unpack_keyframes
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
from storage.mp4.read import TrackInfo, parse_init, parse_moof
from storage.objects.store import ObjectNotFound, ObjectStore
from storage.db.schema import SegmentRow

# Two segments (or a gap's edge and a segment) closer than this are contiguous:
# one frame at 20 fps. The segmenter makes segments of one run contiguous to the tick.
CONTIGUOUS_US = 50_000

__all__ = [
    "CONTIGUOUS_US",
    "ClipError",
    "ClipFragment",
    "ClipGap",
    "ClipPlan",
    "EncodingChanged",
    "NoRecordings",
    "SegmentCorrupt",
    "SegmentMissing",
    "plan_clip",
]


# -- errors ---------------------------------------------------------------------------


class ClipError(Exception):
    """A clip cannot be built; the message says why and what to ask for instead."""


@dataclass(frozen=True)
class ClipGap:
    """A span of the requested range with no video in the clip, and why."""

    start_us: int
    end_us: int
    reason: str  # a gap reason from the index, "unknown" (nothing indexed), or "storage_missing"
    detail: str = ""

    def as_dict(self) -> dict[str, object]:
        return {"start_us": self.start_us, "end_us": self.end_us, "reason": self.reason, "detail": self.detail}


class NoRecordings(ClipError):
    """Nothing recorded in the range; ``gaps`` explain why."""

    def __init__(self, message: str, gaps: list[ClipGap]):
        super().__init__(message)
        self.gaps = gaps


class EncodingChanged(ClipError):
    """The range spans segments with different encodings (codec, size, tracks)."""

    def __init__(self, message: str, at_us: int):
        super().__init__(message)
        self.at_us = at_us


class SegmentMissing(ClipError):
    """A segment object the index lists is not in the object store (or has the wrong size)."""

    def __init__(self, message: str, segment: SegmentRow):
        super().__init__(message)
        self.segment = segment


class SegmentCorrupt(ClipError):
    """A segment's bytes do not match the index (structure or sha256)."""

    def __init__(self, message: str, segment: SegmentRow):
        super().__init__(message)
        self.segment = segment


# -- the plan -------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipFragment:
    """One source fragment (GOP) and where it lands in the clip."""

    segment: SegmentRow
    byte_start: int  # in the segment object
    byte_end: int
    start_us: int  # wall time of its first keyframe
    end_us: int  # wall time of the next fragment (or the segment end)
    clip_offset: int  # where its first byte lands in the clip file
    sequence: int  # its new mfhd sequence number
    size: int  # bytes in the clip: the source size, except for a rebuilt first fragment

    @property
    def source_size(self) -> int:
        return self.byte_end - self.byte_start


@dataclass
class ClipPlan:
    """Everything needed to produce a clip's bytes; see the module docstring."""

    camera_id: str
    stream: str
    start_us: int  # requested
    end_us: int
    first_us: int  # what the clip shows: max(start, first recorded), min(end, last recorded)
    last_us: int
    origin_us: int  # wall time of the first fragment's keyframe
    header: bytes  # ftyp + moov
    fragments: list[ClipFragment]
    gaps: list[ClipGap]
    segments: list[SegmentRow]  # the source segments, in order
    timescales: dict[int, int] = field(default_factory=dict)  # track id -> media timescale
    first_frame_us: int = 0  # wall time of the frame on screen at first_us (its own start)

    @property
    def size(self) -> int:
        """Total bytes of the clip file."""
        if not self.fragments:
            return len(self.header)
        last = self.fragments[-1]
        return last.clip_offset + last.size

    @property
    def duration_us(self) -> int:
        return self.last_us - self.first_us

    @property
    def zero_us(self) -> int:
        """Wall time of clip media time 0: ``first_us`` when the first GOP's pre-roll is
        folded (a store was given to ``plan_clip``), else the first keyframe's."""
        return self.first_us if self._first_raw is not None else self.origin_us

    def source_bytes(self) -> int:
        """Bytes the clip reads from the object store (all of its fragments)."""
        return sum(f.source_size for f in self.fragments)

    def write_to(self, store: ObjectStore, out: BinaryIO, progress: Callable[[int], None] | None = None) -> str:
        """Write the whole clip to ``out``; returns its sha256 (hex). ``progress`` gets
        the bytes written so far after each chunk."""
        digest = hashlib.sha256()
        done = 0
        for piece in self.iter_bytes(store):
            out.write(piece)
            digest.update(piece)
            done += len(piece)
            if progress is not None:
                progress(done)
        return digest.hexdigest()

    def iter_bytes(self, store: ObjectStore, first: int = 0, end: int | None = None,
                   chunk: int = 1 << 20) -> Iterator[bytes]:
        """The clip's bytes ``[first, end)`` (default: the whole file), fetched and patched
        as they go. Raises ``SegmentMissing``/``SegmentCorrupt`` mid-stream if storage
        does not match the index."""
        end = self.size if end is None else min(end, self.size)
        if first < 0 or first > end:
            raise ValueError(f"byte range [{first}, {end}) is outside the clip (0..{self.size})")
        if first < len(self.header):
            yield self.header[first:min(end, len(self.header))]
        wanted = [f for f in self.fragments if f.clip_offset < end and f.clip_offset + f.size > first]
        # One ranged read per run of adjacent fragments of the same segment.
        i = 0
        while i < len(wanted):
            j = i
            while (j + 1 < len(wanted) and wanted[j + 1].segment.id == wanted[i].segment.id
                   and wanted[j + 1].byte_start == wanted[j].byte_end):
                j += 1
            yield from self._iter_run(store, wanted[i:j + 1], first, end, chunk)
            i = j + 1

    def _iter_run(self, store: ObjectStore, frags: list[ClipFragment], first: int, end: int,
                  chunk: int) -> Iterator[bytes]:
        seg = frags[0].segment
        whole = (len(frags) == len(unpack_keyframes(seg.keyframes)) and first <= frags[0].clip_offset
                 and end >= frags[-1].clip_offset + frags[-1].size)
        digest = hashlib.sha256(self._init_of(seg)) if whole else None
        try:
            cached = self._first_raw if frags[0].sequence == 1 else None
            read_from = frags[1].byte_start if cached is not None and len(frags) > 1 else frags[0].byte_start
            source: Iterator[bytes] = iter(())
            if cached is None or len(frags) > 1:
                source = store.iter_range(seg.object_key, read_from, frags[-1].byte_end, chunk)
            buf = bytearray()
            for frag in frags:
                if frag.sequence == 1 and cached is not None:
                    raw = bytearray(cached)
                else:
                    while len(buf) < frag.source_size:
                        piece = next(source, None)
                        if piece is None:
                            raise SegmentCorrupt(
                                f"segment {seg.object_key} of camera {seg.camera_id} is shorter than indexed "
                                f"({seg.bytes} bytes); restore it from a replica or export with allow_gaps=true",
                                seg)
                        buf += piece
                    raw = bytearray(buf[:frag.source_size])
                    del buf[:frag.source_size]
                if digest is not None:
                    digest.update(raw)
                data = self._first_out if frag.sequence == 1 and self._first_out is not None else self._patched(frag, raw)
                lo = max(first - frag.clip_offset, 0)
                hi = min(end - frag.clip_offset, frag.size)
                if hi > lo:
                    yield bytes(data[lo:hi])
        except ObjectNotFound as exc:
            raise SegmentMissing(
                f"segment {seg.object_key} of camera {seg.camera_id} is missing from the object store; "
                "ask again with allow_gaps=true to skip it", seg) from exc
        if digest is not None and digest.hexdigest() != seg.sha256:
            raise SegmentCorrupt(
                f"segment {seg.object_key} of camera {seg.camera_id}: sha256 {digest.hexdigest()} does not "
                f"match the index ({seg.sha256}); the object was altered or damaged", seg)

    _inits: dict[str, bytes] = field(default_factory=dict)
    _first_raw: bytes | None = None  # the first fragment as stored (fetched while planning)
    _first_out: bytes | None = None  # ... and as the clip has it (pre-roll folded)

    def _init_of(self, seg: SegmentRow) -> bytes:
        return self._inits[seg.init_sha256]

    def _patched(self, frag: ClipFragment, data: bytearray) -> bytearray:
        _check_fragment(frag, data)
        moof = next(iter_boxes(data))
        mfhd = find_box(data, "mfhd", moof.payload_offset, moof.end)
        if mfhd is not None:
            struct.pack_into(">I", data, read_mfhd(data, mfhd)[1], frag.sequence)
        for traf in find_boxes(data, "traf", moof.payload_offset, moof.end):
            self._patch_traf(frag, data, traf)
        return data

    def _patch_traf(self, frag: ClipFragment, data: bytearray, traf: Box) -> None:
        seg = frag.segment
        tfhd_at = find_box(data, "tfhd", traf.payload_offset, traf.end)
        if tfhd_at is None:
            return
        tfhd = read_tfhd(data, tfhd_at)
        if tfhd.base_data_offset is not None and tfhd.base_data_offset_at is not None:
            # An explicit base data offset is absolute in the source file.
            struct.pack_into(">Q", data, tfhd.base_data_offset_at,
                             tfhd.base_data_offset - frag.byte_start + frag.clip_offset)
        ts = self.timescales.get(tfhd.track_id)
        tfdt_at = find_box(data, "tfdt", traf.payload_offset, traf.end)
        if ts is None or tfdt_at is None:
            return
        tfdt = read_tfdt(data, tfdt_at)
        new_t = max(0, tfdt.base_decode_time + _ticks(seg.start_us - self.zero_us, ts))
        if not tfdt.patch(data, new_t):
            raise ClipError(f"camera {seg.camera_id}: clip too long for 32-bit fragment times; ask for a shorter range")
        if frag.end_us > self.last_us:
            # Ceiling: a sample starting before ``last_us`` by less than a tick is still before it.
            _trim_truns(data, traf, new_t, -(-(self.last_us - self.zero_us) * ts // 1_000_000))


def _check_fragment(frag: ClipFragment, data: bytearray) -> None:
    """``data`` must be one moof+mdat filling the fragment's indexed span (the last of a
    segment may carry the muxer's trailer, which becomes padding)."""
    seg = frag.segment
    boxes = list(iter_boxes(data))
    if (len(boxes) < 2 or boxes[0].type != "moof" or boxes[1].type != "mdat"
            or boxes[0].offset != 0):
        raise SegmentCorrupt(
            f"segment {seg.object_key} of camera {seg.camera_id}: bytes {frag.byte_start}-{frag.byte_end} "
            "are not a moof+mdat fragment; the object does not match its index row", seg)
    tail = boxes[1].end
    if tail != len(data):
        # The last fragment of a segment carries the muxer's trailer (mfra), whose
        # offsets are the source file's: turn it into padding of the same size.
        if len(data) - tail < 8 or any(b.type in ("moof", "mdat") for b in boxes[2:]):
            raise SegmentCorrupt(
                f"segment {seg.object_key} of camera {seg.camera_id}: fragment at {frag.byte_start} "
                "does not fill its indexed span", seg)
        struct.pack_into(">I4s", data, tail, len(data) - tail, b"free")



def _ticks(us: int, timescale: int) -> int:
    """Microseconds to media ticks, rounded to the nearest tick (exact for negative values too)."""
    return (us * timescale + (500_000 if us >= 0 else -500_000)) // 1_000_000


def _trim_truns(data: bytearray, traf: Box, base_time: int, end_ticks: int) -> None:
    """Keep, in each trun of ``traf``, only the samples presented before ``end_ticks``
    (size-neutral: see ``Trun.trim``)."""
    tfhd_at = find_box(data, "tfhd", traf.payload_offset, traf.end)
    assert tfhd_at is not None
    default_dur = read_tfhd(data, tfhd_at).default_sample_duration or 0
    t = base_time
    for trun_at in find_boxes(data, "trun", traf.payload_offset, traf.end):
        trun = read_trun(data, trun_at)
        keep = 0
        for i, entry in enumerate(trun.entries):
            if t + entry.composition_offset < end_ticks:
                keep = i + 1
            t += default_dur if entry.duration is None else entry.duration
        trun.trim(data, keep)


# -- the first fragment: pre-roll folded ---------------------------------------------

def fold_preroll(frag: ClipFragment, data: bytearray, tracks: dict[int, TrackInfo], zero_us: int,
                 last_us: int) -> tuple[bytes, dict[int, int], int]:
    """The clip's first fragment, rebuilt so that clip media time 0 is ``zero_us``.

    The GOP's frames before ``zero_us`` must stay (the frame on screen at ``zero_us``
    decodes from the keyframe) but must not be shown: they are folded to one tick each
    at media time 0, 1, 2... and the edit list starts after them. Players that honor
    edit lists skip them; those that do not in fragmented MP4 (FFmpeg, Chromium) show
    them for a tick each, i.e. not at all. Other tracks (audio) lose their samples
    before ``zero_us``. Samples at or after ``last_us`` are dropped. The mdat is copied
    unchanged; only the moof is new (its sample table explicit per sample).

    Returns the fragment's bytes, each track's edit-list media time, and the wall time
    of the video frame on screen at ``zero_us``.
    """
    _check_fragment(frag, data)
    boxes = list(iter_boxes(data))
    moof, mdat = boxes[0], boxes[1]
    _seq, runs = parse_moof(data, moof, tracks)
    shift_us = frag.segment.start_us - zero_us
    media_times: dict[int, int] = {}
    zero_frame_us = zero_us
    trafs: list[tuple[int, int, list[tuple[int, int, int, int, int]]]] = []  # track, base, [(dts, dur, size, flags, cto, off)]
    for track_id, run in runs.items():
        info = tracks.get(track_id)
        if info is None or not run.samples:
            continue
        ts = info.timescale
        shift = _ticks(shift_us, ts)
        end_ticks = -(-(last_us - zero_us) * ts // 1_000_000)
        kept: list[tuple[int, int, int, int, int, int]] = []
        if info.handler == "vide":
            prev = -1
            dts = []
            for smp in run.samples:
                prev = max(smp.decode_time + shift, prev + 1, 0)
                dts.append(prev)
            media_times[track_id] = 0
            for i, smp in enumerate(run.samples):
                if smp.decode_time + shift + smp.composition_offset <= 0:
                    media_times[track_id] = dts[i] + smp.composition_offset  # on screen at zero_us
                    zero_frame_us = frag.segment.start_us + (smp.decode_time + smp.composition_offset) * 1_000_000 // ts
                nxt = dts[i + 1] if i + 1 < len(dts) else max(dts[i] + 1, smp.decode_time + smp.duration + shift)
                if dts[i] + smp.composition_offset >= max(end_ticks, media_times[track_id] + 1):
                    break
                kept.append((dts[i], nxt - dts[i], smp.size, sample_flags(smp.keyframe), smp.composition_offset,
                             smp.data_offset))
        else:
            media_times[track_id] = 0
            for smp in run.samples:
                t = smp.decode_time + shift
                if t >= 0 and t < end_ticks:
                    kept.append((t, smp.duration, smp.size, sample_flags(smp.keyframe), smp.composition_offset,
                                 smp.data_offset))
        if kept:
            trafs.append((track_id, kept[0][0], kept))  # type: ignore[arg-type]

    def build(delta: int) -> bytes:
        out = bytearray(mfhd_box(frag.sequence))
        for track_id, base, kept in trafs:
            body = bytearray(tfhd_box(track_id))
            body += tfdt_box(base)
            groups: list[list[tuple[int, int, int, int, int, int]]] = []
            for smp in kept:  # one trun per run of contiguous sample data
                if groups and groups[-1][-1][5] + groups[-1][-1][2] == smp[5]:
                    groups[-1].append(smp)
                else:
                    groups.append([smp])
            for g in groups:
                body += trun_box([TrunSample(x[1], x[2], x[3], x[4]) for x in g], g[0][5] + delta)
            out += box(b"traf", bytes(body))
        return box(b"moof", bytes(out))

    size = len(build(0))
    new_moof = build(size - moof.size)
    return new_moof + bytes(data[mdat.offset:]), media_times, zero_frame_us


# -- planning ------------------------------------------------------------------------


class _StatStore(Protocol):
    def stat(self, key: str): ...  # noqa: ANN201 - ObjectStore.stat


def plan_clip(
    index: SegmentIndex,
    camera_id: str,
    stream: str,
    start_us: int,
    end_us: int,
    *,
    store: ObjectStore | None = None,
    allow_gaps: bool = False,
    verify: Literal["stat", "none"] = "stat",
) -> ClipPlan:
    """Plan the clip ``[start_us, end_us)`` of one camera stream from the index alone.

    With ``store`` and ``verify="stat"`` each source object is checked to exist with
    its indexed size first: a missing one raises ``SegmentMissing`` naming it, or with
    ``allow_gaps`` is left out and listed as a gap (reason ``storage_missing``).
    Raises ``ValueError`` for ``start_us >= end_us``, ``NoRecordings`` (with the gaps
    that explain why) and ``EncodingChanged``.
    """
    if start_us >= end_us:
        raise ValueError(f"start {start_us} must be before end {end_us}")
    rows = index.segments(camera_id, stream, start_us, end_us)
    missing: list[SegmentRow] = []
    if store is not None and verify == "stat" and rows:
        missing = _missing_objects(store, rows)
        if missing and not allow_gaps:
            seg = missing[0]
            raise SegmentMissing(
                f"segment {seg.object_key} of camera {camera_id} ({_iso(seg.start_us)}) is missing from the "
                "object store, or its size or recorded sha256 differs from the index; ask again with allow_gaps=true to skip it", seg)
        rows = [r for r in rows if r not in missing]
    # Imported here so the timeline module can use this one's constants.
    from storage.archive.timeline import recorded_gaps

    if not rows:
        gaps = recorded_gaps(index, camera_id, stream, start_us, end_us, [], missing)
        raise NoRecordings(
            f"camera {camera_id} has no {stream} recordings between {_iso(start_us)} and {_iso(end_us)}; "
            "see the gaps for why, and GET /api/cameras/{id}/recordings for what exists", gaps)
    inits: dict[str, bytes] = {}
    for row in rows:
        if row.init_sha256 not in inits:
            inits[row.init_sha256] = index.init_segment(row.init_sha256)
    first_sig = _encoding(inits[rows[0].init_sha256])
    for row in rows[1:]:
        if _encoding(inits[row.init_sha256]) != first_sig:
            raise EncodingChanged(
                f"camera {camera_id}: the {stream} stream's encoding (codec, size or tracks) changes at "
                f"{_iso(row.start_us)}; one MP4 cannot hold both. Ask for [{_iso(start_us)}, {_iso(row.start_us)}) "
                f"and [{_iso(row.start_us)}, {_iso(end_us)}) separately", row.start_us)

    spans: list[tuple[SegmentRow, int, int, int, int]] = []  # row, byte0, byte1, t0, t1
    for row in rows:
        kfs = unpack_keyframes(row.keyframes)
        for i, kf in enumerate(kfs):
            t0 = row.start_us + kf.offset_us
            t1 = row.start_us + kfs[i + 1].offset_us if i + 1 < len(kfs) else row.end_us
            b1 = kfs[i + 1].byte_offset if i + 1 < len(kfs) else row.bytes
            if t0 < end_us and t1 > start_us:
                spans.append((row, kf.byte_offset, b1, t0, t1))
    if not spans:
        gaps = recorded_gaps(index, camera_id, stream, start_us, end_us, rows, missing)
        raise NoRecordings(f"camera {camera_id}: no complete GOP between {_iso(start_us)} and {_iso(end_us)}", gaps)
    origin = spans[0][3]
    first = max(start_us, origin)
    last = min(end_us, spans[-1][4])
    init0 = inits[rows[0].init_sha256]
    tracks = parse_init(init0)
    # Without a store: the clip starts at the keyframe, with only the edit list to hide
    # the pre-roll. With one: the first GOP is fetched now and its pre-roll folded.
    media_times = {t.track_id: _ticks(first - origin, t.timescale) for t in tracks.values()}
    first_raw = first_out = None
    first_frame_us = origin
    if store is not None:
        row, b0, b1, t0, t1 = spans[0]
        probe = ClipFragment(row, b0, b1, t0, t1, 0, 1, b1 - b0)
        try:
            first_raw = store.get_range(row.object_key, b0, b1)
        except ObjectNotFound as exc:
            raise SegmentMissing(
                f"segment {row.object_key} of camera {camera_id} is missing from the object store; "
                "ask again with allow_gaps=true to skip it", row) from exc
        if len(first_raw) != b1 - b0:
            raise SegmentCorrupt(f"segment {row.object_key} of camera {camera_id} is shorter than indexed", row)
        first_out, media_times, first_frame_us = fold_preroll(probe, bytearray(first_raw), tracks, first, last)
    header = build_header(init0, media_times, last - first)
    fragments: list[ClipFragment] = []
    offset = len(header)
    for n, (row, b0, b1, t0, t1) in enumerate(spans, start=1):
        size = len(first_out) if n == 1 and first_out is not None else b1 - b0
        fragments.append(ClipFragment(row, b0, b1, t0, t1, offset, n, size))
        offset += size
    used = list(dict.fromkeys(f.segment.id for f in fragments))
    by_id = {r.id: r for r in rows}
    gaps = recorded_gaps(index, camera_id, stream, first, last, [by_id[i] for i in used], missing)
    plan = ClipPlan(
        camera_id=camera_id, stream=stream, start_us=start_us, end_us=end_us, first_us=first, last_us=last,
        origin_us=origin, header=header, fragments=fragments, gaps=gaps,
        segments=[by_id[i] for i in used], timescales={t.track_id: t.timescale for t in tracks.values()},
    )
    plan._inits = inits
    plan._first_raw, plan._first_out = first_raw, first_out
    plan.first_frame_us = first_frame_us
    return plan


def _missing_objects(store: _StatStore, rows: list[SegmentRow]) -> list[SegmentRow]:
    def bad(row: SegmentRow) -> bool:
        try:
            info = store.stat(row.object_key)
        except ObjectNotFound:
            return True
        # The sha256 the store recorded at upload, where it kept one: a replaced object shows here.
        return info.size != row.bytes or (info.sha256 is not None and info.sha256 != row.sha256)

    with ThreadPoolExecutor(max_workers=min(8, len(rows))) as pool:
        flags = list(pool.map(bad, rows))
    return [r for r, f in zip(rows, flags) if f]


def _encoding(init: bytes) -> tuple[tuple[int, str, int, bytes], ...]:
    """What must match for two segments to share one header: per track its id,
    handler, timescale and sample description (codec, size, parameter sets).
    Init segments differ per segment anyway (creation time, metadata)."""
    moov = find_box(init, "moov")
    assert moov is not None
    out = []
    for trak in find_boxes(init, "trak", moov.payload_offset, moov.end):
        stsd = find_box(init, "mdia/minf/stbl/stsd", trak.payload_offset, trak.end)
        out.append(bytes(init[stsd.offset:stsd.end]) if stsd else b"")
    tracks = parse_init(init)
    return tuple((t.track_id, t.handler, t.timescale, s) for t, s in zip(tracks.values(), out))


# -- the header ------------------------------------------------------------------------


def build_header(init: bytes, media_times: dict[int, int], duration_us: int) -> bytes:
    """A clip's ``ftyp``+``moov`` from a segment's init: durations set to the clip's,
    an edit list per track starting presentation at ``media_times[track_id]`` (ticks
    of the track's timescale) and lasting ``duration_us``, ``mehd`` with the fragment duration, and
    the segment's own metadata (``udta``: its start time) left out."""
    out = bytearray()
    movie_ts = 1000
    for top in iter_boxes(init):
        raw = bytes(init[top.offset:top.end])
        if top.type != "moov":
            out += raw
            continue
        mvhd = find_box(init, "mvhd", top.payload_offset, top.end)
        assert mvhd is not None
        movie_ts = struct.unpack_from(">I", init, mvhd.payload_offset + (20 if init[mvhd.payload_offset] else 12))[0]
        children = bytearray()
        for child in iter_boxes(init, top.payload_offset, top.end):
            if child.type == "mvhd":
                children += _with_duration(init, child, b"mvhd", _ticks(duration_us, movie_ts))
            elif child.type == "trak":
                children += _trak(init, child, movie_ts, media_times, duration_us)
            elif child.type == "mvex":
                children += _mvex(init, child, _ticks(duration_us, movie_ts))
            elif child.type == "udta":
                continue
            else:
                children += init[child.offset:child.end]
        out += box(b"moov", bytes(children))
    return bytes(out)


def _with_duration(data: bytes, child: Box, kind: bytes, duration: int) -> bytes:
    """mvhd/tkhd/mdhd rewritten as version 1 with ``duration``."""
    p = child.payload_offset
    version = data[p]
    flags = data[p + 1:p + 4]
    body = data[p + 4:child.end]
    if version == 0:
        c, m = struct.unpack_from(">II", body, 0)
        if kind == b"tkhd":
            tid, res, _d = struct.unpack_from(">III", body, 8)
            rest = body[20:]
            new = struct.pack(">QQIIQ", c, m, tid, res, duration) + rest
        else:
            ts, _d = struct.unpack_from(">II", body, 8)
            new = struct.pack(">QQIQ", c, m, ts, duration) + body[16:]
    else:
        if kind == b"tkhd":
            new = body[:24] + struct.pack(">Q", duration) + body[32:]
        else:
            new = body[:20] + struct.pack(">Q", duration) + body[28:]
    return full_box(kind, 1, int.from_bytes(flags, "big"), new)


def _trak(init: bytes, trak: Box, movie_ts: int, media_times: dict[int, int], duration_us: int) -> bytes:
    mdhd = find_box(init, "mdia/mdhd", trak.payload_offset, trak.end)
    tkhd = find_box(init, "tkhd", trak.payload_offset, trak.end)
    assert mdhd is not None and tkhd is not None
    ts = struct.unpack_from(">I", init, mdhd.payload_offset + (20 if init[mdhd.payload_offset] else 12))[0]
    track_id = struct.unpack_from(">I", init, tkhd.payload_offset + (20 if init[tkhd.payload_offset] else 12))[0]
    elst = full_box(b"elst", 1, 0, struct.pack(">IQqhh", 1, _ticks(duration_us, movie_ts), media_times.get(track_id, 0), 1, 0))
    out = bytearray()
    for child in iter_boxes(init, trak.payload_offset, trak.end):
        if child.type == "tkhd":
            out += _with_duration(init, child, b"tkhd", _ticks(duration_us, movie_ts))
            out += box(b"edts", elst)
        elif child.type == "edts":
            continue  # replaced by ours
        elif child.type == "mdia":
            out += _mdia(init, child, _ticks(duration_us, ts))
        else:
            out += init[child.offset:child.end]
    return box(b"trak", bytes(out))


def _mdia(init: bytes, mdia: Box, duration: int) -> bytes:
    out = bytearray()
    for child in iter_boxes(init, mdia.payload_offset, mdia.end):
        if child.type == "mdhd":
            out += _with_duration(init, child, b"mdhd", duration)
        else:
            out += init[child.offset:child.end]
    return box(b"mdia", bytes(out))


def _mvex(init: bytes, mvex: Box, duration: int) -> bytes:
    out = bytearray(full_box(b"mehd", 1, 0, struct.pack(">Q", duration)))
    for child in iter_boxes(init, mvex.payload_offset, mvex.end):
        if child.type != "mehd":
            out += init[child.offset:child.end]
    return box(b"mvex", bytes(out))


def _iso(t_us: int) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(t_us / 1_000_000, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def clip_file_name(camera_id: str, start_us: int, end_us: int) -> str:
    """``{camera}_{start}_{end}.mp4`` with compact UTC times: readable, sortable, safe in any
    file system (``cam-1_20250615T080001000Z_20250615T080002000Z.mp4``)."""

    def stamp(t: int) -> str:
        return iso_utc(t).replace("-", "").replace(":", "").replace(".", "")

    safe = re.sub(r"[^A-Za-z0-9_-]", "_", camera_id)
    return f"{safe}_{stamp(start_us)}_{stamp(end_us)}.mp4"
