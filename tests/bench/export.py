"""Benchmark: clip building from one hour of 1080p video vs ``ffmpeg -f concat -c copy``.

Run directly (not collected by pytest)::

    PYTHONPATH=$PWD python tests/bench/export.py [--s3] [--dir /tmp/sharpeyes-bench-export]

Data: one hour of one camera, 60 segments of 60 s, 1080p at ~4 Mbit/s, GOP 2 s.
Encoding an hour of 1080p on a shared 2-core box takes too long, so ONE 60 s segment
is made for real (the cached 24 s frame-coded test clip, looped, through the real
``Segmenter`` and ``Uploader``), then copied 60 times: each copy gets its own key and
index row shifted by 60 s, and its own metadata (the ``sharpeyes start_us=`` comment in
the moov's udta is rewritten, same length), so every copy has a distinct sha256 and
init segment as real recordings do. Keyframe tables are the real segment's.

Compared in the same run, over the same segment files on the local store:
  - sharpeyes: ``plan_clip`` + ``ClipPlan.write_to`` (what an export does), and
    ``GET clip.mp4`` over a real uvicorn (full download; and time to first byte);
  - ffmpeg: ``ffmpeg -f concat -safe 0 -i list.txt -c copy out.mp4`` over the files
    (whole segments: ffmpeg cannot cut at a non-keyframe without re-encoding either).
Printed: seconds (median of 3), ratio sharpeyes/ffmpeg, speed x real time, TTFB.
With ``--s3``: the first 10 segments on moto S3, 10-min clip timing and TTFB.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from argon2 import PasswordHasher  # noqa: E402

from config.cameras import Camera, Region  # noqa: E402
from config.settings import Settings  # noqa: E402
from storage.archive.clips import plan_clip  # noqa: E402
from storage.db.engine import open_engine  # noqa: E402
from storage.index.segments import SegmentIndex, SegmentRecord  # noqa: E402
from storage.objects.local import LocalObjectStore  # noqa: E402
from storage.mp4.read import init_segment_size  # noqa: E402
from storage.objects.store import ObjectStore  # noqa: E402
from storage.index.registry import Registry  # noqa: E402
from storage.index.credentials import load_cipher  # noqa: E402
from storage.objects.open import segment_key  # noqa: E402
from streams.access.users import UserStore  # noqa: E402
from streams.app import create_app  # noqa: E402
from streams.access.guard import AuthState  # noqa: E402
from streams.context import AppContext  # noqa: E402
from streams.access.tokens import TokenSigner  # noqa: E402
from tests.archive.recorded import T0, record  # noqa: E402
from tests.archive.server import serve  # noqa: E402

SEG_US = 60_000_000
CAM = "bench-1"


def make_segment(work: Path) -> tuple[bytes, object]:
    """One real 60 s 1080p segment: bytes and its index row."""
    scratch = work / "scratch"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    index = SegmentIndex(open_engine(f"sqlite:///{scratch / 'i.db'}"))
    store = LocalObjectStore(scratch / "objects")
    record(index, store, scratch / "spool", camera_id=CAM, runs=[(0, 1500)], target_s=60.0, size=(1920, 1080),
           gop_seconds=2, label="cam")
    rows = index.segments(CAM, "main")
    assert len(rows) == 1, f"expected one 60 s segment, got {[(r.start_us, r.end_us) for r in rows]}"
    row = rows[0]
    data = store.get_range(row.object_key, 0, row.bytes)
    index.engine.dispose()
    return data, row


def fill(index: SegmentIndex, store: ObjectStore, data: bytes, row: object, count: int) -> list[str]:
    """``count`` copies of the segment, contiguous, each with its own start in its metadata."""
    stamp = re.search(rb"sharpeyes start_us=(\d+)", data)
    assert stamp is not None
    keys = []
    prev = None
    for i in range(count):
        start = T0 + i * SEG_US
        digits = str(start).encode()
        assert len(digits) == len(stamp.group(1))
        copy = data[:stamp.start(1)] + digits + data[stamp.end(1):]
        sha = hashlib.sha256(copy).hexdigest()
        init = copy[:init_segment_size(copy)]
        key = segment_key(CAM, "main", start, SEG_US // 1000)
        store.put_bytes(key, copy, sha)
        index.add_segment(SegmentRecord(
            camera_id=CAM, stream="main", start_us=start, end_us=start + SEG_US, object_key=key, bytes=len(copy),
            codec="h264", width=1920, height=1080, audio_codec=None, sha256=sha, prev_sha256=prev,
            init_sha256=hashlib.sha256(init).hexdigest(), init_data=init, keyframes=row.keyframes))  # type: ignore[attr-defined]
        prev = sha
        keys.append(key)
    return keys


def median_time(fn, runs: int = 3) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def ffmpeg_concat(paths: list[Path], out: Path) -> None:
    listing = out.with_suffix(".txt")
    listing.write_text("".join(f"file '{p}'\n" for p in paths))
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "concat", "-safe", "0",
                    "-i", str(listing), "-c", "copy", str(out)], check=True)


def ttfb(base: str, headers: dict[str, str], start_us: int, end_us: int) -> tuple[float, float, int]:
    """(time to first byte, total time, bytes) of one GET clip.mp4."""
    url = f"{base}/api/cameras/{CAM}/clip.mp4?start={start_us // 1000}&end={end_us // 1000}"
    t = time.perf_counter()
    first = None
    n = 0
    with httpx.stream("GET", url, headers=headers, timeout=600) as r:
        r.raise_for_status()
        for chunk in r.iter_raw(1 << 20):
            if first is None:
                first = time.perf_counter() - t
            n += len(chunk)
    return first or 0.0, time.perf_counter() - t, n


def bench_store(label: str, index: SegmentIndex, store: ObjectStore, ctx_dir: Path, minutes: list[int],
                files: list[Path] | None, out_dir: Path) -> None:
    settings = Settings(data_dir=ctx_dir)
    engine = index.engine
    cipher = load_cipher(ctx_dir)
    registry = Registry(engine, cipher)
    if registry.camera(CAM) is None:
        registry.add_region(Region(code="county", name="County"))
        registry.add_camera(Camera(id=CAM, name="Bench", region="county", main_url="rtsp://10.0.0.9/main"))
    users = UserStore(engine, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    if users.get("inv") is None:
        users.add("inv", "bench password long", "investigator", ["*"])
    state = AuthState(users=users, audit=__import__("streams.access.audit", fromlist=["AuditLog"]).AuditLog(engine),
                      tokens=TokenSigner(cipher.derive("sharpeyes token signing v1")))
    ctx = AppContext(settings=settings, index=index, registry=registry, store=store, auth=state)
    app = create_app(ctx)
    headers = {"Authorization": f"Bearer {state.tokens.issue('access', 'inv')[0]}"}
    print(f"\n== {label} ==")
    print(f"{'clip':>8} {'bytes':>12} {'sharpeyes s':>12} {'HTTP s':>8} {'ffmpeg s':>9} {'ratio':>6} "
          f"{'x realtime':>10} {'TTFB ms (med/max of 5)':>24}")
    with serve(app) as base:
        for m in minutes:
            # Start mid-GOP a little after the hour's start, as an investigator would.
            start = T0 + 3_210_000
            end = start + m * 60_000_000
            out = out_dir / f"{label}-{m}min.mp4"

            def sharpeyes(start: int = start, end: int = end, out: Path = out) -> None:
                plan = plan_clip(index, CAM, "main", start, end, store=store)
                with open(out, "wb") as f:
                    plan.write_to(store, f)

            t_se = median_time(sharpeyes)
            size = out.stat().st_size
            t_http = statistics.median(ttfb(base, headers, start, end + k * 1000)[1] for k in range(3))
            t_ff = None
            if files is not None:
                n_seg = (end - T0 + SEG_US - 1) // SEG_US
                t_ff = median_time(lambda n=n_seg, m=m: ffmpeg_concat(files[:n], out_dir / f"ff-{m}min.mp4"))
            firsts = [ttfb(base, headers, start + k * 1000, end)[0] * 1000 for k in range(5)]
            ratio = f"{t_se / t_ff:6.2f}" if t_ff else "   n/a"
            ff = f"{t_ff:9.2f}" if t_ff else "      n/a"
            print(f"{m:>6}min {size:>12,} {t_se:>12.2f} {t_http:>8.2f} {ff} {ratio} "
                  f"{m * 60 / t_se:>9.0f}x {statistics.median(firsts):>12.0f} / {max(firsts):.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/sharpeyes-bench-export"))
    ap.add_argument("--s3", action="store_true", help="also run a 10-minute clip from moto S3")
    ap.add_argument("--keep", action="store_true", help="keep the generated data")
    args = ap.parse_args()
    work: Path = args.dir
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        t = time.perf_counter()
        data, row = make_segment(work)
        print(f"one real segment: {len(data):,} bytes, 60 s, {len(data) * 8 / 60 / 1e6:.1f} Mbit/s "
              f"({time.perf_counter() - t:.1f} s to make)")
        local_dir = work / "local"
        local_dir.mkdir()
        index = SegmentIndex(open_engine(f"sqlite:///{local_dir / 'index.db'}"))
        store = LocalObjectStore(local_dir / "objects")
        keys = fill(index, store, data, row, 60)
        files = [local_dir / "objects" / k for k in keys]
        out_dir = work / "out"
        out_dir.mkdir()
        bench_store("local store", index, store, local_dir, [10, 60], files, out_dir)
        index.engine.dispose()
        if args.s3:
            from minio import Minio

            from storage.objects.s3 import S3ObjectStore
            from tests.support.s3server import MotoS3Server

            server = MotoS3Server(log_path=work / "moto.log")
            server.start()
            try:
                bucket = server.new_bucket_name()
                Minio(server.endpoint, access_key=server.access_key, secret_key=server.secret_key, secure=False,
                      region=server.region).make_bucket(bucket)
                s3 = S3ObjectStore(server.endpoint, server.access_key, server.secret_key, bucket, region=server.region)
                s3_dir = work / "s3"
                s3_dir.mkdir()
                s3_index = SegmentIndex(open_engine(f"sqlite:///{s3_dir / 'index.db'}"))
                fill(s3_index, s3, data, row, 11)
                bench_store("moto S3 (11 segments)", s3_index, s3, s3_dir, [10], None, out_dir)
                s3_index.engine.dispose()
            finally:
                server.stop()
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
