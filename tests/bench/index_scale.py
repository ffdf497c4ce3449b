"""Benchmark: the segment index at county scale, on SQLite and PostgreSQL.

    .venv/bin/python -m tests.bench.index_scale [--cameras 1000] [--per-camera 1500] [--db sqlite,postgresql]

Generates ``cameras x per-camera`` segment rows (60 s segments, 30 keyframes each,
cameras spread over townships of 50), bulk-inserted (SQLite: executemany in one
transaction; PostgreSQL: COPY), then measures with the real ``SegmentIndex`` code:

- timeline: one camera's segments over 24 h, as full rows (``SegmentIndex.segments``)
  and as spans only (``SegmentIndex.spans``, what a timeline draws), p50/p99;
- township: one township's cameras over 1 h (segments joined to cameras by region);
- retention: the cleaner's selection of expired segments (oldest first, batch of 1000);
- insert: rows/s from 64 threads each closing segments through ``add_segment`` with a
  lease fence, as 64 workers' uploaders would;
- size: database bytes per million segment rows.

Baseline, measured in the same run: the same queries on a 1 %-size database, so the
printed ratio says how much the queries slow down as the table grows 100x.
Target: timeline p99 <= 20 ms on both back ends.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path

from sqlalchemy import Engine, select, text

from storage import LeaseTable, SegmentIndex, SegmentRecord, open_engine, pack_keyframes
from storage.index.keyframes import Keyframe
from storage.db.schema import CameraRow, SegmentCameraRow, SegmentRow
from tests.support.databases import DEFAULT_PG_URL, PostgresAdmin
from tests.bench.pg_load import camera_id

S = 1_000_000
SEG_US = 60 * S
T0 = 1_790_000_000 * S
PER_TOWNSHIP = 50
KEYFRAMES = pack_keyframes([Keyframe(i * 2 * S, 1200 + i * 250_000) for i in range(30)])
INIT_SHA = hashlib.sha256(b"init").hexdigest()


def township(i: int) -> str:
    return f"t{i // PER_TOWNSHIP:04d}"


# -- data -------------------------------------------------------------------------


def per_camera_hint(cameras: int) -> int:
    return 1500  # segments a camera gets at most (partitions are created to cover them)


def seed_registry(engine: Engine, cameras: int) -> None:
    with engine.begin() as c:
        c.execute(text("INSERT INTO regions (code, name, parent) VALUES ('county', 'County', NULL)"))
        towns = sorted({township(i) for i in range(cameras)})
        c.execute(text("INSERT INTO regions (code, name, parent) VALUES (:c, :c, 'county')"), [{"c": t} for t in towns])
        c.execute(
            text("INSERT INTO cameras (id, name, region, main_url, sub_url, enabled, retention_days, transcode, "
                 "rtsp_transport, updated_us) VALUES (:id, :id, :r, 'rtsp://x/1', NULL, true, 30, 'none', 'tcp', 0)"),
            [{"id": camera_id(i), "r": township(i)} for i in range(cameras)],
        )
        c.execute(text("INSERT INTO init_segments (sha256, data) VALUES (:s, :d)"),
                  {"s": bytes.fromhex(INIT_SHA), "d": b"x" * 800})
        # Camera i is segment camera number i + 1; one source (migration 0016).
        c.execute(text("INSERT INTO segment_cameras (seq, camera_id) VALUES (:n, :id)"),
                  [{"n": i + 1, "id": camera_id(i)} for i in range(cameras)])
        c.execute(text("INSERT INTO segment_sources (seq, init_sha256, codec, width, height, audio_codec, worker_id, "
                       "origin) VALUES (1, :s, 'h264', 1920, 1080, '', 'w1', 'live')"), {"s": bytes.fromhex(INIT_SHA)})
        if engine.dialect.name == "postgresql":  # the numbers were given: move the sequences past them
            c.execute(text("SELECT setval(pg_get_serial_sequence('segment_cameras', 'seq'), :n)"), {"n": cameras})
            c.execute(text("SELECT setval(pg_get_serial_sequence('segment_sources', 'seq'), 1)"))
    from storage.db.partitions import ensure_partitions

    ensure_partitions(engine, now_us=T0 + per_camera_hint(cameras) * SEG_US, since_us=T0)


def rows(cameras: int, per_camera: int):  # type: ignore[no-untyped-def]
    """Time-major, as workers write them: each camera's rows are scattered over the
    table (one timeline reads ~1,440 different pages unless an index covers it)."""
    rnd = random.Random(1)
    prev: dict[int, bytes | None] = {}
    for k in range(per_camera):
        for i in range(cameras):
            cam = camera_id(i)
            start = T0 + k * SEG_US + rnd.randrange(0, 40_000)
            sha = hashlib.sha256(f"{cam}{k}".encode()).digest()
            # The row as SegmentIndex writes it (migration 0016): camera and source by number, stream 0
            # (main), digests as bytes, "" for no stored key and no first link.
            yield (start, start + SEG_US - 40_000, 30_000_000, start + SEG_US, i + 1, 1, 0, 0, sha,
                   prev.get(i) or b"", KEYFRAMES, "")
            prev[i] = sha


COLUMNS = ("start_us", "end_us", "bytes", "created_us", "camera_seq", "source_seq", "drift_us", "stream", "sha256",
           "prev_sha256", "keyframes", "object_key")


def bulk_insert(engine: Engine, cameras: int, per_camera: int) -> float:
    started = time.perf_counter()
    if engine.dialect.name == "postgresql":
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            with cur.copy(f"COPY segments ({', '.join(COLUMNS)}) FROM STDIN") as copy:  # type: ignore[attr-defined]
                for row in rows(cameras, per_camera):
                    copy.write_row(row)
            raw.commit()
            # What autovacuum does to settled rows: statistics, and the visibility map
            # that lets a timeline be an index-only scan.
            raw.driver_connection.autocommit = True  # type: ignore[attr-defined]
            cur.execute("VACUUM ANALYZE segments")
        finally:
            raw.close()
    else:
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            sql = f"INSERT INTO segments ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
            batch = []
            for row in rows(cameras, per_camera):
                batch.append(row)
                if len(batch) == 50_000:
                    cur.executemany(sql, batch)
                    batch.clear()
            cur.executemany(sql, batch)
            raw.commit()
            cur.execute("ANALYZE")
            raw.commit()
        finally:
            raw.close()
    return time.perf_counter() - started


def db_bytes(engine: Engine, path: Path | None) -> int:
    if engine.dialect.name == "postgresql":
        with engine.connect() as c:
            return int(c.execute(text("SELECT pg_database_size(current_database())")).scalar_one())
    assert path is not None
    with engine.connect() as c:
        c.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    return path.stat().st_size


# -- queries -----------------------------------------------------------------------


def percentiles(samples: list[float]) -> tuple[float, float]:
    s = sorted(samples)
    return statistics.median(s) * 1000, s[min(len(s) - 1, int(len(s) * 0.99))] * 1000


def timed(fn, n: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return percentiles(out)


def measure_queries(engine: Engine, cameras: int, per_camera: int, n: int = 200) -> dict[str, tuple[float, float]]:
    index = SegmentIndex(engine)
    rnd = random.Random(2)
    span_end = T0 + per_camera * SEG_US

    def timeline() -> None:
        cam = camera_id(rnd.randrange(cameras))
        end = rnd.randrange(T0 + 24 * 3600 * S, span_end) if per_camera * 60 > 24 * 3600 else span_end
        got = index.segments(cam, "main", end - 24 * 3600 * S, end)
        assert got

    def timeline_spans() -> None:
        cam = camera_id(rnd.randrange(cameras))
        end = rnd.randrange(T0 + 24 * 3600 * S, span_end) if per_camera * 60 > 24 * 3600 else span_end
        assert index.spans(cam, "main", end - 24 * 3600 * S, end)

    def township_hour() -> None:
        town = township(rnd.randrange(cameras))
        end = rnd.randrange(T0 + 3600 * S, span_end)
        q = (select(SegmentCameraRow.camera_id, SegmentRow.start_us, SegmentRow.end_us, SegmentRow.stored_key)
             .join(SegmentCameraRow, SegmentCameraRow.seq == SegmentRow.camera_seq)
             .join(CameraRow, CameraRow.id == SegmentCameraRow.camera_id)
             .where(CameraRow.region == town, SegmentRow.stream == "main",
                    SegmentRow.start_us < end, SegmentRow.end_us > end - 3600 * S,
                    # lower bound on start_us lets the (camera, stream, start) index bound the range scan
                    SegmentRow.start_us > end - 3600 * S - 2 * SEG_US))
        with index.session() as s:
            assert s.execute(q).all()

    def retention() -> None:
        cutoff = T0 + rnd.randrange(1, per_camera // 2) * SEG_US
        q = (select(SegmentRow.id, SegmentRow.stored_key).where(SegmentRow.start_us < cutoff)
             .order_by(SegmentRow.start_us).limit(1000))
        with index.session() as s:
            assert s.execute(q).all()

    def server_side() -> tuple[float, float]:
        """PostgreSQL's own execution time of the spans query (EXPLAIN ANALYZE): the
        database's share, without Python, the driver and CPU waits on a busy machine."""
        out = []
        with engine.connect() as c:
            for _ in range(n):
                cam = camera_id(rnd.randrange(cameras))
                end = rnd.randrange(T0 + 24 * 3600 * S, span_end) if per_camera * 60 > 24 * 3600 else span_end
                plan = c.execute(text(
                    "EXPLAIN (ANALYZE, FORMAT JSON) SELECT start_us, end_us FROM segments WHERE camera_seq = "
                    "(SELECT seq FROM segment_cameras WHERE camera_id = :c) AND stream = 0 AND start_us < :e "
                    "AND end_us > :s ORDER BY start_us"),
                    {"c": cam, "e": end, "s": end - 24 * 3600 * S}).scalar_one()
                plan = plan if isinstance(plan, list) else __import__("json").loads(plan)
                out.append(plan[0]["Execution Time"] / 1000)
        return percentiles(out)

    for fn in (timeline, timeline_spans, township_hour, retention):
        fn()  # warm caches
    extra = {"timeline_server": server_side()} if engine.dialect.name == "postgresql" else {}
    return {**extra, "timeline_24h": timed(timeline, n), "timeline_spans": timed(timeline_spans, n),
            "township_1h": timed(township_hour, n), "retention_batch": timed(retention, max(20, n // 4))}


def measure_inserts(engine: Engine, writers: int = 64, per_writer: int = 20) -> float:
    """rows/s of fenced add_segment calls from ``writers`` threads at once."""
    leases = LeaseTable(engine)
    cams = [f"bench-{w:02d}" for w in range(writers)]
    leases.ensure(cams)
    for w, cam in enumerate(cams):
        leases.acquire(f"w{w}", [cam], 1, now_us=T0, ttl_us=10**15)
    index = SegmentIndex(engine)
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        cam = cams[w]
        barrier.wait()
        try:
            for k in range(per_writer):
                start = T0 + k * SEG_US
                index.add_segment(SegmentRecord(
                    cam, "main", start, start + SEG_US, f"{cam}/main/{start}.mp4", 30_000_000, "h264", 1920, 1080,
                    None, hashlib.sha256(f"{cam}{k}".encode()).hexdigest(), INIT_SHA, b"x" * 800, KEYFRAMES,
                ), fence=(f"w{w}", 1))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - t
    if errors:
        raise errors[0]
    return writers * per_writer / elapsed


# -- runs --------------------------------------------------------------------------


def run_one(backend: str, cameras: int, per_camera: int, work: Path, admin: PostgresAdmin | None) -> dict:
    name = None
    path = None
    if backend == "postgresql":
        assert admin is not None
        name = admin.create()
        url = admin.url_for(name)
    else:
        path = work / f"index-{cameras}x{per_camera}.db"
        url = f"sqlite:///{path}"
    engine = open_engine(url)
    if backend == "postgresql":
        engine.dispose()
        from sqlalchemy import create_engine

        engine = create_engine(url, pool_size=70, max_overflow=10)
    try:
        seed_registry(engine, cameras)
        load_s = bulk_insert(engine, cameras, per_camera)
        size = db_bytes(engine, path)
        queries = measure_queries(engine, cameras, per_camera)
        inserts = measure_inserts(engine)
        n = cameras * per_camera
        return {"rows": n, "load_s": load_s, "bytes_per_million": size / n * 1e6, **queries, "insert_rows_s": inserts}
    finally:
        engine.dispose()
        if name is not None and admin is not None:
            admin.drop(name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cameras", type=int, default=1000)
    ap.add_argument("--per-camera", type=int, default=1500)
    ap.add_argument("--db", default="sqlite,postgresql")
    ap.add_argument("--pg-url", default=os.environ.get("SHARPEYES_TEST_PG_URL", DEFAULT_PG_URL))
    args = ap.parse_args()
    admin = PostgresAdmin(args.pg_url)
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
          "(p99s on a shared machine include CPU waits)")
    with tempfile.TemporaryDirectory(prefix="index-scale-") as tmp:
        for backend in args.db.split(","):
            if backend == "postgresql" and admin.unavailable_reason():
                print(f"{backend}: skipped: {admin.unavailable_reason()}")
                continue
            # Same depth per camera (same answer sizes), 1 % of the cameras.
            base_cams, base_per = max(PER_TOWNSHIP, args.cameras // 100), args.per_camera
            base = run_one(backend, base_cams, base_per, Path(tmp), admin)
            big = run_one(backend, args.cameras, args.per_camera, Path(tmp), admin)
            print(f"\n== {backend}: {big['rows']:,} rows (baseline {base['rows']:,} rows)")
            print(f"bulk load: {big['load_s']:.1f} s ({big['rows'] / big['load_s']:,.0f} rows/s)")
            print(f"size: {big['bytes_per_million'] / 2**20:,.0f} MiB per million rows (baseline "
                  f"{base['bytes_per_million'] / 2**20:,.0f})")
            for q in ("timeline_24h", "timeline_spans", "timeline_server", "township_1h", "retention_batch"):
                if q not in big:
                    continue
                p50, p99 = big[q]
                b50, b99 = base[q]
                print(f"{q:16s} p50 {p50:7.2f} ms  p99 {p99:7.2f} ms   baseline p50 {b50:6.2f} p99 {b99:6.2f}  "
                      f"ratio p99 {p99 / b99:4.2f}x")
            print(f"inserts, 64 fenced writers: {big['insert_rows_s']:,.0f} rows/s "
                  f"(baseline db {base['insert_rows_s']:,.0f} rows/s)")
            for q in ("timeline_24h", "timeline_spans"):
                print(f"target {q} p99 <= 20 ms: {'MET' if big[q][1] <= 20 else 'MISSED'}")


if __name__ == "__main__":
    main()
