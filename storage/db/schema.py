"""The index's tables (SQLAlchemy 2). Alembic migrations in ``storage/db/migrations`` create them.

Times are integers in microseconds since the Unix epoch, UTC: exact, sortable,
and the same on SQLite and PostgreSQL. See docs/recording.md for the time model.
"""

from __future__ import annotations

import builtins
from typing import Any, NamedTuple

from sqlalchemy import (BigInteger, Boolean, Dialect, Float, ForeignKey, Index, Integer, LargeBinary, SmallInteger,
                        String, Text, TypeDecorator, UniqueConstraint, case, cast, select)
from sqlalchemy.ext.hybrid import Comparator, hybrid_property
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# SQLite only makes INTEGER PRIMARY KEY an auto-increment rowid; BigInteger on PostgreSQL.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class HexDigest(TypeDecorator[str]):
    """A SHA-256 digest stored as its 32 bytes, seen from Python as 64 hex characters
    (half the row space of hex text; migration 0015)."""

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> bytes | None:
        return None if value is None else bytes.fromhex(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else bytes(value).hex()


class RegionRow(Base):
    __tablename__ = "regions"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    parent: Mapped[str | None] = mapped_column(ForeignKey("regions.code"), index=True)


class CameraRow(Base):
    __tablename__ = "cameras"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    region: Mapped[str] = mapped_column(ForeignKey("regions.code"), index=True)
    main_url: Mapped[str] = mapped_column(Text)
    sub_url: Mapped[str | None] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    retention_days: Mapped[int] = mapped_column(Integer, default=30)
    # Admin override of the 30-day retention floor (migration 0005).
    retention_override: Mapped[bool] = mapped_column(Boolean, default=False)
    transcode: Mapped[str] = mapped_column(String(16), default="none")
    rtsp_transport: Mapped[str] = mapped_column(String(8), default="tcp")
    puller: Mapped[str | None] = mapped_column(String(8), nullable=True, default=None)
    # "rtsp", or "gb28181" for a GB/T 28181 device's channel (main_url "" then; migration 0008).
    source: Mapped[str] = mapped_column(String(16), default="rtsp", server_default="rtsp")
    gb_device_id: Mapped[str | None] = mapped_column(String(20), index=True)
    gb_civil_code: Mapped[str | None] = mapped_column(String(32))
    # Bumped on every change so running processes see edits without a restart.
    updated_us: Mapped[int] = mapped_column(BigInteger)


class RegistryStateRow(Base):
    """One row (id 1): ``changes`` counts every camera add, edit and removal.

    ``Registry.version()`` reads it; unlike timestamps it never repeats, even when
    the newest camera is removed or two edits fall in one clock tick.
    """

    __tablename__ = "registry_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    changes: Mapped[int] = mapped_column(BigInteger)


class InitSegmentRow(Base):
    """fMP4 init segments (ftyp+moov), shared by every segment with the same codec setup.

    Kept in the index so playback and export need no reads of segment headers.
    """

    __tablename__ = "init_segments"

    sha256: Mapped[str] = mapped_column(HexDigest, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


STREAM_CODES = {"main": 0, "sub": 1}
_STREAM_NAMES = {v: k for k, v in STREAM_CODES.items()}


class StreamCode(TypeDecorator[str]):
    """A camera stream ("main" or "sub") stored as a smallint (migration 0016)."""

    impl = SmallInteger
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> int | None:
        if value is None:
            return None
        try:
            return STREAM_CODES[value]
        except KeyError:
            raise ValueError(f"stream {value!r}: a segment's stream is one of {', '.join(STREAM_CODES)}") from None

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else _STREAM_NAMES[value]


def stream_name(column: Any) -> Any:
    """SQL: the stream's name ("main", "sub") from a ``StreamCode`` column, to compare it
    with a text column such as ``holds.stream``."""
    return case({code: name for name, code in STREAM_CODES.items()}, value=cast(column, SmallInteger))


class EmptyNoneText(TypeDecorator[str]):
    """None stored as "", so the row has no NULL and so no null bitmap (8 bytes a row on
    PostgreSQL once any column is NULL; migration 0016)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str:
        return "" if value is None else value

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        return value or None


class EmptyNoneDigest(TypeDecorator[str]):
    """A SHA-256 digest or None, stored as its 32 bytes or as b"" (no NULL: see ``EmptyNoneText``)."""

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> bytes:
        return b"" if value is None else bytes.fromhex(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        return bytes(value).hex() if value else None


class SegmentCameraRow(Base):
    """The number a camera's segment rows carry instead of its id (4 bytes against ~21 in
    every row and in the primary key; migration 0016). Never deleted, never renumbered."""

    __tablename__ = "segment_cameras"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    camera_id: Mapped[str] = mapped_column(String(64), unique=True)


class SegmentSourceRow(Base):
    """What consecutive segments of a camera stream share: init segment, codec, picture
    size, audio codec, the worker that recorded them and their origin. A segment row
    carries its number (``source_seq``, 4 bytes against ~60; migration 0016). Rows are
    never deleted (a few per camera stream and worker)."""

    __tablename__ = "segment_sources"
    __table_args__ = (UniqueConstraint("init_sha256", "codec", "width", "height", "audio_codec", "worker_id",
                                       "origin", name="uq_segment_sources"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    init_sha256: Mapped[str] = mapped_column(HexDigest)
    codec: Mapped[str] = mapped_column(String(16))
    width: Mapped[int] = mapped_column(SmallInteger)
    height: Mapped[int] = mapped_column(SmallInteger)
    # "" for none (a unique constraint does not match NULLs).
    audio_codec: Mapped[str] = mapped_column(String(16))
    worker_id: Mapped[str] = mapped_column(String(64))
    origin: Mapped[str] = mapped_column(String(16))


class _CameraIdComparator(Comparator[str]):
    """``SegmentRow.camera_id == x`` as ``camera_seq = (SELECT seq … WHERE camera_id = x)``,
    so the primary key (camera_seq, stream, start_us) is used."""

    def __init__(self, cls: Any):
        super().__init__(cls.camera_seq)
        self.cls = cls

    def __clause_element__(self) -> Any:
        # In a select list or GROUP BY: the id by a correlated lookup (a small table).
        return (select(SegmentCameraRow.camera_id).where(SegmentCameraRow.seq == self.cls.camera_seq)
                .scalar_subquery())

    def __eq__(self, other: Any) -> Any:  # type: ignore[override]
        if isinstance(other, str):
            return self.cls.camera_seq == (select(SegmentCameraRow.seq)
                                           .where(SegmentCameraRow.camera_id == other).scalar_subquery())
        return self.__clause_element__() == other

    def in_(self, other: Any) -> Any:
        return self.cls.camera_seq.in_(select(SegmentCameraRow.seq).where(SegmentCameraRow.camera_id.in_(other)))


def _source_attr(name: str) -> Any:
    """A ``SegmentRow`` attribute read from its source row (``segment_sources``)."""

    def get(self: SegmentRow) -> Any:
        v = getattr(self.source, name)
        return None if name == "audio_codec" and v == "" else v

    def expr(cls: type[SegmentRow]) -> Any:
        return (select(getattr(SegmentSourceRow, name)).where(SegmentSourceRow.seq == cls.source_seq)
                .scalar_subquery())

    return hybrid_property(get, expr=expr)


class SegmentRow(Base):
    """One stored segment. Kept small (migrations 0015 and 0016, docs/sizing.md "Index row"):
    the camera by its number (``segment_cameras``), what consecutive segments share by a
    source number (``segment_sources``: init segment, codec, size, audio, worker, origin),
    the stream as a smallint, digests as bytes, the keyframe table packed, no NULLs (the
    object key is "" when ``segment_key`` derives it), columns ordered so nothing is padded.
    ``camera_id``, ``codec``, ``init_sha256``, ``worker_id`` … read as before (the two small
    tables are joined when a row is loaded). On PostgreSQL the table is partitioned by month
    of ``start_us``; its primary key is ``(camera_seq, stream, start_us) INCLUDE (end_us)``
    (idempotency and covering timeline index in one), with a BRIN index on ``start_us``
    for retention; ``id`` is unique by its sequence but not indexed there."""

    __tablename__ = "segments"
    __table_args__ = (
        Index("ix_segments_camera_time", "camera_seq", "stream", "start_us", unique=True),
        Index("ix_segments_start", "start_us"),
        # Covers a timeline (start and end only) so it reads the index alone.
        Index("ix_segments_timeline", "camera_seq", "stream", "start_us", "end_us"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    start_us: Mapped[int] = mapped_column(BigInteger)
    end_us: Mapped[int] = mapped_column(BigInteger)
    bytes: Mapped[int] = mapped_column(BigInteger)
    created_us: Mapped[int] = mapped_column(BigInteger)
    camera_seq: Mapped[int] = mapped_column(ForeignKey("segment_cameras.seq"))
    source_seq: Mapped[int] = mapped_column(ForeignKey("segment_sources.seq"))
    # Wall clock minus media clock at the segment's end, in microseconds.
    drift_us: Mapped[int] = mapped_column(Integer, default=0)
    stream: Mapped[str] = mapped_column(StreamCode)
    sha256: Mapped[str] = mapped_column(HexDigest)
    prev_sha256: Mapped[str | None] = mapped_column(EmptyNoneDigest, nullable=False)
    # Packed keyframe table, see storage.index.keyframes.
    keyframes: Mapped[builtins.bytes] = mapped_column(LargeBinary)
    # None (stored ""): the key is segment_key(camera_id, stream, start_us, duration ms), see ``object_key``.
    stored_key: Mapped[str | None] = mapped_column("object_key", EmptyNoneText, nullable=False)

    camera: Mapped[SegmentCameraRow] = relationship(lazy="joined", innerjoin=True)
    source: Mapped[SegmentSourceRow] = relationship(lazy="joined", innerjoin=True)

    @hybrid_property
    def camera_id(self) -> str:
        return self.camera.camera_id

    @camera_id.inplace.comparator
    @classmethod
    def _camera_id_comparator(cls) -> _CameraIdComparator:
        return _CameraIdComparator(cls)

    codec = _source_attr("codec")
    width = _source_attr("width")
    height = _source_attr("height")
    audio_codec = _source_attr("audio_codec")
    init_sha256 = _source_attr("init_sha256")
    worker_id = _source_attr("worker_id")
    # "live" (recorded as it happened) or "device" (backfilled from the device's own recording:
    # ``sharpeyes gb backfill``, migration 0010); exports name it per segment.
    origin = _source_attr("origin")

    @property
    def object_key(self) -> str:
        if self.stored_key is not None:
            return self.stored_key
        from storage.objects.open import segment_key  # storage.objects imports nothing of the index

        return segment_key(self.camera_id, self.stream, self.start_us, (self.end_us - self.start_us) // 1000)


class QuarantineRow(Base):
    """Video refused by time fencing (its time was already claimed), kept in the object
    store under ``quarantine/`` instead of deleted, with why (migration 0014)."""

    __tablename__ = "quarantine"
    __table_args__ = (Index("ix_quarantine_camera_time", "camera_id", "stream", "start_us"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    camera_id: Mapped[str] = mapped_column(String(64))
    stream: Mapped[str] = mapped_column(String(8))
    start_us: Mapped[int] = mapped_column(BigInteger)
    end_us: Mapped[int] = mapped_column(BigInteger)
    object_key: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(BigInteger)
    worker_id: Mapped[str] = mapped_column(String(64))
    epoch: Mapped[int | None] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(32))  # "indexed" or "taken_over" (see storage.index.segments.Claim)
    detail: Mapped[str] = mapped_column(Text, default="")
    created_us: Mapped[int] = mapped_column(BigInteger)


class GapRef(NamedTuple):
    """What names one gap row: its id and its start (the partition key on PostgreSQL, where
    the primary key is ``(id, start_us)``, migration 0017). Updates carry both, so they
    touch the one partition of the month the gap started in."""

    id: int
    start_us: int


class GapRow(Base):
    """A span with no recording, and why. ``end_us`` is NULL while the gap is still open.
    On PostgreSQL the table is partitioned by month of ``start_us`` (migration 0017) and its
    primary key is ``(id, start_us)``; SQLite keeps ``id`` alone (its rowid). The mapper's
    identity is ``(id, start_us)`` on both, so ORM updates and deletes name the partition."""

    __tablename__ = "gaps"
    __table_args__ = (Index("ix_gaps_camera_time", "camera_id", "stream", "start_us"),)
    __mapper_args__ = {"primary_key": ["id", "start_us"]}

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    camera_id: Mapped[str] = mapped_column(String(64))
    stream: Mapped[str] = mapped_column(String(8))
    start_us: Mapped[int] = mapped_column(BigInteger)
    end_us: Mapped[int | None] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text, default="")

    @property
    def ref(self) -> GapRef:
        return GapRef(self.id, self.start_us)


GAP_REASONS = (
    "offline",
    "unauthorized",
    "network",
    "decode_error",
    "storage_unavailable",
    "worker_restart",
    "disabled",
    "unsupported",
    "retention",
    # GB/T 28181 channels (ingest/gb28181/media): the device is not registered or stopped its
    # keepalives; it answered our INVITE with an error or not at all; it accepted, but no media came.
    "device_offline",
    "invite_refused",
    "media_timeout",
)


# -- access control and audit ----------------------------------------------


class UserRow(Base):
    """A person who signs in. ``scope`` is a JSON list of region codes; ``["*"]`` is the whole county."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    # argon2id PHC string; never the password.
    password_hash: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(16))
    scope: Mapped[str] = mapped_column(Text, default='["*"]')
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_us: Mapped[int] = mapped_column(BigInteger)
    # Tokens issued before this instant are refused: bumped by passwd and disable.
    tokens_valid_after_us: Mapped[int] = mapped_column(BigInteger, default=0)


