"""on PostgreSQL gaps partitioned by month of start_us, primary key (id, start_us); copied in
batches without a long lock

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02

``gaps`` becomes ``PARTITION BY RANGE (start_us)`` like ``segments`` (``gaps_pYYYYMM`` and
``gaps_default``). A partitioned table's primary key must hold the partition key, so it is
``(id, start_us)``: a gap is updated (closed, its reason changed, a retention gap grown) by
``GapRef(id, start_us)``, which prunes to the one partition of the month it started in.
``id`` leads the key, so a lookup by id alone still uses an index (one probe a month).

As 0016: a new partitioned table is filled in batches of ``BATCH`` rows (``INSERT …
SELECT`` in id order, each its own short transaction) while workers keep writing the old
one. Gap rows are also updated and deleted, so a trigger logs the id of every row
inserted, updated or deleted from before the first batch (``gaps_0017_log``). The final
step locks the old table against writes (``EXCLUSIVE``, reads go on), replaces the logged
rows in the new table by their current version (or nothing, if deleted), and swaps the
names. SQLite is not partitioned: nothing changes there.

Measured on 200k rows: docs/scale.md ("Monthly partitions").
"""
from __future__ import annotations

import logging
import time

import sqlalchemy as sa
from alembic import op

from storage.db.partitions import create_partition, month_of, month_start_us, months, partitions, swap_new_table

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

log = logging.getLogger("storage.db.migrations.0017")

BATCH = 20_000
# Rows older than this go to gaps_default rather than one partition per month back to 1970.
OLDEST_MONTH_US = 730 * 86_400 * 1_000_000
_COLS = "id, start_us, end_us, camera_id, stream, reason, detail"
# 8-byte columns first: nothing is padded.
_PG_NEW = """
CREATE TABLE gaps_new (
    id bigint NOT NULL DEFAULT nextval('{seq}'),
    start_us bigint NOT NULL,
    end_us bigint,
    camera_id varchar(64) NOT NULL,
    stream varchar(8) NOT NULL,
    reason varchar(32) NOT NULL,
    detail text NOT NULL,
    CONSTRAINT gaps_new_pkey PRIMARY KEY (id, start_us)
) {partitioned}
"""
_LOG = """
CREATE TABLE gaps_0017_log (id bigint NOT NULL);
CREATE FUNCTION gaps_0017_log() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO gaps_0017_log VALUES (OLD.id);
    ELSE
        INSERT INTO gaps_0017_log VALUES (NEW.id);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER gaps_0017_log AFTER INSERT OR UPDATE OR DELETE ON gaps FOR EACH ROW EXECUTE FUNCTION gaps_0017_log();
"""


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    seq = prepare(bind)
    started = time.monotonic()
    with op.get_context().autocommit_block():
        with bind.engine.connect() as conn:
            rows, batches, slowest = copy_batches(conn)
    log.info("gaps: %d rows copied in %d batches of %d in %.1f s (slowest batch %.2f s)", rows, batches, BATCH,
             time.monotonic() - started, slowest)
    locked = time.monotonic()
    logged = swap(bind, seq)
    log.info("gaps: swapped; writes waited %.2f s (%d logged rows redone, renames)", time.monotonic() - locked, logged)


def prepare(bind: sa.Connection) -> str:
    """Step 1 (one transaction): ``gaps_new`` with its months, and the trigger that logs
    every write to ``gaps`` from now on. Returns the id sequence's name."""
    seq: str = bind.execute(sa.text("SELECT pg_get_serial_sequence('gaps', 'id')")).scalar_one()
    bind.execute(sa.text(_PG_NEW.format(seq=seq, partitioned="PARTITION BY RANGE (start_us)")))
    bind.execute(sa.text("CREATE INDEX ix_gaps_new_camera_time ON gaps_new (camera_id, stream, start_us)"))
    bind.execute(sa.text("CREATE TABLE gaps_new_default PARTITION OF gaps_new DEFAULT"))
    now = time.time_ns() // 1000
    lo = bind.execute(sa.text("SELECT min(start_us) FROM gaps")).scalar()
    # The months of the gaps (at most two years back) and of segments, to three months ahead.
    since = max(lo if lo is not None else now, now - OLDEST_MONTH_US)
    since = min([since] + [p.start_us for p in partitions(bind, "segments")])
    y, m = month_of(now)
    for year, month in months(since, month_start_us(y, m + 3)):
        create_partition(bind, year, month, parent="gaps_new", prefix="gaps_new")
    # From here on every write to the old table is logged; what came before is in it.
    bind.execute(sa.text(_LOG))
    return seq


def copy_batches(conn: sa.Connection, batch: int = BATCH) -> tuple[int, int, float]:
    """Step 2 (``conn`` outside a transaction): every row of ``gaps`` into ``gaps_new`` in id
    order, ``batch`` rows per transaction. Returns (rows, batches, slowest batch in s)."""
    last, rows, batches, slowest = -1, 0, 0, 0.0
    while True:
        t = time.monotonic()
        with conn.begin():
            got = conn.execute(sa.text(
                f"WITH b AS (SELECT {_COLS} FROM gaps WHERE id > :last ORDER BY id LIMIT {int(batch)}), "
                f"i AS (INSERT INTO gaps_new ({_COLS}) SELECT {_COLS} FROM b) "
                "SELECT max(id), count(*) FROM b"), {"last": last}).one()
        top, n = got[0], int(got[1])
        if not n or top is None:
            return rows, batches, slowest
        last, rows, batches, slowest = int(top), rows + n, batches + 1, max(slowest, time.monotonic() - t)


def swap(bind: sa.Connection, seq: str) -> int:
    """Step 3 (one transaction): writers wait (readers do not) while every logged row is
    replaced by its current version, then ``gaps_new`` becomes ``gaps``. Returns how many
    rows were logged."""
    bind.execute(sa.text("LOCK TABLE gaps IN EXCLUSIVE MODE"))
    logged = int(bind.execute(sa.text("SELECT count(DISTINCT id) FROM gaps_0017_log")).scalar_one())
    bind.execute(sa.text("DELETE FROM gaps_new WHERE id IN (SELECT id FROM gaps_0017_log)"))
    bind.execute(sa.text(f"INSERT INTO gaps_new ({_COLS}) SELECT {_COLS} FROM gaps "
                         "WHERE id IN (SELECT id FROM gaps_0017_log)"))
    bind.execute(sa.text("DROP TRIGGER gaps_0017_log ON gaps"))
    bind.execute(sa.text("DROP FUNCTION gaps_0017_log()"))
    bind.execute(sa.text("DROP TABLE gaps_0017_log"))
    swap_new_table(bind, "gaps", seq)
    return logged


def downgrade() -> None:
    """Back to one unpartitioned table with the ``id`` primary key, in one transaction."""
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    seq: str = bind.execute(sa.text("SELECT pg_get_serial_sequence('gaps', 'id')")).scalar_one()
    bind.execute(sa.text(_PG_NEW.format(seq=seq, partitioned="").replace("PRIMARY KEY (id, start_us)",
                                                                          "PRIMARY KEY (id)")))
    bind.execute(sa.text(f"INSERT INTO gaps_new ({_COLS}) SELECT {_COLS} FROM gaps"))
    bind.execute(sa.text("CREATE INDEX ix_gaps_new_camera_time ON gaps_new (camera_id, stream, start_us)"))
    swap_new_table(bind, "gaps", seq)
