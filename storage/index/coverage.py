"""Recording coverage from the index: how much of a window each camera stream has on record.

One grouped query per question, for the whole fleet at once, so a metrics scrape
or ``sharpeyes status`` costs a few queries however many cameras there are.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, case, func, or_, select

from storage.index.segments import SegmentIndex
from storage.db.schema import GapRow, SegmentCameraRow, SegmentRow

StreamKey = tuple[str, str]  # (camera_id, stream)


@dataclass(frozen=True)
class StreamCoverage:
    """What the index says about one camera stream over ``[start_us, end_us)``."""

    recorded_us: int
    gaps: int  # gap rows overlapping the window
    open_gap_reason: str | None  # why it is not recording now, if a gap is still open
    last_end_us: int | None  # end of the newest segment (any time)

    def ratio(self, window_us: int) -> float:
        return min(1.0, self.recorded_us / window_us) if window_us > 0 else 0.0


def fleet_coverage(index: SegmentIndex, start_us: int, end_us: int) -> dict[StreamKey, StreamCoverage]:
    """Coverage of every camera stream that has any segment or gap row."""
    clipped = (
        case((SegmentRow.end_us > end_us, end_us), else_=SegmentRow.end_us)
        - case((SegmentRow.start_us < start_us, start_us), else_=SegmentRow.start_us)
    )
    with index.session() as s:
        recorded = {
            (c, st): int(v or 0)
            for c, st, v in s.execute(
                select(SegmentCameraRow.camera_id, SegmentRow.stream, func.sum(clipped))
                .join(SegmentCameraRow, SegmentCameraRow.seq == SegmentRow.camera_seq)
                .where(SegmentRow.start_us < end_us, SegmentRow.end_us > start_us)
                .group_by(SegmentCameraRow.camera_id, SegmentRow.stream)
            )
        }
        last_end = {
            (c, st): int(v)
            for c, st, v in s.execute(
                select(SegmentCameraRow.camera_id, SegmentRow.stream, func.max(SegmentRow.end_us))
                .join(SegmentCameraRow, SegmentCameraRow.seq == SegmentRow.camera_seq)
                .group_by(SegmentCameraRow.camera_id, SegmentRow.stream)
            )
        }
        gaps = {
            (c, st): int(n)
            for c, st, n in s.execute(
                select(GapRow.camera_id, GapRow.stream, func.count())
                .where(GapRow.start_us < end_us, or_(GapRow.end_us.is_(None), GapRow.end_us > start_us))
                .group_by(GapRow.camera_id, GapRow.stream)
            )
        }
        open_reason: dict[StreamKey, str] = {}
        for c, st, reason in s.execute(
            select(GapRow.camera_id, GapRow.stream, GapRow.reason)
            .where(and_(GapRow.end_us.is_(None)))
            .order_by(GapRow.start_us)
        ):
            open_reason[(c, st)] = reason  # the newest open gap wins
    keys = set(recorded) | set(last_end) | set(gaps) | set(open_reason)
    return {
        k: StreamCoverage(recorded.get(k, 0), gaps.get(k, 0), open_reason.get(k), last_end.get(k)) for k in keys
    }
