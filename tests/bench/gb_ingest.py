"""Benchmark: CPU per channel of GB/T 28181 ingest against RTSP ingest of the same stream, same run.

    .venv/bin/python -m tests.bench.gb_ingest [--channels 4] [--seconds 30] [--size 1280x720]

One clip (H.264, 25 fps, 2 s GOP, ~4 Mbit/s at 1080p scaled by area) is the source of both sides:
- RTSP: Debian's GStreamer RTSP server serves it on N mounts; sharpeyes' supervisor pulls them.
- GB/T 28181: SIPp answers N INVITEs as a device; each starts ffmpeg ``-re -f mpeg`` (PS, looped)
  piped into the test-only RTP framer (UDP); sharpeyes' supervisor records the N channels
  (``GbMediaSession``: RTP receive, PS demux, the same segmenter).
Each side runs in its own worker process (this module with ``--side``), one after the other,
and reports the CPU seconds of that process over the window after a warm-up (peers and the
media senders are other processes and not counted). Recording only: no snapshots, no motion.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.bench.procstat import cpu_seconds, peak_rss_bytes

WARMUP_S = 8.0
DEVICE = "34020000001110000001"


def channel_id(i: int) -> str:
    return f"3402000000132{i:07d}"


def worker(side: str, n: int, seconds: float, work: Path, sip_port: int, urls: list[str]) -> dict:
    settings = {"snapshots": False, "motion": False, "segment_target_seconds": 60}
    if side == "gb":
        from ingest.gb28181.sip import Peer
        from tests.support.gb_media import GbRecorder

        peer = Peer("UDP", "127.0.0.1", sip_port)
        rec = GbRecorder.start(work, {channel_id(i): (DEVICE, peer) for i in range(n)},
                               ports=(32000, 32000 + 2 * n + 10), **settings)
        ids = [channel_id(i) for i in range(n)]
    else:
        from tests.support.recording import Recorder

        rec = Recorder.start(work, {f"cam-{i}": u for i, u in enumerate(urls)}, **settings)  # type: ignore[assignment]
        ids = [f"cam-{i}" for i in range(n)]
    try:
        rec.wait_for(lambda: all(rec.status(c).get("state") == "recording" for c in ids), 60, "all recording")
        time.sleep(WARMUP_S)
        pid = os.getpid()
        start = cpu_seconds(pid)
        time.sleep(seconds)
        cpu = cpu_seconds(pid) - start
        states = {c: rec.status(c).get("state") for c in ids}
    finally:
        rec.close()
    segments = sum(len(rec.index.segments(c, "main")) for c in ids)
    return {"cpu": cpu, "rss": peak_rss_bytes(os.getpid()), "segments": segments, "states": states}


def run_side(side: str, n: int, seconds: float, work: Path, sip_port: int = 0, urls: list[str] | None = None) -> dict:
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-m", "tests.bench.gb_ingest", "--side", side, "--channels", str(n),
                          "--seconds", str(seconds), "--work", str(work), "--sip-port", str(sip_port),
                          "--urls", ",".join(urls or [])],
                         cwd=root, capture_output=True, text=True, timeout=seconds + 180,
                         env=dict(os.environ, PYTHONPATH=str(root)))
    if out.returncode != 0:
        raise RuntimeError(f"{side} worker failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--channels", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--side", choices=["gb", "rtsp"], help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    ap.add_argument("--sip-port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--urls", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side:
        urls = [u for u in args.urls.split(",") if u]
        print(json.dumps(worker(args.side, args.channels, args.seconds, Path(args.work), args.sip_port, urls)))
        return

    from tests.support.cameras import CameraServer, Mount
    from tests.support.gb_device import SippDevice

    w, h = (int(x) for x in args.size.split("x"))
    n = args.channels
    mount = Mount("h264", size=(w, h), label="bench")
    clip = mount.clip()
    base = Path(tempfile.mkdtemp(prefix="bench-gb-"))
    (base / "cameras").mkdir()
    (base / "gb").mkdir()
    (base / "rtsp").mkdir()
    print(f"machine: {os.cpu_count()} cores; {n} channels of {w}x{h}p25 H.264; window {args.seconds:.0f} s "
          f"after {WARMUP_S:.0f} s warm-up; recording only", flush=True)
    server = CameraServer({f"/cam{i}": mount for i in range(n)}, base / "cameras").start(timeout=60)
    try:
        rtsp = run_side("rtsp", n, args.seconds, base / "rtsp", urls=[server.url(f"/cam{i}") for i in range(n)])
    finally:
        server.stop()
    device = SippDevice(base / "gb", ps_kind="ffmpeg", media=clip.video, loop=True, calls=n * 4).start()
    try:
        gb = run_side("gb", n, args.seconds, base / "gb", sip_port=device.port)
    finally:
        device.stop()
    per = lambda r: 100 * r["cpu"] / args.seconds / n  # noqa: E731 - percent of a core per channel
    print(f"{'side':<6} {'CPU % per channel':>18} {'RSS MB':>8} {'segments':>9}  states")
    for name, r in (("rtsp", rtsp), ("gb", gb)):
        print(f"{name:<6} {per(r):>17.2f}% {r['rss'] / 2**20:>8.0f} {r['segments']:>9}  {set(r['states'].values())}")
    print(f"GB/RTSP CPU ratio: {gb['cpu'] / rtsp['cpu']:.2f}")


if __name__ == "__main__":
    main()
