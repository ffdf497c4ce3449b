"""``gaps`` by month on PostgreSQL (migration 0017, ``storage.db.partitions``): a gap lives in
the month it started in, however long it stays open; the migration converts the table in
batches and keeps every row, including rows written while it copies; downgrade undoes it.
SQLite (not partitioned) runs the index contract unchanged."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

from alembic import command
from sqlalchemy import Engine, text

from storage.db.engine import open_engine
from storage.db.migrations import alembic_config
from storage.db.partitions import ensure_partitions, is_partitioned, month_start_us, partitions
from storage.db.schema import GapRef
from storage.index.segments import SegmentIndex

S = 1_000_000
JAN, FEB, MAR = month_start_us(2026, 1), month_start_us(2026, 2), month_start_us(2026, 3)
COLS = "id, camera_id, stream, start_us, end_us, reason, detail"


def _month_of_row(engine: Engine, gap: GapRef) -> str:
    """The partition (table) a gap row is stored in."""
    with engine.connect() as c:
        where = text("SELECT tableoid::regclass::text FROM gaps WHERE id = :i")
        return str(c.execute(where, {"i": gap.id}).scalar_one())


def _rows(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as c:
        return [tuple(r) for r in c.execute(text(f"SELECT {COLS} FROM gaps ORDER BY id"))]


def test_a_gap_open_across_a_month_boundary_closes_in_the_month_it_started(index_engine: Engine) -> None:
    ensure_partitions(index_engine, now_us=FEB, since_us=JAN)
    idx = SegmentIndex(index_engine)
    gap = idx.open_gap("cam-1", "main", FEB - 10 * S, "network", "reset")  # 10 s before February
    idx.set_gap_reason(gap, "offline", "no answer")
    assert [g.ref for g in idx.gaps("cam-1", "main", FEB + 3600 * S, FEB + 7200 * S)] == [gap]  # still open
    idx.close_gap(gap, FEB + 20 * S)
    assert [(g.ref, g.end_us, g.reason) for g in idx.gaps("cam-1", "main", FEB, FEB + 60 * S)] == [
        (gap, FEB + 20 * S, "offline")]
    assert idx.open_gaps("cam-1", "main") == []
    if index_engine.dialect.name == "postgresql":
        assert _month_of_row(index_engine, gap) == "gaps_p202601"


def test_partitions_of_gaps_are_created_ahead(index_engine: Engine) -> None:
    if index_engine.dialect.name != "postgresql":
        assert ensure_partitions(index_engine, now_us=month_start_us(2030, 1)) == []
        return
    created = ensure_partitions(index_engine, now_us=month_start_us(2030, 1) + 5 * 86_400 * S, months_ahead=2)
    assert {"gaps_p203001", "gaps_p203002", "gaps_p203003", "segments_p203001", "segments_p203003"} <= set(created)
    assert "gaps_p203004" not in created
    with index_engine.connect() as c:
        assert {"gaps_p203001", "gaps_p203003"} <= {p.name for p in partitions(c, "gaps")}
    # A gap of that month goes to its partition, not to the DEFAULT one.
    gap = SegmentIndex(index_engine).add_gap("cam-1", "sub", month_start_us(2030, 2), month_start_us(2030, 2) + S,
                                             "offline")
    assert _month_of_row(index_engine, gap) == "gaps_p203002"
    assert ensure_partitions(index_engine, now_us=month_start_us(2030, 1), months_ahead=2) == []  # idempotent


# -- migration 0017 (PostgreSQL) ---------------------------------------------------------


def _migration() -> ModuleType:
    path = Path(__file__).parents[2] / "storage/db/migrations/versions/0017_partitioned_gaps.py"
    spec = importlib.util.spec_from_file_location("migration_0017", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load_gaps(engine: Engine, n: int) -> None:
    """``n`` closed gaps over Jan-Mar 2026 (some across a month's end), three open ones, one from 1970."""
    with engine.begin() as c:
        c.execute(text(
            "INSERT INTO gaps (camera_id, stream, start_us, end_us, reason, detail) "
            "SELECT 'cam-' || (i % 50), CASE WHEN i % 2 = 0 THEN 'main' ELSE 'sub' END, "
            ":t0 + i * :step, :t0 + i * :step + (i % 7) * :len, 'network', 'reset ' || i "
            "FROM generate_series(1::bigint, :n) AS i"), {"t0": JAN, "step": (month_start_us(2026, 4) - JAN) // (n + 1),
                                                  "len": 86_400 * S, "n": n})
        c.execute(text("INSERT INTO gaps (camera_id, stream, start_us, end_us, reason, detail) VALUES "
                       "('cam-open', 'main', :a, NULL, 'offline', ''), ('cam-open', 'sub', :b, NULL, 'offline', ''), "
                       "('cam-open2', 'main', :c, NULL, 'unauthorized', '401'), "
                       "('cam-1970', 'main', 1000, 2000, 'network', 'clock was off')"),
                  {"a": FEB - S, "b": MAR - S, "c": MAR + S})


def test_migration_0017_keeps_every_gap_and_every_write_made_while_it_copies(postgres_url: str) -> None:
    engine = open_engine(postgres_url, migrate=False)
    try:
        command.upgrade(alembic_config(engine), "0016")
        _load_gaps(engine, 5000)
        m = _migration()
        with engine.begin() as c:
            seq = m.prepare(c)
        # Writes of workers of the previous release while the copy runs, through the old table:
        # before any batch (inserted, then copied and logged both) ...
        with engine.begin() as c:
            c.execute(text("UPDATE gaps SET reason = 'offline' WHERE id = 10"))
            c.execute(text("DELETE FROM gaps WHERE id = 4000"))
        with engine.connect() as c:
            rows, batches, _ = m.copy_batches(c, batch=700)
        assert (rows, batches) == (5003, 8)
        # ... and after the batches passed them: a gap closed, a reason changed, one deleted, one new.
        with engine.begin() as c:
            open_id = c.execute(text("SELECT id FROM gaps WHERE camera_id = 'cam-open' AND stream = 'main'")
                                ).scalar_one()
            c.execute(text("UPDATE gaps SET end_us = :e WHERE id = :i"), {"e": FEB + 5 * S, "i": open_id})
            c.execute(text("UPDATE gaps SET reason = 'offline', detail = 'late' WHERE id = 11"))
            c.execute(text("DELETE FROM gaps WHERE id = 12"))
            c.execute(text("INSERT INTO gaps (camera_id, stream, start_us, end_us, reason, detail) "
                           "VALUES ('cam-late', 'main', :s, NULL, 'network', 'during the copy')"), {"s": FEB + S})
        expected = _rows(engine)
        with engine.begin() as c:
            assert m.swap(c, seq) == 6
        command.stamp(alembic_config(engine), "0017")
        assert _rows(engine) == expected
        with engine.connect() as c:
            assert is_partitioned(c, "gaps")
            assert {"gaps_p202601", "gaps_p202602", "gaps_p202603"} <= {p.name for p in partitions(c, "gaps")}
            assert c.execute(text("SELECT array_agg(camera_id) FROM gaps_default")).scalar_one() == ["cam-1970"]
            assert c.execute(text("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'gaps_pkey'")
                             ).scalar_one() == "PRIMARY KEY (id, start_us)"
            leftovers = c.execute(text("SELECT relname FROM pg_class WHERE relname LIKE '%gaps\\_new%' "
                                       "OR relname LIKE 'gaps\\_0017%'")).scalars().all()
            assert leftovers == []
        # The index works on the new table: the late open gap closes, new ids follow the old ones.
        idx = SegmentIndex(engine)
        late = next(g for g in idx.open_gaps("cam-late", "main"))
        idx.close_gap(late.ref, FEB + 9 * S)
        fresh = idx.open_gap("cam-new", "main", MAR + 2 * S, "offline")
        assert fresh.id > max(r[0] for r in expected)
        assert _month_of_row(engine, fresh) == "gaps_p202603"
    finally:
        engine.dispose()


def test_migration_0017_down_and_up_again_keeps_the_rows(postgres_url: str) -> None:
    engine = open_engine(postgres_url)
    try:
        _load_gaps(engine, 300)
        before = _rows(engine)
        cfg = alembic_config(engine)
        command.downgrade(cfg, "0016")
        with engine.connect() as c:
            assert not is_partitioned(c, "gaps")
            assert c.execute(text("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'gaps_pkey'")
                             ).scalar_one() == "PRIMARY KEY (id)"
            assert c.execute(text("SELECT count(*) FROM pg_indexes WHERE indexname = 'ix_gaps_camera_time'")
                             ).scalar_one() == 1
        assert _rows(engine) == before
        # The 0016 code path (update by id alone) on the old table, then back up through alembic.
        with engine.begin() as c:
            c.execute(text("UPDATE gaps SET end_us = :e WHERE camera_id = 'cam-open2'"), {"e": MAR + 9 * S})
        before = _rows(engine)
        command.upgrade(cfg, "head")
        assert _rows(engine) == before
        with engine.connect() as c:
            assert is_partitioned(c, "gaps")
    finally:
        engine.dispose()

