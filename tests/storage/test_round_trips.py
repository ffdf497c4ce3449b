"""Statements (round trips) of the control plane's hot calls, on SQLite and PostgreSQL.

A worker of a 5,000-camera county indexes ~8 segments a second and runs a lease round
every 5 s; on a starved client each statement is a wait for the CPU, and the simulation
(tests/bench/county_sim.py) fell behind on them. These tests pin the counts, so a
refactoring that adds a statement back is seen here and not only in a benchmark.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import Engine, event

from config.cameras import Camera, Region
from storage import CameraStatusTable, LeaseTable, Registry, SegmentIndex
from storage.db.schema import GapRef
from tests.storage.test_index_contract import record

S = 1_000_000
T0 = 1_800_000_000 * S
TTL = 15 * S


@dataclass
class Seen:
    statements: list[str] = field(default_factory=list)
    many: list[bool] = field(default_factory=list)
    autocommit: list[bool] = field(default_factory=list)


@contextmanager
def statements(engine: Engine) -> Iterator[Seen]:
    """The SQL statements ``engine`` sends meanwhile (executemany counts once), and
    whether each ran outside a transaction (PostgreSQL's autocommit)."""
    seen = Seen()

    def before(conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool) -> None:
        seen.statements.append(" ".join(statement.split())[:80])
        seen.many.append(executemany)
        seen.autocommit.append(bool(getattr(conn.connection.dbapi_connection, "autocommit", False)))

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)


def is_pg(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def test_add_segment_is_three_statements_once_the_camera_is_known(index_engine: Engine) -> None:
    index = SegmentIndex(index_engine)
    leases = LeaseTable(index_engine)
    leases.ensure(["cam-1"])
    fence = ("w", leases.acquire("w", ["cam-1"], 1, now_us=T0, ttl_us=TTL)["cam-1"])
    index.add_segment(record(0, 60, camera="cam-1"), fence=fence)  # numbers the camera and its source
    with statements(index_engine) as seen:
        row = index.add_segment(record(60, 120, camera="cam-1"), fence=fence)
    # The lock, one read (lease, overlaps and chain link together), the insert.
    assert len(seen.statements) == 3, seen.statements
    assert seen.statements[2].startswith("INSERT INTO segments")
    assert row.prev_sha256 == record(0, 60, camera="cam-1").sha256 and row.camera_id == "cam-1"


def test_lease_round_calls_are_one_statement_each_outside_a_transaction(index_engine: Engine) -> None:
    registry = Registry(index_engine)
    registry.add_region(Region(code="r", name="R"))
    registry.add_cameras([Camera(id=f"cam-{i}", name=f"c{i}", region="r", main_url=f"rtsp://h/{i}") for i in range(5)])
    leases = LeaseTable(index_engine)
    leases.ensure([f"cam-{i}" for i in range(5)])
    won = leases.acquire("w", None, 5, now_us=T0, ttl_us=TTL)
    calls = {
        "heartbeat": lambda: leases.heartbeat("w", now_us=T0, instance="i"),
        "renew": lambda: leases.renew("w", list(won), now_us=T0 + S, ttl_us=TTL),
        "acquire": lambda: leases.acquire("v", None, 5, now_us=T0 + S, ttl_us=TTL),
        "live_workers": lambda: leases.live_workers(T0 + S, TTL),
        "version": registry.version,
    }
    for name, call in calls.items():
        with statements(index_engine) as seen:
            call()
        assert len(seen.statements) == 1, (name, seen.statements)
        # On PostgreSQL no BEGIN/COMMIT around it: one round trip, not three.
        assert seen.autocommit == [is_pg(index_engine)], name
    assert leases.renew("w", list(won), now_us=T0 + 2 * S, ttl_us=TTL) == won


def test_a_takeover_gap_is_two_statements_outside_a_transaction(index_engine: Engine) -> None:
    index = SegmentIndex(index_engine)
    with statements(index_engine) as seen:
        gap = index.open_gap("cam-1", "main", 10 * S, "worker_restart")
        index.close_gap(gap, 12 * S)
    assert len(seen.statements) == 2, seen.statements
    assert seen.autocommit == [is_pg(index_engine)] * 2
    (row,) = index.gaps("cam-1")
    assert (row.start_us, row.end_us, row.reason) == (10 * S, 12 * S, "worker_restart")
    with pytest.raises(ValueError, match="before its start"):
        index.close_gap(gap, 9 * S)
    with pytest.raises(KeyError):
        index.close_gap(GapRef(gap.id + 1000, gap.start_us), 12 * S)


def test_publishing_500_statuses_is_one_prepared_statement(index_engine: Engine) -> None:
    table = CameraStatusTable(index_engine)
    statuses = [{"camera_id": f"cam-{i:03d}", "stream": s, "state": "recording", "fps": 25.0}
                for i in range(250) for s in ("main", "sub")]
    table.publish("w", statuses, now_us=T0)
    with statements(index_engine) as seen:
        assert table.publish("w", statuses, now_us=T0 + S) == 500
    # Executed for every row (psycopg pipelines them), not a 4,500-value statement compiled each round.
    assert seen.many == [True], seen.statements
    fresh = table.statuses(now_us=T0 + S, stale_us=TTL)
    assert len(fresh) == 500 and {d["updated_us"] for d in fresh.values()} == {T0 + S}


def test_a_worker_taking_a_camera_over_learns_its_number_from_the_read(index_engine: Engine) -> None:
    SegmentIndex(index_engine).add_segment(record(0, 60, camera="cam-1"))  # the first worker numbers the camera
    taker = SegmentIndex(index_engine)  # another process: nothing cached
    with statements(index_engine) as seen:
        row = taker.add_segment(record(60, 120, camera="cam-1"))
    assert not [s for s in seen.statements if s.startswith(("INSERT INTO segment_cameras", "SELECT segment_cameras"))]
    assert row.camera_id == "cam-1" and row.camera_seq == taker._camera_seqs["cam-1"]
    assert [r.start_us for r in taker.segments("cam-1")] == [0, 60 * S]
