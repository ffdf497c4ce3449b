"""Benchmark: the control plane of a county (5,000 cameras, main + sub) against the real PostgreSQL.

    .venv/bin/python -m tests.bench.county_sim [--cameras 5000] [--workers 20] [--speed 2] [--steady 90]

Everything but media. ``--workers`` simulated ingest workers, each its own process (killed
with SIGKILL to die), each
with the real ``LeaseKeeper`` (heartbeats, renewals, rebalancing, status publishing
through ``CameraStatusTable``) and one uploader thread that closes a 60 s segment of each
camera stream it holds every ``60 / speed`` seconds through the real
``SegmentIndex.add_segment`` with its lease fence, plus a gap row (open + close) for each
camera stream it takes over. Measured:

- the sustained insert rate against the rate the fleet demands, and add_segment p50/p99;
- the lease round time (``LeaseKeeper.round``), p50/p99/max;
- rebalance when 2 workers die (no release, as kill -9): until every camera is held again;
  and when 2 join: until both hold their floor share and no camera is free;
- rows and bytes per simulated day (bytes per row of the segments table, indexes included).
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import logging
import os
import sys
import statistics
import threading
import time
from dataclasses import dataclass, field

from sqlalchemy import Engine, text

from config.cameras import Camera, Region
from ingest.cluster.lease_keeper import LeaseKeeper
from storage import CameraStatusTable, LeaseTable, Registry, SegmentIndex, SegmentRecord, open_engine
from storage.index.keyframes import Keyframe, pack_keyframes
from storage.objects.open import segment_key
from tests.support.databases import DEFAULT_PG_URL, PostgresAdmin
from tests.bench.pg_load import camera_id

S = 1_000_000
SEG_US = 60 * S
TTL = 15.0
KEYFRAMES = {s: pack_keyframes([Keyframe(i * 2 * S, 1200 + i * g) for i in range(30)])
             for s, g in (("main", 1_000_000), ("sub", 125_000))}


def now_us() -> int:
    return time.time_ns() // 1000


@dataclass
class Status:
    camera_id: str
    stream: str

    def as_dict(self) -> dict:  # type: ignore[type-arg]
        return {"camera_id": self.camera_id, "stream": self.stream, "state": "recording", "fps": 25.0,
                "bitrate_bps": 4e6 if self.stream == "main" else 5e5, "last_error": ""}


class Timeline:
    """Where a camera stream's recording stands in simulated time, from the wall clock, so
    the worker that takes a camera over continues where the previous owner was."""

    def __init__(self, t0: int, real0: float, speed: float):
        self.t0, self.real0, self.speed = t0, real0, speed

    def take(self, key: tuple[str, str]) -> int:
        return int((time.time() - self.real0) * self.speed / 60)


class SimSupervisor:
    """What the keeper asks of a supervisor: statuses of what it records."""

    def __init__(self) -> None:
        self.keeper: LeaseKeeper | None = None

    def reconcile(self, force: bool = False) -> None:
        pass

    def statuses(self) -> list[Status]:
        assert self.keeper is not None
        return [Status(c, s) for c in self.keeper.held() for s in ("main", "sub")]

    def adopt(self, camera_ids: list[str]) -> int:
        return 0

    @property
    def spool(self):  # type: ignore[no-untyped-def]
        return self

    def closed_entries(self) -> list:  # type: ignore[type-arg]
        return []


class TimedKeeper(LeaseKeeper):
    def __init__(self, *a, **kw):  # type: ignore[no-untyped-def]
        super().__init__(*a, **kw)
        self.round_s: list[tuple[float, float]] = []

    def round(self) -> None:
        t = time.perf_counter()
        super().round()
        self.round_s.append((time.time(), time.perf_counter() - t))


@dataclass
class SimWorker:
    name: str
    engine: Engine
    registry: Registry
    timeline: Timeline
    speed: float
    insert_s: list[float] = field(default_factory=list)
    inserted: int = 0
    gaps: int = 0
    late: int = 0
    fenced: int = 0
    last_error: str = ""

    def __post_init__(self) -> None:
        self.index = SegmentIndex(self.engine)
        self.sup = SimSupervisor()
        self.keeper = TimedKeeper(LeaseTable(self.engine), self.registry, self.name, ttl_seconds=TTL,
                                  status_table=CameraStatusTable(self.engine))
        self.sup.keeper = self.keeper
        self.keeper.attach(self.sup)  # type: ignore[arg-type]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._upload, name=f"up-{self.name}", daemon=True)

    def start(self) -> None:
        self.keeper.register()
        self.keeper.start()
        self.thread.start()

    def kill(self) -> None:
        """As kill -9: nothing released, the worker row and leases expire on their own."""
        self.stop.set()
        self.keeper.usurped = True  # makes stop() leave the leases alone
        self.keeper.stop()

    def leave(self) -> None:
        self.stop.set()
        self.keeper.stop()

    def _upload(self) -> None:
        """Close a segment of every held camera stream once a period, in due order (a heap:
        the scan of every held stream every 50 ms it replaces was this process's own
        overhead, not a worker's)."""
        period = 60.0 / self.speed
        due: list[tuple[float, int, str, str]] = []  # (due, generation, camera, stream)
        taken: dict[str, int] = {}  # camera -> generation of its current holding
        gen = 0
        while not self.stop.is_set():
            held = self.keeper.held()
            nowm = time.monotonic()
            for cam in held.keys() - taken.keys():  # newly taken: its first segment closes within one period
                gen += 1
                taken[cam] = gen
                for stream in ("main", "sub"):
                    heapq.heappush(due, (nowm + (hash((cam, stream)) % 1000) / 1000 * period, gen, cam, stream))
                    self._gap(cam, stream)
            for cam in taken.keys() - held.keys():
                del taken[cam]
            while due and due[0][0] <= nowm and not self.stop.is_set():
                t, g, cam, stream = heapq.heappop(due)
                if taken.get(cam) != g or cam not in held:
                    continue  # given up (and maybe taken again: a newer entry)
                if nowm - t > period:
                    self.late += 1
                heapq.heappush(due, (t + period, g, cam, stream))
                self._insert(cam, stream, held[cam])
            self.stop.wait(0.05)

    def _insert(self, cam: str, stream: str, epoch: int) -> None:
        k = self.timeline.take((cam, stream))
        start = self.timeline.t0 + k * SEG_US
        sha = hashlib.sha256(f"{cam}{stream}{k}{self.name}".encode()).hexdigest()
        rec = SegmentRecord(camera_id=cam, stream=stream, start_us=start, end_us=start + SEG_US,
                            object_key=segment_key(cam, stream, start, SEG_US // 1000), bytes=30_000_000,
                            codec="h264", width=1920 if stream == "main" else 640,
                            height=1080 if stream == "main" else 360, audio_codec=None, sha256=sha,
                            init_sha256=hashlib.sha256(stream.encode()).hexdigest(), init_data=b"i" * 700,
                            keyframes=KEYFRAMES[stream], worker_id=self.name)
        t = time.perf_counter()
        try:
            self.index.add_segment(rec, fence=(self.name, epoch))
        except Exception as exc:  # noqa: BLE001 - fenced (lost the camera, or its previous owner has this minute)
            self.fenced += 1
            self.last_error = f"{type(exc).__name__}: {exc}"[:300]
            return
        self.insert_s.append((time.time(), time.perf_counter() - t))
        self.inserted += 1

    def _gap(self, cam: str, stream: str) -> None:
        t = self.timeline.t0 + self.timeline.take((cam, stream)) * SEG_US
        gid = self.index.open_gap(cam, stream, t, "worker_restart", "takeover (simulated)")
        self.index.close_gap(gid, t)
        self.gaps += 1


def worker_process(name: str, url: str, t0: int, real0: float, speed: float, out: str) -> None:
    """One simulated ingest worker in its own process; its figures go to ``out`` (JSON) every 2 s."""
    import json

    logging.basicConfig(level=logging.ERROR)
    engine = open_engine(url, migrate=False)  # as `sharpeyes ingest` opens it (pool pre-ping included)
    w = SimWorker(name, engine, Registry(engine), Timeline(t0, real0, speed), speed)
    w.start()
    while True:
        time.sleep(2.0)
        tmp = out + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"insert": w.insert_s, "rounds": w.keeper.round_s, "fenced": w.fenced, "late": w.late,
                       "gaps": w.gaps, "held": len(w.keeper.held()), "error": w.last_error}, f)
        os.replace(tmp, out)


