"""Cutting a spooled fMP4 segment at fragment (GOP) boundaries, for time fencing.

When only part of a segment's time is claimed by the index (another row, or a
newer lease owner), the uploader indexes the fragments outside the claims and
keeps the others in quarantine. A segment is ``init + (moof mdat)*`` written with
``default_base_moof``, so a run of whole fragments behind the same init is a valid
segment by itself; only each ``tfdt`` is moved so the piece's media time starts
at zero again, as every indexed segment's does (the clip builder relies on it).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Sequence

from storage.index.keyframes import Keyframe
from storage.index.segments import Claim
from storage.mp4.read import TrackInfo, find_box, find_boxes, parse_init, scan_fragments


@dataclass(frozen=True)
class Piece:
    """A run of whole fragments of one segment, as a segment of its own."""

    start_us: int
    end_us: int
    data: bytes  # init + fragments, tfdt rebased to the piece's start
    keyframes: list[Keyframe]
    claimed: list[Claim]  # the claims it overlaps (empty: it may be indexed)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def split_by_claims(data: bytes, init_size: int, start_us: int, end_us: int,
                    claims: Sequence[Claim]) -> list[Piece]:
    """``data`` (a whole segment from ``start_us`` to ``end_us``) cut into runs of
    fragments that overlap no claim and runs that overlap some, oldest first."""
    init = data[:init_size]
    tracks = parse_init(init)
    video = next((t for t in tracks.values() if t.handler == "vide"), None)
    if video is None:
        raise ValueError("segment has no video track")
    frags = [f for f in scan_fragments(data, tracks, init_size) if video.track_id in f.runs
             and f.runs[video.track_id].samples]
    if not frags:
        raise ValueError("segment has no complete video fragment")
    starts = [start_us + f.runs[video.track_id].samples[0].decode_time * 1_000_000 // video.timescale for f in frags]
    spans = [(a, starts[i + 1] if i + 1 < len(frags) else end_us) for i, a in enumerate(starts)]
    groups: list[tuple[list[int], list[Claim]]] = []
    for i, (a, b) in enumerate(spans):
        hit = [c for c in claims if c.start_us < b and c.end_us > a]
        if groups and bool(groups[-1][1]) == bool(hit):
            groups[-1][0].append(i)
            groups[-1][1].extend(c for c in hit if c not in groups[-1][1])
        else:
            groups.append(([i], hit))
    pieces = []
    for idx, hit in groups:
        first, last = frags[idx[0]], frags[idx[-1]]
        body = bytearray(data[first.moof_offset:last.moof_offset + last.size])
        _rebase_tfdt(body, tracks, video.track_id, first.runs[video.track_id].samples[0].decode_time)
        kfs = [Keyframe(spans[i][0] - spans[idx[0]][0], frags[i].moof_offset - first.moof_offset + init_size)
               for i in idx]
        pieces.append(Piece(spans[idx[0]][0], spans[idx[-1]][1], bytes(init) + bytes(body), kfs, hit))
    return pieces


def _rebase_tfdt(body: bytearray, tracks: dict[int, TrackInfo], video_id: int, video_ticks: int) -> None:
    """Move every ``tfdt`` in ``body`` back by ``video_ticks`` of the video track
    (the same time in each other track's timescale)."""
    if video_ticks == 0:
        return
    video_scale = tracks[video_id].timescale
    for moof in find_boxes(body, "moof"):
        for traf in find_boxes(body, "traf", moof.payload_offset, moof.end):
            tfhd = find_box(body, "tfhd", traf.payload_offset, traf.end)
            tfdt = find_box(body, "tfdt", traf.payload_offset, traf.end)
            if tfhd is None or tfdt is None:
                continue
            track_id = struct.unpack_from(">I", body, tfhd.payload_offset + 4)[0]
            info = tracks.get(track_id)
            if info is None:
                continue
            shift = video_ticks if track_id == video_id else video_ticks * info.timescale // video_scale
            q = tfdt.payload_offset
            if body[q] == 1:
                value = struct.unpack_from(">Q", body, q + 4)[0]
                struct.pack_into(">Q", body, q + 4, max(0, value - shift))
            else:
                value = struct.unpack_from(">I", body, q + 4)[0]
                struct.pack_into(">I", body, q + 4, max(0, value - shift))
