"""``SegmentIndex``: every recorded second and every gap, per camera and stream."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from sqlalchemy import (BigInteger, Connection, Engine, Integer, Text, bindparam, column, delete, func,
                        TextualSelect, insert, or_, select, text, update)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.attributes import set_committed_value

from config.times import now_us
from storage.db.engine import single_statements
from storage.objects.open import segment_key
from storage.db.schema import (GAP_REASONS, STREAM_CODES, CameraLeaseRow, EmptyNoneDigest, GapRef, GapRow,
                               InitSegmentRow, QuarantineRow, SegmentCameraRow, SegmentRow, SegmentSourceRow)

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
        self._one = single_statements(engine)
        # Numbers of cameras and sources, once committed (they are never renumbered).
        self._camera_seqs: dict[str, int] = {}
        self._source_seqs: dict[tuple, int] = {}  # type: ignore[type-arg]

    def session(self) -> Session:
        return self._sessions()

    # -- segments -------------------------------------------------------------

    def _insert_ignore(self, c: Connection, table, values: dict, conflict: Sequence[str]) -> None:  # type: ignore[no-untyped-def]
        """INSERT unless a row with the same ``conflict`` columns exists (atomically:
        two writers racing on the same key both succeed, one row results)."""
        dialect = self.engine.dialect.name
        ins = pg_insert if dialect == "postgresql" else sqlite_insert
        c.execute(ins(table).values(**values).on_conflict_do_nothing(index_elements=list(conflict)))

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
        inserted link (see docs/scale.md, "Hash chain").

        Three statements once the camera and source numbers are known: the lock, one
        read (lease, overlapping rows and chain link together: ``_look``) and the
        insert. The ORM version took eight and most of a simulated worker's CPU
        (tests/bench/county_sim.py)."""
        _check_stream(rec.stream)
        with self.engine.begin() as c:
            self._lock(c, rec)
            look = self._look(c, rec.camera_id, rec.stream, rec.start_us, rec.end_us, fence)
            if look.same_key == rec.object_key:
                same = self._load(c, rec.camera_id, rec.stream, rec.start_us)
                if same is not None:
                    return same
            claims = look.claims(rec.start_us, rec.end_us, fence)
            if claims:
                raise FencedOut(rec.camera_id, rec.stream, (rec.start_us, rec.end_us), fence, look.holder, claims)
            if look.camera_seq is not None:
                self._camera_seqs[rec.camera_id] = look.camera_seq  # numbered by another worker
            camera = self._camera_row(c, rec.camera_id)
            source = self._source_row(c, rec)
            row = SegmentRow(
                camera_seq=camera.seq, source_seq=source.seq, stream=rec.stream,
                start_us=rec.start_us, end_us=rec.end_us, stored_key=_stored_key(rec), bytes=rec.bytes,
                sha256=rec.sha256, prev_sha256=look.prev_sha256, keyframes=rec.keyframes, drift_us=rec.drift_us,
                created_us=now_us(),
            )
            row.id = c.execute(_INSERT_SEGMENT, {col: getattr(row, attr) for col, attr in _SEGMENT_COLUMNS}).scalar_one()
        # The rows are known: set them without a load.
        set_committed_value(row, "camera", camera)
        set_committed_value(row, "source", source)
        self._camera_seqs[rec.camera_id] = camera.seq
        self._source_seqs[_source_key(rec)] = source.seq
        return row

    def _camera_row(self, c: Connection, camera_id: str) -> SegmentCameraRow:
        """The camera's number row, made on its first segment."""
        seq = self._camera_seqs.get(camera_id)
        if seq is None:
            self._insert_ignore(c, SegmentCameraRow.__table__, {"camera_id": camera_id}, ["camera_id"])
            seq = c.scalar(select(SegmentCameraRow.seq).where(SegmentCameraRow.camera_id == camera_id))
        return SegmentCameraRow(seq=seq, camera_id=camera_id)

    def _source_row(self, c: Connection, rec: SegmentRecord) -> SegmentSourceRow:
        """The number of what this segment shares with its neighbours, made when new
        (with its init segment: a source row known to this index was committed with its
        init segment row, and neither is ever deleted)."""
        key = _source_key(rec)
        values = dict(zip(_SOURCE_COLUMNS, key))
        seq = self._source_seqs.get(key)
        if seq is None:
            self._insert_ignore(
                c, InitSegmentRow.__table__, {"sha256": rec.init_sha256, "data": rec.init_data}, ["sha256"])
            self._insert_ignore(c, SegmentSourceRow.__table__, values, list(_SOURCE_COLUMNS))
            seq = c.scalar(select(SegmentSourceRow.seq).where(
                *(getattr(SegmentSourceRow, c) == v for c, v in values.items())))
        return SegmentSourceRow(seq=seq, **values)

    def _lock(self, c: Connection, rec: SegmentRecord) -> None:
        """Serialise writers of one camera stream for this transaction."""
        if self.engine.dialect.name == "postgresql":
            c.execute(_PG_LOCK, {"k": f"segments/{rec.camera_id}/{rec.stream}"})
        else:
            # A write as the first statement takes SQLite's database write lock, so
            # nothing can slip in between the overlap check and the insert.
            c.execute(_SQLITE_LOCK, {"cam": rec.camera_id})

    def _load(self, c: Connection, camera_id: str, stream: str, start_us: int) -> SegmentRow | None:
        """The whole row at (camera, stream, start), if any."""
        with Session(bind=c, expire_on_commit=False) as s:
            return s.scalar(select(SegmentRow).where(
                SegmentRow.camera_id == camera_id, SegmentRow.stream == stream, SegmentRow.start_us == start_us))

    def _look(self, c: Connection, camera_id: str, stream: str, start_us: int, end_us: int,
              fence: Fence | None) -> _Look:
        """One statement: the lease (with a fence; ``FOR SHARE`` on PostgreSQL), the rows
        of the camera stream that may overlap ``[start_us, end_us)`` or start at
        ``start_us``, the sha256 of the row just before ``start_us``, and the camera's
        number (so a worker that takes a camera over needs no statement to learn it)."""
        stmt = _look_statement(self.engine.dialect.name, fence is not None)
        params = {"cam": camera_id, "stream": _stream_code(stream), "start": start_us,
                  "since": start_us - MAX_SEGMENT_US, "upto": max(end_us, start_us + 1)}
        look = _Look(camera_id, stream, start_us)
        for kind, n1, n2, t1, t2, dig in c.execute(stmt, params):
            if kind == 0:
                look.lease = (t1, n1, n2)
            elif kind == 1:
                look.rows.append((n1, n2, t1, t2 or None))
            elif kind == 2:
                look.prev_sha256 = dig
            else:
                look.camera_seq = n1
        return look

    def claims(self, camera_id: str, stream: str, start_us: int, end_us: int,
               fence: Fence | None = None) -> list[Claim]:
        """What of ``[start_us, end_us)`` a segment recorded under ``fence`` may not
        cover (a read without locks: the uploader plans with it, ``add_segment``
        checks again)."""
        _check_stream(stream)
        with self.engine.connect() as c:
            return self._look(c, camera_id, stream, start_us, end_us, fence).claims(start_us, end_us, fence)

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
        """Start a gap that is still going on; returns its ref for ``close_gap``.
        One statement (no transaction around it on PostgreSQL: ``single_statements``)."""
        _check_reason(reason)
        with self._one.begin() as c:
            gap_id = c.execute(_INSERT_GAP, {"camera_id": camera_id, "stream": stream, "start_us": start_us,
                                             "end_us": None, "reason": reason, "detail": detail}).scalar_one()
        return GapRef(int(gap_id), start_us)

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
        # One statement (no transaction around it on PostgreSQL: ``single_statements``).
        with self._one.begin() as s:
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


