"""What is recorded for a camera stream over a time range: runs and gaps.

A *run* is a contiguous recorded span: segments each starting within
``CONTIGUOUS_US`` (one frame) of the previous one's end, merged. A *gap* is a span
with no recording: the gap rows the recorder wrote (with their reason; an open gap
runs to now), plus any hole between runs that no gap row explains, reported with
reason ``"unknown"``. Everything is clipped to the asked range.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from config.times import now_us
from storage.index.segments import SegmentIndex
from storage.db.schema import SegmentRow

__all__ = ["CONTIGUOUS_US", "ClipGap", "Run", "Timeline", "recorded_gaps", "runs_of", "timeline"]

# Two segments (or a gap's edge and a segment) closer than this are contiguous:
# one frame at 20 fps. The segmenter makes segments of one run contiguous to the tick.
CONTIGUOUS_US = 50_000


@dataclass(frozen=True)
class ClipGap:
    """A span of the requested range with no video (in a timeline or a clip), and why."""

    start_us: int
    end_us: int
    reason: str  # a gap reason from the index, "unknown" (nothing indexed), or "storage_missing"
    detail: str = ""

    def as_dict(self) -> dict[str, object]:
        return {"start_us": self.start_us, "end_us": self.end_us, "reason": self.reason, "detail": self.detail}


@dataclass(frozen=True)
class Run:
    start_us: int
    end_us: int
    segments: int
    bytes: int


@dataclass(frozen=True)
class Timeline:
    camera_id: str
    stream: str
    start_us: int
    end_us: int
    runs: list[Run]
    gaps: list[ClipGap]


def runs_of(rows: Iterable[SegmentRow], start_us: int | None = None, end_us: int | None = None) -> list[Run]:
    """Merge time-ordered segments into runs, clipped to ``[start_us, end_us)``."""
    runs: list[Run] = []
    for row in rows:
        s = row.start_us if start_us is None else max(row.start_us, start_us)
        e = row.end_us if end_us is None else min(row.end_us, end_us)
        if e <= s:
            continue
        if runs and row.start_us - runs[-1].end_us <= CONTIGUOUS_US and row.start_us >= runs[-1].start_us:
            last = runs[-1]
            runs[-1] = Run(last.start_us, max(last.end_us, e), last.segments + 1, last.bytes + row.bytes)
        else:
            runs.append(Run(s, e, 1, row.bytes))
    return runs


def recorded_gaps(
    index: SegmentIndex,
    camera_id: str,
    stream: str,
    start_us: int,
    end_us: int,
    rows: list[SegmentRow],
    missing: list[SegmentRow] = (),  # type: ignore[assignment]
    now: int | None = None,
) -> list[ClipGap]:
    """The gaps in ``[start_us, min(end_us, now))`` not covered by ``rows``: indexed gap
    rows with their reasons, ``missing`` segments as ``storage_missing``, and
    unexplained holes longer than one frame as ``unknown``; sorted by start."""
    now = now_us() if now is None else now
    limit = min(end_us, max(now, start_us))
    gaps: list[ClipGap] = []
    for g in index.gaps(camera_id, stream, start_us, end_us):
        s, e = max(g.start_us, start_us), min(g.end_us if g.end_us is not None else now, end_us)
        if e > s:
            detail = g.detail + (" (still open)" if g.end_us is None else "")
            gaps.append(ClipGap(s, e, g.reason, detail.strip()))
    for row in missing:
        s, e = max(row.start_us, start_us), min(row.end_us, end_us)
        if e > s:
            gaps.append(ClipGap(s, e, "storage_missing", f"segment {row.object_key} is not in the object store"))
    # Holes: parts of the range covered by neither a run nor a gap above.
    covered = sorted([(r.start_us, r.end_us) for r in runs_of(rows, start_us, end_us)]
                     + [(g.start_us, g.end_us) for g in gaps])
    pos = start_us
    holes: list[ClipGap] = []
    for s, e in covered + [(limit, limit)]:
        if s - pos > CONTIGUOUS_US and pos < limit:
            holes.append(ClipGap(pos, min(s, limit), "unknown", "nothing indexed (not recorded, or not uploaded yet)"))
        pos = max(pos, e)
    return sorted(gaps + holes, key=lambda g: (g.start_us, g.end_us))


def timeline(index: SegmentIndex, camera_id: str, stream: str, start_us: int, end_us: int,
             now: int | None = None) -> Timeline:
    """Runs and gaps of one camera stream in ``[start_us, end_us)``."""
    if start_us >= end_us:
        raise ValueError(f"start {start_us} must be before end {end_us}")
    rows = index.segments(camera_id, stream, start_us, end_us)
    return Timeline(camera_id, stream, start_us, end_us, runs_of(rows, start_us, end_us),
                    recorded_gaps(index, camera_id, stream, start_us, end_us, rows, now=now))
