"""Benchmark: ``sharpeyes ingest`` (native puller, PyAV fallback, default install) against
``ffmpeg -c copy -f segment`` per camera.

    .venv/bin/python -m tests.bench.ingest_capacity [--cameras 32,64] [--seconds 30] [--rounds 3]
        [--sides ffmpeg,native,pyav,default,watch] [--env NAME=VALUE ...] [--py-spy DIR]

N cameras (1080p25, ~4 Mbit/s, 2 s GOP) are served by Debian's GStreamer RTSP
server. For each N, every side records the same cameras for the same window, one
side at a time:
- ``ffmpeg``: one ffmpeg per camera (the way Frigate and Shinobi record): the baseline;
- ``native``: ``sharpeyes ingest`` with the native puller, snapshots and motion off;
- ``pyav``: ``sharpeyes ingest`` with ``ingest_puller=ffmpeg`` (PyAV's demuxer), media off;
- ``default``: ``sharpeyes ingest`` as installed (native puller, lazy snapshots on);
- ``watch``: ``native`` with an MSE viewer on one camera; every camera's coverage is printed;
- ``media``: ``native`` with snapshots and motion as ``--with-media`` says;
- ``SIDE@DIR`` (e.g. ``native@/work/main``): that sharpeyes side with the code of the checkout DIR
  (its ``PYTHONPATH``), to compare a change with what it changes in the same run;
- ``SIDE+NAME=VALUE`` (e.g. ``native+SHARPEYES_INGEST_LOOPS=1``, repeatable, after any ``@DIR``):
  that side with that environment, to compare settings in the same run.

The machine is shared, so one window can be slowed by anything else that runs. The sides
are therefore interleaved over ``--rounds`` rounds (round r runs the sides rotated by r:
ffmpeg, native, default; native, default, ffmpeg; ...), each run a fresh process. A side's
ratio is taken within each round (its CPU over ffmpeg's in that round) and the table gives
the median of those ratios with their range (min-max), the median %core per camera, and the
1-minute load average before each run (median and max). A run that started at load > 4 on
this 2-core machine is counted as noisy. CPU seconds (and the kernel's share) and peak RSS come
from /proc.

``--env NAME=VALUE`` is passed to every ``sharpeyes ingest`` run (e.g.
``SHARPEYES_INGEST_READ_BATCH_MS=40`` or ``SHARPEYES_INGEST_LOOPS=1``). ``--py-spy DIR`` records
each sharpeyes run's window with ``py-spy record -r 50 --nonblocking -f raw`` into DIR
(py-spy costs CPU of its own: profiled figures are marked and are not for the targets).
Targets at N = 64 (issue 15): native CPU <= 0.6x, RSS <= 0.05x; default <= 0.7x CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tests.bench.procstat import cpu_seconds, peak_rss_bytes, system_seconds
from tests.support.cameras import CameraServer, Mount, free_port

WARMUP_S = 15.0  # process start-up (imports, migrations, leases) stays out of the window


NOISY_LOAD = 4.0  # 1-minute load average on this 2-core machine past which a window is noise


@dataclass
class Run:
    """One side's run in one round."""

    side: str
    round: int
    cpu_s: float  # CPU seconds over the window
    sys_s: float  # of which in the kernel
    rss: int  # summed peak RSS, bytes
    segments: int
    load_before: float  # 1-minute load average
    load_after: float
    coverage_min: float | None = None  # watch: the lowest camera's coverage


