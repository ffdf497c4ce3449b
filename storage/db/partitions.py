"""Monthly partitions of ``segments`` (migration 0015) and ``gaps`` (migration 0017) on
PostgreSQL (SQLite is not partitioned).

Both tables are ``PARTITION BY RANGE (start_us)``, one partition per calendar month (UTC)
named ``{table}_pYYYYMM``. A gap lives in the month of its *start*: an open gap closed
weeks later stays where it was opened (its key is ``(id, start_us)``, so the update finds
that one partition). The insert path never creates partitions: they are created ahead
(``ensure_partitions``, default three months) by ``sharpeyes db upgrade``, ``sharpeyes db
partitions`` and every retention run. ``{table}_default`` (the DEFAULT partition) takes
rows of months with no partition (a wrong clock, test data from 1970): it should stay
empty, since creating a month whose rows sit in it fails (``ensure_partitions`` then
reports it and leaves that month to the DEFAULT).

Retention drops a whole month (``drop_partition``: ``DETACH`` then ``DROP``) when every
camera's retention is past it and no hold overlaps it, which frees the space at once
instead of leaving millions of dead tuples for vacuum.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection, Engine, text

log = logging.getLogger(__name__)

PARENT = "segments"
# The tables partitioned by month where the database can (PostgreSQL).
PARTITIONED = ("segments", "gaps")


@dataclass(frozen=True)
class Partition:
    name: str
    start_us: int  # inclusive
    end_us: int  # exclusive
    parent: str = PARENT


def month_start_us(year: int, month: int) -> int:
    while month > 12:
        year, month = year + 1, month - 12
    return int(datetime(year, month, 1, tzinfo=timezone.utc).timestamp()) * 1_000_000


def month_of(t_us: int) -> tuple[int, int]:
    t = datetime.fromtimestamp(t_us // 1_000_000, tz=timezone.utc)
    return t.year, t.month


def partition_for(year: int, month: int, parent: str = PARENT) -> Partition:
    return Partition(f"{parent}_p{year:04d}{month:02d}", month_start_us(year, month), month_start_us(year, month + 1),
                     parent)


def is_partitioned(conn: Connection, table: str = PARENT) -> bool:
    if conn.dialect.name != "postgresql":
        return False
    return bool(conn.execute(text(
        "SELECT 1 FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid "
        "WHERE c.relname = :t AND c.relnamespace = current_schema()::regnamespace"), {"t": table}).first())


def partitions(conn: Connection, table: str = PARENT) -> list[Partition]:
    """The monthly partitions of ``table``, oldest first ([] where it is not partitioned)."""
    if not is_partitioned(conn, table):
        return []
    names: list[str] = list(conn.execute(text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = :t "
        "AND p.relnamespace = current_schema()::regnamespace"), {"t": table}).scalars())
    out = []
    prefix = f"{table}_p"
    for name in names:
        digits = name[len(prefix):]
        if name.startswith(prefix) and len(digits) == 6 and digits.isdigit():
            out.append(partition_for(int(digits[:4]), int(digits[4:]), table))
    return sorted(out, key=lambda p: p.start_us)


def create_partition(conn: Connection, year: int, month: int, parent: str = PARENT,
                     prefix: str | None = None) -> Partition:
    """Create month (year, month) of ``parent``, named ``{prefix}_pYYYYMM`` (prefix defaults to
    ``parent``; a migration builds a table under another name and renames it)."""
    p = partition_for(year, month, prefix or parent)
    conn.execute(text(
        f"CREATE TABLE IF NOT EXISTS {p.name} PARTITION OF {parent} FOR VALUES FROM ({p.start_us}) TO ({p.end_us})"))
    return p


def months(since_us: int, until_us: int) -> list[tuple[int, int]]:
    """(year, month) of every month from the one holding ``since_us`` to the one holding ``until_us``."""
    year, month = month_of(since_us)
    last = month_of(until_us)
    out = []
    while (year, month) <= last:
        out.append((year, month))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def ensure_partitions(engine: Engine, *, now_us: int, months_ahead: int = 3,
                      since_us: int | None = None, tables: tuple[str, ...] = PARTITIONED) -> list[str]:
    """Create the partitions of every partitioned table in ``tables`` from the month of
    ``since_us`` (default: now) to ``months_ahead`` months after now's; returns the names
    created. A no-op on SQLite."""
    y, m = month_of(now_us)
    until = month_start_us(y, m + months_ahead)
    created = []
    with engine.begin() as conn:
        for table in tables:
            if not is_partitioned(conn, table):
                continue
            have = {p.name for p in partitions(conn, table)}
            for year, month in months(since_us if since_us is not None else now_us, until):
                p = partition_for(year, month, table)
                if p.name in have:
                    continue
                in_default = conn.execute(text(
                    f"SELECT 1 FROM {table}_default WHERE start_us >= :a AND start_us < :b LIMIT 1"),
                    {"a": p.start_us, "b": p.end_us}).first()
                if in_default:
                    log.error("%s_default holds rows of %04d-%02d: partition %s not created; move those rows "
                              "out of the DEFAULT partition first", table, year, month, p.name)
                else:
                    create_partition(conn, year, month, table)
                    created.append(p.name)
    return created


def drop_partition(engine: Engine, p: Partition, lock_timeout_ms: int = 2000, *, keep_if: str | None = None,
                   params: dict[str, Any] | None = None) -> bool:
    """Detach and drop one month; returns whether it was dropped. ``DETACH … CONCURRENTLY``
    is refused while a DEFAULT partition exists, so this is a plain DETACH: a catalog change
    under a brief lock on the parent, given up after ``lock_timeout_ms`` (rather than
    queueing every reader behind a long query) and retried at the next retention run.

    ``keep_if`` (an SQL condition on the partition's rows, with ``params``) is checked after
    the DETACH, under its lock: if a row matches (written since the caller looked), the
    transaction is rolled back and the month stays."""
    with engine.connect() as conn, conn.begin() as tx:
        conn.execute(text(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}"))
        conn.execute(text(f"ALTER TABLE {p.parent} DETACH PARTITION {p.name}"))
        if keep_if is not None and conn.execute(text(f"SELECT 1 FROM {p.name} WHERE {keep_if} LIMIT 1"),
                                                params or {}).first():
            tx.rollback()
            return False
        conn.execute(text(f"DROP TABLE {p.name}"))
    return True


def swap_new_table(bind: Connection, table: str, seq: str) -> None:
    """Migrations: ``{table}_new`` (its partitions, indexes and constraints named
    ``{table}_new_…``/``ix_{table}_new_…``) replaces ``table``, which is dropped; the id
    sequence ``seq``, shared by both, becomes the new table's."""
    bind.execute(text(f"ALTER SEQUENCE {seq} OWNED BY NONE"))
    bind.execute(text(f"DROP TABLE {table}"))
    bind.execute(text(f"ALTER TABLE {table}_new RENAME TO {table}"))
    names = bind.execute(text(
        "SELECT c.relname, c.relkind FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace "
        "AND (c.relname LIKE :a OR c.relname LIKE :b)"),
        {"a": f"{table}\\_new\\_%", "b": f"ix\\_{table}\\_new\\_%"}).all()
    for name, kind in names:
        name = str(name)
        what = "INDEX" if kind in ("i", "I") else "TABLE"
        bind.execute(text(f'ALTER {what} "{name}" RENAME TO "{name.replace(f"{table}_new_", f"{table}_", 1)}"'))
    bind.execute(text(f"ALTER SEQUENCE {seq} OWNED BY {table}.id"))
