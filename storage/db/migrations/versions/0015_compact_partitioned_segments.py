"""a smaller segment row (digests as bytes, delta-coded keyframes, derived object keys, narrow
integers); on PostgreSQL segments partitioned by month, copied in batches without a long lock

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01

PostgreSQL: a new partitioned table is created next to ``segments`` and filled in
batches of ``BATCH`` rows, each its own short transaction, while workers keep writing
the old table (only row reads, no lock beyond the usual). Then, in one transaction,
the old table is locked against writes (``EXCLUSIVE``: reads go on), rows written since
the last batch are copied, and the tables swap names. That final lock lasts as long as
the catch-up copy (a few thousand rows). Retention deletes made during the copy can
leave rows whose object is gone (the clip builder reports them as missing): pause
retention for the upgrade on large indexes. SQLite: the table is rebuilt in one
transaction (single-site indexes are small).

Figures for 1 M rows are in docs/sizing.md ("Index row").
"""
from __future__ import annotations

import logging
import time
from typing import Any, Iterable

import sqlalchemy as sa
from alembic import op

from storage.db.partitions import create_partition, month_of
from storage.index.keyframes import pack_keyframes, unpack_keyframes
from storage.objects.open import segment_key

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

log = logging.getLogger("storage.db.migrations.0015")

BATCH = 20_000
# Rows committed with a lower id after the batch copy passed it are copied in the final
# step too: uploads are short transactions, so an id that far behind is never in flight.
CATCH_UP_MARGIN = 1_000
_COLS = ("id", "camera_id", "stream", "start_us", "end_us", "object_key", "bytes", "codec", "width", "height",
         "audio_codec", "sha256", "prev_sha256", "init_sha256", "keyframes", "drift_us", "worker_id", "origin",
         "created_us")
