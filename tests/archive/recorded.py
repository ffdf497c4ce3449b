"""Real recorded segments for archive tests: a frame-coded clip through the real
``Segmenter`` and ``Uploader`` into an object store and an index.

The clip (``tests.support.clips.make_clip``, libx264, frame code burned into every
frame) is demuxed from its Annex-B file and fed to the segmenter as an RTSP session
would, with a wall clock that follows the media: frame ``n`` of the recording is
presented at ``t0 + n * 40 ms``. So a decoded frame's code tells its wall time.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from ingest.recording.access_units import AccessUnitJoiner
from ingest.recording.segmenter import Segmenter
from ingest.recording.spool import Spool
from ingest.recording.uploader import Uploader
from storage.index.segments import SegmentIndex
from storage.objects.store import ObjectStore
from tests.support.clips import make_clip

T0 = 1_749_974_400_000_000  # 2025-06-15T08:00:00Z (in the past: "now" bounds the gaps), microseconds
FPS = 25
FRAME_US = 1_000_000 // FPS
TICKS = 90000 // FPS


@dataclass
class Recording:
    camera_id: str
    stream: str
    t0: int  # wall time of frame 0 of the first run
    frames: int  # frames per loop of the clip (codes run 0..frames-1)


def clip_packets(
    size: tuple[int, int] = (640, 360), seconds: int = 24, gop_seconds: int = 1, label: str = "arch"
) -> tuple[av.container.InputContainer, av.video.stream.VideoStream, list[av.Packet]]:
    clip = make_clip("h264", size=size, seconds=seconds, gop_seconds=gop_seconds, label=label)
    c = av.open(str(clip.video), format="h264")
    v = c.streams.video[0]
    packets = [p for p in c.demux(v) if p.size]
    return c, v, packets


def record(
    index: SegmentIndex,
    store: ObjectStore,
    spool_dir: Path,
    *,
    camera_id: str = "cam-1",
    stream: str = "main",
    runs: list[tuple[int, int]] = ((0, 600),),  # (first frame, frame count) per run, t = t0 + frame*40 ms
    t0: int = T0,
    target_s: float = 4.0,
    size: tuple[int, int] = (640, 360),
    gop_seconds: int = 1,
    label: str = "arch",
) -> Recording:
    """Record ``runs`` of the frame-coded clip (looping it) into ``store`` and ``index``.
    A run starting at frame ``f`` has its first frame at ``t0 + f*40 ms``; frames between
    runs are a hole (the caller may add gap rows for it)."""
    _c, v, packets = clip_packets(size, gop_seconds=gop_seconds, label=label)
    v.time_base = Fraction(1, 90000)
    spool = Spool(spool_dir, 1 << 32)
    uploader = Uploader(spool, store, index)
    now = [t0]
    seg = Segmenter(camera_id, stream, spool, target_us=int(target_s * 1e6), clock=lambda: now[0],
                    on_closed=lambda e: None)
    n_loop = len(packets)
    for first, count in runs:
        seg.start_input(v, None)
        joiner = AccessUnitJoiner(frame_ticks=TICKS)
        # Runs start on a keyframe (as a reconnecting camera's stream does).
        for k in range(first, first + count):
            src = packets[k % n_loop]
            p = av.Packet(bytes(src))
            p.pts = p.dts = k * TICKS
            p.time_base = v.time_base
            p.is_keyframe = src.is_keyframe
            p.stream = v
            now[0] = t0 + k * FRAME_US
            for au, arrival in joiner.push(p, now[0]):
                seg.push_video(au, arrival)
        for au, arrival in joiner.flush():
            seg.push_video(au, arrival)
        seg.end_run()
    uploader.drain_once()
    return Recording(camera_id, stream, t0, n_loop)
