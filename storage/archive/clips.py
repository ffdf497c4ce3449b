"""Clips: one fragmented MP4 built from recorded segments, with no re-encode.

``plan_clip`` turns a camera, stream and time range into a ``ClipPlan`` using only
the index: which fragments (GOPs) of which segment objects overlap the range (from
each row's keyframe table), and the new header (``ftyp``+``moov`` from the indexed
init segment, with an edit list per track). Every size is known from the index, so
the plan knows the whole file's size and byte layout before a byte of video is read.

``ClipPlan.iter_bytes(store, first, end)`` then yields the file (or any byte range of
it, for HTTP Range): the header, the first fragment (fetched while planning, its moof
rebuilt by ``fold_preroll``), then each later source fragment fetched with one ranged
read per segment and patched in place (size-neutral, ``patch_fragment``) so that

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

This module plans (which segments, which byte ranges, which edit-list times) and
streams; the bytes are rewritten by ``storage.mp4.edit`` (``build_header``,
``fold_preroll``, ``patch_fragment``).
"""

from __future__ import annotations

import hashlib
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Iterator, Literal, Protocol

from config.times import iso_utc
from storage.archive.timeline import ClipGap, recorded_gaps
from storage.index.segments import SegmentIndex
from storage.index.keyframes import unpack_keyframes
from storage.mp4.boxes import find_box, find_boxes
from storage.mp4.edit import (
    FragmentError,
    TimeOverflow,
    TrackShift,
    build_header,
    ceil_ticks,
    check_fragment,
    fold_preroll,
    patch_fragment,
    ticks,
)
from storage.mp4.read import TrackInfo, parse_init
from storage.objects.store import ObjectNotFound, ObjectStore
from storage.db.schema import SegmentRow

__all__ = [
    "ClipError",
    "ClipFragment",
    "ClipPlan",
    "EncodingChanged",
    "NoRecordings",
    "SegmentCorrupt",
    "SegmentError",
    "SegmentMissing",
    "plan_clip",
]


# -- errors ---------------------------------------------------------------------------


class ClipError(Exception):
    """A clip cannot be built; the message says why and what to ask for instead."""


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


class SegmentError(ClipError):
    """A source segment does not match its index row; ``segment`` is that row."""

    def __init__(self, message: str, segment: SegmentRow):
        super().__init__(message)
        self.segment = segment


class SegmentMissing(SegmentError):
    """A segment object the index lists is not in the object store (or has the wrong size)."""


class SegmentCorrupt(SegmentError):
    """A segment's bytes do not match the index (structure or sha256)."""


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
    # Per track, how far the clip's media time leads its clock (ticks): the header's edit
    # list starts presentation at ticks(first_us - zero_us) + lead.
    leads: dict[int, int] = field(default_factory=dict)

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
                folded = self._first_out if frag.sequence == 1 else None
                data = folded if folded is not None else self._patched(frag, raw)
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
    _parsed: dict[str, dict[int, TrackInfo]] = field(default_factory=dict)
    _first_raw: bytes | None = None  # the first fragment as stored (fetched while planning)
    _first_out: bytes | None = None  # ... and as the clip has it (pre-roll folded)

    def _init_of(self, seg: SegmentRow) -> bytes:
        return self._inits[seg.init_sha256]

    def _tracks_of(self, seg: SegmentRow) -> dict[int, TrackInfo]:
        tracks = self._parsed.get(seg.init_sha256)
        if tracks is None:
            tracks = self._parsed[seg.init_sha256] = parse_init(self._inits[seg.init_sha256])
        return tracks

    def _patched(self, frag: ClipFragment, data: bytearray) -> bytearray:
        seg = frag.segment
        _check_fragment(frag, data)
        # The fragment holding ``last_us`` keeps only the samples presented before it.
        end = frag.end_us > self.last_us
        # A segment's own edit list says which of its media times is its start (a B-frame
        # track presents its first keyframe a decoder delay after decode time 0).
        own = self._tracks_of(seg)
        shifts = {}
        for tid, ts in self.timescales.items():
            lead = self.leads.get(tid, 0)
            own_start = own[tid].media_time if tid in own else 0
            shifts[tid] = TrackShift(ticks(seg.start_us - self.zero_us, ts) + lead - own_start,
                                     ceil_ticks(self.last_us - self.zero_us, ts) + lead if end else None)
        try:
            return patch_fragment(data, frag.sequence, frag.clip_offset - frag.byte_start, shifts)
        except TimeOverflow as exc:
            raise ClipError(f"camera {seg.camera_id}: clip too long for 32-bit fragment times; "
                            "ask for a shorter range") from exc
        except ValueError as exc:
            raise SegmentCorrupt(f"segment {seg.object_key} of camera {seg.camera_id}: fragment at {frag.byte_start} "
                                 f"is malformed ({exc}); the object does not match its index row", seg) from exc