def measure_window(pids: list[int], seconds: float,
                   during: Callable[[int], subprocess.Popen[bytes] | None] | None = None
                   ) -> tuple[float, float, int]:
    """CPU seconds used by ``pids`` over ``seconds`` after warm-up (all, and in the kernel), and
    their summed peak RSS. ``during(seconds)`` starts something for the window (a profiler)."""
    time.sleep(WARMUP_S)
    start = sum(cpu_seconds(p) for p in pids)
    start_sys = sum(system_seconds(p) for p in pids)
    extra = during(int(seconds)) if during is not None else None
    time.sleep(seconds)
    used = sum(cpu_seconds(p) for p in pids) - start
    used_sys = sum(system_seconds(p) for p in pids) - start_sys
    if extra is not None:
        extra.wait(30)
    return used, used_sys, sum(peak_rss_bytes(p) for p in pids)


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
                  puller: str = "native", watch: bool = False, env_extra: dict[str, str] | None = None,
                  py_spy: Path | None = None, py_spy_flags: tuple[str, ...] = ()
                  ) -> tuple[float, float, int, int, float | None]:
    """``extras``: True snapshots and motion on, False both off, None as a default install.
    ``watch``: an MSE viewer watches cam-0 meanwhile; prints coverage of every camera.
    ``py_spy``: record the window into that file. Returns CPU s, system CPU s, peak RSS, segments,
    min coverage."""
    work.mkdir(parents=True)
    # The segments are counted (and coverage read) from the objects after the stop, so the stop
    # must upload all of them: 128 open 45 s segments do not upload in the default 5 s drain, and
    # what is left waits in the spool for the next start (counted as "not recorded" here, once).
    env = dict(os.environ, SHARPEYES_DATA_DIR=str(work / "data"), SHARPEYES_SEGMENT_TARGET_SECONDS="60",
               SHARPEYES_INGEST_PULLER=puller, SHARPEYES_SHUTDOWN_TIMEOUT_SECONDS="240",
               SHARPEYES_HTTP_BIND=f"127.0.0.1:{free_port()}", SHARPEYES_RTSP_BIND=f"127.0.0.1:{free_port()}")
    if extras is not None:
        # Recording only is the same work ffmpeg does; with media on, keyframe snapshots
        # (and motion) run as a real install runs them.
        env.update(SHARPEYES_SNAPSHOTS="true" if extras else "false", SHARPEYES_MOTION="true" if extras else "false")
    env.update(env_extra or {})
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

    def profile(window: int) -> subprocess.Popen[bytes] | None:
        if py_spy is None:
            return None
        py_spy.parent.mkdir(parents=True, exist_ok=True)
        return subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(proc.pid),
                                 "-d", str(window), "-r", "50", "--nonblocking", "--threads", "-f", "raw",
                                 *py_spy_flags, "-o", str(py_spy)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if watcher is not None:
            watcher.start()
        cpu, sys_cpu, rss = measure_window([proc.pid], seconds, profile)
    finally:
        if watcher is not None:
            watcher.stop.set()
        stop_us = int(time.time() * 1_000_000)
        proc.send_signal(signal.SIGTERM)
        proc.wait(300)
    segments = len(list((work / "data" / "objects").rglob("*.mp4")))
    cov_min = None
    if watcher is not None:
        cov = coverage(work / "data" / "objects", stop_us)
        low = sorted(cov.items(), key=lambda kv: kv[1])[:3]
        cov_min = min(cov.values(), default=0.0) if len(cov) == len(urls) else 0.0
        print(f"  coverage with an MSE viewer on cam-0: min {min(cov.values(), default=0):.3f} over {len(cov)} "
              f"cameras of {len(urls)} (lowest {low}); viewer got {watcher.messages} messages, "
              f"{watcher.bytes / 2**20:.1f} MB {watcher.error}", flush=True)
    return cpu, sys_cpu, rss, segments, cov_min


