"""Opening the index database: engine set-up for SQLite (WAL) and PostgreSQL, and migrations."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool


def open_engine(url: str, *, migrate: bool = True) -> Engine:
    """Create the engine for ``url`` and bring the schema to the newest migration.

    SQLite gets WAL, a busy timeout and foreign keys: one writer and many readers
    across processes (``sharpeyes run`` and a CLI editing the registry) without
    "database is locked" errors in normal use.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        in_memory = not parsed.database or parsed.database == ":memory:"
        if parsed.database and not in_memory:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # An in-memory database exists per connection: SQLAlchemy's default pool for
        # it gives each thread its own, empty and unmigrated. One shared connection
        # (StaticPool) makes it one database for the whole process.
        engine = create_engine(
            url,
            connect_args={"timeout": 30, "check_same_thread": False},
            **({"poolclass": StaticPool} if in_memory else {}),
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()
    else:
        engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    if migrate:
        from storage.db.migrations import upgrade_to_head

        upgrade_to_head(engine)
    return engine


def single_statements(engine: Engine) -> Engine:
    """The engine to run a statement that needs no transaction around it (one UPDATE …
    RETURNING, one upsert, a read): on PostgreSQL in autocommit, so it costs one round
    trip instead of three (BEGIN, the statement, COMMIT or the pool's ROLLBACK). A lease
    round of a worker is a handful of these, and on a starved client each round trip is a
    wait for the CPU (tests/bench/county_sim.py). SQLite is unchanged: it has no round
    trips, and an in-memory database shares one connection between threads."""
    if engine.dialect.name != "postgresql":
        return engine
    return engine.execution_options(isolation_level="AUTOCOMMIT")
