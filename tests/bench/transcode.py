"""Benchmark: CPU per camera for each media profile, against an ffmpeg process doing the same.

Run directly: ``PYTHONPATH=$PWD python tests/bench/transcode.py [--seconds 10]``.

Input: 1080p25 clips from tests.support.clips (H.265 for live-h264, H.264 otherwise;
a 640x360 H.264 clip for motion), demuxed from a file as fast as possible. CPU is
process CPU time (all threads) over the clip's media time: % of one core per
real-time camera. The baseline is ``ffmpeg`` doing the same work on the same file
in the same run (CPU from ``RUSAGE_CHILDREN``). Motion has no ffmpeg equivalent
(MOG2); its baseline is ffmpeg decoding and scaling the same frames, so the ratio
shows what the model itself adds.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av

from config.motion import MotionSettings
from config.settings import Settings
from ingest.media.motion import MotionAnalyzer
from ingest.media.snapshots import Snapshotter, SnapshotStore
from ingest.media.transcode import Transcoder, choose_encoder, profile_spec
from tests.support.clips import make_clip

THREADS = 2


def feed(path: Path, tap, worker) -> float:
    """Demux ``path`` into ``tap`` without drops; returns CPU seconds used."""
    t0 = time.process_time()
    with av.open(str(path)) as src:
        for p in src.demux(src.streams.video[0]):
            if not p.size:
                continue
            while worker._queue.qsize() >= worker._queue.maxsize - 1:
                time.sleep(0.001)
            tap(p)
    worker.drain(120)
    return time.process_time() - t0


def as_mp4(raw: Path, fps: int = 25) -> Path:
    """The clip (a raw elementary stream) remuxed into MP4, so packets carry pts as from RTSP."""
    out = raw.with_suffix(".mp4")
    if not out.exists():
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-r", str(fps),
                        "-i", str(raw), "-c", "copy", str(out)], check=True)
    return out


def ffmpeg_cpu(args: list[str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", *args], check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    args = ap.parse_args()
    cache = Path(tempfile.gettempdir()) / "sharpeyes-bench-clips"
    h264 = as_mp4(make_clip("h264", size=(1920, 1080), fps=25, seconds=args.seconds, cache_dir=cache).video)
    h265 = as_mp4(make_clip("h265", size=(1920, 1080), fps=25, seconds=args.seconds, cache_dir=cache).video)
    small = as_mp4(make_clip("h264", size=(640, 360), fps=25, seconds=args.seconds, cache_dir=cache).video)
    settings = Settings(data_dir=Path(tempfile.mkdtemp()), transcode_threads=THREADS)
    encoder = choose_encoder(settings.transcode_encoder, THREADS)
    clock = lambda: time.time_ns() // 1000  # noqa: E731
    media_s = float(args.seconds)
    rows = []

    def transcode(profile: str, path: Path) -> float:
        t = Transcoder("bench", profile_spec(profile, settings), encoder, clock=clock, threads=THREADS,
                       outputs=[lambda p: None])
        try:
            return feed(path, t.tap, t.tap)
        finally:
            t.close()

    def snapshots(path: Path) -> float:
        s = Snapshotter("bench", "main", SnapshotStore(), None, clock=clock)
        try:
            return feed(path, s.tap, s.tap)
        finally:
            s.close()

    def motion(path: Path) -> float:
        m = MotionAnalyzer("bench", "sub", None, MotionSettings(), clock=clock, fps=5, width=320)
        try:
            return feed(path, m.tap, m.tap)
        finally:
            m.close()

    t = str(THREADS)
    cases = [
        ("live-h264 (H.265 1080p -> H.264 720p)", lambda: transcode("live-h264", h265),
         ["-threads", t, "-i", str(h265), "-vf", "scale=-2:720", "-c:v", "libx264", "-preset", "ultrafast",
          "-tune", "zerolatency", "-bf", "0", "-threads", t, "-f", "null", "-"]),
        ("sub (H.264 1080p -> 640x360 12 fps)", lambda: transcode("sub", h264),
         ["-threads", t, "-i", str(h264), "-vf", "fps=12,scale=640:360", "-c:v", "libx264", "-preset", "veryfast",
          "-bf", "0", "-threads", t, "-f", "null", "-"]),
        ("snapshots (keyframes of 1080p H.264)", lambda: snapshots(h264),
         ["-skip_frame", "nokey", "-threads", "1", "-i", str(h264), "-fps_mode", "passthrough",
          "-c:v", "mjpeg", "-f", "null", "-"]),
        ("motion (360p, 5 fps analysed)", lambda: motion(small),
         ["-threads", "1", "-i", str(small), "-vf", "fps=5,scale=320:180,format=gray", "-f", "null", "-"]),
    ]
    print(f"encoder: {encoder}; {args.seconds} s clips; {THREADS} threads; CPU in % of one core per camera")
    print(f"{'profile':42} {'ours %':>8} {'ffmpeg %':>9} {'ratio':>6} {'cams/core':>10}")
    for name, ours, ff in cases:
        ours_cpu = ours()
        ff_cpu = ffmpeg_cpu(ff)
        ours_pct, ff_pct = 100 * ours_cpu / media_s, 100 * ff_cpu / media_s
        rows.append((name, ours_pct, ff_pct))
        print(f"{name:42} {ours_pct:8.1f} {ff_pct:9.1f} {ours_pct / ff_pct:6.2f} {100 / ours_pct:10.1f}",
              flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
