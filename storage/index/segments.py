"""``SegmentIndex``: every recorded second and every gap, per camera and stream."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from sqlalchemy import Engine, delete, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.attributes import set_committed_value

from config.times import now_us
from storage.objects.open import segment_key
from storage.db.schema import (GAP_REASONS, CameraLeaseRow, GapRef, GapRow, InitSegmentRow, QuarantineRow, SegmentCameraRow,
                               SegmentRow, SegmentSourceRow)

# (worker_id, lease epoch) a segment's uploader claims to hold the camera under.
Fence = tuple[str, int]

# Segments are at most a few minutes long: an overlap search looks back this far
# from the new segment's start, so it stays a short range scan of the unique index.
MAX_SEGMENT_US = 3600 * 1_000_000


@dataclass(frozen=True)
class Claim:
    """A span of one camera stream that a new segment may not cover, and why."""

    start_us: int
    end_us: int
    reason: str  # "indexed" (another row has it) or "taken_over" (a newer owner records from here)
    detail: str


class FencedOut(RuntimeError):
    """A segment was refused, in whole, because part of its time is already claimed:
    recorded by another indexed row, or (for a worker that lost the camera's lease)
    after the takeover, which the new owner records. Nothing was written.

    ``claims`` lists what is in the way; ``Uploader`` indexes the parts outside them
    and keeps the rest in quarantine."""

    def __init__(self, camera_id: str, stream: str, span: tuple[int, int], fence: Fence | None,
                 holder: tuple[str, int] | None, claims: Sequence[Claim]):
        self.camera_id = camera_id
        self.stream = stream
        self.span = span
        self.fence = fence
        self.holder = holder
        self.claims = list(claims)
        why = "; ".join(f"[{c.start_us}, {c.end_us}) {c.detail}" for c in self.claims)
        super().__init__(
            f"camera {camera_id}/{stream}: segment [{span[0]}, {span[1]}) not indexed, part of it is claimed: {why}. "
            "Only the overlapping part is refused: the uploader indexes the rest and keeps the refused part "
            "under quarantine/"
        )

    @property
    def lost_lease(self) -> bool:
        return any(c.reason == "taken_over" for c in self.claims)


@dataclass(frozen=True)
class SegmentRecord:
    """What the uploader knows about a finished segment once its object is stored.
    (The hash-chain link, ``prev_sha256``, is chosen by the index at insert.)"""

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
        # Numbers of cameras and sources, once committed (they are never renumbered).
        self._camera_seqs: dict[str, int] = {}
        self._source_seqs: dict[tuple, int] = {}  # type: ignore[type-arg]

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
        """Index a stored segment unless part of its time is already claimed.

        Fencing is by time: the segment is refused (``FencedOut``, nothing written)
        only if ``[start_us, end_us)`` overlaps another indexed row of the camera
        stream, or, when ``fence=(worker_id, epoch)`` is no longer the lease's, the
        time from the new owner's takeover (``acquired_us``) on. A segment of a
        worker that lost the lease but covers only time before the takeover, which
        nobody else recorded, is indexed: fencing stops two copies of the same
        seconds, never the only copy.

        Idempotent on (camera, stream, start) with the same object key: re-indexing
        after a crash between the row and the spool delete returns the existing row.

        The checks and the insert are one transaction, serialised per camera stream
        (PostgreSQL: an advisory lock plus the lease row ``FOR SHARE``, so a takeover
        waits for the commit; SQLite: the database write lock, taken first).

        The hash-chain link ``prev_sha256`` is the sha256 of the row just before in
        time. A segment indexed late, between rows already linked, becomes an
        inserted link (see docs/scale.md, "Hash chain")."""
        learned: dict[str, int] = {}
        with self.session() as s, s.begin():
            same = self._lock_and_find(s, rec)
            if same is not None and same.object_key == rec.object_key:
                return same
            holder, claims = self._claims(s, rec.camera_id, rec.stream, rec.start_us, rec.end_us, fence)
            if claims:
                raise FencedOut(rec.camera_id, rec.stream, (rec.start_us, rec.end_us), fence, holder, claims)
            self._insert_ignore(
                s, InitSegmentRow.__table__, {"sha256": rec.init_sha256, "data": rec.init_data}, ["sha256"]
            )
            prev = s.scalar(
                select(SegmentRow.sha256)
                .where(SegmentRow.camera_id == rec.camera_id, SegmentRow.stream == rec.stream,
                       SegmentRow.start_us < rec.start_us)
                .order_by(SegmentRow.start_us.desc()).limit(1)
            )
            camera = self._camera_row(s, rec.camera_id)
            source = self._source_row(s, rec)
            row = SegmentRow(
                camera_seq=camera.seq, source_seq=source.seq, stream=rec.stream,
                start_us=rec.start_us, end_us=rec.end_us, stored_key=_stored_key(rec), bytes=rec.bytes,
                sha256=rec.sha256, prev_sha256=prev, keyframes=rec.keyframes, drift_us=rec.drift_us,
                created_us=now_us(),
            )
            s.add(row)
            s.flush()
            # The rows are known: set them without a load (and without an INSERT cascade).
            set_committed_value(row, "camera", camera)
            set_committed_value(row, "source", source)
            learned[rec.camera_id] = camera.seq
        self._camera_seqs.update(learned)
        self._source_seqs[_source_key(rec)] = source.seq
        return row

    def _camera_row(self, s: Session, camera_id: str) -> SegmentCameraRow:
        """The camera's number row, made on its first segment."""
        seq = self._camera_seqs.get(camera_id)
        if seq is None:
            self._insert_ignore(s, SegmentCameraRow.__table__, {"camera_id": camera_id}, ["camera_id"])
            seq = s.scalar(select(SegmentCameraRow.seq).where(SegmentCameraRow.camera_id == camera_id))
        return SegmentCameraRow(seq=seq, camera_id=camera_id)

    def _source_row(self, s: Session, rec: SegmentRecord) -> SegmentSourceRow:
        """The number of what this segment shares with its neighbours, made when new."""
        key = _source_key(rec)
        values = dict(zip(_SOURCE_COLUMNS, key))
        seq = self._source_seqs.get(key)
        if seq is None:
            self._insert_ignore(s, SegmentSourceRow.__table__, values, list(_SOURCE_COLUMNS))
            seq = s.scalar(select(SegmentSourceRow.seq).where(
                *(getattr(SegmentSourceRow, c) == v for c, v in values.items())))
        return SegmentSourceRow(seq=seq, **values)

    def _lock_and_find(self, s: Session, rec: SegmentRecord) -> SegmentRow | None:
        """Serialise writers of one camera stream for this transaction; returns the
        row already at (camera, stream, start), if any."""
        if self.engine.dialect.name == "postgresql":
            s.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
                      {"k": f"segments/{rec.camera_id}/{rec.stream}"})
        else:
            # A write as the first statement takes SQLite's database write lock, so
            # nothing can slip in between the overlap check and the insert.
            s.execute(update(CameraLeaseRow).where(CameraLeaseRow.camera_id == rec.camera_id)
                      .values(heartbeat_us=CameraLeaseRow.heartbeat_us))
        return s.scalar(select(SegmentRow).where(
            SegmentRow.camera_id == rec.camera_id, SegmentRow.stream == rec.stream,
            SegmentRow.start_us == rec.start_us))

    def claims(self, camera_id: str, stream: str, start_us: int, end_us: int,
               fence: Fence | None = None) -> list[Claim]:
        """What of ``[start_us, end_us)`` a segment recorded under ``fence`` may not
        cover (a read without locks: the uploader plans with it, ``add_segment``
        checks again)."""
        with self.session() as s:
            return self._claims(s, camera_id, stream, start_us, end_us, fence)[1]

    def _claims(self, s: Session, camera_id: str, stream: str, start_us: int, end_us: int,
                fence: Fence | None) -> tuple[tuple[str, int] | None, list[Claim]]:
        out: list[Claim] = []
        holder: tuple[str, int] | None = None
        if fence is not None:
            q = select(CameraLeaseRow.worker_id, CameraLeaseRow.epoch, CameraLeaseRow.acquired_us).where(
                CameraLeaseRow.camera_id == camera_id)
            if self.engine.dialect.name == "postgresql":
                # FOR SHARE: this worker's other uploads are not blocked; an acquirer's
                # UPDATE waits until this transaction ends.
                q = q.with_for_update(read=True)
            lease = s.execute(q).first()
            if lease is not None:
                holder = (lease[0], lease[1])
                if holder != fence and end_us > lease[2]:
                    out.append(Claim(max(start_us, lease[2]), end_us, "taken_over",
                                     f"recorded by worker {lease[0]!r} (epoch {lease[1]}) since its takeover; "
                                     f"worker {fence[0]!r} had epoch {fence[1]}"))
        rows = s.execute(
            select(SegmentRow.start_us, SegmentRow.end_us, SegmentRow.worker_id).where(
                SegmentRow.camera_id == camera_id, SegmentRow.stream == stream,
                SegmentRow.start_us < end_us, SegmentRow.start_us > start_us - MAX_SEGMENT_US,
                SegmentRow.end_us > start_us)
            .order_by(SegmentRow.start_us)
        ).all()
        for a, b, worker in rows:
            out.append(Claim(max(a, start_us), min(b, end_us), "indexed",
                             f"already indexed [{a}, {b}) by worker {worker!r}"))
        return holder, out

    def add_quarantine(self, camera_id: str, stream: str, start_us: int, end_us: int, *, object_key: str,
                       sha256: str, size: int, worker_id: str, epoch: int | None, reason: str,
                       detail: str) -> int:
        """Record video kept under ``quarantine/`` because its time was already claimed."""
        with self.session() as s, s.begin():
            row = QuarantineRow(camera_id=camera_id, stream=stream, start_us=start_us, end_us=end_us,
                                object_key=object_key, sha256=sha256, bytes=size, worker_id=worker_id, epoch=epoch,
                                reason=reason, detail=detail, created_us=now_us())
            s.add(row)
            s.flush()
            return row.id

    def quarantined(self, camera_id: str | None = None) -> list[QuarantineRow]:
        """Quarantined pieces (of one camera, or all), oldest first."""
        q = select(QuarantineRow)
        if camera_id is not None:
            q = q.where(QuarantineRow.camera_id == camera_id)
        with self.session() as s:
            return list(s.scalars(q.order_by(QuarantineRow.camera_id, QuarantineRow.stream, QuarantineRow.start_us)))

    def references(self, camera_id: str, stream: str, start_us: int, object_key: str) -> bool:
        """True if the row for (camera, stream, start) points at ``object_key`` (a key
        names its camera, stream and start, so only that row can; the lookup uses the
        unique index)."""
        with self.session() as s:
            row = s.scalar(select(SegmentRow).where(
                SegmentRow.camera_id == camera_id, SegmentRow.stream == stream, SegmentRow.start_us == start_us))
        return row is not None and row.object_key == object_key

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

    def delete_segments(self, rows: Sequence[SegmentRow]) -> None:
        """Delete these rows (found by their natural key: on PostgreSQL ``id`` has no index)."""
        with self.session() as s, s.begin():
            for r in rows:
                s.execute(delete(SegmentRow).where(SegmentRow.camera_id == r.camera_id, SegmentRow.stream == r.stream,
                                                   SegmentRow.start_us == r.start_us))

    def segment_count(self) -> int:
        with self.session() as s:
            return s.scalar(select(func.count()).select_from(SegmentRow)) or 0

    # -- gaps -----------------------------------------------------------------

    def open_gap(self, camera_id: str, stream: str, start_us: int, reason: str, detail: str = "") -> GapRef:
        """Start a gap that is still going on; returns its ref for ``close_gap``."""
        _check_reason(reason)
        with self.session() as s, s.begin():
            row = GapRow(camera_id=camera_id, stream=stream, start_us=start_us, end_us=None, reason=reason, detail=detail)
            s.add(row)
            s.flush()
            return row.ref

    def set_gap_reason(self, gap: GapRef, reason: str, detail: str = "") -> None:
        """Change why a gap happened (the cause is often known only after it started).
        ``KeyError`` if there is no such gap."""
        _check_reason(reason)
        with self.session() as s, s.begin():
            done = s.execute(update(GapRow).where(GapRow.id == gap.id, GapRow.start_us == gap.start_us)
                             .values(reason=reason, detail=detail))
            if done.rowcount == 0:  # type: ignore[attr-defined]
                raise KeyError(f"gap {gap.id} (start {gap.start_us}) is not in the index")

    def close_gap(self, gap: GapRef, end_us: int) -> None:
        """End gap ``gap`` at ``end_us``. ``KeyError`` if there is no such gap,
        ``ValueError`` if ``end_us`` is before its start."""
        if end_us < gap.start_us:
            raise ValueError(f"gap {gap.id}: end {end_us} is before its start {gap.start_us}")
        with self.session() as s, s.begin():
            # By the whole key: on PostgreSQL only the partition of the gap's start month is read.
            done = s.execute(update(GapRow).where(GapRow.id == gap.id, GapRow.start_us == gap.start_us)
                             .values(end_us=end_us))
            if done.rowcount == 0:  # type: ignore[attr-defined]
                raise KeyError(f"gap {gap.id} (start {gap.start_us}) is not in the index")

    def add_gap(self, camera_id: str, stream: str, start_us: int, end_us: int, reason: str, detail: str = "") -> GapRef:
        """Record a finished gap ``[start_us, end_us)``; returns its ref."""
        _check_reason(reason)
        if end_us < start_us:
            raise ValueError(f"gap end {end_us} is before its start {start_us}")
        with self.session() as s, s.begin():
            row = GapRow(camera_id=camera_id, stream=stream, start_us=start_us, end_us=end_us, reason=reason, detail=detail)
            s.add(row)
            s.flush()
            return row.ref

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


_SOURCE_COLUMNS = ("init_sha256", "codec", "width", "height", "audio_codec", "worker_id", "origin")


def _source_key(rec: SegmentRecord) -> tuple:  # type: ignore[type-arg]
    return (rec.init_sha256, rec.codec, rec.width, rec.height, rec.audio_codec or "", rec.worker_id, rec.origin)


def _stored_key(rec: SegmentRecord) -> str | None:
    """The key to keep in the row: None when ``segment_key`` derives it from the row (it
    always does for what the uploader writes), saving ~60 bytes a row."""
    derived = segment_key(rec.camera_id, rec.stream, rec.start_us, (rec.end_us - rec.start_us) // 1000)
    return None if rec.object_key == derived else rec.object_key


def _check_reason(reason: str) -> None:
    if reason not in GAP_REASONS:
        raise ValueError(f"unknown gap reason {reason!r}; one of {', '.join(GAP_REASONS)}")