def pct(values: list[float], p: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * p))] if v else float("nan")


def wait(what: str, predicate, timeout: float) -> float:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(1.0)
    raise SystemExit(f"timed out ({timeout} s) waiting for {what}")


def figures(outs: list[str], since: float, until: float) -> tuple[list[float], list[float]]:
    import json

    ins: list[float] = []
    rounds: list[float] = []
    for path in outs:
        try:
            with open(path) as f:
                d = json.load(f)
        except (OSError, ValueError):
            continue
        ins += [x for t, x in d["insert"] if since <= t < until]
        rounds += [x for t, x in d["rounds"] if since <= t < until]
    return ins, rounds


def main() -> None:
    import multiprocessing
    import signal
    import tempfile

    ap = argparse.ArgumentParser()
    ap.add_argument("--cameras", type=int, default=5000)
    ap.add_argument("--workers", type=int, default=20)
    ap.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second")
    ap.add_argument("--steady", type=float, default=90.0, help="seconds of steady state measured")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so the database is dropped
    admin = PostgresAdmin(os.environ.get("SHARPEYES_BENCH_PG", DEFAULT_PG_URL))
    name = admin.create()
    procs: dict[str, multiprocessing.Process] = {}
    tmp = tempfile.mkdtemp(prefix="county_sim")
    ctx = multiprocessing.get_context("spawn")
    try:
        url = admin.url_for(name)
        engine = open_engine(url)
        registry = Registry(engine)
        registry.add_region(Region(code="county", name="County"))
        registry.add_cameras([Camera(id=camera_id(i), name=f"c{i}", region="county",
                                     main_url=f"rtsp://10.1.0.{i % 250}/m", sub_url=f"rtsp://10.1.0.{i % 250}/s")
                              for i in range(args.cameras)])
        leases = LeaseTable(engine)
        t0, real0 = now_us(), time.time()

        def spawn(wname: str) -> None:
            p = ctx.Process(target=worker_process, args=(wname, url, t0, real0, args.speed, f"{tmp}/{wname}.json"),
                            daemon=True)
            p.start()
            procs[wname] = p

        def held_by() -> dict[str, int]:
            t = now_us()
            out: dict[str, int] = {}
            for lease in leases.leases():
                if lease.held_at(t):
                    out[lease.worker_id] = out.get(lease.worker_id, 0) + 1
            return out

        t_start = time.monotonic()
        for i in range(args.workers):
            spawn(f"w{i:02d}")

        def all_held() -> bool:
            n = sum(held_by().values())
            print(f"  {time.monotonic() - t_start:5.1f} s: {n} cameras held", flush=True)
            return n == args.cameras

        startup = wait("all cameras held", all_held, 600)
        print(f"startup: {args.workers} workers hold all {args.cameras} cameras {startup:.1f} s after the first "
              "poll (processes started together)")
        since = time.time()
        time.sleep(args.steady)
        outs = [f"{tmp}/{w}.json" for w in procs]
        ins, rounds = figures(outs, since, time.time())
        if not ins:
            import json

            raise SystemExit(f"no segment indexed: {json.load(open(outs[0])).get('error')}")
        demanded = args.cameras * 2 / (60 / args.speed)
        print(f"steady {args.steady:.0f} s at speed {args.speed}: demanded {demanded:.0f} rows/s, sustained "
              f"{len(ins) / args.steady:.0f} rows/s; add_segment p50 {statistics.median(ins) * 1e3:.1f} ms, "
              f"p99 {pct(ins, 0.99) * 1e3:.1f} ms")
        print(f"lease round: p50 {statistics.median(rounds) * 1e3:.0f} ms, p99 {pct(rounds, 0.99) * 1e3:.0f} ms, "
              f"max {max(rounds) * 1e3:.0f} ms over {len(rounds)} rounds")

        # Two die (SIGKILL): their cameras are free after the TTL and taken by the others.
        dead = list(procs)[:2]
        for d in dead:
            procs[d].kill()
        took = wait("cameras of the dead held again",
                    lambda: sum((h := held_by()).values()) == args.cameras and not any(d in h for d in dead), 300)
        print(f"2 workers killed (SIGKILL): every camera held by a live worker again after {took:.1f} s "
              f"(TTL {TTL:.0f} s)")
        live = [w for w in procs if w not in dead]
        floor = args.cameras // (len(live) + 2)
        for i in range(2):
            spawn(f"j{i}")
        joined = ["j0", "j1"]
        took = wait("joiners at their floor share", lambda: sum((h := held_by()).values()) == args.cameras and all(
            h.get(j, 0) >= floor for j in joined), 300)
        print(f"2 workers joined: both hold >= {floor} cameras and every camera is held after {took:.1f} s")
        time.sleep(5)
        elapsed = time.monotonic() - t_start
        fenced = 0
        for path in outs + [f"{tmp}/{j}.json" for j in joined]:
            try:
                import json

                with open(path) as f:
                    fenced += json.load(f)["fenced"]
            except (OSError, ValueError):
                pass
        for p in procs.values():
            p.kill()
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.execute(text("VACUUM ANALYZE segments"))
            c.execute(text("VACUUM ANALYZE gaps"))
            seg_rows = c.execute(text("SELECT count(*) FROM segments")).scalar_one()
            gap_rows = c.execute(text("SELECT count(*) FROM gaps")).scalar_one()
            seg_bytes = c.execute(text(
                "SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits WHERE inhparent = 'segments'::regclass"
            )).scalar_one()
            heap_bytes, dead = c.execute(text(
                "SELECT sum(pg_table_size(inhrelid)), sum(pg_stat_get_dead_tuples(inhrelid)) FROM pg_inherits "
                "WHERE inhparent = 'segments'::regclass")).one()
            gap_bytes = c.execute(text(  # partitioned by month since migration 0017
                "SELECT coalesce((SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits "
                "WHERE inhparent = 'gaps'::regclass), pg_total_relation_size('gaps'))"
            )).scalar_one()
        per_day = args.cameras * 2 * 1440
        row = seg_bytes / seg_rows
        print(f"rows: {seg_rows} segments ({row:.0f} B a row with indexes, {heap_bytes / seg_rows:.0f} B heap, "
              f"{dead} dead tuples), {gap_rows} gaps "
              f"({gap_bytes / max(gap_rows, 1):.0f} B) in {elapsed:.0f} s; {fenced} inserts fenced (a camera's "
              "minute already indexed by its previous owner)")
        print(f"per simulated day at 60 s segments: {per_day / 1e6:.1f} M segment rows, "
              f"{per_day * row / 2**30:.1f} GiB; 30 days {30 * per_day * row / 2**30:.0f} GiB")
        engine.dispose()
    finally:
        for p in procs.values():
            if p.is_alive():
                p.kill()
        admin.drop(name)


if __name__ == "__main__":
    main()
