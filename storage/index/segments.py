"""``SegmentIndex``: every recorded second and every gap, per camera and stream."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from sqlalchemy import Engine, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from config.times import now_us
from storage.db.schema import GAP_REASONS, CameraLeaseRow, GapRow, InitSegmentRow, SegmentRow

# (worker_id, lease epoch) a segment's uploader claims to hold the camera under.
Fence = tuple[str, int]


class FencedOut(RuntimeError):
    """A segment was refused because its worker no longer holds the camera's lease
    (another worker took it: its epoch moved on). Nothing was written."""

    def __init__(self, camera_id: str, fence: Fence, holder: tuple[str, int] | None):
        self.camera_id = camera_id
        self.fence = fence
        self.holder = holder
        now = f"worker {holder[0]!r} at epoch {holder[1]}" if holder else "nobody (no lease row)"
        super().__init__(
            f"camera {camera_id}: worker {fence[0]!r} lost the lease (epoch {fence[1]}); it is held by {now}. "
            "The segment is not indexed; the new owner records this camera"
        )


@dataclass(frozen=True)
class SegmentRecord:
    """What the uploader knows about a finished segment once its object is stored."""

    camera_id: str
    stream: str
    start_us: int
    end_us: int
    object_key: str
    bytes: int
    codec: str
    width: int
    height: int
    audio_codec: str | None
    sha256: str
    prev_sha256: str | None
    init_sha256: str
    init_data: bytes
    keyframes: bytes
    drift_us: int = 0
    worker_id: str = ""
    origin: str = "live"  # or "device": backfilled from a GB/T 28181 device's own recording


class SegmentIndex:
    """Reads and writes segment and gap rows. Thread-safe: each call uses its own session."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def session(self) -> Session:
        return self._sessions()

    # -- segments -------------------------------------------------------------

    def _insert_ignore(self, session: Session, table, values: dict, conflict: Sequence[str]) -> None:  # type: ignore[no-untyped-def]
        """INSERT unless a row with the same ``conflict`` columns exists (atomically:
        two writers racing on the same key both succeed, one row results)."""
        dialect = self.engine.dialect.name
        ins = pg_insert if dialect == "postgresql" else sqlite_insert
        session.execute(ins(table).values(**values).on_conflict_do_nothing(index_elements=list(conflict)))

    def add_segment(self, rec: SegmentRecord, fence: Fence | None = None) -> SegmentRow:
        """Index a stored segment. Idempotent on (camera, stream, start): re-indexing after
        a crash between the row and the spool delete returns the existing row, and so
        does a second worker indexing the same segment concurrently (lease takeover).

        With ``fence=(worker_id, epoch)`` the row is written only if the camera's lease
        is still held by that worker at that epoch, checked in the same transaction
        (the lease row is locked until commit, so a takeover waits for it); else
        ``FencedOut`` and nothing is written."""
        with self.session() as s, s.begin():
            if fence is not None:
                self._check_fence(s, rec.camera_id, fence)
            self._insert_ignore(
                s, InitSegmentRow.__table__, {"sha256": rec.init_sha256, "data": rec.init_data}, ["sha256"]
            )
            # Insert-or-nothing rather than select-then-insert: the latter raced into
            # a unique violation when two workers indexed the same segment at once.
            self._insert_ignore(
                s,
                SegmentRow.__table__,
                {
                    "camera_id": rec.camera_id,
                    "stream": rec.stream,
                    "start_us": rec.start_us,
                    "end_us": rec.end_us,
                    "object_key": rec.object_key,
                    "bytes": rec.bytes,
                    "codec": rec.codec,
                    "width": rec.width,
                    "height": rec.height,
                    "audio_codec": rec.audio_codec,
                    "sha256": rec.sha256,
                    "prev_sha256": rec.prev_sha256,
                    "init_sha256": rec.init_sha256,
                    "keyframes": rec.keyframes,
                    "drift_us": rec.drift_us,
                    "worker_id": rec.worker_id,
                    "origin": rec.origin,
                    "created_us": now_us(),
                },
                ["camera_id", "stream", "start_us"],
            )
            row = s.scalar(
                select(SegmentRow).where(
                    SegmentRow.camera_id == rec.camera_id,
                    SegmentRow.stream == rec.stream,
                    SegmentRow.start_us == rec.start_us,
                )
            )
            assert row is not None  # inserted above or already there
            return row

    def _check_fence(self, s: Session, camera_id: str, fence: Fence) -> None:
        match = (CameraLeaseRow.camera_id == camera_id, CameraLeaseRow.worker_id == fence[0],
                 CameraLeaseRow.epoch == fence[1])
        if self.engine.dialect.name == "postgresql":
            # FOR SHARE: this worker's other uploads are not blocked; an acquirer's
            # UPDATE waits until this transaction ends.
            ok = s.scalar(select(CameraLeaseRow.epoch).where(*match).with_for_update(read=True)) is not None
        else:
            # SQLite: a no-op UPDATE as the first statement takes the database write
            # lock, so no lease change can slip in before the insert commits.
            done = s.execute(update(CameraLeaseRow).where(*match).values(heartbeat_us=CameraLeaseRow.heartbeat_us))
            ok = done.rowcount == 1  # type: ignore[attr-defined]
        if not ok:
            holder = s.execute(select(CameraLeaseRow.worker_id, CameraLeaseRow.epoch)
                               .where(CameraLeaseRow.camera_id == camera_id)).first()
            raise FencedOut(camera_id, fence, (holder[0], holder[1]) if holder else None)

    def references(self, camera_id: str, stream: str, start_us: int, object_key: str) -> bool:
        """True if the row for (camera, stream, start) points at ``object_key`` (a key
        names its camera, stream and start, so only that row can; the lookup uses the
        unique index)."""
        with self.session() as s:
            key = s.scalar(select(SegmentRow.object_key).where(
                SegmentRow.camera_id == camera_id, SegmentRow.stream == stream, SegmentRow.start_us == start_us))
        return key == object_key

    def last_segment(self, camera_id: str, stream: str) -> SegmentRow | None:
        with self.session() as s:
            return s.scalar(
                select(SegmentRow)
                .where(SegmentRow.camera_id == camera_id, SegmentRow.stream == stream)
                .order_by(SegmentRow.start_us.desc())
                .limit(1)
            )

    def segments(
        self, camera_id: str, stream: str = "main", start_us: int | None = None, end_us: int | None = None
    ) -> list[SegmentRow]:
        """Segments overlapping ``[start_us, end_us)``, oldest first."""
        q = select(SegmentRow).where(SegmentRow.camera_id == camera_id, SegmentRow.stream == stream)
        if end_us is not None:
            q = q.where(SegmentRow.start_us < end_us)
        if start_us is not None:
            q = q.where(SegmentRow.end_us > start_us)
        with self.session() as s:
            return list(s.scalars(q.order_by(SegmentRow.start_us)))

    def spans(
        self, camera_id: str, stream: str = "main", start_us: int | None = None, end_us: int | None = None
    ) -> list[tuple[int, int]]:
        """(start_us, end_us) of the segments overlapping ``[start_us, end_us)``, oldest
        first: what a timeline draws, without loading keyframe tables and hashes
        (about 5x faster than ``segments`` for a day of one camera, tests/bench/index_scale.py)."""
        q = select(SegmentRow.start_us, SegmentRow.end_us).where(
            SegmentRow.camera_id == camera_id, SegmentRow.stream == stream)
        if end_us is not None:
            q = q.where(SegmentRow.start_us < end_us)
        if start_us is not None:
            q = q.where(SegmentRow.end_us > start_us)
        with self.session() as s:
            return [(a, b) for a, b in s.execute(q.order_by(SegmentRow.start_us))]

    def all_segments(self) -> list[SegmentRow]:
        with self.session() as s:
            return list(s.scalars(select(SegmentRow).order_by(SegmentRow.camera_id, SegmentRow.stream, SegmentRow.start_us)))

    def init_segment(self, sha256: str) -> bytes:
        with self.session() as s:
            data = s.scalar(select(InitSegmentRow.data).where(InitSegmentRow.sha256 == sha256))
        if data is None:
            raise KeyError(f"init segment {sha256} is not in the index")
        return data

    def delete_segments(self, ids: Sequence[int]) -> None:
        with self.session() as s, s.begin():
            s.execute(delete(SegmentRow).where(SegmentRow.id.in_(list(ids))))

    def segment_count(self) -> int:
        with self.session() as s:
            return s.scalar(select(func.count()).select_from(SegmentRow)) or 0

    # -- gaps -----------------------------------------------------------------

    def open_gap(self, camera_id: str, stream: str, start_us: int, reason: str, detail: str = "") -> int:
        """Start a gap that is still going on; returns its id for ``close_gap``."""
        _check_reason(reason)
        with self.session() as s, s.begin():
            row = GapRow(camera_id=camera_id, stream=stream, start_us=start_us, end_us=None, reason=reason, detail=detail)
            s.add(row)
            s.flush()
            return row.id

    def set_gap_reason(self, gap_id: int, reason: str, detail: str = "") -> None:
        """Change why a gap happened (the cause is often known only after it started).
        ``KeyError`` if there is no gap ``gap_id``."""
        _check_reason(reason)
        with self.session() as s, s.begin():
            done = s.execute(update(GapRow).where(GapRow.id == gap_id).values(reason=reason, detail=detail))
            if done.rowcount == 0:  # type: ignore[attr-defined]
                raise KeyError(f"gap {gap_id} is not in the index")

    def close_gap(self, gap_id: int, end_us: int) -> None:
        """End gap ``gap_id`` at ``end_us``. ``KeyError`` if there is no such gap,
        ``ValueError`` if ``end_us`` is before its start."""
        with self.session() as s, s.begin():
            row = s.get(GapRow, gap_id)
            if row is None:
                raise KeyError(f"gap {gap_id} is not in the index")
            if end_us < row.start_us:
                raise ValueError(f"gap {gap_id}: end {end_us} is before its start {row.start_us}")
            row.end_us = end_us

    def add_gap(self, camera_id: str, stream: str, start_us: int, end_us: int, reason: str, detail: str = "") -> int:
        """Record a finished gap ``[start_us, end_us)``; returns its id."""
        _check_reason(reason)
        if end_us < start_us:
            raise ValueError(f"gap end {end_us} is before its start {start_us}")
        with self.session() as s, s.begin():
            row = GapRow(camera_id=camera_id, stream=stream, start_us=start_us, end_us=end_us, reason=reason, detail=detail)
            s.add(row)
            s.flush()
            return row.id

    def open_gaps(self, camera_id: str, stream: str) -> list[GapRow]:
        with self.session() as s:
            return list(
                s.scalars(
                    select(GapRow).where(GapRow.camera_id == camera_id, GapRow.stream == stream, GapRow.end_us.is_(None))
                )
            )

    def gaps(
        self, camera_id: str, stream: str = "main", start_us: int | None = None, end_us: int | None = None
    ) -> list[GapRow]:
        """Gaps overlapping ``[start_us, end_us)`` (open gaps count as running to now), oldest first."""
        q = select(GapRow).where(GapRow.camera_id == camera_id, GapRow.stream == stream)
        if end_us is not None:
            q = q.where(GapRow.start_us < end_us)
        if start_us is not None:
            q = q.where(or_(GapRow.end_us.is_(None), GapRow.end_us > start_us))
        with self.session() as s:
            return list(s.scalars(q.order_by(GapRow.start_us)))


def _check_reason(reason: str) -> None:
    if reason not in GAP_REASONS:
        raise ValueError(f"unknown gap reason {reason!r}; one of {', '.join(GAP_REASONS)}")
