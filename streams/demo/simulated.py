"""Simulated cameras: a pre-encoded H.264 loop per camera, played forever at real-time pace.

The loop is encoded once with PyAV's libx264 from an OpenCV-drawn test pattern and cached
on disk, so ``sharpeyes demo`` needs nothing but the Python wheels, and its second start
is instant. Playback re-times the loop: pts keep increasing across iterations, and each
loop starts with an IDR, so a decoder sees one endless stream.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from ingest.live.fanout import AccessUnitFanout, AccessUnitSubscription
from ingest.access_unit import AccessUnit
from storage.mp4.nal import NAL_PPS, NAL_SPS, nal_type, split_annexb
from streams.rtsp.server import RtspServer

log = logging.getLogger(__name__)

# Bump when the pattern or encoder settings change, so stale caches are not reused.
CACHE_VERSION = 1


@dataclass(frozen=True)
class StreamSpec:
    """How one simulated stream is encoded."""

    width: int
    height: int
    fps: int = 25
    bit_rate: int = 2_000_000
    loop_seconds: int = 10
    gop_seconds: int = 2

    def __post_init__(self) -> None:
        if self.loop_seconds % self.gop_seconds:
            # The loop must end just before an IDR, or the wrap would break a GOP.
            raise ValueError("loop_seconds must be a multiple of gop_seconds")
        if 90000 % self.fps:
            raise ValueError("fps must divide 90000 so frame durations are exact")

    def cache_name(self, name: str) -> str:
        return (
            f"{name}-{self.width}x{self.height}-{self.fps}fps-{self.bit_rate // 1000}k"
            f"-{self.loop_seconds}s-g{self.gop_seconds}-v{CACHE_VERSION}"
        )


MAIN_720P = StreamSpec(1280, 720, bit_rate=2_000_000)
SUB_360P = StreamSpec(640, 360, bit_rate=500_000)


@dataclass(frozen=True)
class EncodedLoop:
    """The access units of one loop, in order; frame i has pts i * 90000 / fps."""

    spec: StreamSpec
    frames: tuple[tuple[tuple[bytes, ...], bool], ...]  # (NAL units, keyframe) per frame
    sps: bytes
    pps: bytes


# -- encoding --------------------------------------------------------------------------


def _background(width: int, height: int, seed: int) -> np.ndarray:
    """Colour bars over a gradient; the hue order differs per camera so tiles differ."""
    bars = np.array(
        [(192, 192, 192), (0, 192, 192), (192, 192, 0), (0, 192, 0), (192, 0, 192), (0, 0, 192), (192, 0, 0)],
        dtype=np.uint8,
    )
    bars = np.roll(bars, seed, axis=0)
    cols = (np.arange(width) * len(bars) // width).astype(np.intp)
    img = np.empty((height, width, 3), dtype=np.uint8)
    img[: height * 2 // 3] = bars[cols][None, :, :]
    ramp = np.linspace(0, 255, width, dtype=np.uint8)
    img[height * 2 // 3 :] = ramp[None, :, None]
    return img


def _draw(base: np.ndarray, name: str, i: int, spec: StreamSpec) -> np.ndarray:
    """One frame: the background, a box moving with the loop's period, name and clock."""
    h, w = base.shape[:2]
    img = base.copy()
    n = spec.fps * spec.loop_seconds
    phase = 2 * math.pi * i / n  # one full period per loop, so the wrap is seamless
    bw, bh = w // 8, h // 6
    x = int((w - bw) * (0.5 + 0.5 * math.sin(phase)))
    y = int((h * 2 // 3 - bh) * (0.5 + 0.5 * math.sin(2 * phase)))
    cv2.rectangle(img, (x, y), (x + bw, y + bh), (255, 255, 255), -1)
    scale = h / 360
    thick = max(1, round(2 * scale))
    seconds, frame = divmod(i, spec.fps)
    clock = f"{seconds // 60:02d}:{seconds % 60:02d}.{frame:02d}"
    font = cv2.FONT_HERSHEY_SIMPLEX
    for text, row in ((name, 1), (clock, 2), (f"{w}x{h} {spec.fps} fps", 3)):
        org = (int(16 * scale), int(h * 2 // 3 + row * 34 * scale))
        cv2.putText(img, text, org, font, 0.9 * scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
        cv2.putText(img, text, org, font, 0.9 * scale, (255, 255, 255), thick, cv2.LINE_AA)
    return img


def encode_loop(name: str, spec: StreamSpec, seed: int = 0) -> EncodedLoop:
    """Encode one loop with libx264 (ultrafast, zerolatency, fixed GOP, no B-frames)."""
    gop = spec.fps * spec.gop_seconds
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height = spec.width, spec.height
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = Fraction(1, spec.fps)
    ctx.framerate = Fraction(spec.fps, 1)
    ctx.bit_rate = spec.bit_rate
    ctx.gop_size = gop
    ctx.max_b_frames = 0
    ctx.options = {
        "preset": "ultrafast",
        "tune": "zerolatency",
        # Fixed GOP and in-band SPS/PPS before every IDR: any keyframe is a clean start.
        "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0:repeat-headers=1:threads=2",
    }
    base = _background(spec.width, spec.height, seed)
    frames: list[tuple[tuple[bytes, ...], bool]] = []

    def collect(packets: list[av.Packet]) -> None:
        for p in packets:
            frames.append((tuple(split_annexb(bytes(p))), bool(p.is_keyframe)))

    for i in range(spec.fps * spec.loop_seconds):
        yuv = np.ascontiguousarray(cv2.cvtColor(_draw(base, name, i, spec), cv2.COLOR_BGR2YUV_I420), dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts = i
        collect(ctx.encode(frame))
    collect(ctx.encode(None))
    return _make_loop(spec, frames)


def _make_loop(spec: StreamSpec, frames: list[tuple[tuple[bytes, ...], bool]]) -> EncodedLoop:
    if len(frames) != spec.fps * spec.loop_seconds or not frames[0][1]:
        raise ValueError("encoded loop has the wrong frame count or does not start with a keyframe")
    sps = next(n for n in frames[0][0] if nal_type(n) == NAL_SPS)
    pps = next(n for n in frames[0][0] if nal_type(n) == NAL_PPS)
    return EncodedLoop(spec, tuple(frames), sps, pps)


def load_or_encode_loop(name: str, spec: StreamSpec, cache_dir: Path, seed: int = 0) -> EncodedLoop:
    """The loop from ``cache_dir`` if cached, else encode it and cache it.

    The cache is an Annex-B ``.h264`` file and a ``.json`` index of (offset, size,
    keyframe) per frame. The index is renamed into place last, so a crash mid-write
    leaves no index and the loop is simply encoded again.
    """
    stem = cache_dir / spec.cache_name(name)
    raw_path, index_path = stem.with_suffix(".h264"), stem.with_suffix(".json")
    try:
        index = json.loads(index_path.read_text())
        raw = raw_path.read_bytes()
        frames = [(tuple(split_annexb(raw[o : o + n])), bool(k)) for o, n, k in index["frames"]]
        return _make_loop(spec, frames)
    except (OSError, ValueError, KeyError, StopIteration):
        pass
    started = time.monotonic()
    loop = encode_loop(name, spec, seed)
    log.info("encoded %s in %.1f s", stem.name, time.monotonic() - started)
    cache_dir.mkdir(parents=True, exist_ok=True)
    entries, chunks, offset = [], [], 0
    for nals, key in loop.frames:
        data = b"".join(b"\x00\x00\x00\x01" + n for n in nals)
        entries.append((offset, len(data), key))
        chunks.append(data)
        offset += len(data)
    for path, content in ((raw_path, b"".join(chunks)), (index_path, json.dumps({"frames": entries}).encode())):
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        tmp.write_bytes(content)
        os.replace(tmp, path)
    return loop


# -- playback ----------------------------------------------------------------------------


class LoopSource:
    """An ``AccessUnitSource`` that plays an ``EncodedLoop`` forever at real-time pace."""

    codec = "h264"

    def __init__(self, loop: EncodedLoop, max_queue: int | None = None) -> None:
        self.loop = loop
        self._fanout: AccessUnitFanout = AccessUnitFanout() if max_queue is None else AccessUnitFanout(max_queue)
        self._task: asyncio.Task[None] | None = None
        self.published = 0

    def parameter_sets(self) -> tuple[bytes, ...]:
        return (self.loop.sps, self.loop.pps)

    def subscribe(self) -> AccessUnitSubscription:
        return self._fanout.subscribe()

    def start(self) -> None:
        """Start playing on the running event loop."""
        if self._task is None:
            self._task = asyncio.create_task(self._play(), name="simulated-camera")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        self._fanout.close()

    async def _play(self) -> None:
        clock = asyncio.get_running_loop()
        spec = self.loop.spec
        frames = self.loop.frames
        start = clock.time()
        i = 0
        while True:
            delay = start + i / spec.fps - clock.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -1.0:
                # The loop was stalled for over a second: carry on from now rather than
                # bursting the backlog (pts stay continuous; the stream just ran late).
                start -= delay
            nals, key = frames[i % len(frames)]
            self._fanout.publish(AccessUnit(nals, i * 90000 // spec.fps, key, time.time()))
            self.published = i = i + 1


# -- the demo's cameras --------------------------------------------------------------------


@dataclass
class SimulatedCameras:
    """Running simulated cameras and the RTSP server that serves them."""

    server: RtspServer
    sources: dict[str, LoopSource]  # path ("sim-1", "sim-1/sub") -> source
    urls: dict[str, str] = field(default_factory=dict)  # path -> rtsp:// URL

    async def close(self) -> None:
        await self.server.close()
        for source in self.sources.values():
            await source.close()


def prepare_loops(
    names: list[str], main: StreamSpec, sub: StreamSpec | None, cache_dir: Path
) -> dict[str, EncodedLoop]:
    """Load or encode every camera's loops (blocking: run it in a thread). Keys are paths."""
    loops: dict[str, EncodedLoop] = {}
    for seed, name in enumerate(names):
        loops[name] = load_or_encode_loop(name, main, cache_dir, seed)
        if sub is not None:
            loops[f"{name}/sub"] = load_or_encode_loop(name, sub, cache_dir, seed)
    return loops


async def start_simulated_cameras(
    count: int,
    data_dir: Path,
    host: str = "127.0.0.1",
    port: int = 8554,
    *,
    main: StreamSpec = MAIN_720P,
    sub: StreamSpec | None = SUB_360P,
    prefix: str = "sim",
    max_queue: int | None = None,
    send_buffer: int | None = None,
) -> SimulatedCameras:
    """Start ``count`` cameras at ``rtsp://host:port/{prefix}-N`` (and ``/{prefix}-N/sub``).

    Loops are cached under ``data_dir/simulated``. Must be awaited on the event loop
    that will run the server; ``port=0`` picks a free port (see ``server.port``).
    """
    names = [f"{prefix}-{n}" for n in range(1, count + 1)]
    loops = await asyncio.to_thread(prepare_loops, names, main, sub, Path(data_dir) / "simulated")
    server = RtspServer(host, port, send_buffer=send_buffer)
    sources: dict[str, LoopSource] = {}
    for path, loop in loops.items():
        source = LoopSource(loop, max_queue)
        source.start()
        server.add_path(path, source)
        sources[path] = source
    await server.start()
    cameras = SimulatedCameras(server, sources)
    cameras.urls = {path: server.url(path) for path in sources}
    return cameras
