"""Benchmark: the segment row's size before and after migration 0015, and the migration itself, on PostgreSQL.

    .venv/bin/python -m tests.bench.index_row [--rows 1000000] [--cameras 5000]

1. A fresh database at revision 0014 (the 1.1 KiB row) gets ``--rows`` rows by COPY:
   ``--cameras`` cameras with GB/T 28181 ids (20 digits), main and sub, 60 s segments of
   30 GOPs (main ~1 MB a GOP, sub ~125 kB), hex digests, 16-byte keyframe entries.
2. Bytes per row: heap + TOAST + every index (``pg_total_relation_size``) / rows.
3. ``alembic upgrade 0015`` while a writer inserts a segment into the old table every
   5 ms, as a worker of the previous release would; its insert latencies are the lock
   waits the migration causes (it stops at the swap, when the old table is gone), against
   the same writer alone for 10 s before (baseline, same run).
4. Bytes per row again, summed over the partitions, and the row as a fresh insert
   through ``SegmentIndex`` would write it.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import random
import statistics
import struct
import threading
import time

from alembic import command
from sqlalchemy import Engine, text

from storage.db.engine import open_engine
from storage.db.migrations import alembic_config
from tests.support.databases import DEFAULT_PG_URL, PostgresAdmin

S = 1_000_000
SEG_US = 60 * S
T0 = 1_795_000_000 * S  # 2026-11-18
COLUMNS = ("camera_id", "stream", "start_us", "end_us", "object_key", "bytes", "codec", "width", "height",
           "audio_codec", "sha256", "prev_sha256", "init_sha256", "keyframes", "drift_us", "worker_id", "created_us")


def camera_id(i: int) -> str:
    return f"3402000000132{i:07d}"


def legacy_keyframes(rnd: random.Random, gop_bytes: int) -> bytes:
    out, offset = [], 1200
    for k in range(30):
        out.append(struct.pack("<qQ", k * 2 * S, offset))
        offset += int(gop_bytes * rnd.uniform(0.8, 1.2))
    return b"".join(out)


def old_rows(n: int, cameras: int):  # type: ignore[no-untyped-def]
    from storage.objects.open import segment_key

    rnd = random.Random(1)
    tables = {s: [legacy_keyframes(rnd, g) for _ in range(200)] for s, g in (("main", 1_000_000), ("sub", 125_000))}
    init = {s: hashlib.sha256(s.encode()).hexdigest() for s in ("main", "sub")}
    prev: dict[tuple[int, str], str] = {}
    made = 0
    k = 0
    while True:
        for i in range(cameras):
            for stream in ("main", "sub"):
                if made == n:
                    return
                cam = camera_id(i)
                start = T0 + k * SEG_US + rnd.randrange(0, 40_000)
                end = start + SEG_US - 40_000
                sha = hashlib.sha256(f"{cam}{stream}{k}".encode()).hexdigest()
                yield (cam, stream, start, end, segment_key(cam, stream, start, (end - start) // 1000),
                       30_000_000 if stream == "main" else 3_750_000, "h264", 1920 if stream == "main" else 640,
                       1080 if stream == "main" else 360, None, sha, prev.get((i, stream)), init[stream],
                       tables[stream][rnd.randrange(200)], 0, f"ingest-{i % 20:02d}", end + 300_000)
                prev[(i, stream)] = sha
                made += 1
        k += 1


def load(engine: Engine, n: int, cameras: int) -> float:
    started = time.perf_counter()
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("INSERT INTO init_segments (sha256, data) VALUES (%s, %s), (%s, %s)",
                    (hashlib.sha256(b"main").hexdigest(), b"x" * 800, hashlib.sha256(b"sub").hexdigest(), b"y" * 700))
        with cur.copy(f"COPY segments ({', '.join(COLUMNS)}) FROM STDIN") as copy:  # type: ignore[attr-defined]
            for row in old_rows(n, cameras):
                copy.write_row(row)
        raw.commit()
        raw.driver_connection.autocommit = True  # type: ignore[attr-defined]
        cur.execute("VACUUM ANALYZE segments")
    finally:
        raw.close()
    return time.perf_counter() - started


def bytes_per_row(engine: Engine) -> dict[str, float]:
    with engine.connect() as c:
        rels = c.execute(text(
            "SELECT c.oid::regclass::text FROM pg_class c WHERE c.relkind = 'r' AND (c.relname = 'segments' OR "
            "c.oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = 'segments'::regclass))")).scalars().all()
        n = c.execute(text("SELECT count(*) FROM segments")).scalar_one()
        heap = sum(c.execute(text("SELECT pg_relation_size(:r) + coalesce(pg_total_relation_size("
                                  "(SELECT reltoastrelid FROM pg_class WHERE oid = CAST(:r AS regclass))), 0)"),
                             {"r": r}).scalar_one() for r in rels)
        total = sum(c.execute(text("SELECT pg_total_relation_size(:r)"), {"r": r}).scalar_one() for r in rels)
        avg_tuple = c.execute(text("SELECT avg(pg_column_size(s.*)) FROM (SELECT * FROM segments LIMIT 20000) s")
                              ).scalar_one()
        per_index = c.execute(text(
            "SELECT i.indexrelid::regclass::text, pg_relation_size(i.indexrelid) FROM pg_index i "
            "WHERE i.indrelid IN (SELECT oid FROM pg_class WHERE relname = 'segments' OR oid IN "
            "(SELECT inhrelid FROM pg_inherits WHERE inhparent = 'segments'::regclass))")).all()
    print("  index bytes per row:", {name: round(size / n, 1) for name, size in per_index if size > 65536})
    return {"rows": n, "heap_B_per_row": heap / n, "indexes_B_per_row": (total - heap) / n,
            "total_B_per_row": total / n, "avg_tuple_B": float(avg_tuple)}


class Writer(threading.Thread):
    """A previous-release worker: inserts an old-format row every 5 ms until the table is swapped."""

    def __init__(self, engine: Engine):
        super().__init__(daemon=True)
        self.engine = engine
        self.latencies: list[float] = []
        self.stop = threading.Event()
        self.stopped_by = ""

    def run(self) -> None:
        k = 0
        sha = hashlib.sha256(b"main").hexdigest()
        while not self.stop.is_set():
            start = T0 + k * SEG_US
            t = time.perf_counter()
            try:
                with self.engine.begin() as c:
                    c.execute(text(
                        "INSERT INTO segments (camera_id, stream, start_us, end_us, object_key, bytes, codec, width, "
                        "height, audio_codec, sha256, prev_sha256, init_sha256, keyframes, drift_us, worker_id, "
                        "created_us) VALUES ('writer', 'main', :s, :e, 'k', 1, 'h264', 1, 1, NULL, :h, NULL, :h, "
                        "decode(repeat('00', 16), 'hex'), 0, 'w', 0)"), {"s": start, "e": start + SEG_US, "h": sha})
            except Exception as exc:  # noqa: BLE001 - the swap: the old table is gone
                self.stopped_by = type(exc).__name__
                return
            self.latencies.append(time.perf_counter() - t)
            k += 1
            time.sleep(0.005)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--cameras", type=int, default=5000)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("storage.db.migrations.0015").setLevel(logging.INFO)
    admin = PostgresAdmin(DEFAULT_PG_URL)
    name = admin.create()
    try:
        url = admin.url_for(name)
        engine = open_engine(url, migrate=False)
        command.upgrade(alembic_config(engine), "0014")
        print(f"load {args.rows} rows (0014 layout): {load(engine, args.rows, args.cameras):.1f} s")
        before = bytes_per_row(engine)
        print("before:", {k: round(v, 1) for k, v in before.items()})
        # Baseline, same run: the writer alone for 10 s (the machine's own latency).
        base = Writer(engine)
        base.start()
        time.sleep(10.0)
        base.stop.set()
        base.join(5)
        b = sorted(base.latencies)
        print(f"baseline writer (no migration): {len(b)} inserts, p50 {statistics.median(b) * 1e3:.1f} ms, "
              f"p99 {b[int(len(b) * 0.99)] * 1e3:.1f} ms, max {b[-1] * 1e3:.1f} ms")
        with engine.begin() as c:
            c.execute(text("DELETE FROM segments WHERE camera_id = 'writer'"))
        writer = Writer(engine)
        writer.start()
        time.sleep(1.0)
        started = time.perf_counter()
        command.upgrade(alembic_config(engine), "0015")
        took = time.perf_counter() - started
        writer.stop.set()
        writer.join(5)
        lat = sorted(writer.latencies)
        print(f"migration 0015: {took:.1f} s; concurrent old-release writer: {len(lat)} inserts, "
              f"p50 {statistics.median(lat) * 1e3:.1f} ms, p99 {lat[int(len(lat) * 0.99)] * 1e3:.1f} ms, "
              f"max {lat[-1] * 1e3:.1f} ms, > 100 ms: {sum(1 for x in lat if x > 0.1)}; stopped by {writer.stopped_by}")
        with engine.begin() as c:
            c.execute(text("ANALYZE segments"))
        after = bytes_per_row(engine)
        print("after:", {k: round(v, 1) for k, v in after.items()})
        engine.dispose()
    finally:
        admin.drop(name)


if __name__ == "__main__":
    main()