def run_ffmpeg(urls: list[str], seconds: float, work: Path) -> tuple[float, float, int, int, float | None]:
    procs = []
    for i, url in enumerate(urls):
        out = work / f"cam-{i}"
        out.mkdir(parents=True)
        procs.append(subprocess.Popen(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp", "-i", url, "-c", "copy",
             "-f", "segment", "-segment_time", "60", "-reset_timestamps", "1", str(out / "%05d.mp4")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        cpu, sys_cpu, rss = measure_window([p.pid for p in procs], seconds)
    finally:
        for p in procs:
            p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
    segments = len(list(work.rglob("*.mp4")))
    return cpu, sys_cpu, rss, segments, None


def run_side(side: str, urls: list[str], seconds: float, work: Path, args: argparse.Namespace,
             env_extra: dict[str, str], py_spy: Path | None) -> tuple[float, float, int, int, float | None]:
    """One run of ``side`` in the fresh folder ``work``."""
    side, *settings = side.split("+")
    env_extra = dict(env_extra, **dict(e.split("=", 1) for e in settings))
    side, _, tree = side.partition("@")
    if tree:
        env_extra["PYTHONPATH"] = str(Path(tree).resolve())
    if side == "ffmpeg":
        return run_ffmpeg(urls, seconds, work)
    kwargs: dict[str, object] = {"env_extra": env_extra, "py_spy": py_spy,
                                 "py_spy_flags": tuple(args.py_spy_flags.split())}
    if side == "native":
        return run_sharpeyes(urls, seconds, work, False, "native", **kwargs)  # type: ignore[arg-type]
    if side == "pyav":
        return run_sharpeyes(urls, seconds, work, False, "ffmpeg", **kwargs)  # type: ignore[arg-type]
    if side == "default":
        return run_sharpeyes(urls, seconds, work, None, "native", **kwargs)  # type: ignore[arg-type]
    if side == "watch":
        return run_sharpeyes(urls, seconds, work, False, "native", watch=True, **kwargs)  # type: ignore[arg-type]
    if side == "media":
        return run_sharpeyes(urls, seconds, work, args.with_media, "native", **kwargs)  # type: ignore[arg-type]
    raise SystemExit(f"unknown side {side!r}")


def summarize(n: int, seconds: float, sides: list[str], runs: list[Run]) -> None:
    """The table for one N: per side, medians over rounds and the range of per-round ratios."""
    base = {r.round: r for r in runs if r.side == "ffmpeg"}
    width = max(8, *(len(s) for s in sides))
    print(f"{'N':>4} {'side':>{width}} {'runs':>4} {'CPU %/cam':>10} {'x ffmpeg':>8} {'(min-max)':>11} "
          f"{'kernel':>6} {'RSS MB/cam':>10} {'x ffmpeg':>8} {'segments':>8} {'load med/max':>12} {'noisy':>5}")
    for side in sides:
        mine = [r for r in runs if r.side == side]
        if not mine:
            continue
        cpu = statistics.median(100 * r.cpu_s / seconds / n for r in mine)
        kernel = statistics.median(100 * r.sys_s / max(r.cpu_s, 1e-9) for r in mine)
        rss = statistics.median(r.rss / 2**20 / n for r in mine)
        ratios = [r.cpu_s / base[r.round].cpu_s for r in mine if r.round in base and base[r.round].cpu_s > 0]
        rss_ratios = [r.rss / base[r.round].rss for r in mine if r.round in base and base[r.round].rss > 0]
        cpu_x = f"{statistics.median(ratios):.2f}" if ratios else "-"
        spread = f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else "-"
        rss_x = f"{statistics.median(rss_ratios):.3f}" if rss_ratios else "-"
        loads = [r.load_before for r in mine]
        noisy = sum(1 for r in mine if r.load_before > NOISY_LOAD)
        segs = int(statistics.median(r.segments for r in mine))
        print(f"{n:>4} {side:>{width}} {len(mine):>4} {cpu:>10.3f} {cpu_x:>8} {spread:>11} "
              f"{kernel:>5.0f}% {rss:>10.2f} {rss_x:>8} {segs:>8} "
              f"{statistics.median(loads):>5.2f}/{max(loads):<6.2f} {noisy:>5}", flush=True)
        covs = [r.coverage_min for r in mine if r.coverage_min is not None]
        if covs:
            print(f"{'':>{width + 6}} coverage with an MSE viewer, lowest camera per run: "
                  + ", ".join(f"{c:.3f}" for c in covs), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cameras", default="32,64", help="comma-separated N values")
    ap.add_argument("--sides", default="ffmpeg,native,pyav,default", help="comma-separated sides (see above); "
                    "ffmpeg is the baseline of every ratio")
    ap.add_argument("--seconds", type=float, default=30.0, help="measured window per run")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of every side, interleaved (median and range)")
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                    help="environment for every sharpeyes run (repeatable)")
    ap.add_argument("--py-spy", type=Path, default=None, metavar="DIR",
                    help="record every sharpeyes run's window with py-spy (raw) into DIR")
    ap.add_argument("--py-spy-flags", default="", metavar="FLAGS",
                    help="more py-spy record flags, e.g. --py-spy-flags=--idle (--native needs a blocking record)")
    ap.add_argument("--with-media", action="store_true",
                    help="the media side keeps sharpeyes' snapshots and motion on (defaults of a real install)")
    args = ap.parse_args()
    sides = args.sides.split(",")
    env_extra = dict(e.split("=", 1) for e in args.env)
    w, h = (int(x) for x in args.size.split("x"))
    print(f"machine: {os.cpu_count()} cores, load average {'/'.join(f'{x:.2f}' for x in os.getloadavg())} at "
          f"start; window {args.seconds:.0f} s after {WARMUP_S:.0f} s warm-up; {w}x{h}p25 ~4 Mbit/s; "
          f"{args.rounds} rounds; env {env_extra or 'as installed'}"
          + ("; PROFILED (py-spy)" if args.py_spy else ""), flush=True)
    for n in (int(x) for x in args.cameras.split(",")):
        work = Path(tempfile.mkdtemp(prefix=f"bench-ingest-{n}-"))
        mounts = {f"/cam{i}": Mount("h264", size=(w, h), label="bench") for i in range(n)}
        (work / "cameras").mkdir()
        server = CameraServer(mounts, work / "cameras").start(timeout=60)
        runs: list[Run] = []
        try:
            urls = [server.url(p) for p in mounts]
            for rnd in range(args.rounds):
                k = rnd % len(sides)
                for side in sides[k:] + sides[:k]:
                    load = os.getloadavg()[0]
                    label = side.replace("/", "_")
                    run_dir = work / f"{label}-r{rnd}"
                    spy = args.py_spy / f"N{n}-{label}-r{rnd}.txt" if args.py_spy and side != "ffmpeg" else None
                    cpu, sys_cpu, rss, segs, cov = run_side(side, urls, args.seconds, run_dir, args, env_extra, spy)
                    shutil.rmtree(run_dir, ignore_errors=True)  # a 64-camera run writes ~1.5 GB
                    after = os.getloadavg()[0]
                    runs.append(Run(side, rnd, cpu, sys_cpu, rss, segs, load, after, cov))
                    print(f"  N={n} round {rnd} {side}: {100 * cpu / args.seconds / n:.3f} %core/cam "
                          f"({100 * sys_cpu / max(cpu, 1e-9):.0f} % in the kernel), peak RSS "
                          f"{rss / 2**20:.0f} MB, {segs} segments (load average {load:.2f} before, {after:.2f} "
                          f"after)", flush=True)
        finally:
            server.stop()
        summarize(n, args.seconds, sides, runs)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
