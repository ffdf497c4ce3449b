"""Measurement: a B-frame camera recorded by sharpeyes and by ``ffmpeg -c copy`` in the same run.

Run directly: ``PYTHONPATH=$PWD python tests/bench/bframes.py [--seconds 75] [--size 1280x720]``.

The camera is VLC's RTSP server (tests.support.vlc_camera: libx264 High, 3 B-frames,
GOP 25, 25 fps, burned-in frame codes, over UDP). sharpeyes records it into moto's S3
with 10 s segments; ``ffmpeg -rtsp_transport udp -c copy`` records the same camera into
one MP4 at the same time. For each recorder: segments, coverage (recorded seconds over
the wall-clock span from the first segment's start to the stop), frames lost at cuts
(frame codes missing between one segment's last frame and the next one's first),
frames out of order inside segments (decoded steps back or to the same frame), frames
missing inside segments (steps forward past the next frame: lost on the way).
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from minio import Minio

from storage.index.segments import now_us
from tests.support.clips import make_clip
from tests.support.frames import continuity, presented_codes
from tests.support.recording import Recorder
from tests.support.s3server import MotoS3Server
from tests.support.vlc_camera import VlcCamera


def measure(seconds: float, size: tuple[int, int], segment_seconds: int = 10,
            pullers: tuple[str, ...] = ("native", "ffmpeg")) -> list[dict[str, object]]:
    work = Path(tempfile.mkdtemp(prefix="bframes-bench-"))
    clip = make_clip("h264_bframes", size=size, fps=25, seconds=24, gop_seconds=1, label="bf")
    camera = VlcCamera(clip, work / "vlc")
    (work / "vlc").mkdir()
    s3 = MotoS3Server(log_path=work / "moto.log")
    s3.start()
    camera.start()
    ffmpeg_out = work / "ffmpeg.mp4"
    try:
        recorders = {}
        for puller in pullers:
            bucket = f"bench-{puller}"
            Minio(s3.endpoint, access_key=s3.access_key, secret_key=s3.secret_key, secure=False,
                  region=s3.region).make_bucket(bucket)
            recorders[puller] = Recorder.start(
                work / f"data-{puller}", {"bf": {"main_url": camera.url, "rtsp_transport": "udp"}}, s3=s3,
                bucket=bucket, segment_target_seconds=segment_seconds, ingest_puller=puller)
        ffmpeg = subprocess.Popen(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-rtsp_transport", "udp",
                                   "-i", camera.url, "-c", "copy", "-an", str(ffmpeg_out)], stdin=subprocess.PIPE)
        t0 = now_us()
        time.sleep(seconds)
        ffmpeg.send_signal(signal.SIGINT)
        ffmpeg_stop = now_us()
        stopped = {}
        for puller, rec in recorders.items():
            stopped[puller] = now_us()
            rec.close()
        ffmpeg.wait(30)
        theirs_codes = presented_codes(ffmpeg_out)
        theirs = continuity([theirs_codes], clip.frames)
        rows: list[dict[str, object]] = [
            {"recorder": "ffmpeg -rtsp_transport udp -c copy", "segments": 1,
             "coverage": round(len(theirs_codes) / 25 / ((ffmpeg_stop - t0) / 1e6), 3),
             "lost_at_cuts": 0, "out_of_order": theirs.out_of_order, "missing_inside": theirs.missing_inside,
             "frames": theirs.frames}]
        for puller, rec in recorders.items():
            segs = rec.index.segments("bf", "main")
            parts = [presented_codes(rec.store.get_range(s.object_key, 0, s.bytes)) for s in segs]
            ours = continuity(parts, clip.frames)
            span = stopped[puller] - segs[0].start_us if segs else 1
            rows.append({"recorder": f"sharpeyes ({puller} puller)", "segments": len(segs),
                         "coverage": round(sum(s.end_us - s.start_us for s in segs) / span, 3),
                         "lost_at_cuts": ours.lost_at_cuts, "out_of_order": ours.out_of_order,
                         "missing_inside": ours.missing_inside, "frames": ours.frames,
                         "repeated_at_cuts": ours.repeated_at_cuts})
    finally:
        camera.stop()
        s3.stop()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=75)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--puller", action="append", choices=["native", "ffmpeg"],
                    help="sharpeyes puller(s) to measure (default both, at once)")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))
    for row in measure(args.seconds, (w, h), pullers=tuple(args.puller or ("native", "ffmpeg"))):
        print(row)


if __name__ == "__main__":
    main()
