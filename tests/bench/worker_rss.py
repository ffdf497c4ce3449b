"""Benchmark: the memory of a `sharpeyes ingest` worker at start and per camera.

    .venv/bin/python -m tests.bench.worker_rss [--cameras 0,1,8] [--seconds 15] [--snapshots false]
        [--size 640x360]

For each N, N cameras of GStreamer's RTSP server are recorded by a fresh worker (native
puller; snapshots as asked, motion off); after ``--seconds`` its VmRSS and VmHWM (peak) are
read from /proc, with the media libraries it has mapped (PyAV's libavcodec, OpenCV, NumPy,
aiortc: none, for native cameras without snapshots).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.cameras import CameraServer, Mount, free_port

MEDIA = ("libavcodec", "cv2", "numpy", "aiortc")


def status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def measure(n: int, seconds: float, snapshots: str, size: tuple[int, int], work: Path, server: CameraServer) -> str:
    data = work / f"data-{n}"
    env = dict(os.environ, SHARPEYES_DATA_DIR=str(data), SHARPEYES_SNAPSHOTS=snapshots, SHARPEYES_MOTION="false",
               SHARPEYES_HTTP_BIND=f"127.0.0.1:{free_port()}", SHARPEYES_RTSP_BIND=f"127.0.0.1:{free_port()}")
    cli = [sys.executable, "-m", "sharpeyes.cli"]
    subprocess.run(cli + ["region", "add", "r", "R"], env=env, check=True, capture_output=True)
    if n:
        fleet = work / f"fleet-{n}.csv"
        fleet.write_text("id,name,region,main_url\n"
                         + "".join(f"cam-{i},c{i},r,{server.url(f'/cam{i}')}\n" for i in range(n)))
        subprocess.run(cli + ["camera", "import", str(fleet)], env=env, check=True, capture_output=True)
    with open(work / f"worker-{n}.log", "wb") as log:
        proc = subprocess.Popen(cli + ["ingest", "--worker-id", f"rss-{n}"], env=env, stdout=log, stderr=log)
    try:
        time.sleep(seconds)
        st = status(proc.pid)
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    mapped = [m for m in MEDIA if m in maps]
    return f"N={n:>3}: VmRSS {st['VmRSS']:>10}, peak {st['VmHWM']:>10}, media mapped: {mapped or 'none'}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cameras", default="0,1,8")
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--snapshots", default="false")
    ap.add_argument("--size", default="640x360")
    args = ap.parse_args()
    ns = [int(x) for x in args.cameras.split(",")]
    w, h = (int(x) for x in args.size.split("x"))
    work = Path(tempfile.mkdtemp(prefix="bench-worker-rss-"))
    (work / "cameras").mkdir()
    mounts = {f"/cam{i}": Mount("h264", size=(w, h), label="rss") for i in range(max(1, *ns))}
    server = CameraServer(mounts, work / "cameras").start(timeout=60)
    try:
        for n in ns:
            print(measure(n, args.seconds, args.snapshots, (w, h), work, server), flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
