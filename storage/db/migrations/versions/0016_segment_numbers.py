"""the ~280-byte segment row: camera and source by number, stream as smallint, keyframe table
version 2, no NULLs; on PostgreSQL copied in batches without a long lock

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01

A segment row now carries ``camera_seq`` (``segment_cameras``) instead of the camera id,
``source_seq`` (``segment_sources``: init segment, codec, size, audio codec, worker, origin)
instead of those six columns, the stream as a smallint, the keyframe table repacked
(``storage.index.keyframes`` version 2), "" instead of NULL for a derived object key and a
first link (no null bitmap), and its columns ordered so none is padded.

PostgreSQL: as 0015, a new partitioned table (the same months) is filled in batches of
``BATCH`` rows, each its own short transaction, in primary-key order, while workers keep
writing the old one. Rows written meanwhile are logged by a trigger (their keys, in
``segments_0016_log``); the final step locks the old table against writes (``EXCLUSIVE``,
reads go on), copies the logged rows, and swaps the names. As for 0015, pause retention
during the upgrade of a large index. SQLite: the table is rebuilt in one transaction.

Figures for 1 M rows are in docs/sizing.md ("Index row").
"""
from __future__ import annotations

import logging
import time
from typing import Any, Sequence

import sqlalchemy as sa
from alembic import op

from storage.index.keyframes import _pack_v1, pack_keyframes, unpack_keyframes

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

log = logging.getLogger("storage.db.migrations.0016")

BATCH = 20_000
STREAMS = {"main": 0, "sub": 1}
_OLD = ("id", "camera_id", "stream", "start_us", "end_us", "object_key", "bytes", "codec", "width", "height",
        "audio_codec", "sha256", "prev_sha256", "init_sha256", "keyframes", "drift_us", "worker_id", "origin",
        "created_us")
_NEW = ("id", "start_us", "end_us", "bytes", "created_us", "camera_seq", "source_seq", "drift_us", "stream", "sha256",
        "prev_sha256", "keyframes", "object_key")
_SOURCE = ("init_sha256", "codec", "width", "height", "audio_codec", "worker_id", "origin")
# Column order is alignment order: 8-byte integers, then 4-, then 2-byte, then the byte strings.
_PG_NEW = """
CREATE TABLE segments_new (
    id bigint NOT NULL DEFAULT nextval('{seq}'),
    start_us bigint NOT NULL,
    end_us bigint NOT NULL,
    bytes bigint NOT NULL,
    created_us bigint NOT NULL,
    camera_seq integer NOT NULL CONSTRAINT segments_camera_seq_fkey REFERENCES segment_cameras (seq),
    source_seq integer NOT NULL CONSTRAINT segments_source_seq_fkey REFERENCES segment_sources (seq),
    drift_us integer NOT NULL,
    stream smallint NOT NULL,
    sha256 bytea NOT NULL,
    prev_sha256 bytea NOT NULL,
    keyframes bytea NOT NULL,
    object_key text NOT NULL,
    CONSTRAINT segments_new_pkey PRIMARY KEY (camera_seq, stream, start_us) INCLUDE (end_us)
) PARTITION BY RANGE (start_us)
"""
_PG_OLD = """
CREATE TABLE segments_new (
    id bigint NOT NULL DEFAULT nextval('{seq}'),
    start_us bigint NOT NULL,
    end_us bigint NOT NULL,
    bytes bigint NOT NULL,
    created_us bigint NOT NULL,
    drift_us integer NOT NULL,
    width smallint NOT NULL,
    height smallint NOT NULL,
    camera_id varchar(64) NOT NULL,
    stream varchar(8) NOT NULL,
    codec varchar(16) NOT NULL,
    audio_codec varchar(16),
    worker_id varchar(64) NOT NULL,
    origin varchar(16) NOT NULL DEFAULT 'live',
    sha256 bytea NOT NULL,
    prev_sha256 bytea,
    init_sha256 bytea NOT NULL,
    keyframes bytea NOT NULL,
    object_key text,
    CONSTRAINT segments_new_pkey PRIMARY KEY (camera_id, stream, start_us) INCLUDE (end_us)
) PARTITION BY RANGE (start_us)
"""
_LOG = """
CREATE TABLE segments_0016_log (camera_id varchar(64) NOT NULL, stream varchar(8) NOT NULL, start_us bigint NOT NULL);
CREATE FUNCTION segments_0016_log() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO segments_0016_log VALUES (NEW.camera_id, NEW.stream, NEW.start_us);
    RETURN NULL;
END $$;
CREATE TRIGGER segments_0016_log AFTER INSERT ON segments FOR EACH ROW EXECUTE FUNCTION segments_0016_log();
"""
_OLD_SELECT = f"SELECT {', '.join('s.' + c for c in _OLD)} FROM segments s"
_KEY = "s.camera_id, s.stream, s.start_us"