class ApiKeyRow(Base):
    """A long-lived key for a machine client. Only the key's SHA-256 is kept."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The first characters of the key, shown in listings so an admin can tell keys apart.
    prefix: Mapped[str] = mapped_column(String(16))
    role: Mapped[str] = mapped_column(String(16))
    scope: Mapped[str] = mapped_column(Text, default='["*"]')
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    created_us: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[str] = mapped_column(String(64), default="")
    # Refused from this instant on (None: keys made before keys expired; they get one on migration).
    expires_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class SignInSessionRow(Base):
    """One sign-in: its access and refresh tokens name it, sign-out revokes it.

    ``refresh_nonce`` is the id of the one refresh token that may still be used: a refresh
    rotates it, and a second use of an old refresh token (a stolen copy) revokes the session.
    """

    __tablename__ = "auth_sessions"
    __table_args__ = (Index("ix_auth_sessions_user", "user"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user: Mapped[str] = mapped_column(String(64))
    created_us: Mapped[int] = mapped_column(BigInteger)
    refresh_nonce: Mapped[str] = mapped_column(String(32))
    revoked_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    revoked_why: Mapped[str] = mapped_column(String(64), default="")


class AuditCheckpointRow(Base):
    """A signed statement "the audit chain had ``count`` rows ending at row ``audit_id`` with ``hash``".

    Signed with an Ed25519 key kept outside the database (``streams.access.anchor``): whoever
    can write the database can delete a checkpoint but not forge one, and the newest is also
    written to the object store (object lock where the bucket has it) and into every export.
    """

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    audit_id: Mapped[int] = mapped_column(BigInteger)
    count: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    time_us: Mapped[int] = mapped_column(BigInteger)
    key_id: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(Text)


class AuditRow(Base):
    """One access or change, append-only. ``hash`` covers the row and ``prev_hash`` (see streams.access.audit).

    ``prev_hash`` is unique: two writers racing for the same predecessor cannot
    both win, so the chain never forks.
    """

    __tablename__ = "audit"
    __table_args__ = (
        Index("ix_audit_time", "time_us"),
        Index("ix_audit_user_time", "user", "time_us"),
        Index("ix_audit_camera_time", "camera_id", "time_us"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    time_us: Mapped[int] = mapped_column(BigInteger)
    user: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    client_ip: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    camera_id: Mapped[str | None] = mapped_column(String(64))
    range_start_us: Mapped[int | None] = mapped_column(BigInteger)
    range_end_us: Mapped[int | None] = mapped_column(BigInteger)
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text, default="")
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64))


class ThumbnailRow(Base):
    """One small JPEG per camera stream per minute, for the playback scrubber (see storage.index.media)."""

    __tablename__ = "thumbnails"
    __table_args__ = (Index("ix_thumbnails_camera_time", "camera_id", "stream", "t_us", unique=True),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    camera_id: Mapped[str] = mapped_column(String(64))
    stream: Mapped[str] = mapped_column(String(8))
    t_us: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    jpeg: Mapped[bytes] = mapped_column(LargeBinary)


class MotionRow(Base):
    """Motion levels of one camera stream for one UTC minute: ``levels[i]`` (0..255) is
    second ``start_s + i``; 0 means no motion seen (or nothing analysed)."""

    __tablename__ = "motion"

    camera_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    stream: Mapped[str] = mapped_column(String(8), primary_key=True)
    start_s: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    levels: Mapped[bytes] = mapped_column(LargeBinary)


class MotionSettingsRow(Base):
    """Per-camera motion masks (JSON, see config.motion.MotionSettings) and sensitivity."""

    __tablename__ = "motion_settings"

    camera_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    settings: Mapped[str] = mapped_column(Text)
    updated_us: Mapped[int] = mapped_column(BigInteger)


# -- retention ----------------------------------------------------------------


class RetentionDeleteRow(Base):
    """An object whose index row the retention cleaner has removed but whose delete
    is not yet confirmed. Written in the row's delete transaction, removed after the
    object delete: after a crash the cleaner finishes these first, so no object
    outlives its row (see docs/reliability.md)."""

    __tablename__ = "retention_deletes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    object_key: Mapped[str] = mapped_column(Text)
    created_us: Mapped[int] = mapped_column(BigInteger)


# -- legal holds and evidence exports ------------------------------------------


class HoldRow(Base):
    """A legal hold: segments of ``camera_id`` overlapping ``[start_us, end_us)`` are kept
    from retention until the hold is released. ``stream`` NULL holds both streams."""

    __tablename__ = "holds"
    __table_args__ = (Index("ix_holds_camera_time", "camera_id", "start_us"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    camera_id: Mapped[str] = mapped_column(String(64))
    stream: Mapped[str | None] = mapped_column(String(8))
    start_us: Mapped[int] = mapped_column(BigInteger)
    end_us: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(64))
    created_us: Mapped[int] = mapped_column(BigInteger)
    released_by: Mapped[str | None] = mapped_column(String(64))
    released_us: Mapped[int | None] = mapped_column(BigInteger)


class ExportRow(Base):
    """An evidence export job: a clip and its signed manifest under ``exports/{id}/``."""

    __tablename__ = "exports"
    __table_args__ = (Index("ix_exports_creator_time", "created_by", "created_us"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    camera_id: Mapped[str] = mapped_column(String(64))
    stream: Mapped[str] = mapped_column(String(8))
    start_us: Mapped[int] = mapped_column(BigInteger)
    end_us: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(Text)
    allow_gaps: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[str] = mapped_column(String(64))
    created_us: Mapped[int] = mapped_column(BigInteger)
    # queued -> running -> done | failed
    status: Mapped[str] = mapped_column(String(16))
    # Progress in millionths (0..1_000_000): integers keep the row exact on every database.
    progress_ppm: Mapped[int] = mapped_column(Integer, default=0)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    clip_key: Mapped[str | None] = mapped_column(Text)
    manifest_key: Mapped[str | None] = mapped_column(Text)
    clip_sha256: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str] = mapped_column(Text, default="")
    finished_us: Mapped[int | None] = mapped_column(BigInteger)


# -- scale-out: leases, workers, published camera status --------------------


class CameraLeaseRow(Base):
    """Which ingest worker records a camera now. ``epoch`` is the fencing token: it
    grows by one on every change of owner, and the uploader indexes a segment only
    while its (worker, epoch) is still the row's (see ``SegmentIndex.add_segment``)."""

    __tablename__ = "camera_leases"
    __table_args__ = (Index("ix_camera_leases_worker", "worker_id"),)

    camera_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    worker_id: Mapped[str] = mapped_column(String(64), default="")
    epoch: Mapped[int] = mapped_column(BigInteger, default=0)
    # The lease is free once expires_us is in the past (a release sets it to now).
    expires_us: Mapped[int] = mapped_column(BigInteger, default=0)
    heartbeat_us: Mapped[int] = mapped_column(BigInteger, default=0)
    # When the current owner took it (owner's clock).
    acquired_us: Mapped[int] = mapped_column(BigInteger, default=0)