@dataclass
class _Look:
    """What ``SegmentIndex._look`` read about one camera stream around a new segment."""

    camera_id: str
    stream: str
    start_us: int
    lease: tuple[str, int, int] | None = None  # (worker, epoch, acquired_us), read when fenced
    rows: list[tuple[int, int, str, str | None]] = field(default_factory=list)  # start, end, worker, stored key
    prev_sha256: str | None = None
    camera_seq: int | None = None  # None until the camera's first segment numbers it

    @property
    def holder(self) -> tuple[str, int] | None:
        return None if self.lease is None else (self.lease[0], self.lease[1])

    @property
    def same_key(self) -> str | None:
        """The object key of the row starting at ``start_us``, if there is one."""
        for a, b, _worker, stored in self.rows:
            if a == self.start_us:
                return stored if stored is not None else segment_key(self.camera_id, self.stream, a, (b - a) // 1000)
        return None

    def claims(self, start_us: int, end_us: int, fence: Fence | None) -> list[Claim]:
        """What of ``[start_us, end_us)`` is claimed: after a takeover of the lease (when
        ``fence`` is no longer the holder) and by overlapping rows, in time order."""
        out: list[Claim] = []
        if fence is not None and self.lease is not None:
            worker, epoch, acquired = self.lease
            if (worker, epoch) != fence and end_us > acquired:
                out.append(Claim(max(start_us, acquired), end_us, "taken_over",
                                 f"recorded by worker {worker!r} (epoch {epoch}) since its takeover; "
                                 f"worker {fence[0]!r} had epoch {fence[1]}"))
        for a, b, worker, _stored in sorted(self.rows):
            if start_us - MAX_SEGMENT_US < a < end_us and b > start_us:
                out.append(Claim(max(a, start_us), min(b, end_us), "indexed",
                                 f"already indexed [{a}, {b}) by worker {worker!r}"))
        return out


_SEGMENT_COLUMNS = tuple((c.name, c.key if c.name != "object_key" else "stored_key")
                         for c in SegmentRow.__table__.c if c.name != "id")
_INSERT_SEGMENT = insert(SegmentRow.__table__).returning(SegmentRow.__table__.c.id)
_INSERT_GAP = insert(GapRow.__table__).returning(GapRow.__table__.c.id)
_PG_LOCK = text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))")
_SQLITE_LOCK = update(CameraLeaseRow).where(CameraLeaseRow.camera_id == bindparam("cam")).values(
    heartbeat_us=CameraLeaseRow.heartbeat_us)

