"""``HoldStore``: legal holds that keep recorded video from retention.

A hold covers one camera's segments overlapping ``[start_us, end_us)``, on one
stream or (``stream=None``) both. It is active until released; a released hold
stays in the table with who released it and when, so the record of what was
held is never lost.

Retention asks ``held_segment_ids`` (one query) or ``is_held`` before deleting
anything. Where the object store has its own legal hold (S3 object lock),
``place`` and ``release`` also set and clear it on each held segment object, so
that not even a bug in retention (or a person with bucket credentials) can
delete held video: see ``sync_store_holds``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

from sqlalchemy import Engine, and_, exists, or_, select, update
from sqlalchemy.orm import sessionmaker

from config.times import now_us
from storage.objects.store import ObjectNotFound
from storage.db.schema import HoldRow, SegmentCameraRow, SegmentRow, stream_name

log = logging.getLogger(__name__)

STREAMS = ("main", "sub")


class HoldError(ValueError):
    """A hold request that cannot be honoured as given (the message says what to send)."""


class HoldNotFound(KeyError):
    """No hold with that id (on that camera)."""


@dataclass(frozen=True)
class Hold:
    """One legal hold as read back."""

    id: int
    camera_id: str
    stream: str | None
    start_us: int
    end_us: int
    reason: str
    created_by: str
    created_us: int
    released_by: str | None
    released_us: int | None

    @property
    def active(self) -> bool:
        return self.released_us is None

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "active": self.active}


def _hold(row: HoldRow) -> Hold:
    return Hold(
        id=row.id,
        camera_id=row.camera_id,
        stream=row.stream,
        start_us=row.start_us,
        end_us=row.end_us,
        reason=row.reason,
        created_by=row.created_by,
        created_us=row.created_us,
        released_by=row.released_by,
        released_us=row.released_us,
    )


def _covers(hold: Any, camera_id: Any, stream: Any, start_us: Any, end_us: Any) -> Any:
    """SQL: active ``hold`` overlaps ``[start_us, end_us)`` of ``camera_id``/``stream``."""
    return and_(
        hold.released_us.is_(None),
        hold.camera_id == camera_id,
        or_(hold.stream.is_(None), hold.stream == stream),
        hold.start_us < end_us,
        hold.end_us > start_us,
    )


class HoldStore:
    """Reads and writes legal holds. Thread-safe: each call uses its own session."""

    def __init__(self, engine: Engine, clock: Callable[[], int] = now_us):
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._clock = clock

    def place(
        self,
        camera_id: str,
        start_us: int,
        end_us: int,
        reason: str,
        created_by: str,
        stream: str | None = None,
    ) -> Hold:
        """Hold ``camera_id``'s recordings in ``[start_us, end_us)`` until released.

        ``HoldError`` for an empty range, an unknown stream or a missing reason
        (a hold without a reason cannot be reviewed later).
        """
        if end_us <= start_us:
            raise HoldError(f"camera {camera_id}: hold start {start_us} must be before its end {end_us}")
        if stream is not None and stream not in STREAMS:
            raise HoldError(f"camera {camera_id}: stream {stream!r} is unknown; use main, sub, or leave it out for both")
        if not reason.strip():
            raise HoldError(f"camera {camera_id}: give a reason for the hold (a case number, a request)")
        with self._sessions() as s, s.begin():
            row = HoldRow(
                camera_id=camera_id,
                stream=stream,
                start_us=start_us,
                end_us=end_us,
                reason=reason.strip(),
                created_by=created_by[:64],
                created_us=self._clock(),
            )
            s.add(row)
            s.flush()
            return _hold(row)

    def release(self, hold_id: int, by: str, camera_id: str | None = None) -> Hold:
        """Release an active hold; returns it. Releasing twice returns the first release
        unchanged. ``HoldNotFound`` if there is no such hold (on ``camera_id``, when given)."""
        with self._sessions() as s, s.begin():
            row = s.get(HoldRow, hold_id)
            if row is None or (camera_id is not None and row.camera_id != camera_id):
                raise HoldNotFound(f"no hold {hold_id}" + (f" on camera {camera_id}" if camera_id else ""))
            if row.released_us is None:
                # Conditional update: two concurrent releases record one releaser.
                s.execute(
                    update(HoldRow)
                    .where(HoldRow.id == hold_id, HoldRow.released_us.is_(None))
                    .values(released_by=by[:64], released_us=self._clock())
                )
                s.refresh(row)
            return _hold(row)

    def get(self, hold_id: int) -> Hold | None:
        with self._sessions() as s:
            row = s.get(HoldRow, hold_id)
            return _hold(row) if row else None

    def list(self, camera_id: str | None = None, active_only: bool = True) -> list[Hold]:
        """Holds, newest first; only active ones unless ``active_only=False``."""
        q = select(HoldRow)
        if camera_id is not None:
            q = q.where(HoldRow.camera_id == camera_id)
        if active_only:
            q = q.where(HoldRow.released_us.is_(None))
        with self._sessions() as s:
            return [_hold(r) for r in s.scalars(q.order_by(HoldRow.id.desc()))]

    def is_held(self, camera_id: str, stream: str, start_us: int, end_us: int) -> bool:
        """Whether any active hold overlaps ``[start_us, end_us)`` of this camera stream."""
        q = select(exists().where(_covers(HoldRow, camera_id, stream, start_us, end_us)))
        with self._sessions() as s:
            return bool(s.scalar(q))

    def held_segment_ids(
        self,
        camera_id: str | None = None,
        stream: str | None = None,
        ending_before_us: int | None = None,
    ) -> set[int]:
        """Ids of indexed segments that an active hold covers, in one query.

        Retention deletes segments ending before its cut-off: pass that cut-off as
        ``ending_before_us`` (and a camera/stream to narrow further) and skip the
        ids returned.
        """
        q = select(SegmentRow.id).join(SegmentCameraRow, SegmentCameraRow.seq == SegmentRow.camera_seq).where(
            exists().where(_covers(HoldRow, SegmentCameraRow.camera_id, stream_name(SegmentRow.stream),
                                   SegmentRow.start_us, SegmentRow.end_us))
        )
        if camera_id is not None:
            q = q.where(SegmentRow.camera_id == camera_id)
        if stream is not None:
            q = q.where(SegmentRow.stream == stream)
        if ending_before_us is not None:
            q = q.where(SegmentRow.end_us <= ending_before_us)
        with self._sessions() as s:
            return set(s.scalars(q))

    def covered_segments(self, hold: Hold) -> list[SegmentRow]:
        """The indexed segments ``hold`` covers, oldest first."""
        q = select(SegmentRow).where(
            SegmentRow.camera_id == hold.camera_id,
            SegmentRow.start_us < hold.end_us,
            SegmentRow.end_us > hold.start_us,
        )
        if hold.stream is not None:
            q = q.where(SegmentRow.stream == hold.stream)
        with self._sessions() as s:
            return list(s.scalars(q.order_by(SegmentRow.stream, SegmentRow.start_us)))

    def sync_store_holds(self, store: Any, hold: Hold) -> int:
        """Make the store's own legal hold match the index for every segment ``hold``
        covers: on while any active hold covers the segment, off otherwise (so
        releasing one of two overlapping holds keeps the objects locked).

        Returns how many objects the store changed; 0 where the store has no legal
        hold (local directory, S3 bucket without object lock). A segment object that
        is already gone is logged and skipped.
        """
        setter = getattr(store, "set_legal_hold", None)
        if setter is None:
            return 0
        segments = self.covered_segments(hold)
        if not segments:
            return 0
        still_held = self.held_segment_ids(camera_id=hold.camera_id)
        changed = 0
        for seg in segments:
            try:
                if not setter(seg.object_key, seg.id in still_held):
                    return changed  # the store has no legal hold: nothing more to do
            except ObjectNotFound:
                log.warning("camera %s: held segment object %s is missing from the store", hold.camera_id, seg.object_key)
                continue
            changed += 1
        return changed
