"""Monthly partitions of ``segments`` on PostgreSQL (migration 0015; SQLite is not partitioned).

``segments`` is ``PARTITION BY RANGE (start_us)``, one partition per calendar month
(UTC) named ``segments_pYYYYMM``. The insert path never creates partitions: they are
created ahead (``ensure_partitions``, default three months) by ``sharpeyes db upgrade``,
``sharpeyes db partitions`` and every retention run. ``segments_default`` (the DEFAULT
partition) takes rows of months with no partition (a wrong clock, test data from 1970):
it should stay empty, since creating a month whose rows sit in it fails
(``ensure_partitions`` then reports it and leaves that month to the DEFAULT).

Retention drops a whole month (``drop_partition``: ``DETACH`` then ``DROP``) when every
camera's retention is past it and no hold overlaps it, which frees the space at once
instead of leaving millions of dead tuples for vacuum.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import Connection, Engine, text

log = logging.getLogger(__name__)

PARENT = "segments"
_NAME = re.compile(r"^segments_p(\d{4})(\d{2})$")


@dataclass(frozen=True)
class Partition:
    name: str
    start_us: int  # inclusive
    end_us: int  # exclusive


def month_start_us(year: int, month: int) -> int:
    while month > 12:
        year, month = year + 1, month - 12
    return int(datetime(year, month, 1, tzinfo=timezone.utc).timestamp()) * 1_000_000


def month_of(t_us: int) -> tuple[int, int]:
    t = datetime.fromtimestamp(t_us // 1_000_000, tz=timezone.utc)
    return t.year, t.month


def partition_for(year: int, month: int, parent: str = PARENT) -> Partition:
    return Partition(f"{parent}_p{year:04d}{month:02d}", month_start_us(year, month), month_start_us(year, month + 1))


def is_partitioned(conn: Connection) -> bool:
    if conn.dialect.name != "postgresql":
        return False
    return bool(conn.execute(text(
        "SELECT 1 FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid "
        "WHERE c.relname = :t AND c.relnamespace = current_schema()::regnamespace"), {"t": PARENT}).first())


def partitions(conn: Connection) -> list[Partition]:
    """The partitions of ``segments``, oldest first ([] where it is not partitioned)."""
    if not is_partitioned(conn):
        return []
    names: list[str] = list(conn.execute(text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = :t "
        "AND p.relnamespace = current_schema()::regnamespace"), {"t": PARENT}).scalars())
    out = []
    for name in names:
        m = _NAME.match(name)
        if m:
            out.append(partition_for(int(m.group(1)), int(m.group(2))))
    return sorted(out, key=lambda p: p.start_us)


def create_partition(conn: Connection, year: int, month: int, parent: str = PARENT, prefix: str = PARENT) -> Partition:
    """Create month (year, month) of ``parent``, named ``{prefix}_pYYYYMM`` (a migration
    builds a table under another name and renames it)."""
    p = partition_for(year, month, prefix)
    conn.execute(text(
        f"CREATE TABLE IF NOT EXISTS {p.name} PARTITION OF {parent} FOR VALUES FROM ({p.start_us}) TO ({p.end_us})"))
    return p


def ensure_partitions(engine: Engine, *, now_us: int, months_ahead: int = 3,
                      since_us: int | None = None) -> list[str]:
    """Create the partitions from the month of ``since_us`` (default: now) to
    ``months_ahead`` months after now's; returns the names created. A no-op on SQLite."""
    with engine.begin() as conn:
        if not is_partitioned(conn):
            return []
        have = {p.name for p in partitions(conn)}
        year, month = month_of(since_us if since_us is not None else now_us)
        last = month_of(now_us)
        last_index = last[0] * 12 + last[1] - 1 + months_ahead
        created = []
        while year * 12 + month - 1 <= last_index:
            p = partition_for(year, month)
            if p.name not in have:
                in_default = conn.execute(text(
                    f"SELECT 1 FROM {PARENT}_default WHERE start_us >= :a AND start_us < :b LIMIT 1"),
                    {"a": p.start_us, "b": p.end_us}).first()
                if in_default:
                    log.error("segments_default holds rows of %04d-%02d: partition %s not created; move those rows "
                              "out of the DEFAULT partition first", year, month, p.name)
                else:
                    create_partition(conn, year, month)
                    created.append(p.name)
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        return created


def drop_partition(engine: Engine, p: Partition, lock_timeout_ms: int = 2000) -> None:
    """Detach and drop one month. ``DETACH … CONCURRENTLY`` is refused while a DEFAULT
    partition exists, so this is a plain DETACH: a catalog change under a brief lock on
    ``segments``, given up after ``lock_timeout_ms`` (rather than queueing every reader
    behind a long query) and retried at the next retention run."""
    with engine.begin() as conn:
        conn.execute(text(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}"))
        conn.execute(text(f"ALTER TABLE {PARENT} DETACH PARTITION {p.name}"))
        conn.execute(text(f"DROP TABLE {p.name}"))
