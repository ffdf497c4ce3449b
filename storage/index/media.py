"""``MediaIndex``: timeline thumbnails, per-second motion levels and motion settings in the index.

Thumbnails are small JPEGs (a few kB), one row per camera stream per interval.
Motion is one row per camera stream per UTC minute with a 60-byte array of
levels (0..255, one per second): 1,440 rows and ~90 kB a camera a day. Spans
with motion are computed from those arrays on read (``motion_spans``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import sessionmaker

from config.motion import MotionSettings
from config.times import now_us
from storage.db.schema import MotionRow, MotionSettingsRow, ThumbnailRow

SECONDS_PER_ROW = 60


@dataclass(frozen=True)
class Picture:
    """A JPEG of one camera frame, shown from wall time ``t_us``: the latest snapshot of a
    camera, a timeline thumbnail (stored here), or a frame from the archive. Made by
    ``ingest.media.jpeg``."""

    camera_id: str
    stream: str
    t_us: int
    width: int
    height: int
    jpeg: bytes


@dataclass(frozen=True)
class MotionSpan:
    """Seconds ``[start_s, end_s)`` with motion; ``peak`` is the highest level in them."""

    camera_id: str
    start_s: int
    end_s: int
    peak: int

    def as_dict(self) -> dict:
        return {"camera_id": self.camera_id, "start_us": self.start_s * 1_000_000,
                "end_us": self.end_s * 1_000_000, "peak": self.peak}


def merge_spans(camera_id: str, levels: Iterable[tuple[int, int]], min_level: int = 1) -> list[MotionSpan]:
    """Adjacent seconds (``(second, level)`` in order) at or over ``min_level`` as spans."""
    spans: list[MotionSpan] = []
    start = end = peak = None
    for second, level in levels:
        if level < min_level:
            continue
        if end is not None and second == end:
            end, peak = second + 1, max(peak or 0, level)
            continue
        if start is not None:
            spans.append(MotionSpan(camera_id, start, end, peak))  # type: ignore[arg-type]
        start, end, peak = second, second + 1, level
    if start is not None:
        spans.append(MotionSpan(camera_id, start, end, peak))  # type: ignore[arg-type]
    return spans


class MediaIndex:
    def __init__(self, engine: Engine):
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    # -- thumbnails -----------------------------------------------------------------

    def add_thumbnail(self, thumb: Picture) -> None:
        with self._sessions() as s, s.begin():
            exists = s.scalar(select(ThumbnailRow.id).where(
                ThumbnailRow.camera_id == thumb.camera_id, ThumbnailRow.stream == thumb.stream,
                ThumbnailRow.t_us == thumb.t_us))
            if exists is None:
                s.add(ThumbnailRow(camera_id=thumb.camera_id, stream=thumb.stream, t_us=thumb.t_us,
                                   width=thumb.width, height=thumb.height, jpeg=thumb.jpeg))

    def thumbnail_times(self, camera_id: str, start_us: int, end_us: int,
                        stream: str | None = None) -> list[tuple[str, int, int, int]]:
        """(stream, t_us, width, height) of thumbnails in ``[start_us, end_us)``, in time order."""
        with self._sessions() as s:
            q = select(ThumbnailRow.stream, ThumbnailRow.t_us, ThumbnailRow.width, ThumbnailRow.height).where(
                ThumbnailRow.camera_id == camera_id, ThumbnailRow.t_us >= start_us, ThumbnailRow.t_us < end_us)
            if stream is not None:
                q = q.where(ThumbnailRow.stream == stream)
            return [tuple(r) for r in s.execute(q.order_by(ThumbnailRow.t_us))]  # type: ignore[misc]

    def thumbnail_near(self, camera_id: str, t_us: int, tolerance_us: int) -> Picture | None:
        """The thumbnail closest to ``t_us`` within ``tolerance_us``, preferring the sub stream."""
        with self._sessions() as s:
            rows = list(s.scalars(select(ThumbnailRow).where(
                ThumbnailRow.camera_id == camera_id, ThumbnailRow.t_us >= t_us - tolerance_us,
                ThumbnailRow.t_us <= t_us + tolerance_us)))
        if not rows:
            return None
        best = min(rows, key=lambda r: (abs(r.t_us - t_us), r.stream != "sub"))
        return Picture(best.camera_id, best.stream, best.t_us, best.width, best.height, best.jpeg)

    def delete_thumbnails_before(self, camera_id: str, before_us: int) -> None:
        with self._sessions() as s, s.begin():
            s.execute(delete(ThumbnailRow).where(ThumbnailRow.camera_id == camera_id, ThumbnailRow.t_us < before_us))

    # -- motion ---------------------------------------------------------------------

    def add_motion(self, camera_id: str, stream: str, levels: Iterable[tuple[int, int]]) -> None:
        """Store ``(second, level)`` pairs; merged (max) with what is already stored."""
        by_row: dict[int, dict[int, int]] = {}
        for second, level in levels:
            row = second - second % SECONDS_PER_ROW
            by_row.setdefault(row, {})[second - row] = max(0, min(255, int(level)))
        if not by_row:
            return
        with self._sessions() as s, s.begin():
            for row_start, values in by_row.items():
                row = s.get(MotionRow, (camera_id, stream, row_start))
                current = bytearray(row.levels if row is not None else bytes(SECONDS_PER_ROW))
                for i, v in values.items():
                    current[i] = max(current[i], v)
                if row is None:
                    s.add(MotionRow(camera_id=camera_id, stream=stream, start_s=row_start, levels=bytes(current)))
                else:
                    row.levels = bytes(current)

    def motion_levels(self, camera_ids: Sequence[str], start_s: int, end_s: int,
                      stream: str | None = None) -> dict[str, list[tuple[int, int]]]:
        """Per camera, ``(second, level)`` for every second in ``[start_s, end_s)`` with a level > 0.
        Where both streams were analysed, the higher level of the two counts."""
        out: dict[str, dict[int, int]] = {c: {} for c in camera_ids}
        with self._sessions() as s:
            q = select(MotionRow).where(MotionRow.camera_id.in_(list(camera_ids)),
                                        MotionRow.start_s > start_s - SECONDS_PER_ROW, MotionRow.start_s < end_s)
            if stream is not None:
                q = q.where(MotionRow.stream == stream)
            for row in s.scalars(q):
                seconds = out[row.camera_id]
                for i, level in enumerate(row.levels):
                    t = row.start_s + i
                    if level and start_s <= t < end_s:
                        seconds[t] = max(seconds.get(t, 0), level)
        return {c: sorted(v.items()) for c, v in out.items()}

    def motion_spans(self, camera_ids: Sequence[str], start_s: int, end_s: int,
                     min_level: int = 1) -> list[MotionSpan]:
        """Spans with motion (adjacent seconds merged) for each camera, by camera then time."""
        levels = self.motion_levels(camera_ids, start_s, end_s)
        spans: list[MotionSpan] = []
        for camera_id in camera_ids:
            spans.extend(merge_spans(camera_id, levels[camera_id], min_level))
        return spans

    # -- settings ---------------------------------------------------------------------

    def motion_settings(self, camera_id: str) -> MotionSettings:
        with self._sessions() as s:
            row = s.get(MotionSettingsRow, camera_id)
            return MotionSettings() if row is None else MotionSettings.model_validate_json(row.settings)

    def set_motion_settings(self, camera_id: str, settings: MotionSettings) -> None:
        with self._sessions() as s, s.begin():
            row = s.get(MotionSettingsRow, camera_id)
            if row is None:
                s.add(MotionSettingsRow(camera_id=camera_id, settings=settings.model_dump_json(), updated_us=now_us()))
            else:
                row.settings = settings.model_dump_json()
                row.updated_us = now_us()
