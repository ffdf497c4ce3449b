"""Benchmark: ``sharpeyes ingest`` (native puller, PyAV fallback, default install) against
``ffmpeg -c copy -f segment`` per camera.

    .venv/bin/python -m tests.bench.ingest_capacity [--cameras 32,64] [--seconds 60]
        [--sides native,ffmpeg,pyav,default]

N cameras (1080p25, ~4 Mbit/s, 2 s GOP) are served by Debian's GStreamer RTSP
server. For each N, every side records the same cameras for the same window, one
after the other:
- ``native``: ``sharpeyes ingest`` with the native puller, snapshots and motion off;
- ``ffmpeg``: one ffmpeg per camera (the way Frigate and Shinobi record);
- ``pyav``: ``sharpeyes ingest`` with ``ingest_puller=ffmpeg`` (PyAV's demuxer), media off;
- ``default``: ``sharpeyes ingest`` as installed (native puller, lazy snapshots on).
We read CPU seconds and peak RSS from /proc and print the ratios against ffmpeg.
Targets at N = 64 (issue 15): native CPU <= 0.6x, RSS <= 0.05x; default <= 0.7x CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
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

WARMUP_S = 15.0  # process start-up (imports, migrations, leases) stays out of the window


def measure_window(pids: list[int], seconds: float) -> tuple[float, int]:
    """CPU seconds used by ``pids`` over ``seconds`` after warm-up, and their summed peak RSS."""
    time.sleep(WARMUP_S)
    start = sum(cpu_seconds(p) for p in pids)
    time.sleep(seconds)
    used = sum(cpu_seconds(p) for p in pids) - start
    return used, sum(peak_rss_bytes(p) for p in pids)


class MseWatcher(threading.Thread):
    """A viewer of one camera over MSE (WebSocket fMP4), counting what it receives."""

    def __init__(self, http: str, camera_id: str, password: str) -> None:
        super().__init__(daemon=True)
        self.http, self.camera_id, self.password = http, camera_id, password
        self.messages = 0
        self.bytes = 0
        self.error = ""
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            asyncio.run(self._watch())
        except Exception as exc:  # noqa: BLE001 - reported in the table
            self.error = f"{type(exc).__name__}: {exc}"

    async def _watch(self) -> None:
        import httpx
        import websockets

        deadline = time.monotonic() + 60
        while True:
            try:
                tok = httpx.post(f"{self.http}/api/auth/token", json={"username": "bench", "password": self.password},
                                 timeout=10).json()["access_token"]
                stream = httpx.post(f"{self.http}/api/cameras/{self.camera_id}/stream-token", timeout=10,
                                    headers={"Authorization": f"Bearer {tok}"}).json()["token"]
                break
            except (httpx.HTTPError, KeyError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(1)
        ws_url = self.http.replace("http://", "ws://") + f"/api/cameras/{self.camera_id}/live.mp4?token={stream}"
        while not self.stop.is_set():
            try:
                async with websockets.connect(ws_url, max_size=None) as ws:
                    while not self.stop.is_set():
                        try:
                            msg = await asyncio.wait_for(ws.recv(), 1.0)
                        except asyncio.TimeoutError:
                            continue
                        self.messages += 1
                        self.bytes += len(msg)
            except (OSError, websockets.WebSocketException):
                await asyncio.sleep(1)


def coverage(objects: Path, stop_us: int) -> dict[str, float]:
    """Recorded share of each camera's time from its first segment to ``stop_us``, from object keys
    (``{camera}/{stream}/Y/M/D/H/{start_us}-{duration_ms}.mp4``)."""
    spans: dict[str, list[tuple[int, int]]] = {}
    for f in objects.rglob("*.mp4"):
        cam = f.relative_to(objects).parts[0]
        start, _, dur = f.stem.partition("-")
        spans.setdefault(cam, []).append((int(start), int(dur) * 1000))
    out = {}
    for cam, items in spans.items():
        first = min(s for s, _ in items)
        # Only up to stop_us (the stop signal): the shutdown's own closing is not measured.
        out[cam] = sum(max(0, min(s + d, stop_us) - s) for s, d in items) / max(1, stop_us - first)
    return out


def run_sharpeyes(urls: list[str], seconds: float, work: Path, extras: bool | None,
                  puller: str = "native", watch: bool = False) -> tuple[float, int, int]:
    """``extras``: True snapshots and motion on, False both off, None as a default install.
    ``watch``: an MSE viewer watches cam-0 meanwhile; prints coverage of every camera."""
    work = work / f"sharpeyes-{puller}-{extras}-{watch}"
    work.mkdir(parents=True)
    env = dict(os.environ, SHARPEYES_DATA_DIR=str(work / "data"), SHARPEYES_SEGMENT_TARGET_SECONDS="60",
               SHARPEYES_INGEST_PULLER=puller,
               SHARPEYES_HTTP_BIND=f"127.0.0.1:{free_port()}", SHARPEYES_RTSP_BIND=f"127.0.0.1:{free_port()}")
    if extras is not None:
        # Recording only is the same work ffmpeg does; with media on, keyframe snapshots
        # (and motion) run as a real install runs them.
        env.update(SHARPEYES_SNAPSHOTS="true" if extras else "false", SHARPEYES_MOTION="true" if extras else "false")
    cli = [sys.executable, "-m", "sharpeyes.cli"]
    subprocess.run(cli + ["region", "add", "bench", "Bench"], env=env, check=True, capture_output=True)
    fleet = work / "fleet.csv"
    fleet.write_text("id,name,region,main_url\n" + "".join(f"cam-{i},cam {i},bench,{u}\n" for i, u in enumerate(urls)))
    subprocess.run(cli + ["camera", "import", str(fleet)], env=env, check=True, capture_output=True)
    password = "bench password 1"
    if watch:
        subprocess.run(cli + ["user", "add", "bench", "--role", "viewer", "--password-stdin"], env=env, check=True,
                       capture_output=True, input=password + "\n", text=True)
    proc = subprocess.Popen(cli + ["ingest", "--worker-id", "bench"], env=env,
                            stdout=open(work / "sharpeyes.out", "wb"), stderr=open(work / "sharpeyes.log", "wb"))
    watcher = MseWatcher(f"http://{env['SHARPEYES_HTTP_BIND']}", "cam-0", password) if watch else None
    try:
        if watcher is not None:
            watcher.start()
        cpu, rss = measure_window([proc.pid], seconds)
    finally:
        if watcher is not None:
            watcher.stop.set()
        stop_us = int(time.time() * 1_000_000)
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    segments = len(list((work / "data" / "objects").rglob("*.mp4")))
    if watcher is not None:
        cov = coverage(work / "data" / "objects", stop_us)
        low = sorted(cov.items(), key=lambda kv: kv[1])[:3]
        print(f"  coverage with an MSE viewer on cam-0: min {min(cov.values(), default=0):.3f} over {len(cov)} "
              f"cameras of {len(urls)} (lowest {low}); viewer got {watcher.messages} messages, "
              f"{watcher.bytes / 2**20:.1f} MB {watcher.error}", flush=True)
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
    ap.add_argument("--cameras", default="32,64", help="comma-separated N values")
    ap.add_argument("--sides", default="native,ffmpeg,pyav,default", help="comma-separated sides (see above; "
                    "also: watch = native with an MSE viewer on one camera, coverage printed)")
    ap.add_argument("--seconds", type=float, default=60.0, help="measured window per side")
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--with-media", action="store_true",
                    help="keep sharpeyes' snapshots and motion on (defaults of a real install); off by default "
                         "so both sides do the same work")
    args = ap.parse_args()
    sides = args.sides.split(",")
    w, h = (int(x) for x in args.size.split("x"))
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start; window "
          f"{args.seconds:.0f} s after {WARMUP_S:.0f} s warm-up; {w}x{h}p25 ~4 Mbit/s")
    for n in (int(x) for x in args.cameras.split(",")):
        work = Path(tempfile.mkdtemp(prefix=f"bench-ingest-{n}-"))
        mounts = {f"/cam{i}": Mount("h264", size=(w, h), label="bench") for i in range(n)}
        (work / "cameras").mkdir()
        server = CameraServer(mounts, work / "cameras").start(timeout=60)
        results: dict[str, tuple[float, int, int]] = {}
        try:
            urls = [server.url(p) for p in mounts]
            for side in sides:
                load = os.getloadavg()[0]
                if side == "ffmpeg":
                    results[side] = run_ffmpeg(urls, args.seconds, work)
                elif side == "native":
                    results[side] = run_sharpeyes(urls, args.seconds, work, False, "native")
                elif side == "pyav":
                    results[side] = run_sharpeyes(urls, args.seconds, work, False, "ffmpeg")
                elif side == "default":
                    results[side] = run_sharpeyes(urls, args.seconds, work, None, "native")
                elif side == "watch":
                    results[side] = run_sharpeyes(urls, args.seconds, work, False, "native", watch=True)
                elif side == "media":
                    results[side] = run_sharpeyes(urls, args.seconds, work, args.with_media, "native")
                cpu, rss, segs = results[side]
                print(f"  N={n} {side}: {100 * cpu / args.seconds:.1f}% of a core, peak RSS {rss / 2**20:.0f} MB, "
                      f"{segs} segments (load average {load:.2f} before)", flush=True)
        finally:
            server.stop()
        base = results.get("ffmpeg")
        print(f"{'N':>4} {'side':>8} {'CPU %/cam':>10} {'x ffmpeg':>9} {'RSS MB/cam':>11} {'x ffmpeg':>9} "
              f"{'segments':>9}")
        for side, (cpu, rss, segs) in results.items():
            cpu_x = f"{cpu / base[0]:.2f}" if base else "-"
            rss_x = f"{rss / base[1]:.3f}" if base else "-"
            print(f"{n:>4} {side:>8} {100 * cpu / args.seconds / n:>10.3f} {cpu_x:>9} {rss / 2**20 / n:>11.2f} "
                  f"{rss_x:>9} {segs:>9}", flush=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