def _check_fragment(frag: ClipFragment, data: bytearray) -> None:
    """``data`` must be one moof+mdat filling the fragment's indexed span (see ``check_fragment``)."""
    seg = frag.segment
    try:
        check_fragment(data)
    except FragmentError as exc:
        raise SegmentCorrupt(
            f"segment {seg.object_key} of camera {seg.camera_id}: bytes {frag.byte_start}-{frag.byte_end} "
            f"{exc}; the object does not match its index row", seg) from exc


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
                f"segment {seg.object_key} of camera {camera_id} ({iso_utc(seg.start_us)}) is missing from the "
                "object store, or its size or recorded sha256 differs from the index; "
                "ask again with allow_gaps=true to skip it", seg)
        rows = [r for r in rows if r not in missing]
    if not rows:
        gaps = recorded_gaps(index, camera_id, stream, start_us, end_us, [], missing)
        raise NoRecordings(
            f"camera {camera_id} has no {stream} recordings between {iso_utc(start_us)} and {iso_utc(end_us)}; "
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
                f"{iso_utc(row.start_us)}; one MP4 cannot hold both. "
                f"Ask for [{iso_utc(start_us)}, {iso_utc(row.start_us)}) "
                f"and [{iso_utc(row.start_us)}, {iso_utc(end_us)}) separately", row.start_us)

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
        raise NoRecordings(
            f"camera {camera_id}: no complete GOP between {iso_utc(start_us)} and {iso_utc(end_us)}", gaps)
    origin = spans[0][3]
    first = max(start_us, origin)
    last = min(end_us, spans[-1][4])
    init0 = inits[rows[0].init_sha256]
    tracks = parse_init(init0)
    # Without a store: the clip starts at the keyframe, with only the edit list to hide
    # the pre-roll. With one: the first GOP is fetched now and its pre-roll folded.
    # A B-frame track's own edit list (its start-up delay) carries over; an audio track
    # that starts late starts there in the clip too (an edit list cannot point before 0).
    media_times = {t.track_id: max(0, ticks(first - origin, t.timescale) + t.media_time) for t in tracks.values()}
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
        raw = bytearray(first_raw)
        _check_fragment(probe, raw)
        try:
            first_out, media_times, zero_frame = fold_preroll(raw, tracks, 1, first - row.start_us, last - first)
        except ValueError as exc:
            raise SegmentCorrupt(f"segment {row.object_key} of camera {camera_id}: its first fragment is malformed "
                                 f"({exc}); the object does not match its index row", row) from exc
        first_frame_us = first + zero_frame
    header = build_header(init0, media_times, last - first)
    zero = first if first_raw is not None else origin
    leads = {tid: media_times.get(tid, 0) - ticks(first - zero, t.timescale) for tid, t in tracks.items()}
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
        leads=leads,
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


def clip_file_name(camera_id: str, start_us: int, end_us: int) -> str:
    """``{camera}_{start}_{end}.mp4`` with compact UTC times: readable, sortable, safe in any
    file system (``cam-1_20250615T080001000Z_20250615T080002000Z.mp4``)."""

    def stamp(t: int) -> str:
        return iso_utc(t).replace("-", "").replace(":", "").replace(".", "")

    safe = re.sub(r"[^A-Za-z0-9_-]", "_", camera_id)
    return f"{safe}_{stamp(start_us)}_{stamp(end_us)}.mp4"
