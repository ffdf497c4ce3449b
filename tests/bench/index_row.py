"""Benchmark: the segment row's size before and after a migration (0016 by default, or 0015),
and the migration itself, on PostgreSQL.

    .venv/bin/python -m tests.bench.index_row [--rows 1000000] [--cameras 5000] [--migration 0016|0015]

With ``--migration 0016`` (default) the steps are the same from a database at 0015, loaded
with 0015 rows (bytea digests, version 1 keyframe tables, no stored keys), and step 5 loads
``--fresh`` rows in the 0016 layout time-major (every camera's rows interleaved, as workers
write them) into a second database: the steady-state size, where the migrated table's
primary key is packed tighter (copied in key order).

For ``--migration 0015``:

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
from tests.bench.pg_load import camera_id, copy_rows
from tests.support.databases import DEFAULT_PG_URL, PostgresAdmin

S = 1_000_000
SEG_US = 60 * S
T0 = 1_795_000_000 * S  # 2026-11-18
COLUMNS_0015 = ("camera_id", "stream", "start_us", "end_us", "bytes", "codec", "width", "height", "sha256",
                "prev_sha256", "init_sha256", "keyframes", "drift_us", "worker_id", "created_us")
COLUMNS_0016 = ("start_us", "end_us", "bytes", "created_us", "camera_seq", "source_seq", "drift_us", "stream", "sha256",
                "prev_sha256", "keyframes", "object_key")
COLUMNS = ("camera_id", "stream", "start_us", "end_us", "object_key", "bytes", "codec", "width", "height",
           "audio_codec", "sha256", "prev_sha256", "init_sha256", "keyframes", "drift_us", "worker_id", "created_us")


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


def rows_0015(n: int, cameras: int, t0: int):  # type: ignore[no-untyped-def]
    """The 0014 rows as migration 0015 leaves them."""
    from storage.index.keyframes import _pack_v1, unpack_keyframes

    packed: dict[bytes, bytes] = {}
    for r in old_rows(n, cameras):
        kf = packed.get(r[13])
        if kf is None:
            kf = packed[r[13]] = _pack_v1(unpack_keyframes(r[13]))
        yield (r[0], r[1], r[2] - T0 + t0, r[3] - T0 + t0, r[5], r[6], r[7], r[8], bytes.fromhex(r[10]),
               None if r[11] is None else bytes.fromhex(r[11]), bytes.fromhex(r[12]), kf, 0, r[15], r[16] - T0 + t0)


def rows_0016(n: int, cameras: int, t0: int):  # type: ignore[no-untyped-def]
    """The same rows in the 0016 layout (camera i is number i + 1, source 1 or 2)."""
    from storage.index.keyframes import pack_keyframes, unpack_keyframes

    packed: dict[bytes, bytes] = {}
    ids = {camera_id(i): i + 1 for i in range(cameras)}
    for r in rows_0015(n, cameras, t0):
        kf = packed.get(r[11])
        if kf is None:
            kf = packed[r[11]] = pack_keyframes(unpack_keyframes(r[11]))
        main = r[1] == "main"
        yield (r[2], r[3], r[4], r[14], ids[r[0]], 1 if main else 2, 0, 0 if main else 1, r[8], r[9] or b"", kf, "")


def load_0015(engine: Engine, n: int, cameras: int, t0: int) -> float:
    with engine.begin() as c:
        c.execute(text("INSERT INTO init_segments (sha256, data) VALUES (:a, :x), (:b, :y)"),
                  {"a": hashlib.sha256(b"main").digest(), "x": b"x" * 800,
                   "b": hashlib.sha256(b"sub").digest(), "y": b"y" * 700})
    return copy_rows(engine, "segments", COLUMNS_0015, rows_0015(n, cameras, t0))


def load_0016(engine: Engine, n: int, cameras: int, t0: int) -> float:
    started = time.perf_counter()
    copy_rows(engine, "segment_cameras", ("camera_id",), ((camera_id(i),) for i in range(cameras)), analyze=False)
    with engine.begin() as c:
        c.execute(text("INSERT INTO segment_sources (init_sha256, codec, width, height, audio_codec, worker_id, "
                       "origin) VALUES (:a, 'h264', 1920, 1080, '', 'ingest-00', 'live'), "
                       "(:b, 'h264', 640, 360, '', 'ingest-00', 'live')"),
                  {"a": hashlib.sha256(b"main").digest(), "b": hashlib.sha256(b"sub").digest()})
    copy_rows(engine, "segments", COLUMNS_0016, rows_0016(n, cameras, t0))
    return time.perf_counter() - started


def load(engine: Engine, n: int, cameras: int) -> float:
    with engine.begin() as c:
        c.execute(text("INSERT INTO init_segments (sha256, data) VALUES (:a, :x), (:b, :y)"),
                  {"a": hashlib.sha256(b"main").hexdigest(), "x": b"x" * 800,
                   "b": hashlib.sha256(b"sub").hexdigest(), "y": b"y" * 700})
    return copy_rows(engine, "segments", COLUMNS, old_rows(n, cameras))


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

    def __init__(self, engine: Engine, layout: str = "0014"):
        super().__init__(daemon=True)
        self.engine = engine
        self.layout = layout
        self.latencies: list[float] = []
        self.stop = threading.Event()
        self.stopped_by = ""

    def run(self) -> None:
        k = 0
        sha = hashlib.sha256(b"main").hexdigest()
        while not self.stop.is_set():
            start = (T0 if self.layout == "0014" else time.time_ns() // 1000) + k * SEG_US
            t = time.perf_counter()
            try:
                with self.engine.begin() as c:
                    if self.layout == "0015":
                        c.execute(text(
                            "INSERT INTO segments (camera_id, stream, start_us, end_us, bytes, codec, width, height, "
                            "sha256, init_sha256, keyframes, drift_us, worker_id, created_us) VALUES ('writer', "
                            "'main', :s, :e, 1, 'h264', 1, 1, decode(:h, 'hex'), decode(:h, 'hex'), '\\x01', 0, "
                            "'w', 0)"), {"s": start, "e": start + SEG_US, "h": sha})
                    else:
                        c.execute(text(
                            "INSERT INTO segments (camera_id, stream, start_us, end_us, object_key, bytes, codec, "
                            "width, height, audio_codec, sha256, prev_sha256, init_sha256, keyframes, drift_us, "
                            "worker_id, created_us) VALUES ('writer', 'main', :s, :e, 'k', 1, 'h264', 1, 1, NULL, :h, "
                            "NULL, :h, decode(repeat('00', 16), 'hex'), 0, 'w', 0)"),
                            {"s": start, "e": start + SEG_US, "h": sha})
            except Exception as exc:  # noqa: BLE001 - the swap: the old table is gone
                self.stopped_by = type(exc).__name__
                return
            finally:
                self.latencies.append(time.perf_counter() - t)
                k += 1
            time.sleep(0.005)


def pct(lat: list[float]) -> str:
    b = sorted(lat)
    return (f"{len(b)} inserts, p50 {statistics.median(b) * 1e3:.1f} ms, p99 {b[int(len(b) * 0.99)] * 1e3:.1f} ms, "
            f"max {b[-1] * 1e3:.1f} ms, > 100 ms: {sum(1 for x in b if x > 0.1)}")


def main_0016(args: argparse.Namespace) -> None:
    admin = PostgresAdmin(DEFAULT_PG_URL)
    t0 = (time.time_ns() // 1000 // SEG_US - args.rows // (2 * args.cameras) - 10) * SEG_US
    name = admin.create()
    try:
        engine = open_engine(admin.url_for(name), migrate=False)
        command.upgrade(alembic_config(engine), "0015")
        print(f"load {args.rows} rows (0015 layout): {load_0015(engine, args.rows, args.cameras, t0):.1f} s")
        before = bytes_per_row(engine)
        print("before:", {k: round(v, 1) for k, v in before.items()})
        base = Writer(engine, "0015")
        base.start()
        time.sleep(10.0)
        base.stop.set()
        base.join(5)
        print(f"baseline writer (no migration): {pct(base.latencies)}")
        with engine.begin() as c:
            c.execute(text("DELETE FROM segments WHERE camera_id = 'writer'"))
        writer = Writer(engine, "0015")
        writer.start()
        time.sleep(1.0)
        started = time.perf_counter()
        command.upgrade(alembic_config(engine), "0016")
        took = time.perf_counter() - started
        writer.stop.set()
        writer.join(5)
        print(f"migration 0016: {took:.1f} s; concurrent old-release writer: {pct(writer.latencies)}; "
              f"stopped by {writer.stopped_by}")
        with engine.begin() as c:
            c.execute(text("ANALYZE segments"))
            copied = c.execute(text("SELECT count(*) FROM segments s JOIN segment_cameras c ON c.seq = s.camera_seq "
                                    "WHERE c.camera_id = 'writer'")).scalar_one()
        print(f"  writer rows in the new table: {copied} (inserted {len(writer.latencies)}, the last may have failed)")
        after = bytes_per_row(engine)
        print("after (migrated, key order):", {k: round(v, 1) for k, v in after.items()})
        engine.dispose()
    finally:
        admin.drop(name)
    if not args.fresh:
        return
    name = admin.create()
    try:
        engine = open_engine(admin.url_for(name))
        print(f"load {args.fresh} rows (0016 layout, time-major): "
              f"{load_0016(engine, args.fresh, args.cameras, t0):.1f} s")
        print("fresh (time-major):", {k: round(v, 1) for k, v in bytes_per_row(engine).items()})
        engine.dispose()
    finally:
        admin.drop(name)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--cameras", type=int, default=5000)
    ap.add_argument("--migration", choices=("0015", "0016"), default="0016")
    ap.add_argument("--fresh", type=int, default=1_000_000, help="rows for the 0016 steady-state size (0: skip)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger(f"storage.db.migrations.{args.migration}").setLevel(logging.INFO)
    if args.migration == "0016":
        main_0016(args)
        return
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