class WorkerRow(Base):
    """An ingest worker that heartbeats. Live while ``last_seen_us`` is within one lease TTL."""

    __tablename__ = "workers"

    worker_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_seen_us: Mapped[int] = mapped_column(BigInteger)
    # Most cameras this worker takes (0: no cap, only its fair share).
    capacity: Mapped[int] = mapped_column(Integer, default=0)
    # Cameras it held at its last heartbeat: others use it to see who is short.
    held: Mapped[int] = mapped_column(Integer, default=0)
    # Its HTTP base URL (live endpoints), for API nodes to redirect to.
    advertise_url: Mapped[str] = mapped_column(Text, default="")
    started_us: Mapped[int] = mapped_column(BigInteger, default=0)
    # A random token per running process (migration 0014): a second live process
    # with the same worker id sees another token and refuses to start.
    instance: Mapped[str] = mapped_column(String(32), default="")


class CameraStatusRow(Base):
    """A camera stream's status as its owning worker last published it, for API nodes
    that record nothing themselves. ``detail`` is ``CameraStatus.as_dict()`` as JSON."""

    __tablename__ = "camera_status"

    camera_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    stream: Mapped[str] = mapped_column(String(8), primary_key=True)
    worker_id: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    fps: Mapped[float] = mapped_column(Float, default=0.0)
    bitrate_bps: Mapped[float] = mapped_column(Float, default=0.0)
    last_error: Mapped[str] = mapped_column(Text, default="")  # redacted by the session
    detail: Mapped[str] = mapped_column(Text, default="{}")
    updated_us: Mapped[int] = mapped_column(BigInteger)