# The lease (kind 0), the rows that may overlap or start at :start (kind 1: the range
# bounds keep it a short scan of the primary key; the exact test is ``_Look.claims``),
# the chain link (kind 2), the camera's number (kind 3). One round trip instead of five.
_LOOK_SQL = """
SELECT 1 AS kind, s.start_us AS n1, s.end_us AS n2, src.worker_id AS t1, s.object_key AS t2, {no_digest} AS dig
  FROM segments s JOIN segment_sources src ON src.seq = s.source_seq
 WHERE s.camera_seq = (SELECT seq FROM segment_cameras WHERE camera_id = :cam) AND s.stream = :stream
   AND s.start_us > :since AND s.start_us < :upto AND (s.end_us > :start OR s.start_us = :start)
UNION ALL
SELECT 2, 0, 0, '', '', p.sha256 FROM (
  SELECT sha256 FROM segments
   WHERE camera_seq = (SELECT seq FROM segment_cameras WHERE camera_id = :cam) AND stream = :stream
     AND start_us < :start
   ORDER BY start_us DESC LIMIT 1) p
"""
_LOOK_CAMERA_SQL = """
UNION ALL
SELECT 3, seq, 0, '', '', {no_digest} FROM segment_cameras WHERE camera_id = :cam
"""
_LOOK_LEASE_SQL = """
UNION ALL
SELECT 0, l.epoch, l.acquired_us, l.worker_id, '', {no_digest}
  FROM (SELECT epoch, acquired_us, worker_id FROM camera_leases WHERE camera_id = :cam{for_share}) l
"""
_LOOK_STATEMENTS: dict[tuple[str, bool], TextualSelect] = {}


def _look_statement(dialect: str, with_lease: bool) -> TextualSelect:
    stmt = _LOOK_STATEMENTS.get((dialect, with_lease))
    if stmt is None:
        pg = dialect == "postgresql"
        # FOR SHARE: this worker's other uploads are not blocked; an acquirer's UPDATE
        # waits until this transaction ends.
        sql = _LOOK_SQL + _LOOK_CAMERA_SQL + (_LOOK_LEASE_SQL if with_lease else "")
        sql = sql.format(no_digest="''::bytea" if pg else "X''", for_share=" FOR SHARE" if pg else "")
        stmt = text(sql).columns(column("kind", Integer), column("n1", BigInteger), column("n2", BigInteger),
                                 column("t1", Text), column("t2", Text), column("dig", EmptyNoneDigest))
        _LOOK_STATEMENTS[(dialect, with_lease)] = stmt
    return stmt


def _stream_code(stream: str) -> int:
    return STREAM_CODES[stream]


def _check_stream(stream: str) -> None:
    if stream not in STREAM_CODES:
        raise ValueError(f"stream {stream!r}: a segment's stream is one of {', '.join(STREAM_CODES)}")
