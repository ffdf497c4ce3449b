"""Stored bytes per camera and disconnections per hour, from the index, for the health page.

Each is one grouped query for the whole fleet. Reconnections are counted as gap rows
opened (each time a camera stream stops delivering, the session opens one gap), so the
count survives restarts, unlike a session's in-memory reconnect counter.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from storage.index.segments import SegmentIndex
from storage.db.schema import GapRow, SegmentCameraRow, SegmentRow

HOUR_US = 3_600_000_000


@dataclass(frozen=True)
class CameraUsage:
    """What one camera keeps in the object store now (all streams)."""

    bytes: int
    segments: int


def stored_by_camera(index: SegmentIndex) -> dict[str, CameraUsage]:
    """Bytes and segment count per camera id, every stream and time."""
    with index.session() as s:
        rows = s.execute(
            select(SegmentCameraRow.camera_id, func.sum(SegmentRow.bytes), func.count())
            .join(SegmentCameraRow, SegmentCameraRow.seq == SegmentRow.camera_seq).group_by(SegmentCameraRow.camera_id)
        )
        return {cam: CameraUsage(int(b or 0), int(n)) for cam, b, n in rows}


def first_seen_by_camera(index: SegmentIndex, stream: str = "main") -> dict[str, int]:
    """Per camera id: the start of its earliest segment or gap row of ``stream`` (when the
    system first tried to record it), in µs."""
    out: dict[str, int] = {}
    with index.session() as s:
        queries = (
            select(SegmentCameraRow.camera_id, func.min(SegmentRow.start_us))
            .join(SegmentCameraRow, SegmentCameraRow.seq == SegmentRow.camera_seq)
            .where(SegmentRow.stream == stream).group_by(SegmentCameraRow.camera_id),
            select(GapRow.camera_id, func.min(GapRow.start_us)).where(GapRow.stream == stream)
            .group_by(GapRow.camera_id),
        )
        for q in queries:
            rows = s.execute(q)
            for cam, t in rows:
                out[cam] = min(int(t), out.get(cam, int(t)))
    return out


def gaps_opened_by_hour(index: SegmentIndex, start_us: int, end_us: int, stream: str = "main") -> dict[str, list[int]]:
    """Per camera id: how many gaps of ``stream`` opened in each hour of ``[start_us, end_us)``
    (hour 0 starts at ``start_us``). Cameras with none are absent."""
    hours = max(1, -(-(end_us - start_us) // HOUR_US))
    out: dict[str, list[int]] = {}
    with index.session() as s:
        rows = s.execute(
            select(GapRow.camera_id, GapRow.start_us)
            .where(GapRow.stream == stream, GapRow.start_us >= start_us, GapRow.start_us < end_us)
        )
        for cam, t in rows:
            out.setdefault(cam, [0] * hours)[(int(t) - start_us) // HOUR_US] += 1
    return out
