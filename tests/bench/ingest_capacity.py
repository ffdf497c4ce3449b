"""Benchmark: one ``sharpeyes ingest`` process against ``ffmpeg -c copy -f segment`` per camera.

    .venv/bin/python -m tests.bench.ingest_capacity [--cameras 8,32,64] [--seconds 60]

N cameras (1080p25, ~4 Mbit/s, 2 s GOP) are served by Debian's GStreamer RTSP
server. For each N, both sides record the same cameras for the same window, one
after the other: first sharpeyes (local store), then one ffmpeg per camera (the
way Frigate and Shinobi record). We read CPU seconds and peak RSS from /proc and
print the ratios. Targets at N = 32: CPU <= 0.9x and RSS <= 0.2x of ffmpeg.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.bench.procstat import cpu_seconds, peak_rss_bytes
from tests.support.cameras import CameraServer, Mount, free_port

WARMUP_S = 8.0


def measure_window(pids: list[int], seconds: float) -> tuple[float, int]:
    """CPU seconds used by ``pids`` over ``seconds`` after warm-up, and their summed peak RSS."""
    time.sleep(WARMUP_S)
    start = sum(cpu_seconds(p) for p in pids)
    time.sleep(seconds)
    used = sum(cpu_seconds(p) for p in pids) - start
    return used, sum(peak_rss_bytes(p) for p in pids)


def run_sharpeyes(urls: list[str], seconds: float, work: Path, extras: bool) -> tuple[float, int, int]:
    env = dict(os.environ, SHARPEYES_DATA_DIR=str(work / "data"), SHARPEYES_SEGMENT_TARGET_SECONDS="60",
               # Recording only is the same work ffmpeg does; --with-media adds keyframe
               # snapshots (a decoder per camera) as a default install runs them.
               SHARPEYES_SNAPSHOTS="true" if extras else "false", SHARPEYES_MOTION="true" if extras else "false",
               SHARPEYES_HTTP_BIND=f"127.0.0.1:{free_port()}", SHARPEYES_RTSP_BIND=f"127.0.0.1:{free_port()}")
    cli = [sys.executable, "-m", "sharpeyes.cli"]
    subprocess.run(cli + ["region", "add", "bench", "Bench"], env=env, check=True, capture_output=True)
    fleet = work / "fleet.csv"
    fleet.write_text("id,name,region,main_url\n" + "".join(f"cam-{i},cam {i},bench,{u}\n" for i, u in enumerate(urls)))
    subprocess.run(cli + ["camera", "import", str(fleet)], env=env, check=True, capture_output=True)
    proc = subprocess.Popen(cli + ["ingest", "--worker-id", "bench"], env=env,
                            stdout=subprocess.DEVNULL, stderr=open(work / "sharpeyes.log", "wb"))
    try:
        cpu, rss = measure_window([proc.pid], seconds)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    segments = len(list((work / "data" / "objects").rglob("*.mp4")))
    return cpu, rss, segments


def run_ffmpeg(urls: list[str], seconds: float, work: Path) -> tuple[float, int, int]:
    procs = []
    for i, url in enumerate(urls):
        out = work / "ffmpeg" / f"cam-{i}"
        out.mkdir(parents=True)
        procs.append(subprocess.Popen(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp", "-i", url, "-c", "copy",
             "-f", "segment", "-segment_time", "60", "-reset_timestamps", "1", str(out / "%05d.mp4")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        cpu, rss = measure_window([p.pid for p in procs], seconds)
    finally:
        for p in procs:
            p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
    segments = len(list((work / "ffmpeg").rglob("*.mp4")))
    return cpu, rss, segments


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cameras", default="8,32,64", help="comma-separated N values")
    ap.add_argument("--seconds", type=float, default=60.0, help="measured window per side")
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--with-media", action="store_true",
                    help="keep sharpeyes' snapshots and motion on (defaults of a real install); off by default "
                         "so both sides do the same work")
    args = ap.parse_args()
    w, h = (int(x) for x in args.size.split("x"))
    print(f"machine: {os.cpu_count()} cores; window {args.seconds:.0f} s after {WARMUP_S:.0f} s warm-up; "
          f"{w}x{h}p25 ~4 Mbit/s; sharpeyes {'with snapshots and motion' if args.with_media else 'recording only'}")
    print(f"{'N':>4} {'sharpeyes CPU%':>15} {'ffmpeg CPU%':>12} {'CPU ratio':>10} "
          f"{'sharpeyes RSS MB':>17} {'ffmpeg RSS MB':>14} {'RSS ratio':>10}")
    for n in (int(x) for x in args.cameras.split(",")):
        work = Path(tempfile.mkdtemp(prefix=f"bench-ingest-{n}-"))
        mounts = {f"/cam{i}": Mount("h264", size=(w, h), label="bench") for i in range(n)}
        (work / "cameras").mkdir()
        server = CameraServer(mounts, work / "cameras").start(timeout=60)
        try:
            urls = [server.url(p) for p in mounts]
            s_cpu, s_rss, s_segs = run_sharpeyes(urls, args.seconds, work, args.with_media)
            f_cpu, f_rss, f_segs = run_ffmpeg(urls, args.seconds, work)
        finally:
            server.stop()
        pct = lambda cpu: 100 * cpu / args.seconds  # noqa: E731 - percent of one core
        print(f"{n:>4} {pct(s_cpu):>14.1f}% {pct(f_cpu):>11.1f}% {s_cpu / f_cpu:>10.2f} "
              f"{s_rss / 2**20:>17.0f} {f_rss / 2**20:>14.0f} {s_rss / f_rss:>10.2f}"
              f"   (segments: sharpeyes {s_segs}, ffmpeg {f_segs})", flush=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
