"""Benchmark: migration 0017 (``gaps`` partitioned by month) on a realistic gaps table, on
PostgreSQL, and how long it blocks writers.

    .venv/bin/python -m tests.bench.gaps_migration [--rows 200000] [--cameras 5000] [--days 60]

1. A fresh database at revision 0016 gets ``--rows`` gap rows by COPY: ``--cameras``
   cameras with GB/T 28181 ids, main and sub, starts spread over the last ``--days`` days
   (reconnects, takeovers and retention gaps, 1 s to 2 h long, a few per camera still open).
2. A writer does what a worker of the previous release does for every outage: open a gap
   (``INSERT … RETURNING id``), then close it by id alone (``UPDATE … WHERE id = …``), every
   5 ms, alone for 10 s (baseline, same run), then during ``alembic upgrade 0017`` and for
   2 s after it (an old worker's update by id alone still works on the new table). Its
   statement latencies are the lock waits the migration causes.
3. Every row is in the new table (those loaded and those the writer wrote), in the month of
   its start.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import statistics
import threading
import time
from collections.abc import Iterator

from alembic import command
from sqlalchemy import Engine, text

from storage.db.engine import open_engine
from storage.db.migrations import alembic_config
from tests.bench.pg_load import camera_id, copy_rows
from tests.support.databases import DEFAULT_PG_URL, PostgresAdmin

S = 1_000_000
DAY_US = 86_400 * S
REASONS = ("network", "offline", "worker_restart", "unauthorized", "retention", "device_offline", "media_timeout")


def load(engine: Engine, n: int, cameras: int, days: int, now: int) -> float:
    rnd = random.Random(17)

    def rows() -> Iterator[tuple[object, ...]]:
        for k in range(n):
            start = now - rnd.randrange(days * DAY_US)
            still_open = k % 400 == 0
            end = None if still_open else min(now, start + rnd.randrange(S, 7200 * S))
            reason = REASONS[rnd.randrange(len(REASONS))]
            yield (camera_id(k % cameras), "main" if k % 2 == 0 else "sub", start, end, reason,
                   "connection reset by peer" if reason == "network" else "")

    return copy_rows(engine, "gaps", ("camera_id", "stream", "start_us", "end_us", "reason", "detail"), rows())


class Writer(threading.Thread):
    """A previous-release worker's gap bookkeeping: open, then close by id, every 5 ms."""

    def __init__(self, engine: Engine):
        super().__init__(daemon=True)
        self.engine = engine
        self.latencies: list[float] = []
        self.ids: list[int] = []
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            now = time.time_ns() // 1000
            t = time.perf_counter()
            try:
                with self.engine.begin() as c:
                    gid = c.execute(text("INSERT INTO gaps (camera_id, stream, start_us, end_us, reason, detail) "
                                         "VALUES ('writer', 'main', :s, NULL, 'network', '') RETURNING id"),
                                    {"s": now}).scalar_one()
                self.latencies.append(time.perf_counter() - t)
                t = time.perf_counter()
                with self.engine.begin() as c:
                    c.execute(text("UPDATE gaps SET end_us = :e WHERE id = :i"), {"e": now + 1000, "i": gid})
                self.latencies.append(time.perf_counter() - t)
                self.ids.append(int(gid))
            except Exception as exc:  # noqa: BLE001 - counted and reported
                self.errors.append(type(exc).__name__)
            time.sleep(0.005)


def pct(lat: list[float]) -> str:
    b = sorted(lat)
    return (f"{len(b)} statements, p50 {statistics.median(b) * 1e3:.1f} ms, p99 {b[int(len(b) * 0.99)] * 1e3:.1f} ms, "
            f"max {b[-1] * 1e3:.1f} ms, > 100 ms: {sum(1 for x in b if x > 0.1)}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--cameras", type=int, default=5000)
    ap.add_argument("--days", type=int, default=60)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("storage.db.migrations.0017").setLevel(logging.INFO)
    print("load average at start: %.2f %.2f %.2f" % os.getloadavg())
    admin = PostgresAdmin(DEFAULT_PG_URL)
    name = admin.create()
    try:
        engine = open_engine(admin.url_for(name), migrate=False)
        command.upgrade(alembic_config(engine), "0016")
        now = time.time_ns() // 1000
        print(f"load {args.rows} gap rows (0016 layout, {args.days} days): "
              f"{load(engine, args.rows, args.cameras, args.days, now):.1f} s")
        with engine.connect() as c:
            size = c.execute(text("SELECT pg_total_relation_size('gaps')")).scalar_one()
        print(f"before: {size / args.rows:.0f} B a row with indexes")
        base = Writer(engine)
        base.start()
        time.sleep(10.0)
        base.stop.set()
        base.join(5)
        print(f"baseline writer (no migration): {pct(base.latencies)}")
        writer = Writer(engine)
        writer.start()
        time.sleep(1.0)
        started = time.perf_counter()
        command.upgrade(alembic_config(engine), "0017")
        took = time.perf_counter() - started
        time.sleep(2.0)
        writer.stop.set()
        writer.join(5)
        print(f"migration 0017: {took:.1f} s; concurrent old-release writer: {pct(writer.latencies)}; "
              f"errors {sorted(set(writer.errors)) or 'none'}")
        with engine.connect() as c:
            total = c.execute(text("SELECT count(*) FROM gaps")).scalar_one()
            written = c.execute(text("SELECT count(*) FROM gaps WHERE camera_id = 'writer' AND end_us IS NOT NULL")
                                ).scalar_one()
            in_default = c.execute(text("SELECT count(*) FROM gaps_default")).scalar_one()
            months = c.execute(text("SELECT count(*) FROM pg_inherits WHERE inhparent = 'gaps'::regclass")
                               ).scalar_one()
            size = c.execute(text("SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits "
                                  "WHERE inhparent = 'gaps'::regclass")).scalar_one()
        expected = args.rows + len(base.ids) + len(writer.ids)
        print(f"after: {total} rows (expected {expected}: loaded + both writers' closed gaps), writer's closed "
              f"gaps {written} of {len(base.ids) + len(writer.ids)}, {in_default} in gaps_default, {months} "
              f"partitions, {size / total:.0f} B a row with indexes")
        engine.dispose()
    finally:
        admin.drop(name)
    print("load average at end: %.2f %.2f %.2f" % os.getloadavg())


if __name__ == "__main__":
    main()