_PG_NEW = """
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


def _compact(row: Any) -> dict[str, Any]:
    r = dict(zip(_COLS, row))
    derived = segment_key(r["camera_id"], r["stream"], r["start_us"], (r["end_us"] - r["start_us"]) // 1000)
    r["object_key"] = None if r["object_key"] == derived else r["object_key"]
    for k in ("sha256", "prev_sha256", "init_sha256"):
        r[k] = None if r[k] is None else bytes.fromhex(r[k])
    r["keyframes"] = pack_keyframes(unpack_keyframes(bytes(r["keyframes"])))
    r["drift_us"] = max(-(2**31), min(2**31 - 1, r["drift_us"]))
    return r


def _expand(row: Any) -> dict[str, Any]:
    r = dict(zip(_COLS, row))
    if r["object_key"] is None:
        r["object_key"] = segment_key(r["camera_id"], r["stream"], r["start_us"], (r["end_us"] - r["start_us"]) // 1000)
    for k in ("sha256", "prev_sha256", "init_sha256"):
        r[k] = None if r[k] is None else bytes(r[k]).hex()
    r["keyframes"] = b"".join(
        k.offset_us.to_bytes(8, "little", signed=True) + k.byte_offset.to_bytes(8, "little")
        for k in unpack_keyframes(bytes(r["keyframes"])))
    return r


def _copy(conn: sa.Connection, src: str, dest: str, convert, where: str = "", params: dict | None = None,  # type: ignore[no-untyped-def]
          conflict: str = "") -> int:
    rows = conn.execute(sa.text(f"SELECT {', '.join(_COLS)} FROM {src} {where} ORDER BY id"), params or {}).all()
    if rows:
        conn.execute(sa.text(f"INSERT INTO {dest} ({', '.join(_COLS)}) VALUES ({', '.join(':' + c for c in _COLS)})"
                             f" {conflict}"), [convert(r) for r in rows])
    return len(rows)


def _batches(conn: sa.Connection, src: str, dest: str, convert, conflict: str) -> Iterable[tuple[int, int, float]]:  # type: ignore[no-untyped-def]
    """Copy ``src`` into ``dest`` by id, BATCH rows per transaction; yields (last id, rows, seconds)."""
    last = -1
    while True:
        started = time.monotonic()
        with conn.begin():
            rows = conn.execute(sa.text(f"SELECT {', '.join(_COLS)} FROM {src} WHERE id > :last ORDER BY id LIMIT :n"),
                                {"last": last, "n": BATCH}).all()
            if not rows:
                return
            conn.execute(sa.text(f"INSERT INTO {dest} ({', '.join(_COLS)}) VALUES "
                                 f"({', '.join(':' + c for c in _COLS)}) {conflict}"), [convert(r) for r in rows])
        last = rows[-1][0]
        yield last, len(rows), time.monotonic() - started


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        _upgrade_postgresql(bind)
    else:
        _upgrade_sqlite(bind)


def _upgrade_postgresql(bind: sa.Connection) -> None:
    seq: str = bind.execute(sa.text("SELECT pg_get_serial_sequence('segments', 'id')")).scalar_one()
    for (name,) in bind.execute(sa.text(
            "SELECT conname FROM pg_constraint WHERE conrelid = 'segments'::regclass AND contype = 'f'")).all():
        bind.execute(sa.text(f'ALTER TABLE segments DROP CONSTRAINT "{name}"'))
    bind.execute(sa.text(_PG_NEW.format(seq=seq)))
    bind.execute(sa.text("CREATE INDEX ix_segments_start_brin ON segments_new USING brin (start_us)"))
    bind.execute(sa.text("CREATE TABLE segments_default PARTITION OF segments_new DEFAULT"))
    lo = bind.execute(sa.text("SELECT min(start_us) FROM segments")).scalar()
    now = time.time_ns() // 1000
    # Months from the oldest row (at most two years back) to three months ahead; rows
    # outside (a camera clock far off) go to the DEFAULT partition.
    year, month = month_of(max(lo if lo is not None else now, now - 730 * 86_400 * 1_000_000))
    last = month_of(now)
    end_index = last[0] * 12 + last[1] - 1 + 3
    while year * 12 + month - 1 <= end_index:
        create_partition(bind, year, month, parent="segments_new", prefix="segments")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    copied_to = -1
    started, rows, slowest = time.monotonic(), 0, 0.0
    with op.get_context().autocommit_block():
        with bind.engine.connect() as conn:
            for last_id, n, took in _batches(conn, "segments", "segments_new", _compact, "ON CONFLICT DO NOTHING"):
                copied_to, rows, slowest = last_id, rows + n, max(slowest, took)
    log.info("segments: %d rows copied in batches of %d in %.1f s (slowest batch %.2f s)", rows, BATCH,
             time.monotonic() - started, slowest)
    locked = time.monotonic()
    # The swap: writers wait (readers do not) while the rows written since are copied.
    bind.execute(sa.text("LOCK TABLE segments IN EXCLUSIVE MODE"))
    # Only now: workers of the previous release still write hex digests until the swap.
    bind.execute(sa.text("LOCK TABLE init_segments IN EXCLUSIVE MODE"))
    bind.execute(sa.text("ALTER TABLE init_segments ALTER COLUMN sha256 TYPE bytea USING decode(sha256, 'hex')"))
    _copy(bind, "segments", "segments_new", _compact, "WHERE id > :last", {"last": copied_to - CATCH_UP_MARGIN},
          "ON CONFLICT DO NOTHING")
    bind.execute(sa.text(f"ALTER SEQUENCE {seq} OWNED BY NONE"))
    bind.execute(sa.text("DROP TABLE segments"))
    bind.execute(sa.text("ALTER TABLE segments_new RENAME TO segments"))
    bind.execute(sa.text("ALTER INDEX segments_new_pkey RENAME TO segments_pkey"))
    bind.execute(sa.text(f"ALTER SEQUENCE {seq} OWNED BY segments.id"))
    log.info("segments: swapped; writes waited %.2f s (catch-up copy and renames)", time.monotonic() - locked)


def _sqlite_new_table(name: str) -> sa.Table:
    return sa.Table(
        name, sa.MetaData(),
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


def _btree_indexes() -> None:
    op.create_index("ix_segments_camera_time", "segments", ["camera_id", "stream", "start_us"], unique=True)
    op.create_index("ix_segments_start", "segments", ["start_us"])
    op.create_index("ix_segments_timeline", "segments", ["camera_id", "stream", "start_us", "end_us"])


def _upgrade_sqlite(bind: sa.Connection) -> None:
    _sqlite_new_table("segments_new").create(bind)
    _copy(bind, "segments", "segments_new", _compact)
    op.drop_table("segments")  # first: it referenced init_segments
    op.rename_table("segments_new", "segments")
    _btree_indexes()
    inits = bind.execute(sa.text("SELECT sha256, data FROM init_segments")).all()
    op.drop_table("init_segments")
    op.create_table("init_segments", sa.Column("sha256", sa.LargeBinary(), nullable=False),
                    sa.Column("data", sa.LargeBinary(), nullable=False), sa.PrimaryKeyConstraint("sha256"))
    if inits:
        bind.execute(sa.text("INSERT INTO init_segments (sha256, data) VALUES (:s, :d)"),
                     [{"s": bytes.fromhex(str(s)), "d": d} for s, d in inits])


def downgrade() -> None:
    bind = op.get_bind()
    old = sa.Table(
        "segments_old", sa.MetaData(),
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("camera_id", sa.String(64), nullable=False),
        sa.Column("stream", sa.String(8), nullable=False),
        sa.Column("start_us", sa.BigInteger(), nullable=False),
        sa.Column("end_us", sa.BigInteger(), nullable=False),
        sa.Column("object_key", sa.Text(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("codec", sa.String(16), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("audio_codec", sa.String(16), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("prev_sha256", sa.String(64), nullable=True),
        sa.Column("init_sha256", sa.String(64), nullable=False),
        sa.Column("keyframes", sa.LargeBinary(), nullable=False),
        sa.Column("drift_us", sa.BigInteger(), nullable=False),
        sa.Column("worker_id", sa.String(64), nullable=False),
        sa.Column("origin", sa.String(16), nullable=False, server_default="live"),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
    )
    old.create(bind)
    _copy(bind, "segments", "segments_old", _expand)
    op.drop_table("segments")
    op.rename_table("segments_old", "segments")
    if bind.dialect.name == "postgresql":
        bind.execute(sa.text(
            "ALTER TABLE init_segments ALTER COLUMN sha256 TYPE varchar(64) USING encode(sha256, 'hex')"))
        bind.execute(sa.text("ALTER INDEX segments_old_pkey RENAME TO segments_pkey"))
        bind.execute(sa.text("ALTER SEQUENCE segments_old_id_seq RENAME TO segments_id_seq"))
        bind.execute(sa.text(
            "SELECT setval('segments_id_seq', coalesce((SELECT max(id) FROM segments), 0) + 1, false)"))
        op.create_foreign_key(None, "segments", "init_segments", ["init_sha256"], ["sha256"])
    else:
        inits = bind.execute(sa.text("SELECT sha256, data FROM init_segments")).all()
        op.drop_table("init_segments")
        op.create_table("init_segments", sa.Column("sha256", sa.String(64), nullable=False),
                        sa.Column("data", sa.LargeBinary(), nullable=False), sa.PrimaryKeyConstraint("sha256"))
        if inits:
            bind.execute(sa.text("INSERT INTO init_segments (sha256, data) VALUES (:s, :d)"),
                         [{"s": bytes(s).hex(), "d": d} for s, d in inits])  # type: ignore[call-overload]
    _btree_indexes()
