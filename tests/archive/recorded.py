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

from ingest.recording.access_units import AccessUnitJoiner, DecodeTimestamper
from ingest.recording.segmenter import Segmenter
from ingest.recording.spool import Spool
from ingest.recording.uploader import Uploader
from storage.index.segments import SegmentIndex
from storage.mp4.nal import parameter_sets_from_extradata
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


def clip_packets(size: tuple[int, int] = (640, 360), seconds: int = 24, gop_seconds: int = 1,
                 label: str = "arch", kind: str = "h264",
                 ) -> tuple[av.container.InputContainer, av.video.stream.VideoStream, list[av.Packet]]:
    """The clip's packets in decode order. ``kind`` "h264_bframes": from its MP4, in Annex B
    (as an RTSP session has them), each packet's ``pts`` its frame index."""
    clip = make_clip(kind, size=size, seconds=seconds, gop_seconds=gop_seconds, label=label)
    if kind != "h264_bframes":
        c = av.open(str(clip.video), format="h264")
        v = c.streams.video[0]
        return c, v, [p for p in c.demux(v) if p.size]
    c = av.open(str(clip.video))
    v = c.streams.video[0]
    bsf = av.BitStreamFilterContext("h264_mp4toannexb", v)
    packets = []
    for p in c.demux(v):
        for q in bsf.filter(p) if p.size else ():
            q.pts = round(q.pts * q.time_base * FPS)
            packets.append(q)
    v.codec_context.extradata = b"".join(b"\x00\x00\x00\x01" + n for n in
                                         parameter_sets_from_extradata("h264", v.codec_context.extradata))
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
    kind: str = "h264",
) -> Recording:
    """Record ``runs`` of the frame-coded clip (looping it) into ``store`` and ``index``.
    A run starting at frame ``f`` has its first frame at ``t0 + f*40 ms``; frames between
    runs are a hole (the caller may add gap rows for it). ``kind`` "h264_bframes": a camera
    that sends B-frames (decode order, presentation times only, the DTS derived as the
    session does; a frame arrives once the latest frame presented so far is captured)."""
    _c, v, packets = clip_packets(size, gop_seconds=gop_seconds, label=label, kind=kind)
    bframes = kind == "h264_bframes"
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
        stamper = DecodeTimestamper(v)
        latest = first
        # Runs start on a keyframe (as a reconnecting camera's stream does).
        for k in range(first, first + count):
            src = packets[k % n_loop]
            frame = (k // n_loop) * n_loop + src.pts if bframes else k
            p = av.Packet(bytes(src))
            p.pts = p.dts = frame * TICKS
            p.time_base = v.time_base
            p.is_keyframe = src.is_keyframe
            p.stream = v
            latest = max(latest, frame)
            now[0] = t0 + latest * FRAME_US
            for au, arrival in joiner.push(p, now[0]):
                if bframes:
                    au.dts = None
                    stamper.stamp(au)
                seg.push_video(au, arrival)
        for au, arrival in joiner.flush():
            if bframes:
                au.dts = None
                stamper.stamp(au)
            seg.push_video(au, arrival)
        seg.end_run()
    uploader.drain_once()
    return Recording(camera_id, stream, t0, n_loop)