class _Numbers:
    """camera id -> camera_seq and source tuple -> source_seq, made as rows need them."""

    def __init__(self) -> None:
        self.cameras: dict[str, int] = {}
        self.sources: dict[tuple[Any, ...], int] = {}

    def learn(self, conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
        cams = sorted({r["camera_id"] for r in rows} - self.cameras.keys())
        if cams:
            ins = "INSERT INTO segment_cameras (camera_id) VALUES (:c)"
            if conn.dialect.name == "postgresql":
                ins += " ON CONFLICT DO NOTHING"
            conn.execute(sa.text(ins), [{"c": c} for c in cams])
            got: list[Any] = conn.execute(sa.text("SELECT camera_id, seq FROM segment_cameras WHERE camera_id IN :c")
                               .bindparams(sa.bindparam("c", expanding=True)), {"c": cams}).all()  # type: ignore[assignment]
            self.cameras.update({str(c): int(s) for c, s in got})
        srcs = sorted({_source(r) for r in rows} - self.sources.keys(), key=repr)
        for src in srcs:
            vals = dict(zip(_SOURCE, src))
            where = " AND ".join(f"{c} = :{c}" for c in _SOURCE)
            seq = conn.execute(sa.text(f"SELECT seq FROM segment_sources WHERE {where}"), vals).scalar()
            if seq is None:
                seq = conn.execute(sa.text(f"INSERT INTO segment_sources ({', '.join(_SOURCE)}) VALUES "
                                           f"({', '.join(':' + c for c in _SOURCE)}) RETURNING seq"), vals).scalar_one()
            self.sources[src] = seq

    def compact(self, r: dict[str, Any]) -> dict[str, Any]:
        return {"id": r["id"], "start_us": r["start_us"], "end_us": r["end_us"], "bytes": r["bytes"],
                "created_us": r["created_us"], "camera_seq": self.cameras[r["camera_id"]],
                "source_seq": self.sources[_source(r)], "drift_us": r["drift_us"], "stream": STREAMS[r["stream"]],
                "sha256": bytes(r["sha256"]), "prev_sha256": bytes(r["prev_sha256"] or b""),
                "keyframes": pack_keyframes(unpack_keyframes(bytes(r["keyframes"]))),
                "object_key": r["object_key"] or ""}


def _source(r: dict[str, Any]) -> tuple[Any, ...]:
    return (bytes(r["init_sha256"]), r["codec"], r["width"], r["height"], r["audio_codec"] or "", r["worker_id"],
            r["origin"])


def _insert(conn: sa.Connection, dest: str, cols: tuple[str, ...], rows: list[dict[str, Any]], conflict: str) -> None:
    if rows:
        conn.execute(sa.text(f"INSERT INTO {dest} ({', '.join(cols)}) VALUES ({', '.join(':' + c for c in cols)})"
                             f" {conflict}"), rows)


def _convert(conn: sa.Connection, numbers: _Numbers, rows: Sequence[Any]) -> list[dict[str, Any]]:
    old = [dict(zip(_OLD, r)) for r in rows]
    unknown = {r["stream"] for r in old} - STREAMS.keys()
    if unknown:
        raise RuntimeError(f"segments of stream(s) {sorted(unknown)} cannot be converted (main and sub only): "
                           "delete or rename those rows, then run the upgrade again")
    numbers.learn(conn, old)
    return [numbers.compact(r) for r in old]


def upgrade() -> None:
    bind = op.get_bind()
    op.create_table("segment_cameras",
                    sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
                    sa.Column("camera_id", sa.String(64), nullable=False),
                    sa.PrimaryKeyConstraint("seq"), sa.UniqueConstraint("camera_id"))
    op.create_table("segment_sources",
                    sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
                    sa.Column("init_sha256", sa.LargeBinary(), nullable=False),
                    sa.Column("codec", sa.String(16), nullable=False),
                    sa.Column("width", sa.SmallInteger(), nullable=False),
                    sa.Column("height", sa.SmallInteger(), nullable=False),
                    sa.Column("audio_codec", sa.String(16), nullable=False),
                    sa.Column("worker_id", sa.String(64), nullable=False),
                    sa.Column("origin", sa.String(16), nullable=False),
                    sa.PrimaryKeyConstraint("seq"),
                    sa.UniqueConstraint(*_SOURCE, name="uq_segment_sources"))
    if bind.dialect.name == "postgresql":
        _upgrade_postgresql(bind)
    else:
        _upgrade_sqlite(bind)


def _new_partitions(bind: sa.Connection) -> None:
    """segments_new gets the months segments has (and a DEFAULT partition)."""
    from storage.db.partitions import create_partition, partitions

    bind.execute(sa.text("CREATE TABLE segments_new_default PARTITION OF segments_new DEFAULT"))
    for p in partitions(bind):
        year, month = int(p.name[-6:-2]), int(p.name[-2:])
        create_partition(bind, year, month, parent="segments_new", prefix="segments_new")


def _swap(bind: sa.Connection, seq: str) -> None:
    """segments_new (and its partitions and indexes) becomes segments."""
    from storage.db.partitions import swap_new_table

    swap_new_table(bind, "segments", seq)


def _upgrade_postgresql(bind: sa.Connection) -> None:
    seq: str = bind.execute(sa.text("SELECT pg_get_serial_sequence('segments', 'id')")).scalar_one()
    bind.execute(sa.text(_PG_NEW.format(seq=seq)))
    bind.execute(sa.text("CREATE INDEX ix_segments_new_start_brin ON segments_new USING brin (start_us)"))
    _new_partitions(bind)
    # From here on every insert into the old table is logged; those before are in it.
    bind.execute(sa.text(_LOG))
    numbers = _Numbers()
    started, rows, slowest, batches = time.monotonic(), 0, 0.0, 0
    with op.get_context().autocommit_block():
        with bind.engine.connect() as conn:
            last: tuple[str, str, int] | None = None
            while True:
                t = time.monotonic()
                with conn.begin():
                    where = f"WHERE ({_KEY}) > (:c, :s, :t)" if last else ""
                    got = conn.execute(sa.text(f"{_OLD_SELECT} {where} ORDER BY {_KEY} LIMIT {BATCH}"),
                               {"c": last[0], "s": last[1], "t": last[2]} if last else {}).all()
                    if not got:
                        break
                    _insert(conn, "segments_new", _NEW, _convert(conn, numbers, got), "ON CONFLICT DO NOTHING")
                last = (got[-1][1], got[-1][2], got[-1][3])
                rows, batches, slowest = rows + len(got), batches + 1, max(slowest, time.monotonic() - t)
    log.info("segments: %d rows copied in %d batches of %d in %.1f s (slowest batch %.2f s)", rows, batches, BATCH,
             time.monotonic() - started, slowest)
    locked = time.monotonic()
    # The swap: writers wait (readers do not) while the rows logged since the start are copied.
    bind.execute(sa.text("LOCK TABLE segments IN EXCLUSIVE MODE"))
    logged = bind.execute(sa.text(
        f"{_OLD_SELECT} JOIN (SELECT DISTINCT * FROM segments_0016_log) l ON (l.camera_id, l.stream, l.start_us) = "
        f"({_KEY})")).all()
    _insert(bind, "segments_new", _NEW, _convert(bind, numbers, logged), "ON CONFLICT DO NOTHING")
    bind.execute(sa.text("DROP TRIGGER segments_0016_log ON segments"))
    bind.execute(sa.text("DROP FUNCTION segments_0016_log()"))
    bind.execute(sa.text("DROP TABLE segments_0016_log"))
    _swap(bind, seq)
    log.info("segments: swapped; writes waited %.2f s (%d logged rows copied, renames)", time.monotonic() - locked,
             len(logged))


def _sqlite_table(name: str) -> sa.Table:
    md = sa.MetaData()
    for referenced in ("segment_cameras", "segment_sources"):  # for the foreign keys only (they exist)
        sa.Table(referenced, md, sa.Column("seq", sa.Integer(), primary_key=True))
    return sa.Table(
        name, md,
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("start_us", sa.BigInteger(), nullable=False),
        sa.Column("end_us", sa.BigInteger(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("camera_seq", sa.Integer(), sa.ForeignKey("segment_cameras.seq"), nullable=False),
        sa.Column("source_seq", sa.Integer(), sa.ForeignKey("segment_sources.seq"), nullable=False),
        sa.Column("drift_us", sa.Integer(), nullable=False),
        sa.Column("stream", sa.SmallInteger(), nullable=False),
        sa.Column("sha256", sa.LargeBinary(), nullable=False),
        sa.Column("prev_sha256", sa.LargeBinary(), nullable=False),
        sa.Column("keyframes", sa.LargeBinary(), nullable=False),
        sa.Column("object_key", sa.Text(), nullable=False),
    )


def _indexes(*cols: str) -> None:
    op.create_index("ix_segments_camera_time", "segments", [*cols, "start_us"], unique=True)
    op.create_index("ix_segments_start", "segments", ["start_us"])
    op.create_index("ix_segments_timeline", "segments", [*cols, "start_us", "end_us"])


def _upgrade_sqlite(bind: sa.Connection) -> None:
    _sqlite_table("segments_new").create(bind)
    rows = bind.execute(sa.text(f"{_OLD_SELECT} ORDER BY id")).all()
    _insert(bind, "segments_new", _NEW, _convert(bind, _Numbers(), list(rows)), "")
    op.drop_table("segments")
    op.rename_table("segments_new", "segments")
    _indexes("camera_seq", "stream")


def _expanded(rows: Sequence[Any]) -> list[dict[str, Any]]:
    names = {v: k for k, v in STREAMS.items()}
    out = []
    for r in rows:
        d = dict(zip(_OLD, r))
        d["stream"] = names[d["stream"]]
        d["audio_codec"] = d["audio_codec"] or None
        d["prev_sha256"] = d["prev_sha256"] or None
        d["object_key"] = d["object_key"] or None
        d["keyframes"] = _pack_v1(unpack_keyframes(bytes(d["keyframes"])))
        out.append(d)
    return out


_JOINED = ("SELECT s.id, c.camera_id, s.stream, s.start_us, s.end_us, s.object_key, s.bytes, o.codec, o.width, "
           "o.height, o.audio_codec, s.sha256, s.prev_sha256, o.init_sha256, s.keyframes, s.drift_us, o.worker_id, "
           "o.origin, s.created_us FROM segments s JOIN segment_cameras c ON c.seq = s.camera_seq "
           "JOIN segment_sources o ON o.seq = s.source_seq ORDER BY s.id")


def downgrade() -> None:
    """Back to the 0015 row (keyframe tables repacked as version 1), in one transaction."""
    bind = op.get_bind()
    rows = _expanded(bind.execute(sa.text(_JOINED)).all())
    if bind.dialect.name == "postgresql":
        seq: str = bind.execute(sa.text("SELECT pg_get_serial_sequence('segments', 'id')")).scalar_one()
        bind.execute(sa.text(_PG_OLD.format(seq=seq)))
        bind.execute(sa.text("CREATE INDEX ix_segments_new_start_brin ON segments_new USING brin (start_us)"))
        _new_partitions(bind)
        _insert(bind, "segments_new", _OLD, rows, "")
        _swap(bind, seq)
    else:
        old = sa.Table(
            "segments_new", sa.MetaData(),
            sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
            sa.Column("camera_id", sa.String(64), nullable=False),
            sa.Column("stream", sa.String(8), nullable=False),
            sa.Column("start_us", sa.BigInteger(), nullable=False),
            sa.Column("end_us", sa.BigInteger(), nullable=False),
            sa.Column("object_key", sa.Text(), nullable=True),
            sa.Column("bytes", sa.BigInteger(), nullable=False),
            sa.Column("codec", sa.String(16), nullable=False),
            sa.Column("width", sa.SmallInteger(), nullable=False),
            sa.Column("height", sa.SmallInteger(), nullable=False),
            sa.Column("audio_codec", sa.String(16), nullable=True),
            sa.Column("sha256", sa.LargeBinary(), nullable=False),
            sa.Column("prev_sha256", sa.LargeBinary(), nullable=True),
            sa.Column("init_sha256", sa.LargeBinary(), nullable=False),
            sa.Column("keyframes", sa.LargeBinary(), nullable=False),
            sa.Column("drift_us", sa.Integer(), nullable=False),
            sa.Column("worker_id", sa.String(64), nullable=False),
            sa.Column("origin", sa.String(16), nullable=False, server_default="live"),
            sa.Column("created_us", sa.BigInteger(), nullable=False),
        )
        old.create(bind)
        _insert(bind, "segments_new", _OLD, rows, "")
        op.drop_table("segments")
        op.rename_table("segments_new", "segments")
        _indexes("camera_id", "stream")
    op.drop_table("segment_sources")
    op.drop_table("segment_cameras")