# -- GB/T 28181 devices --------------------------------------------------------


class GbDeviceRow(Base):
    """A GB/T 28181 device (IPC, NVR, lower platform) and its last known state, written by the
    SIP server's process so every API node sees it. ``password`` is sealed with the secret
    key (``SecretCipher``); empty: the device uses ``gb_password``. Times are microseconds."""

    __tablename__ = "gb_devices"

    device_id: Mapped[str] = mapped_column(String(20), primary_key=True)
    password: Mapped[str] = mapped_column(Text, default="")
    # Added by an operator (``gb device add``); False for devices let in by gb_password.
    added: Mapped[bool] = mapped_column(Boolean, default=False)
    # online | offline | unregistered | refused
    state: Mapped[str] = mapped_column(String(16), default="unregistered")
    reason: Mapped[str] = mapped_column(Text, default="")
    transport: Mapped[str] = mapped_column(String(8), default="")
    source_host: Mapped[str] = mapped_column(String(64), default="")
    source_port: Mapped[int] = mapped_column(Integer, default=0)
    contact: Mapped[str] = mapped_column(Text, default="")
    expires_us: Mapped[int] = mapped_column(BigInteger, default=0)
    registered_us: Mapped[int] = mapped_column(BigInteger, default=0)
    last_keepalive_us: Mapped[int] = mapped_column(BigInteger, default=0)
    keepalive_interval_s: Mapped[float] = mapped_column(Float, default=0.0)
    name: Mapped[str] = mapped_column(Text, default="")
    manufacturer: Mapped[str] = mapped_column(Text, default="")
    model: Mapped[str] = mapped_column(Text, default="")
    firmware: Mapped[str] = mapped_column(Text, default="")
    channels: Mapped[int] = mapped_column(Integer, default=0)
    # JSON: the last DeviceStatus answer, catalog notes (skipped items, partial catalogs).
    status_json: Mapped[str] = mapped_column(Text, default="{}")
    catalog_json: Mapped[str] = mapped_column(Text, default="{}")
    # The media side's last INVITE: JSON {"time_us", "channel", "outcome", "reason"} (ingest/gb28181 media).
    last_invite_json: Mapped[str] = mapped_column(Text, default="{}")
    # udp | tcp-passive | tcp-active; "" uses gb_media_transport (migration 0014).
    media_transport: Mapped[str] = mapped_column(String(16), default="", server_default="")
    # The process (worker id) whose SIP server the device registered with.
    worker_id: Mapped[str] = mapped_column(String(64), default="")
    updated_us: Mapped[int] = mapped_column(BigInteger, default=0)


class GbUpstreamRow(Base):
    """An upper GB/T 28181 platform we cascade to (city or province): we REGISTER to it, answer
    its Catalog with the cameras of ``regions`` (JSON list of region codes) and its INVITEs from
    the live hub. ``password`` is sealed with the secret key. ``state``: registered | failed |
    connecting, with ``reason``. Times are microseconds."""

    __tablename__ = "gb_upstreams"

    platform_id: Mapped[str] = mapped_column(String(20), primary_key=True)
    domain: Mapped[str] = mapped_column(String(20))
    host: Mapped[str] = mapped_column(String(128))
    port: Mapped[int] = mapped_column(Integer)
    password: Mapped[str] = mapped_column(Text, default="")
    transport: Mapped[str] = mapped_column(String(8), default="udp")
    regions: Mapped[str] = mapped_column(Text, default="[]")
    state: Mapped[str] = mapped_column(String(16), default="connecting")
    reason: Mapped[str] = mapped_column(Text, default="")
    registered_us: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_us: Mapped[int] = mapped_column(BigInteger, default=0)
